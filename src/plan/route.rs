//! Route mode (design.md §3): the host routes for its guests. What Xen's network-route and
//! vif-route did, with IPv6, a gateway for a routed public block, per-address proxying and
//! source filtering. Pure: facts in, plan out.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::nft::{again, routed_guest_elements, ElemChange, Table};
use super::{device_steps, Facts, LinkFacts, Plan, PlanError, Step};
use crate::model::{DevType, GatewayKind, IfName, RoutedVif};

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

/// What `observe` read for the host-wide part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// `netdev`, else the device of the default route; None when there is neither.
    pub uplink: Option<IfName>,
    /// `netdev` names a link that does not exist.
    pub netdev_missing: bool,
    /// Current values of the sysctls in `sysctl_keys` (a key that is missing, e.g. with
    /// IPv6 disabled, is absent).
    pub sysctls: BTreeMap<String, String>,
    pub gateway_link: Option<LinkFacts>,
    /// The addresses the gateway link holds now.
    pub gateway_link_addrs: Vec<IpNetwork>,
}

/// A sysctl the host-wide part changed, and what it was before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysctlChange {
    pub key: String,
    pub old: String,
    pub new: String,
}

/// What the host-wide part did (`<state>/route.json`): `network route stop` undoes exactly this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The settings start ran with: every vif uses them (gateway, proxying) until stop,
    /// even when they came as `network route start` arguments, as xend passed them.
    pub mode: RouteMode,
    /// The uplink found at start: where guests' proxy entries and announcements go.
    pub uplink: Option<IfName>,
    pub sysctls: Vec<SysctlChange>,
    /// The link holding the gateway addresses, if there is a gateway.
    pub gateway_link: Option<IfName>,
    /// We created the gateway link, so stop deletes it.
    pub created_link: bool,
    /// The gateway addresses we added to the link (none that it had already).
    pub gateway_addrs: Vec<IpNetwork>,
    /// The lines of the mode's sysctl drop-in, as start wrote it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropin: Vec<(String, String)>,
    /// The `key=value` settings the mode started with (xend's network-script arguments):
    /// `check` and `reload` read the mode file again under the same ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<(String, String)>,
}

impl HostRecord {
    /// The record of a host-wide part that has not run (an offline without journals).
    pub fn not_started(mode: &RouteMode) -> HostRecord {
        HostRecord {
            mode: mode.clone(),
            uplink: mode.netdev.clone(),
            sysctls: Vec::new(),
            gateway_link: None,
            created_link: false,
            gateway_addrs: Vec::new(),
            dropin: Vec::new(),
            args: Vec::new(),
        }
    }
}

/// A routed vif's journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteVifRecord {
    pub kernel_name: IfName,
    pub name: IfName,
    pub dev_type: DevType,
    /// The guest's addresses: a route to each, and its allowed sources.
    pub ips: Vec<IpNetwork>,
    pub antispoof: bool,
    pub metric: u32,
    pub mtu: Option<u32>,
    /// The host's addresses put on the vif (/32, /128) so that the guest's gateway answered
    /// there: what onlines did before `gateway`. Offline removes them; a new online puts none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answered: Vec<IpNetwork>,
    /// The host's addresses the guest has as its gateway (/32, /128), answered on the vif
    /// without a copy of them there: see [`gateway_steps`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway: Vec<IpNetwork>,
    /// The vif's sysctls this online changed (proxy NDP for an IPv6 gateway), and their
    /// values before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<SysctlChange>,
    /// The uplink that answers for the guest's addresses, and those addresses.
    pub proxy_dev: Option<IfName>,
    pub proxied: Vec<IpAddr>,
    #[serde(flatten)]
    pub origin: super::Origin,
}

/// The value route mode wants for `key`, given its current value `now`; None: leave it.
fn wanted(key: &str, now: &str) -> Option<&'static str> {
    if key.ends_with("/accept_ra") {
        // Forwarding makes the kernel ignore router advertisements unless accept_ra is 2:
        // an uplink that took them keeps its autoconfigured address and default route.
        return (now == "1").then_some("2");
    }
    Some("1")
}

/// The sysctls the host-wide part may set, in slash form under /proc/sys.
pub fn sysctl_keys(mode: &RouteMode, uplink: Option<&IfName>) -> Vec<String> {
    let mut keys = vec!["net/ipv4/ip_forward".to_string(), "net/ipv6/conf/all/forwarding".to_string()];
    if let Some(up) = uplink {
        keys.push(format!("net/ipv6/conf/{up}/accept_ra"));
        if mode.uplink_proxy {
            // Lets the kernel answer neighbour solicitations from explicit proxy entries
            // only; nothing is answered interface-wide.
            keys.push(format!("net/ipv6/conf/{up}/proxy_ndp"));
        }
    }
    keys
}

