//! Plans: plain data saying what to change on the host, built by pure functions from the
//! model and from what `observe` read. Only `apply` carries them out; `--dry-run` prints them.

pub mod bridge;
pub mod check;
pub mod doctor;
pub mod hosts;
pub mod nat;
pub mod nft;
pub mod route;
pub mod simulate;
pub mod takeover;
pub mod xen_scripts;

use std::collections::BTreeMap;
use std::fmt;

use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::model::{IfName, MacAddr};
use crate::names::ROUTE_PROTOCOL;

/// What `observe` read about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFacts {
    pub index: u32,
    /// The link kind the kernel reports (`bridge`, `dummy`, `veth`...), if any.
    pub kind: Option<String>,
    pub mtu: u32,
    pub master: Option<u32>,
    pub up: bool,
    pub mac: Option<MacAddr>,
    /// Carries our alias: vifnet created it and may delete it.
    pub ours: bool,
}

impl LinkFacts {
    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }
}

/// The links a plan depends on, by name (absent = no such link).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub links: BTreeMap<String, LinkFacts>,
}

impl Facts {
    pub fn link(&self, name: &str) -> Option<&LinkFacts> {
        self.links.get(name)
    }
}

impl PlanError {
    /// Names where a missing link's name came from, which the plan does not know.
    pub fn from_source(self, at: String) -> Self {
        match self {
            PlanError::NoSuchLink { name, .. } => PlanError::NoSuchLink { key: at, name },
            other => other,
        }
    }
}

/// Why a plan cannot be made; each is one line an administrator can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("uplink_proxy: there is no uplink to answer on (no netdev set, and no default route to take it from)")]
    NoUplink,
    /// `key` says where the name came from once known (`argument netdev`).
    #[error("{key}: {name:?} is not a link on this host")]
    NoSuchLink { key: String, name: String },
    #[error("netdev: nat mode needs an uplink to masquerade out of (no netdev set, and no default route to take it from)")]
    NoNatUplink,
    #[error("prefix {prefix}: all {machines} machine numbers are taken (each domain name keeps its number in the hosts file)")]
    NoMachineLeft { prefix: String, machines: u32 },
    #[error("ip {ip}: not a guest address of prefix {prefix} (the last byte must be 1 to 127; the host side takes +128)")]
    NotInPrefix { ip: String, prefix: String },
    #[error("ip {ip}: its machine number belongs to {owner}")]
    AddressTaken { ip: String, owner: String },
    #[error("name {name}: its address {ip} is online already for MAC {mac} (another vif with the same machine name); give the domain another name, or take that vif offline")]
    NameOnline { name: String, ip: String, mac: String },
    #[error("bridge {bridge}: no such bridge (create it, or name it as `bridge` in the bridge mode file so that vifnet creates it)")]
    NoBridge { bridge: String },
    #[error("bridge {bridge}: {bridge} exists but is not a bridge")]
    NotABridge { bridge: String },
    #[error("vifname {to}: cannot rename {from}: an interface named {to} already exists")]
    NameTaken { from: String, to: String },
    #[error("{name}: no such device")]
    NoDevice { name: String },
    #[error("hosts {path}: {message}")]
    HostsUnreadable { path: String, message: String },
}

/// A bridge we create gets a MAC of its own, derived from its name: otherwise it would take
/// the lowest port MAC, fe:ff:ff:ff:ff:ff of the first vif, and change as guests come and go.
/// Locally administered, unicast, and the same every time the bridge is made.
pub fn stable_mac(name: &IfName) -> MacAddr {
    // FNV-1a: small, stable across releases, good enough to spread names.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.as_str().bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    let b = h.to_be_bytes();
    MacAddr([0x02, b[1], b[2], b[3], b[4], b[5]])
}

/// A bridge of our own: stable MAC, no STP delay (see `stable_mac`).
pub fn create_own_bridge(name: &IfName) -> Step {
    Step::CreateBridge { name: name.clone(), mac: Some(stable_mac(name)), mtu: None }
}

/// The steps that give a guest's device the name it must have: a rename to `vifname`, or
/// nothing when a second online finds it renamed already.
pub fn device_steps(kernel_name: &IfName, name: &IfName, facts: &Facts) -> Result<Option<Step>, PlanError> {
    let kernel = facts.link(kernel_name.as_str());
    let wanted = facts.link(name.as_str());
    if name == kernel_name {
        return match kernel {
            Some(_) => Ok(None),
            None => Err(PlanError::NoDevice { name: kernel_name.to_string() }),
        };
    }
    match (kernel, wanted) {
        (Some(_), Some(_)) => Err(PlanError::NameTaken { from: kernel_name.to_string(), to: name.to_string() }),
        (Some(_), None) => Ok(Some(Step::Rename { from: kernel_name.clone(), to: name.clone() })),
        (None, Some(_)) => Ok(None),
        (None, None) => Err(PlanError::NoDevice { name: kernel_name.to_string() }),
    }
}

