//! Plans: plain data saying what to change on the host, built by pure functions from the
//! model and from what `observe` read. Only `apply` carries them out; `--dry-run` prints them.

pub mod bridge;
pub mod nft;
pub mod route;
pub mod simulate;
pub mod takeover;

use std::fmt;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::model::{IfName, MacAddr};

/// One change on the host. Every step is idempotent: applying it twice is applying it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the bridge if it does not exist (stp off, forward delay 0), marked as ours.
    CreateBridge { name: IfName, mac: Option<MacAddr>, mtu: Option<u32> },
    /// Create a dummy link if it does not exist (the kernel loads the driver on demand),
    /// marked as ours.
    CreateDummy { name: IfName },
    /// Delete a link we created (missing is success).
    DeleteLink { name: IfName },
    /// Rename a link (it must be down); done when `to` already carries the device.
    Rename { from: IfName, to: IfName },
    /// Xen's bridge port setup: down, MAC fe:ff:ff:ff:ff:ff, no addresses, MTU, enslave, up.
    AttachPort { port: IfName, bridge: IfName, mtu: u32 },
    /// Take a port out of its bridge and down; a link that is gone already is success.
    DetachPort { port: IfName },
    /// Create our nftables table with its sets and rules if it is missing (one transaction).
    EnsureNftTable,
    /// Delete our nftables table if its sets are empty (no guest depends on it any more).
    DeleteNftTableIfUnused,
    /// Add and delete set elements, all in one nftables transaction.
    NftElements(Vec<nft::ElemChange>),
    /// Moving an uplink's addresses and routes (takeover and its undo).
    Uplink(takeover::UplinkStep),
}

/// An ordered list of steps; apply runs them in order and undoes the done ones on failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn push(&mut self, step: Step) {
        self.steps.push(step);
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CreateBridge { name, mac, mtu } => {
                write!(f, "ip link add {name} type bridge stp_state 0 forward_delay 0 (if missing)")?;
                if let Some(mac) = mac {
                    write!(f, " address {mac}")?;
                }
                if let Some(mtu) = mtu {
                    write!(f, " mtu {mtu}")?;
                }
                Ok(())
            }
            Step::CreateDummy { name } => write!(f, "ip link add {name} type dummy (if missing)"),
            Step::DeleteLink { name } => write!(f, "ip link del {name} (if present)"),
            Step::Rename { from, to } => write!(f, "ip link set {from} down name {to}"),
            Step::AttachPort { port, bridge, mtu } => write!(
                f,
                "ip link set {port} down address fe:ff:ff:ff:ff:ff; ip addr flush dev {port}; ip link set {port} mtu {mtu} master {bridge} up"
            ),
            Step::DetachPort { port } => write!(f, "ip link set {port} down nomaster (if present)"),
            Step::EnsureNftTable => write!(f, "nft -f <table bridge vifnet> (if missing)"),
            Step::DeleteNftTableIfUnused => write!(f, "nft delete table bridge vifnet (if its sets are empty)"),
            Step::NftElements(changes) => {
                let lines: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
                write!(f, "nft -f - <<< '{}'", lines.join("; "))
            }
            Step::Uplink(s) => write!(f, "{s}"),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            writeln!(f, "{step}")?;
        }
        Ok(())
    }
}

/// What a vif got, as written to its journal before applying (design.md §4): offline
/// undoes exactly this, even when xenstore and the device are gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VifRecord {
    pub mode: String,
    pub kernel_name: IfName,
    pub name: IfName,
    pub dev_type: crate::model::DevType,
    pub bridge: IfName,
    pub guest_mac: Option<MacAddr>,
    pub ips: Vec<IpNetwork>,
    pub antispoof: bool,
    pub mtu: u32,
}