/// `network route start`, and the first `vif route online` (libxl runs no network script):
/// forwarding, the uplink's router advertisements, our sysctl drop-in, the gateway link
/// with its addresses, and the `inet vifnet` table.
pub fn host_up(mode: &RouteMode, facts: &HostFacts) -> Result<(Plan, HostRecord), PlanError> {
    if let (true, Some(netdev)) = (facts.netdev_missing, &mode.netdev) {
        return Err(PlanError::NoSuchLink { key: "netdev".into(), name: netdev.to_string() });
    }
    if mode.uplink_proxy && facts.uplink.is_none() {
        return Err(PlanError::NoUplink);
    }
    let mut plan = Plan::default();
    let mut rec = HostRecord { uplink: facts.uplink.clone(), ..HostRecord::not_started(mode) };
    let mut dropin = Vec::new();
    for key in sysctl_keys(mode, facts.uplink.as_ref()) {
        let Some(now) = facts.sysctls.get(&key) else { continue };
        let Some(to) = wanted(&key, now) else { continue };
        if now != to {
            plan.push(Step::Sysctl { key: key.clone(), from: now.clone(), to: to.into() });
            rec.sysctls.push(SysctlChange { key: key.clone(), old: now.clone(), new: to.into() });
        }
        dropin.push((key, to.to_string()));
    }
    rec.dropin = dropin.clone();
    plan.push(Step::SysctlDropIn { mode: "route", lines: Some(dropin) });
    if !mode.gateway.is_empty() {
        let link = &mode.gateway_link;
        if facts.gateway_link.is_none() {
            plan.push(match mode.gateway_kind {
                GatewayKind::Dummy => Step::CreateDummy {
                    name: link.clone(),
                    no_driver_hint: Some("set gateway_kind = \"bridge\" in the route mode file (a bridge without ports holds the gateway instead)"),
                },
                GatewayKind::Bridge => super::create_own_bridge(link),
            });
            rec.created_link = true;
        }
        plan.push(Step::LinkUp { dev: link.clone(), mtu: None });
        for gw in &mode.gateway {
            if !facts.gateway_link_addrs.contains(gw) {
                plan.push(Step::AddAddress { dev: link.clone(), addr: *gw });
                rec.gateway_addrs.push(*gw);
            }
        }
        rec.gateway_link = Some(link.clone());
    }
    if mode.antispoof {
        plan.push(Step::EnsureNftTable(Table::Inet));
    }
    Ok((plan, rec))
}

/// `network route stop`: the reverse of `rec`, firewall first. A sysctl goes back only if
/// it still has our value: one the administrator changed since is theirs.
pub fn host_down(rec: &HostRecord, facts: &HostFacts) -> Plan {
    let mut plan = Plan::default();
    plan.push(Step::DeleteNftTableIfUnused(Table::Inet));
    if let Some(link) = &rec.gateway_link {
        if rec.created_link {
            plan.push(Step::DeleteLink { name: link.clone() });
        } else {
            for gw in &rec.gateway_addrs {
                plan.push(Step::DelAddress { dev: link.clone(), addr: *gw });
            }
        }
    }
    plan.push(Step::SysctlDropIn { mode: "route", lines: None });
    plan.steps.extend(sysctls_back(&rec.sysctls, &facts.sysctls));
    plan
}

/// The sysctls a start changed, put back newest first; only those that still have our
/// value: one the administrator changed since is theirs. `now`: their current values.
pub fn sysctls_back(changed: &[SysctlChange], now: &BTreeMap<String, String>) -> Vec<Step> {
    changed
        .iter()
        .rev()
        .filter(|c| now.get(&c.key) == Some(&c.new))
        .map(|c| Step::Sysctl { key: c.key.clone(), from: c.new.clone(), to: c.old.clone() })
        .collect()
}

/// Xen's metrics: an HVM guest's tap (1) and vif (2) routes to the same address coexist,
/// and the emulated nic wins while it exists.
pub fn metric(dev_type: DevType) -> u32 {
    match dev_type {
        DevType::Tap => 1,
        DevType::Vif => 2,
    }
}

/// `addr` alone: a /32 or a /128.
pub fn host_prefix(addr: IpAddr) -> IpNetwork {
    IpNetwork::new(addr, if addr.is_ipv4() { 32 } else { 128 }).expect("a host prefix is valid")
}

/// The host addresses a vif holds, so that the guest's gateway answers on it: the
/// gateway's; without a gateway, the uplink's first address of each family (what Xen's
/// vif-route put on every vif, so guests configured for it keep working).
pub fn answered(mode: &RouteMode, uplink_addrs: &[IpNetwork]) -> Vec<IpNetwork> {
    let from = if mode.gateway.is_empty() { uplink_addrs } else { &mode.gateway };
    let mut out: Vec<IpNetwork> = Vec::new();
    for v4 in [true, false] {
        if let Some(a) = from.iter().find(|a| a.is_ipv4() == v4) {
            out.push(host_prefix(a.ip()));
        }
    }
    out
}

