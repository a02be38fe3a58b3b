//! Uplink takeover (`network bridge start netdev=X takeover=yes`): every address and route
//! of X moves to the bridge, which takes X's MAC; X becomes a port. `stop` reverses it from
//! the record. Addresses and routes are kept as the kernel's own netlink messages, so
//! nothing (metrics, sources, lifetimes, tables, flags) is lost on the way and back.

use std::fmt;

use rtnetlink::packet_core::{Emitable, Parseable};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol};
use netlink_packet_route::AddressFamily;
use serde::{Deserialize, Serialize};

use super::{Plan, Step};
use crate::model::{IfName, MacAddr};

/// One uplink change; the device is named, its index is looked up when applied (the
/// bridge may not exist yet when the plan is made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkStep {
    AddAddr { dev: IfName, msg: AddressMessage },
    DelAddr { dev: IfName, msg: AddressMessage },
    AddRoute { dev: IfName, msg: RouteMessage },
    DelRoute { dev: IfName, msg: RouteMessage },
    /// Enslave `port` to `bridge` and bring both up.
    Enslave { port: IfName, bridge: IfName },
    Release { port: IfName },
}

impl UplinkStep {
    /// The step that undoes this one (for rollback on failure).
    pub fn inverse(&self) -> UplinkStep {
        match self.clone() {
            UplinkStep::AddAddr { dev, msg } => UplinkStep::DelAddr { dev, msg },
            UplinkStep::DelAddr { dev, msg } => UplinkStep::AddAddr { dev, msg },
            UplinkStep::AddRoute { dev, msg } => UplinkStep::DelRoute { dev, msg },
            UplinkStep::DelRoute { dev, msg } => UplinkStep::AddRoute { dev, msg },
            UplinkStep::Enslave { port, .. } => UplinkStep::Release { port },
            UplinkStep::Release { port } => UplinkStep::Release { port },
        }
    }
}

impl fmt::Display for UplinkStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UplinkStep::AddAddr { dev, msg } => write!(f, "ip addr add {} dev {dev}", addr_text(msg)),
            UplinkStep::DelAddr { dev, msg } => write!(f, "ip addr del {} dev {dev}", addr_text(msg)),
            UplinkStep::AddRoute { dev, msg } => write!(f, "ip {}route add {} dev {dev}", family_flag(msg), route_text(msg)),
            UplinkStep::DelRoute { dev, msg } => write!(f, "ip {}route del {} dev {dev}", family_flag(msg), route_text(msg)),
            UplinkStep::Enslave { port, bridge } => write!(f, "ip link set {port} master {bridge} up; ip link set {bridge} up"),
            UplinkStep::Release { port } => write!(f, "ip link set {port} nomaster"),
        }
    }
}

fn addr_text(msg: &AddressMessage) -> String {
    let addr = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let addr = addr.or_else(|| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    });
    match addr {
        Some(ip) => format!("{ip}/{}", msg.header.prefix_len),
        None => "?".into(),
    }
}

fn route_text(msg: &RouteMessage) -> String {
    let dst = msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(d) => Some(format!("{}/{}", addr(d), msg.header.destination_prefix_length)),
        _ => None,
    });
    let mut s = dst.unwrap_or_else(|| "default".into());
    // In the order `ip route` prints them.
    for a in &msg.attributes {
        if let RouteAttribute::Gateway(g) = a {
            s += &format!(" via {}", addr(g));
        }
    }
    for a in &msg.attributes {
        match a {
            RouteAttribute::Table(t) if *t != 254 => s += &format!(" table {t}"),
            RouteAttribute::PrefSource(p) => s += &format!(" src {}", addr(p)),
            RouteAttribute::Priority(m) => s += &format!(" metric {m}"),
            _ => {}
        }
    }
    s
}

fn family_flag(msg: &RouteMessage) -> &'static str {
    if msg.header.address_family == AddressFamily::Inet6 {
        "-6 "
    } else {
        ""
    }
}

fn addr(a: &RouteAddress) -> String {
    match a {
        RouteAddress::Inet(v4) => v4.to_string(),
        RouteAddress::Inet6(v6) => v6.to_string(),
        other => format!("{other:?}"),
    }
}