/// One change on the host. Every step is idempotent: applying it twice is applying it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the bridge if it does not exist (stp off, forward delay 0), marked as ours.
    CreateBridge { name: IfName, mac: Option<MacAddr>, mtu: Option<u32> },
    /// Create a dummy link if it does not exist (the kernel loads the driver on demand),
    /// marked as ours. `no_driver_hint` is added to the error of a kernel without the driver.
    CreateDummy { name: IfName, no_driver_hint: Option<&'static str> },
    /// Delete a link we created (missing is success).
    DeleteLink { name: IfName },
    /// Rename a link (it must be down); done when `to` already carries the device.
    Rename { from: IfName, to: IfName },
    /// Xen's bridge port setup: down, MAC fe:ff:ff:ff:ff:ff, no addresses, MTU, enslave, up.
    AttachPort { port: IfName, bridge: IfName, mtu: u32 },
    /// Take a port out of its bridge and down; a link that is gone already is success.
    DetachPort { port: IfName },
    /// Bring a link up, with this MTU if one is given.
    LinkUp { dev: IfName, mtu: Option<u32> },
    /// Take a link down; a link that is gone already is success.
    LinkDown { dev: IfName },
    /// Write a sysctl (`key` in slash form under /proc/sys) that reads `from` now.
    Sysctl { key: String, from: String, to: String },
    /// Write the mode's sysctl drop-in with these settings (None: remove it).
    SysctlDropIn { mode: &'static str, lines: Option<Vec<(String, String)>> },
    /// Replace a file's text `from` with `to` (atomically, by rename).
    WriteFile { path: PathBuf, from: String, to: String },
    /// Add a line at the end of nat mode's hosts file, `at` bytes long now, and to its index
    /// (`observe::hosts_index`), which is for `prefix`.
    AppendHostsLine { path: PathBuf, at: u64, prefix: ipnetwork::Ipv4Network, line: String },
    /// Cut nat mode's hosts file back to `len` bytes (the undo of an append).
    TruncateHostsFile { path: PathBuf, len: u64 },
    /// Remove the index of nat mode's hosts file (the mode stops; the file stays).
    DropHostsIndex,
    /// Tell dnsmasq (by its pid file) to reread its hosts and ethers files (SIGHUP).
    SignalDnsmasq { pidfile: PathBuf },
    /// Write a dnsmasq config and start dnsmasq with it, unless its pid file names a live one.
    StartDnsmasq { config: PathBuf, text: String, pidfile: PathBuf },
    /// Stop the dnsmasq of this pid file (ours) and remove its config.
    StopDnsmasq { pidfile: PathBuf, config: PathBuf },
    /// Add nat mode's masquerade chain and its set to `inet vifnet` if they are missing.
    EnsureNftNat,
    /// Add an address (IPv6 without duplicate address detection: it is usable at once).
    AddAddress { dev: IfName, addr: IpNetwork },
    DelAddress { dev: IfName, addr: IpNetwork },
    /// A route to `dest` through `dev`, with our protocol number and this metric.
    AddRoute { dest: IpNetwork, dev: IfName, metric: u32 },
    DelRoute { dest: IpNetwork, dev: IfName, metric: u32 },
    /// A proxy ARP / proxy NDP entry: the host answers for `addr` on `dev`.
    AddProxy { dev: IfName, addr: IpAddr },
    DelProxy { dev: IfName, addr: IpAddr },
    /// A proxy NDP entry marked router: the host answers on `dev` for its own address `addr`,
    /// the guest's IPv6 gateway (route mode). Removed by `DelProxy`.
    AddGatewayProxy { dev: IfName, addr: std::net::Ipv6Addr },
    /// A gratuitous ARP or unsolicited neighbour advertisement on `dev` for each address,
    /// with `dev`'s MAC: upstream learns at once where a restored or migrated guest is.
    Announce { dev: IfName, addrs: Vec<IpAddr> },
    /// Create one of our nftables tables with its sets and rules if it is missing (one transaction).
    EnsureNftTable(nft::Table),
    /// Delete one of our nftables tables if its sets are empty (no guest depends on it any more).
    DeleteNftTableIfUnused(nft::Table),
    /// Add and delete set elements of one table, all in one nftables transaction.
    NftElements(nft::Table, Vec<nft::ElemChange>),
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
            Step::CreateDummy { name, .. } => write!(f, "ip link add {name} type dummy (if missing)"),
            Step::DeleteLink { name } => write!(f, "ip link del {name} (if present)"),
            Step::Rename { from, to } => write!(f, "ip link set {from} down name {to}"),
            Step::AttachPort { port, bridge, mtu } => write!(
                f,
                "ip link set {port} down address fe:ff:ff:ff:ff:ff; ip addr flush dev {port}; ip link set {port} mtu {mtu} master {bridge} up"
            ),
            Step::DetachPort { port } => write!(f, "ip link set {port} down nomaster (if present)"),
            Step::LinkUp { dev, mtu: Some(mtu) } => write!(f, "ip link set {dev} mtu {mtu} up"),
            Step::LinkUp { dev, mtu: None } => write!(f, "ip link set {dev} up"),
            Step::LinkDown { dev } => write!(f, "ip link set {dev} down (if present)"),
            Step::Sysctl { key, from, to } => write!(f, "sysctl -w {key}={to} (was {from})"),
            Step::SysctlDropIn { mode, lines: Some(lines) } => {
                let lines: Vec<String> = lines.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                write!(f, "write sysctl drop-in {} <<< '{}'", crate::names::sysctl_dropin(mode), lines.join("; "))
            }
            Step::SysctlDropIn { mode, lines: None } => write!(f, "rm -f sysctl drop-in {}", crate::names::sysctl_dropin(mode)),
            Step::WriteFile { path, from, to } => {
                write!(f, "write {} ({} lines, was {})", path.display(), to.lines().count(), from.lines().count())
            }
            Step::AppendHostsLine { path, line, .. } => write!(f, "echo '{line}' >> {}", path.display()),
            Step::TruncateHostsFile { path, len } => write!(f, "truncate -s {len} {}", path.display()),
            Step::DropHostsIndex => write!(f, "rm -r <state>/{} (the hosts file's index)", crate::names::HOSTS_INDEX),
            Step::SignalDnsmasq { pidfile } => write!(f, "kill -HUP $(cat {})", pidfile.display()),
            Step::StartDnsmasq { config, pidfile, .. } => {
                write!(f, "dnsmasq --conf-file={} --pid-file={} (unless running)", config.display(), pidfile.display())
            }
            Step::StopDnsmasq { pidfile, .. } => write!(f, "kill $(cat {}) (if running)", pidfile.display()),
            Step::EnsureNftNat => write!(f, "nft -f <inet vifnet: set masq_out, chain postrouting> (if missing)"),
            Step::AddAddress { dev, addr } => write!(f, "ip addr add {addr} dev {dev}{}", nodad(addr)),
            Step::DelAddress { dev, addr } => write!(f, "ip addr del {addr} dev {dev} (if present)"),
            Step::AddRoute { dest, dev, metric } => write!(f, "ip route add {dest} dev {dev} proto {ROUTE_PROTOCOL} metric {metric}"),
            Step::DelRoute { dest, dev, metric } => {
                write!(f, "ip route del {dest} dev {dev} proto {ROUTE_PROTOCOL} metric {metric} (if present)")
            }
            Step::AddProxy { dev, addr } => write!(f, "ip neigh add proxy {addr} dev {dev} proto {ROUTE_PROTOCOL}"),
            Step::DelProxy { dev, addr } => write!(f, "ip neigh del proxy {addr} dev {dev} (if present)"),
            Step::AddGatewayProxy { dev, addr } => write!(f, "ip -6 neigh add proxy {addr} dev {dev} router proto {ROUTE_PROTOCOL}"),
            Step::Announce { dev, addrs } => {
                let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                write!(f, "announce {} at {dev}'s MAC on {dev} (gratuitous ARP / unsolicited NA)", addrs.join(" "))
            }
            Step::EnsureNftTable(table) => write!(f, "nft -f <table {table}> (if missing)"),
            Step::DeleteNftTableIfUnused(table) => write!(f, "nft delete table {table} (if its sets are empty)"),
            Step::NftElements(table, changes) => {
                let lines: Vec<String> = changes.iter().map(|c| c.in_table(*table)).collect();
                write!(f, "nft -f - <<< '{}'", lines.join("; "))
            }
            Step::Uplink(s) => write!(f, "{s}"),
        }
    }
}