/// Elements a vif's record stands for (none without antispoofing).
pub fn record_elements(rec: &RouteVifRecord) -> Vec<super::nft::Elem> {
    if rec.antispoof {
        routed_guest_elements(&rec.name, &rec.ips)
    } else {
        Vec::new()
    }
}

/// The vif's sysctls route mode sets, under the vif's name: each with its value and
/// whether only an IPv6 gateway needs it.
/// - ignore_routes_with_linkdown: when the guest stops running here (netfront gone, the vif
///   without carrier, as on the source host of a migration), the kernel takes the vif's
///   routes for dead: BIRD's kernel protocol stops announcing them, and what still comes is
///   caught by the gateway's block instead of the vif (examples/route-bgp).
/// - proxy_ndp, proxy_delay: the kernel answers a neighbour solicitation from a proxy entry
///   only on an interface with proxy_ndp, and a multicast one after up to proxy_delay (0.8 s)
///   unless it is 0.
pub fn vif_sysctl_keys(dev: &IfName) -> [(String, &'static str, bool); 4] {
    [
        (linkdown_key(dev, false), "1", false),
        (linkdown_key(dev, true), "1", false),
        (format!("net/ipv6/conf/{dev}/proxy_ndp"), "1", true),
        (format!("net/ipv6/neigh/{dev}/proxy_delay"), "0", true),
    ]
}

/// The sysctl that makes a vif's routes of one family dead while it has no carrier.
pub fn linkdown_key(dev: &IfName, v6: bool) -> String {
    format!("net/{}/conf/{dev}/ignore_routes_with_linkdown", if v6 { "ipv6" } else { "ipv4" })
}

/// The changes to the vif's sysctls, given their values `now` (read under the kernel's
/// name, before any rename; keyed as [`vif_sysctl_keys`] of it).
fn vif_sysctls(vif: &RoutedVif, gateway: &[IpNetwork], now: &BTreeMap<String, String>) -> Vec<SysctlChange> {
    let gateway6 = gateway.iter().any(|g| g.is_ipv6());
    let read = vif_sysctl_keys(&vif.kernel_name);
    vif_sysctl_keys(&vif.name)
        .into_iter()
        .zip(read)
        .filter(|((_, _, for_gateway6), _)| gateway6 || !for_gateway6)
        .filter_map(|((key, new, _), (at, _, _))| {
            let old = now.get(&at).or_else(|| now.get(&key))?;
            (old != new).then(|| SysctlChange { key, old: old.clone(), new: new.into() })
        })
        .collect()
}

/// What a vif gets in route mode. `gateway` comes from `answered()`; `sysctls_now` holds
/// the vif's [`vif_sysctl_keys`] as they are (an earlier online's record keeps its own).
pub fn record(vif: &RoutedVif, host: &HostRecord, gateway: Vec<IpNetwork>, sysctls_now: &BTreeMap<String, String>) -> RouteVifRecord {
    // Proxy entries are per address; a prefix in ip= is left to upstream's routing.
    let proxied: Vec<IpAddr> =
        if host.mode.uplink_proxy { vif.ips.iter().filter(|n| super::nft::is_host(n)).map(|n| n.ip()).collect() } else { Vec::new() };
    RouteVifRecord {
        kernel_name: vif.kernel_name.clone(),
        name: vif.name.clone(),
        dev_type: vif.dev_type,
        ips: vif.ips.clone(),
        antispoof: vif.antispoof,
        metric: metric(vif.dev_type),
        mtu: vif.mtu,
        answered: Vec::new(),
        sysctls: vif_sysctls(vif, &gateway, sysctls_now),
        gateway,
        proxy_dev: if proxied.is_empty() { None } else { host.uplink.clone() },
        proxied,
        origin: Default::default(),
    }
}

/// How the guest's gateway answers on its vif, with no copy of the gateway's address there:
/// every vif holding the same address made the kernel's local-route, address-hash and
/// address-removal work grow with the number of guests (1-2 ms a call at 4000, in
/// `fib6_add_rt2node`, `ipv6_get_ifaddr`, `fib6_remove_prefsrc`, `fib_table_insert`).
/// IPv4: the kernel answers ARP for any of the host's addresses on any interface
/// (arp_ignore 0), so the gateway on its own link is enough. IPv6: a proxy entry on the vif,
/// marked router, with proxy_ndp on the vif and no proxy delay ([`vif_sysctl_keys`]).
/// In the order of setup; `down` gives the sysctls back and removes the entry.
pub fn gateway_steps(rec: &RouteVifRecord, down: bool) -> Vec<Step> {
    let dev = &rec.name;
    let mut steps: Vec<Step> = rec
        .sysctls
        .iter()
        .map(|c| match down {
            false => Step::Sysctl { key: c.key.clone(), from: c.old.clone(), to: c.new.clone() },
            true => Step::Sysctl { key: c.key.clone(), from: c.new.clone(), to: c.old.clone() },
        })
        .collect();
    steps.extend(rec.gateway.iter().filter_map(|g| match g.ip() {
        IpAddr::V6(addr) if down => Some(Step::DelProxy { dev: dev.clone(), addr: IpAddr::V6(addr) }),
        IpAddr::V6(addr) => Some(Step::AddGatewayProxy { dev: dev.clone(), addr }),
        IpAddr::V4(_) => None,
    }));
    steps
}

/// A routed vif's carrier changed (its guest started or stopped running here, as during a
/// migration): its routes taken away and put back, so that the kernel tells its listeners,
/// BIRD among them, at once how they stand: the kernel tells them nothing of a carrier
/// change itself, nor of a route replaced by its equal. Going down, a family's routes are
/// taken away while the vif does not yet ignore linkdown routes (BIRD drops the news of a
/// dead route, even of its removal, and would go on announcing it until its next scan),
/// then come back dead, which BIRD leaves out; `ignoring` says, per family (IPv4, IPv6),
/// whether the vif ignores them now ([`linkdown_key`]: a vif online before vifnet set it
/// does not, and is left so). Coming up, the IPv6 gateway's proxy entry is put back too.
pub fn carrier_changed(rec: &RouteVifRecord, up: bool, ignoring: [bool; 2]) -> Plan {
    let mut plan = Plan::default();
    let dev = &rec.name;
    for (v6, ignores) in [(false, ignoring[0]), (true, ignoring[1])] {
        let dests: Vec<IpNetwork> = rec.ips.iter().filter(|n| n.is_ipv6() == v6).copied().collect();
        if dests.is_empty() {
            continue;
        }
        let toggle = !up && ignores;
        if toggle {
            plan.push(Step::Sysctl { key: linkdown_key(dev, v6), from: "1".into(), to: "0".into() });
        }
        for dest in &dests {
            plan.push(Step::DelRoute { dest: *dest, dev: dev.clone(), metric: rec.metric });
        }
        if toggle {
            plan.push(Step::Sysctl { key: linkdown_key(dev, v6), from: "0".into(), to: "1".into() });
        }
        for dest in &dests {
            plan.push(Step::AddRoute { dest: *dest, dev: dev.clone(), metric: rec.metric });
        }
    }
    // The kernel flushes a link's proxy entries when it loses its carrier: the guest that
    // runs here again (rebooted, or back from another host) finds its IPv6 gateway again.
    if up {
        plan.steps.extend(gateway_steps(rec, false));
    }
    plan
}

/// The host state one record stands for, as steps that make it (or, `down`, remove it).
fn vif_state_steps(rec: &RouteVifRecord, down: bool) -> Vec<Step> {
    let dev = &rec.name;
    let mut steps = Vec::new();
    for addr in &rec.answered {
        steps.push(match down {
            false => Step::AddAddress { dev: dev.clone(), addr: *addr },
            true => Step::DelAddress { dev: dev.clone(), addr: *addr },
        });
    }
    steps.extend(gateway_steps(rec, down));
    for dest in &rec.ips {
        let (dest, dev, metric) = (*dest, dev.clone(), rec.metric);
        steps.push(if down { Step::DelRoute { dest, dev, metric } } else { Step::AddRoute { dest, dev, metric } });
    }
    if let Some(up) = &rec.proxy_dev {
        for addr in &rec.proxied {
            let (dev, addr) = (up.clone(), *addr);
            steps.push(if down { Step::DelProxy { dev, addr } } else { Step::AddProxy { dev, addr } });
        }
    }
    if down {
        steps.reverse();
    }
    steps
}

/// `online` / `add`: route one vif, with the settings the host-wide part ran with.
/// `previous` is its journal, if any: a repeated online removes what is no longer wanted
/// and (re)adds the rest, which is idempotent.
pub fn vif_up(
    vif: &RoutedVif,
    host: &HostRecord,
    facts: &Facts,
    gateway: Vec<IpNetwork>,
    sysctls_now: &BTreeMap<String, String>,
    previous: Option<&RouteVifRecord>,
) -> Result<(Plan, RouteVifRecord), PlanError> {
    let mut plan = Plan::default();
    plan.steps.extend(device_steps(&vif.kernel_name, &vif.name, facts)?);
    let mut rec = record(vif, host, gateway, sysctls_now);
    // Again over a journal: the values before are the first online's, not ours.
    if let Some(prev) = previous.filter(|p| !p.sysctls.is_empty() && rec.gateway.iter().any(|g| g.is_ipv6())) {
        rec.sysctls = prev.sysctls.clone();
    }

    // Firewall before the link is up, so that no packet of the guest passes unchecked.
    let old = previous.map(record_elements).unwrap_or_default();
    let changes = again(&old, &record_elements(&rec));
    if rec.antispoof {
        plan.push(Step::EnsureNftTable(Table::Inet));
    }
    if !changes.is_empty() {
        plan.push(Step::NftElements(Table::Inet, changes));
    }
    if let Some(prev) = previous {
        let keep = vif_state_steps(&rec, false);
        let stale = vif_state_steps(prev, true).into_iter().filter(|s| !undo_is_in(s, &keep));
        plan.steps.extend(stale);
    }
    plan.push(Step::LinkUp { dev: rec.name.clone(), mtu: rec.mtu });
    plan.steps.extend(vif_state_steps(&rec, false));
    if let Some(up) = &rec.proxy_dev {
        plan.push(Step::Announce { dev: up.clone(), addrs: rec.proxied.clone() });
    }
    Ok((plan, rec))
}

/// The first of `vif`'s addresses that our routes (`routed`: address and device, as
/// [`crate::observe::our_routes_to`] reads them) send to another guest's device. The vif
/// itself, under either of its names, and its HVM twin (`web0` and `web0-emu`, which route
/// the same guest with different metrics) are not another guest.
pub fn routed_elsewhere<'a>(vif: &RoutedVif, routed: &'a [(IpNetwork, IfName)]) -> Option<&'a (IpNetwork, IfName)> {
    let guest = |n: &IfName| n.as_str().strip_suffix("-emu").unwrap_or(n.as_str()).to_string();
    let ours = [guest(&vif.kernel_name), guest(&vif.name)];
    routed.iter().find(|(ip, dev)| vif.ips.contains(ip) && !ours.contains(&guest(dev)))
}