/// What `observe` read of the uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkFacts {
    pub name: IfName,
    pub mac: MacAddr,
    pub mtu: u32,
    /// Its addresses, in the kernel's order (primaries before their secondaries).
    pub addrs: Vec<AddressMessage>,
    /// Its routes in every table, both families, as dumped.
    pub routes: Vec<RouteMessage>,
}

/// Only what an administrator put there moves: kernel-made routes (prefix, local,
/// multicast) and IPv6 link-local addresses come back by themselves on the new device.
pub fn movable_addrs(addrs: &[AddressMessage]) -> Vec<AddressMessage> {
    addrs
        .iter()
        .filter(|a| !(a.header.family == AddressFamily::Inet6 && a.header.scope == AddressScope::Link))
        .map(|a| {
            let mut a = a.clone();
            a.header.index = 0;
            a
        })
        .collect()
}

pub fn movable_routes(routes: &[RouteMessage]) -> Vec<RouteMessage> {
    let mut out: Vec<RouteMessage> = routes
        .iter()
        .filter(|r| r.header.protocol != RouteProtocol::Kernel && r.header.protocol != RouteProtocol::Ra)
        .filter(|r| route_table(r) != 255)
        .filter(|r| !r.attributes.iter().any(|a| matches!(a, RouteAttribute::MultiPath(_))))
        .map(|r| {
            let mut r = r.clone();
            // The device is given when applied; cache data is the kernel's, not a setting.
            r.attributes.retain(|a| !matches!(a, RouteAttribute::Oif(_) | RouteAttribute::CacheInfo(_) | RouteAttribute::Expires(_)));
            // What the kernel reports (linkdown on an uplink without carrier, dead,
            // offload) it refuses to be told back (EINVAL): keep only what a request may say.
            r.header.flags &= RouteFlags::Onlink | RouteFlags::Pervasive;
            r
        })
        .collect();
    // Routes through a gateway need the on-link routes first.
    out.sort_by_key(|r| r.attributes.iter().any(|a| matches!(a, RouteAttribute::Gateway(_))));
    out
}

fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(r.header.table as u32)
}

/// On the bridge, the addresses skip duplicate address detection: they were already
/// unique on this very link, and DAD would leave the host without them for a second.
fn no_dad(msg: &AddressMessage) -> AddressMessage {
    let mut m = msg.clone();
    if m.header.family == AddressFamily::Inet6 {
        let mut found = false;
        for a in m.attributes.iter_mut() {
            if let AddressAttribute::Flags(f) = a {
                *f |= AddressFlags::Nodad;
                found = true;
            }
        }
        if !found {
            m.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    m
}

/// What a takeover did, kept in the state directory so that `stop` can undo it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeoverRecord {
    pub bridge: IfName,
    pub netdev: IfName,
    pub created_bridge: bool,
    /// The uplink was a dummy we created (a host-only network): `stop` deletes it.
    #[serde(default)]
    pub created_netdev: bool,
    /// Netlink messages, hex-encoded, exactly as they were on the uplink.
    pub addrs: Vec<String>,
    pub routes: Vec<String>,
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

fn emit<M: Emitable>(m: &M) -> String {
    let mut buf = vec![0u8; m.buffer_len()];
    m.emit(&mut buf);
    to_hex(&buf)
}

impl TakeoverRecord {
    pub fn addrs(&self) -> Result<Vec<AddressMessage>, String> {
        self.addrs
            .iter()
            .map(|h| from_hex(h).ok_or("bad hex").and_then(|b| AddressMessage::parse(b.as_slice()).map_err(|_| "bad address message")))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("takeover record of {}: {e}", self.bridge))
    }
    pub fn routes(&self) -> Result<Vec<RouteMessage>, String> {
        self.routes
            .iter()
            .map(|h| from_hex(h).ok_or("bad hex").and_then(|b| RouteMessage::parse(b.as_slice()).map_err(|_| "bad route message")))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("takeover record of {}: {e}", self.bridge))
    }
}

