//! Route mode: the host routes for its guests (what Xen's network-route / vif-route did,
//! with IPv6, filtering, and a gateway for a routed public block).

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::model::{GatewayKind, IfName};

/// Host-wide settings of route mode (modes/route.toml, then arguments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteMode {
    /// The uplink; None: the device of the default route, found when the mode starts.
    pub netdev: Option<IfName>,
    /// The host's own address(es) on the routed block, with its prefix; empty: none.
    pub gateway: Vec<IpNetwork>,
    pub gateway_link: IfName,
    pub gateway_kind: GatewayKind,
    /// One proxy ARP / NDP entry on the uplink per guest address.
    pub uplink_proxy: bool,
    pub antispoof: bool,
}