/// Whether the removal `del` takes away something `adds` makes.
fn undo_is_in(del: &Step, adds: &[Step]) -> bool {
    adds.iter().any(|a| match (del, a) {
        (Step::DelAddress { dev, addr }, Step::AddAddress { dev: d, addr: a }) => dev == d && addr == a,
        (Step::DelRoute { dest, dev, metric }, Step::AddRoute { dest: t, dev: d, metric: m }) => dest == t && dev == d && metric == m,
        (Step::DelProxy { dev, addr }, Step::AddProxy { dev: d, addr: a }) => dev == d && addr == a,
        (Step::Sysctl { key, .. }, Step::Sysctl { key: k, .. }) => key == k,
        (Step::DelProxy { dev, addr }, Step::AddGatewayProxy { dev: d, addr: a }) => dev == d && *addr == IpAddr::V6(*a),
        _ => false,
    })
}

/// `offline` / `remove`: the reverse of what `rec` says the vif got, firewall first, as
/// in bridge mode.
pub fn vif_down(rec: &RouteVifRecord) -> Plan {
    let mut plan = Plan::default();
    let deletes: Vec<ElemChange> = record_elements(rec).into_iter().map(ElemChange::Delete).collect();
    if !deletes.is_empty() {
        plan.push(Step::NftElements(Table::Inet, deletes));
    }
    plan.steps.extend(vif_state_steps(rec, true));
    plan.push(Step::LinkDown { dev: rec.name.clone() });
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_ip_list;

    fn name(s: &str) -> IfName {
        IfName::parse("t", s).unwrap()
    }
    fn mode(gateway: &str, proxy: bool) -> RouteMode {
        RouteMode {
            netdev: None,
            gateway: crate::model::parse_gateway("t", gateway).unwrap(),
            gateway_link: name("dummy0"),
            gateway_kind: GatewayKind::Dummy,
            uplink_proxy: proxy,
            antispoof: true,
        }
    }
    fn host_facts(sysctls: &[(&str, &str)]) -> HostFacts {
        HostFacts {
            uplink: Some(name("eth0")),
            netdev_missing: false,
            sysctls: sysctls.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            gateway_link: None,
            gateway_link_addrs: Vec::new(),
        }
    }
    fn lines(plan: &Plan) -> Vec<String> {
        plan.steps.iter().map(|s| s.to_string()).collect()
    }
    fn vif(ips: &str, dev_type: DevType) -> RoutedVif {
        RoutedVif {
            kernel_name: name("vif5.0"),
            name: name("vif5.0"),
            dev_type,
            ips: parse_ip_list("t", ips).unwrap(),
            mtu: None,
            antispoof: true,
        }
    }
    fn link() -> LinkFacts {
        LinkFacts { index: 7, kind: Some("veth".into()), mtu: 1500, master: None, up: false, mac: None, ours: false }
    }
    fn facts() -> Facts {
        Facts { links: [("vif5.0".to_string(), link())].into() }
    }
    /// A new vif's sysctls that route mode sets, as the kernel makes them.
    fn fresh() -> BTreeMap<String, String> {
        [
            ("net/ipv4/conf/vif5.0/ignore_routes_with_linkdown", "0"),
            ("net/ipv6/conf/vif5.0/ignore_routes_with_linkdown", "0"),
            ("net/ipv6/conf/vif5.0/proxy_ndp", "0"),
            ("net/ipv6/neigh/vif5.0/proxy_delay", "80"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    const DEFAULTS: &[(&str, &str)] = &[
        ("net/ipv4/ip_forward", "0"),
        ("net/ipv6/conf/all/forwarding", "0"),
        ("net/ipv6/conf/eth0/accept_ra", "1"),
        ("net/ipv6/conf/eth0/proxy_ndp", "0"),
    ];

    #[test]
    fn start_forwards_keeps_router_advertisements_and_makes_the_gateway() {
        let (plan, rec) = host_up(&mode("80.68.86.193/29 2001:db8:42::1/64", true), &host_facts(DEFAULTS)).unwrap();
        assert_eq!(
            lines(&plan),
            [
                "sysctl -w net/ipv4/ip_forward=1 (was 0)",
                "sysctl -w net/ipv6/conf/all/forwarding=1 (was 0)",
                "sysctl -w net/ipv6/conf/eth0/accept_ra=2 (was 1)",
                "sysctl -w net/ipv6/conf/eth0/proxy_ndp=1 (was 0)",
                "write sysctl drop-in 99-vifnet-route.conf <<< 'net/ipv4/ip_forward = 1; net/ipv6/conf/all/forwarding = 1; net/ipv6/conf/eth0/accept_ra = 2; net/ipv6/conf/eth0/proxy_ndp = 1'",
                "ip link add dummy0 type dummy (if missing)",
                "ip link set dummy0 up",
                "ip addr add 80.68.86.193/29 dev dummy0",
                "ip addr add 2001:db8:42::1/64 dev dummy0 nodad",
                "nft -f <table inet vifnet> (if missing)",
            ]
        );
        assert!(rec.created_link && rec.sysctls.len() == 4 && rec.gateway_addrs.len() == 2);
        // stop: the exact reverse, each sysctl back to what it was.
        let after: Vec<(&str, &str)> = vec![
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv6/conf/all/forwarding", "1"),
            ("net/ipv6/conf/eth0/accept_ra", "2"),
            ("net/ipv6/conf/eth0/proxy_ndp", "1"),
        ];
        assert_eq!(
            lines(&host_down(&rec, &host_facts(&after))),
            [
                "nft delete table inet vifnet (if its sets are empty)",
                "ip link del dummy0 (if present)",
                "rm -f sysctl drop-in 99-vifnet-route.conf",
                "sysctl -w net/ipv6/conf/eth0/proxy_ndp=0 (was 1)",
                "sysctl -w net/ipv6/conf/eth0/accept_ra=1 (was 2)",
                "sysctl -w net/ipv6/conf/all/forwarding=0 (was 1)",
                "sysctl -w net/ipv4/ip_forward=0 (was 1)",
            ]
        );
    }

    #[test]
    fn start_changes_only_what_differs_and_stop_leaves_what_the_administrator_changed() {
        let set = [("net/ipv4/ip_forward", "1"), ("net/ipv6/conf/all/forwarding", "0"), ("net/ipv6/conf/eth0/accept_ra", "0")];
        let mut m = mode("", false);
        m.antispoof = false;
        let (plan, rec) = host_up(&m, &host_facts(&set)).unwrap();
        assert_eq!(
            lines(&plan),
            [
                "sysctl -w net/ipv6/conf/all/forwarding=1 (was 0)",
                "write sysctl drop-in 99-vifnet-route.conf <<< 'net/ipv4/ip_forward = 1; net/ipv6/conf/all/forwarding = 1'",
            ],
            "accept_ra 0 (no RAs used) stays; no gateway, no link"
        );
        let changed_since = [("net/ipv6/conf/all/forwarding", "0")];
        assert!(!lines(&host_down(&rec, &host_facts(&changed_since))).iter().any(|l| l.starts_with("sysctl")));
    }

    #[test]
    fn an_existing_gateway_link_is_used_and_kept() {
        let mut f = host_facts(DEFAULTS);
        f.gateway_link = Some(link());
        f.gateway_link_addrs = crate::model::parse_gateway("t", "80.68.86.193/29").unwrap();
        let (plan, rec) = host_up(&mode("80.68.86.193/29 2001:db8:42::1/64", false), &f).unwrap();
        assert!(!lines(&plan).iter().any(|l| l.contains("link add") || l.contains("80.68.86.193")));
        assert!(!rec.created_link);
        assert_eq!(lines(&host_down(&rec, &f))[1], "ip addr del 2001:db8:42::1/64 dev dummy0 (if present)");
    }

    #[test]
    fn the_bridge_kind_makes_a_portless_bridge_and_proxying_needs_an_uplink() {
        let mut m = mode("80.68.86.193/29", false);
        m.gateway_kind = GatewayKind::Bridge;
        let (plan, _) = host_up(&m, &host_facts(DEFAULTS)).unwrap();
        assert!(lines(&plan).iter().any(|l| l.starts_with("ip link add dummy0 type bridge")));
        let mut f = host_facts(DEFAULTS);
        f.uplink = None;
        assert_eq!(host_up(&mode("", true), &f).unwrap_err(), PlanError::NoUplink);
    }

    #[test]
    fn online_routes_answers_proxies_and_announces_and_offline_reverses_it() {
        let m = mode("80.68.86.193/29 2001:db8:42::1/64", true);
        let host = HostRecord { uplink: Some(name("eth0")), ..HostRecord::not_started(&m) };
        let v = vif("80.68.86.194 2001:db8:42::194 10.9.0.0/24", DevType::Vif);
        let (plan, rec) = vif_up(&v, &host, &facts(), answered(&m, &[]), &fresh(), None).unwrap();
        assert_eq!(
            lines(&plan),
            [
                "nft -f <table inet vifnet> (if missing)",
                "nft -f - <<< 'add element inet vifnet guarded { \"vif5.0\" }; add element inet vifnet vif_ip4 { \"vif5.0\" . 80.68.86.194 }; add element inet vifnet vif_ip6 { \"vif5.0\" . 2001:db8:42::194 }; add element inet vifnet vif_net4 { \"vif5.0\" . 10.9.0.0/24 }'",
                "ip link set vif5.0 up",
                "sysctl -w net/ipv4/conf/vif5.0/ignore_routes_with_linkdown=1 (was 0)",
                "sysctl -w net/ipv6/conf/vif5.0/ignore_routes_with_linkdown=1 (was 0)",
                "sysctl -w net/ipv6/conf/vif5.0/proxy_ndp=1 (was 0)",
                "sysctl -w net/ipv6/neigh/vif5.0/proxy_delay=0 (was 80)",
                "ip -6 neigh add proxy 2001:db8:42::1 dev vif5.0 router proto 118",
                "ip route add 80.68.86.194/32 dev vif5.0 proto 118 metric 2",
                "ip route add 2001:db8:42::194/128 dev vif5.0 proto 118 metric 2",
                "ip route add 10.9.0.0/24 dev vif5.0 proto 118 metric 2",
                "ip neigh add proxy 80.68.86.194 dev eth0 proto 118",
                "ip neigh add proxy 2001:db8:42::194 dev eth0 proto 118",
                "announce 80.68.86.194 2001:db8:42::194 at eth0's MAC on eth0 (gratuitous ARP / unsolicited NA)",
            ]
        );
        assert_eq!(
            lines(&vif_down(&rec)),
            [
                "nft -f - <<< 'delete element inet vifnet guarded { \"vif5.0\" }; delete element inet vifnet vif_ip4 { \"vif5.0\" . 80.68.86.194 }; delete element inet vifnet vif_ip6 { \"vif5.0\" . 2001:db8:42::194 }; delete element inet vifnet vif_net4 { \"vif5.0\" . 10.9.0.0/24 }'",
                "ip neigh del proxy 2001:db8:42::194 dev eth0 (if present)",
                "ip neigh del proxy 80.68.86.194 dev eth0 (if present)",
                "ip route del 10.9.0.0/24 dev vif5.0 proto 118 metric 2 (if present)",
                "ip route del 2001:db8:42::194/128 dev vif5.0 proto 118 metric 2 (if present)",
                "ip route del 80.68.86.194/32 dev vif5.0 proto 118 metric 2 (if present)",
                "ip neigh del proxy 2001:db8:42::1 dev vif5.0 (if present)",
                "sysctl -w net/ipv6/neigh/vif5.0/proxy_delay=80 (was 0)",
                "sysctl -w net/ipv6/conf/vif5.0/proxy_ndp=0 (was 1)",
                "sysctl -w net/ipv6/conf/vif5.0/ignore_routes_with_linkdown=0 (was 1)",
                "sysctl -w net/ipv4/conf/vif5.0/ignore_routes_with_linkdown=0 (was 1)",
                "ip link set vif5.0 down (if present)",
            ]
        );
        // The guest stops running here (carrier down), then runs here again.
        assert_eq!(
            lines(&carrier_changed(&rec, false, [true, true]))[..4],
            [
                "sysctl -w net/ipv4/conf/vif5.0/ignore_routes_with_linkdown=0 (was 1)",
                "ip route del 80.68.86.194/32 dev vif5.0 proto 118 metric 2 (if present)",
                "ip route del 10.9.0.0/24 dev vif5.0 proto 118 metric 2 (if present)",
                "sysctl -w net/ipv4/conf/vif5.0/ignore_routes_with_linkdown=1 (was 0)",
            ]
        );
        let up = lines(&carrier_changed(&rec, true, [true, true]));
        assert_eq!(up.len(), 2 * 3 + 5, "each route taken away and put back, then the gateway's steps: {up:?}");
        assert_eq!(up[10], "ip -6 neigh add proxy 2001:db8:42::1 dev vif5.0 router proto 118", "the gateway's proxy entry, which the carrier's loss took");
    }

    #[test]
    fn taps_get_metric_1_and_no_gateway_answers_for_the_uplink() {
        let m = mode("", false);
        let uplink = crate::model::parse_gateway("t", "198.51.100.2/24 2001:db8::2/64").unwrap();
        assert_eq!(answered(&m, &uplink).iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["198.51.100.2/32", "2001:db8::2/128"]);
        let (plan, rec) = vif_up(&vif("192.0.2.5", DevType::Tap), &HostRecord::not_started(&m), &facts(), Vec::new(), &fresh(), None).unwrap();
        assert_eq!(rec.metric, 1);
        assert!(lines(&plan).contains(&"ip route add 192.0.2.5/32 dev vif5.0 proto 118 metric 1".to_string()));
        assert!(!lines(&plan).iter().any(|l| l.contains("proxy") || l.contains("announce")));
    }

    #[test]
    fn a_repeated_online_removes_only_what_changed() {
        let m = mode("80.68.86.193/29", false);
        let host = HostRecord::not_started(&m);
        let (_, first) = vif_up(&vif("80.68.86.194", DevType::Vif), &host, &facts(), answered(&m, &[]), &fresh(), None).unwrap();
        let (plan, _) = vif_up(&vif("80.68.86.195", DevType::Vif), &host, &facts(), answered(&m, &[]), &fresh(), Some(&first)).unwrap();
        let l = lines(&plan);
        assert!(l.contains(&"ip route del 80.68.86.194/32 dev vif5.0 proto 118 metric 2 (if present)".to_string()), "{l:?}");
        assert!(!l.iter().any(|s| s.starts_with("ip addr del")), "the gateway stays: {l:?}");
        assert!(l.contains(&"ip route add 80.68.86.195/32 dev vif5.0 proto 118 metric 2".to_string()));
    }

    /// A journal written before `gateway` had the gateway's addresses on the vif: its offline
    /// removes them, and an online over it (a reload) answers the new way and removes them.
    #[test]
    fn a_journal_with_the_gateway_on_the_vif_is_taken_over() {
        let m = mode("80.68.86.193/29 2001:db8:42::1/64", false);
        let host = HostRecord::not_started(&m);
        let v = vif("80.68.86.194", DevType::Vif);
        let mut old = record(&v, &host, Vec::new(), &fresh());
        old.answered = answered(&m, &[]);
        let json = serde_json::to_string(&old).unwrap();
        assert!(json.contains("\"answered\"") && !json.contains("\"gateway\""), "{json}");
        let down = lines(&vif_down(&old));
        assert!(down.contains(&"ip addr del 80.68.86.193/32 dev vif5.0 (if present)".to_string()), "{down:?}");
        let (plan, rec) = vif_up(&v, &host, &facts(), answered(&m, &[]), &fresh(), Some(&old)).unwrap();
        let l = lines(&plan);
        assert!(l.contains(&"ip addr del 2001:db8:42::1/128 dev vif5.0 (if present)".to_string()), "{l:?}");
        assert!(l.contains(&"ip -6 neigh add proxy 2001:db8:42::1 dev vif5.0 router proto 118".to_string()), "{l:?}");
        assert!(rec.answered.is_empty() && rec.gateway.len() == 2 && rec.sysctls.len() == 2, "{rec:?}");
        // Again over the new journal: the sysctls' values before stay the first online's.
        let (plan, again) = vif_up(&v, &host, &facts(), answered(&m, &[]), &BTreeMap::new(), Some(&rec)).unwrap();
        assert_eq!(again.sysctls, rec.sysctls);
        assert!(!lines(&plan).iter().any(|s| s.contains("(was 1)") || s.contains("ip addr")), "{:?}", lines(&plan));
    }

    #[test]
    fn an_address_routed_to_another_guest_is_found_and_the_vifs_own_twin_is_not() {
        let name = |s: &str| IfName::parse("t", s).unwrap();
        let vif = RoutedVif {
            kernel_name: name("vif6.0"),
            name: name("db0"),
            dev_type: DevType::Vif,
            ips: parse_ip_list("t", "192.0.2.5 2001:db8::5").unwrap(),
            mtu: None,
            antispoof: true,
        };
        let ip = |s: &str| parse_ip_list("t", s).unwrap()[0];
        let own = [(ip("192.0.2.5"), name("db0")), (ip("2001:db8::5"), name("db0-emu")), (ip("192.0.2.5"), name("vif6.0"))];
        assert_eq!(routed_elsewhere(&vif, &own), None);
        let other = [(ip("192.0.2.9"), name("vif5.0")), (ip("2001:db8::5"), name("vif5.0"))];
        assert_eq!(routed_elsewhere(&vif, &other), Some(&other[1]));
    }
}