/// `start`: move everything of the uplink to `bridge`. Routes leave before addresses
/// (a route's source must still exist) and come back after them.
pub fn start(bridge: &IfName, bridge_exists: bool, up: &UplinkFacts) -> (Plan, TakeoverRecord) {
    let addrs = movable_addrs(&up.addrs);
    let routes = movable_routes(&up.routes);
    let mut plan = Plan::default();
    if !bridge_exists {
        plan.push(Step::CreateBridge { name: bridge.clone(), mac: Some(up.mac), mtu: Some(up.mtu) });
    }
    let x = &up.name;
    for r in routes.iter().rev() {
        plan.push(Step::Uplink(UplinkStep::DelRoute { dev: x.clone(), msg: r.clone() }));
    }
    // Secondaries before their primary, or the kernel drops them along with it.
    for a in addrs.iter().rev() {
        plan.push(Step::Uplink(UplinkStep::DelAddr { dev: x.clone(), msg: a.clone() }));
    }
    plan.push(Step::Uplink(UplinkStep::Enslave { port: x.clone(), bridge: bridge.clone() }));
    for a in &addrs {
        plan.push(Step::Uplink(UplinkStep::AddAddr { dev: bridge.clone(), msg: no_dad(a) }));
    }
    for r in &routes {
        plan.push(Step::Uplink(UplinkStep::AddRoute { dev: bridge.clone(), msg: r.clone() }));
    }
    let record = TakeoverRecord {
        bridge: bridge.clone(),
        netdev: x.clone(),
        created_bridge: !bridge_exists,
        created_netdev: false,
        addrs: addrs.iter().map(emit).collect(),
        routes: routes.iter().map(emit).collect(),
    };
    (plan, record)
}