fn nodad(addr: &IpNetwork) -> &'static str {
    if addr.is_ipv6() {
        " nodad"
    } else {
        ""
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
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum VifJournal {
    Bridge(BridgeVifRecord),
    Route(route::RouteVifRecord),
    Nat(nat::NatVifRecord),
}

impl VifJournal {
    pub fn kernel_name(&self) -> &IfName {
        match self {
            VifJournal::Bridge(r) => &r.kernel_name,
            VifJournal::Route(r) => &r.kernel_name,
            VifJournal::Nat(r) => &r.kernel_name,
        }
    }
    /// The device's name once online (`vifname`, else the kernel's name).
    pub fn name(&self) -> &IfName {
        match self {
            VifJournal::Bridge(r) => &r.name,
            VifJournal::Route(r) => &r.name,
            VifJournal::Nat(r) => &r.name,
        }
    }
    pub fn origin(&self) -> &Origin {
        match self {
            VifJournal::Bridge(r) => &r.origin,
            VifJournal::Route(r) => &r.origin,
            VifJournal::Nat(r) => &r.origin,
        }
    }
    pub fn set_origin(&mut self, origin: Origin) {
        match self {
            VifJournal::Bridge(r) => r.origin = origin,
            VifJournal::Route(r) => r.origin = origin,
            VifJournal::Nat(r) => r.origin = origin,
        }
    }
    pub fn mode(&self) -> &'static str {
        match self {
            VifJournal::Bridge(_) => "bridge",
            VifJournal::Route(_) => "route",
            VifJournal::Nat(_) => "nat",
        }
    }
    pub fn bridge(&self) -> Option<&BridgeVifRecord> {
        match self {
            VifJournal::Bridge(r) => Some(r),
            _ => None,
        }
    }
    pub fn route(&self) -> Option<&route::RouteVifRecord> {
        match self {
            VifJournal::Route(r) => Some(r),
            _ => None,
        }
    }
    pub fn nat(&self) -> Option<&nat::NatVifRecord> {
        match self {
            VifJournal::Nat(r) => Some(r),
            _ => None,
        }
    }
    /// The table this guest's filter is in, and its elements (none without antispoofing).
    pub fn filter(&self) -> (nft::Table, Vec<nft::Elem>) {
        match self {
            VifJournal::Bridge(r) => (nft::Table::Bridge, bridge::record_elements(r)),
            VifJournal::Route(r) => (nft::Table::Inet, route::record_elements(r)),
            VifJournal::Nat(r) => (nft::Table::Inet, nat::record_elements(r)),
        }
    }
}