/// `stop`: the reverse of `start`, from its record. The bridge goes only if we made it
/// and no other port is left on it (`other_ports`).
/// Whether a missing uplink of this name is made rather than refused: `dummyN`, the
/// classic host-only network (`network-bridge netdev=dummy0`), where Xen admins loaded
/// the dummy driver by hand.
pub fn creatable(netdev: &IfName) -> bool {
    netdev.as_str().strip_prefix("dummy").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Takeover of an uplink that does not exist yet (see `creatable`): make the dummy, then
/// enslave it; there is nothing on it to move, and the bridge keeps its own stable MAC.
pub fn start_on_new_dummy(bridge: &IfName, bridge_exists: bool, netdev: &IfName) -> (Plan, TakeoverRecord) {
    let mut plan = Plan::default();
    plan.push(Step::CreateDummy { name: netdev.clone(), no_driver_hint: None });
    if !bridge_exists {
        plan.push(super::create_own_bridge(bridge));
    }
    plan.push(Step::Uplink(UplinkStep::Enslave { port: netdev.clone(), bridge: bridge.clone() }));
    let record = TakeoverRecord {
        bridge: bridge.clone(),
        netdev: netdev.clone(),
        created_bridge: !bridge_exists,
        created_netdev: true,
        addrs: Vec::new(),
        routes: Vec::new(),
    };
    (plan, record)
}

pub fn stop(rec: &TakeoverRecord, other_ports: &[String]) -> Result<Plan, String> {
    let addrs = rec.addrs()?;
    let routes = rec.routes()?;
    let mut plan = Plan::default();
    for r in routes.iter().rev() {
        plan.push(Step::Uplink(UplinkStep::DelRoute { dev: rec.bridge.clone(), msg: r.clone() }));
    }
    for a in addrs.iter().rev() {
        plan.push(Step::Uplink(UplinkStep::DelAddr { dev: rec.bridge.clone(), msg: no_dad(a) }));
    }
    plan.push(Step::Uplink(UplinkStep::Release { port: rec.netdev.clone() }));
    for a in &addrs {
        plan.push(Step::Uplink(UplinkStep::AddAddr { dev: rec.netdev.clone(), msg: a.clone() }));
    }
    for r in &routes {
        plan.push(Step::Uplink(UplinkStep::AddRoute { dev: rec.netdev.clone(), msg: r.clone() }));
    }
    if rec.created_netdev {
        plan.push(Step::DeleteLink { name: rec.netdev.clone() });
    }
    if rec.created_bridge && other_ports.is_empty() {
        plan.push(Step::DeleteLink { name: rec.bridge.clone() });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::address::AddressHeader;
    use netlink_packet_route::route::RouteHeader;

    fn name(s: &str) -> IfName {
        IfName::parse("t", s).unwrap()
    }

    fn addr4(a: [u8; 4], prefix: u8, secondary: bool) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header = AddressHeader { family: AddressFamily::Inet, prefix_len: prefix, index: 2, ..Default::default() };
        if secondary {
            m.header.flags = netlink_packet_route::address::AddressHeaderFlags::Secondary;
        }
        m.attributes.push(AddressAttribute::Local(std::net::Ipv4Addr::from(a).into()));
        m
    }

    fn route(protocol: RouteProtocol, gateway: Option<[u8; 4]>, dst: Option<([u8; 4], u8)>) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header = RouteHeader { address_family: AddressFamily::Inet, table: 254, protocol, ..Default::default() };
        if let Some((d, p)) = dst {
            m.header.destination_prefix_length = p;
            m.attributes.push(RouteAttribute::Destination(RouteAddress::Inet(d.into())));
        }
        if let Some(g) = gateway {
            m.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(g.into())));
        }
        m.attributes.push(RouteAttribute::Oif(2));
        m
    }

    #[test]
    fn start_moves_routes_out_before_addresses_and_back_after_them() {
        let up = UplinkFacts {
            name: name("enp0s3"),
            mac: MacAddr([0x52, 0x54, 0, 0, 0, 1]),
            mtu: 1500,
            addrs: vec![addr4([198, 51, 100, 2], 24, false), addr4([198, 51, 100, 3], 24, true)],
            routes: vec![
                route(RouteProtocol::Boot, Some([198, 51, 100, 1]), None),
                route(RouteProtocol::Kernel, None, Some(([198, 51, 100, 0], 24))),
                route(RouteProtocol::Static, None, Some(([10, 1, 0, 0], 16))),
            ],
        };
        let (plan, rec) = start(&name("xenbr0"), false, &up);
        let lines: Vec<String> = plan.steps.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            lines,
            [
                "ip link add xenbr0 type bridge stp_state 0 forward_delay 0 (if missing) address 52:54:00:00:00:01 mtu 1500",
                "ip route del default via 198.51.100.1 dev enp0s3",
                "ip route del 10.1.0.0/16 dev enp0s3",
                "ip addr del 198.51.100.3/24 dev enp0s3",
                "ip addr del 198.51.100.2/24 dev enp0s3",
                "ip link set enp0s3 master xenbr0 up; ip link set xenbr0 up",
                "ip addr add 198.51.100.2/24 dev xenbr0",
                "ip addr add 198.51.100.3/24 dev xenbr0",
                "ip route add 10.1.0.0/16 dev xenbr0",
                "ip route add default via 198.51.100.1 dev xenbr0",
            ]
        );
        // The record round-trips through its netlink bytes, and stop is the reverse.
        assert_eq!(rec.routes().unwrap().len(), 2);
        let stop_lines: Vec<String> = stop(&rec, &[]).unwrap().steps.iter().map(|s| s.to_string()).collect();
        assert_eq!(stop_lines.last().unwrap(), "ip link del xenbr0 (if present)");
        assert!(stop_lines.contains(&"ip route add default via 198.51.100.1 dev enp0s3".to_string()));
        assert!(stop(&rec, &["vif1.0".into()]).unwrap().steps.iter().all(|s| !matches!(s, Step::DeleteLink { .. })), "a bridge with guests stays");
    }

    #[test]
    fn a_missing_dummy_uplink_is_made_enslaved_and_deleted_again() {
        assert!(creatable(&name("dummy0")) && creatable(&name("dummy12")));
        assert!(!creatable(&name("dummy")) && !creatable(&name("dummyx")) && !creatable(&name("eth0")) && !creatable(&name("bond0")));
        let (plan, rec) = start_on_new_dummy(&name("xenbr0"), false, &name("dummy0"));
        let lines: Vec<String> = plan.steps.iter().map(|s| s.to_string()).collect();
        assert_eq!(lines[0], "ip link add dummy0 type dummy (if missing)");
        assert!(lines[1].starts_with("ip link add xenbr0 type bridge"));
        assert_eq!(lines[2], "ip link set dummy0 master xenbr0 up; ip link set xenbr0 up");
        let undo: Vec<String> = stop(&rec, &[]).unwrap().steps.iter().map(|s| s.to_string()).collect();
        assert_eq!(undo, ["ip link set dummy0 nomaster", "ip link del dummy0 (if present)", "ip link del xenbr0 (if present)"]);
        // A guest still on the bridge keeps it; the dummy goes all the same.
        let undo = stop(&rec, &["vif1.0".into()]).unwrap();
        assert_eq!(undo.steps.last(), Some(&Step::DeleteLink { name: name("dummy0") }));
    }
}