/// `network <mode> start` once started: the filters of these online guests again, for when
/// a ruleset flush (a reload of nftables.service does one) took them. Only adds, so where
/// nothing was lost nothing changes; a table no guest has elements in is left alone.
pub fn filters_again<'a>(online: impl IntoIterator<Item = &'a VifJournal>) -> Plan {
    let mut by_table: Vec<(nft::Table, Vec<nft::ElemChange>)> = Vec::new();
    for (table, elems) in online.into_iter().map(VifJournal::filter) {
        let adds = elems.into_iter().map(nft::ElemChange::Add);
        match by_table.iter_mut().find(|(t, _)| *t == table) {
            Some((_, changes)) => changes.extend(adds),
            None => by_table.push((table, adds.collect())),
        }
    }
    let mut plan = Plan::default();
    for (table, changes) in by_table.into_iter().filter(|(_, c)| !c.is_empty()) {
        plan.push(Step::EnsureNftTable(table));
        plan.push(Step::NftElements(table, changes));
    }
    plan
}

/// A bridged vif's journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeVifRecord {
    pub kernel_name: IfName,
    pub name: IfName,
    pub dev_type: crate::model::DevType,
    pub bridge: IfName,
    pub guest_mac: Option<MacAddr>,
    pub ips: Vec<IpNetwork>,
    pub antispoof: bool,
    pub mtu: u32,
    #[serde(flatten)]
    pub origin: Origin,
}

/// Where a journalled vif came from, so that a later call can tell its journal is stale:
/// the device's ifindex when it came online (a device of that name with another index is
/// a new guest's), and the xenstore backend libxl named (XENBUS_PATH), for `gc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// Whether a journal still describes a device that is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Live,
    /// No link of the journal's name.
    DeviceGone,
    /// A link of that name, but another device than the one that came online.
    Replaced { was: u32, now: u32 },
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Liveness::Live => write!(f, "live"),
            Liveness::DeviceGone => write!(f, "stale: device gone"),
            Liveness::Replaced { was, now } => write!(f, "stale: ifindex {was} is now {now}"),
        }
    }
}

/// The liveness of `journal`, given the ifindex of the link named as its device now.
pub fn liveness(journal: &VifJournal, index_now: Option<u32>) -> Liveness {
    match (index_now, journal.origin().ifindex) {
        (None, _) => Liveness::DeviceGone,
        (Some(now), Some(was)) if now != was => Liveness::Replaced { was, now },
        _ => Liveness::Live,
    }
}

/// The index of a guest's device as observed for its online: under its kernel name, or
/// under `vifname` when an earlier online renamed it.
pub fn device_index(kernel_name: &IfName, name: &IfName, facts: &Facts) -> Option<u32> {
    facts.link(kernel_name.as_str()).or_else(|| facts.link(name.as_str())).map(|l| l.index)
}
