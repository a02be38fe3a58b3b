//! `setup --simulate`: a whole Xen configuration stood up in network namespaces. This file
//! turns the parsed configs into a description of the lab (pure); `apply::simulate` builds it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnetwork::{IpNetwork, Ipv4Network};

use crate::config::domain::DomainConfig;
use crate::config::inputs::is_dns_name;
use crate::config::kv::KeyValues;
use crate::config::sxp::XendConfig;
use crate::config::xlconf::XlConf;
use crate::config::ConfigError;
use crate::model::{parse_bool, parse_ip_list, parse_mtu, GatewayKind, IfName, MacAddr};
use crate::names::{script_role, ScriptRole};
use crate::plan::nat::{self, NatMode};
use crate::plan::route::{answered, RouteMode};

/// The lan host every guest should reach, and the dom0 uplink facing it. In route mode
/// the lan host stands for upstream: the router that sends the routed blocks to dom0; in
/// nat mode, upstream with no route back to the guests' prefix.
pub const LAN_ADDR: &str = "192.0.2.1/24";
pub const LAN_ADDR6: &str = "2001:db8::1/64";
pub const DOM0_ADDR: &str = "192.0.2.2/24";
pub const DOM0_ADDR6: &str = "2001:db8::2/64";
/// The lan's IPv4 subnet, which a nat prefix must not overlap.
pub const LAN_NET: &str = "192.0.2.0/24";

/// The ethers file dnsmasq's read-ethers reads: always this path. In the lab it is dom0's
/// own, bound over the host's by `ip netns exec`.
pub const ETHERS: &str = "/etc/ethers";

/// A source address no guest owns, for the antispoofing check.
pub const SPOOFED: &str = "192.0.2.99";

/// The modes the lab can stand up.
pub const MODES: &[&str] = &["bridge", "route", "nat"];

fn net(s: &str) -> IpNetwork {
    s.parse().expect("the lab's own addresses are valid")
}

/// dom0's uplink addresses, both families.
pub fn dom0_addrs() -> [IpNetwork; 2] {
    [net(DOM0_ADDR), net(DOM0_ADDR6)]
}

/// A route one of the lab's stand-in hosts adds: via a gateway, or on-link (`via` None).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRoute {
    pub dest: IpNetwork,
    pub via: Option<IpAddr>,
}

impl fmt::Display for SimRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dest = if self.dest.prefix() == 0 { "default".to_string() } else { self.dest.to_string() };
        match self.via {
            Some(gw) => write!(f, "{dest} via {gw}"),
            None => write!(f, "{dest} on-link"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimVif {
    pub domid: u32,
    pub devid: u32,
    /// Settings of the `vif=` entry, passed on as key=value arguments, as xend did.
    pub settings: KeyValues,
    /// Addresses (with the prefix the guest uses), routes and MAC the stand-in guest
    /// configures on its side.
    pub guest_addrs: Vec<IpNetwork>,
    pub guest_routes: Vec<SimRoute>,
    pub guest_mac: Option<String>,
    /// The guest asks for its IPv4 address by DHCP (nat mode) instead of setting one.
    pub dhcp: bool,
    /// The name the lab's DNS server knows this interface by (nat mode: the domain's name
    /// for the first interface, `name-y` for the others).
    pub dns_name: Option<String>,
}

impl SimVif {
    pub fn kernel_name(&self) -> String {
        format!("vif{}.{}", self.domid, self.devid)
    }

    /// The guest's interface behind this vif, as netfront numbers them.
    pub fn guest_dev(&self) -> String {
        format!("eth{}", self.devid)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimGuest {
    pub name: String,
    pub netns: String,
    pub vifs: Vec<SimVif>,
}

impl SimGuest {
    /// Whether the guest has an address of this family (IPv6 when `v6`); a DHCP lease is IPv4.
    pub fn has_family(&self, v6: bool) -> bool {
        self.vifs.iter().any(|v| (v.dhcp && !v6) || v.guest_addrs.iter().any(|a| a.is_ipv6() == v6))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lab {
    pub mode: String,
    pub dom0: String,
    pub lan: String,
    /// The dom0 end of the uplink veth (the `netdev` of the network script, default eth0).
    pub uplink: IfName,
    /// `network <mode> start` arguments from xend-config.sxp's network-script.
    pub network_args: KeyValues,
    /// Routes the lan host needs to reach the guests (route mode: the routed blocks via dom0).
    pub lan_routes: Vec<SimRoute>,
    /// The gateway goes on a dummy link, which needs a driver this kernel may lack.
    pub gateway_on_dummy: bool,
    /// Whether a vif without `antispoof=` is guarded (route and nat mode: the mode's setting).
    pub antispoof: bool,
    /// The DHCP and DNS service the guests use (nat mode's dnsmasq), if any.
    pub dhcp: Option<SimDhcp>,
    /// Files `ip netns exec` binds over /etc in a namespace, made empty before the first
    /// command runs there and removed with the lab.
    pub etc_files: Vec<EtcFile>,
    pub guests: Vec<SimGuest>,
}

/// What the guests' leases and names must be: addresses of `prefix` whose router is the
/// host side of the vif, names in `domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDhcp {
    pub prefix: Ipv4Network,
    pub domain: String,
}

/// `/etc/netns/<netns>/<name>`: seen as `/etc/<name>` by every command run in `netns`,
/// provided the host has an `/etc/<name>` to bind it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFile {
    pub netns: String,
    pub name: String,
    /// Whether an empty `/etc/<name>` may be made on a host that has none: true for
    /// ethers, where an empty file means what a missing one does.
    pub make_target: bool,
}

/// A lease a stand-in guest's DHCP client got: its address and its router.
pub type Lease = (Ipv4Addr, Ipv4Addr);

/// A name one guest looks up, and the guest interface whose lease it must resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameCheck<'a> {
    pub asker: &'a SimGuest,
    pub query: String,
    pub owner: &'a SimGuest,
    pub vif: &'a SimVif,
}

impl Lab {
    /// `network <mode> <verb>` with its arguments: start gets them all; status and stop
    /// only what names the mode's object (the bridge), the rest comes from start's record.
    pub fn network_call(&self, verb: &str) -> Vec<String> {
        let mut argv = vec!["network".to_string(), self.mode.clone(), verb.to_string()];
        let wanted = |k: &str| verb == "start" || k == "bridge";
        argv.extend(self.network_args.iter().filter(|(k, _)| wanted(k)).map(|(k, v)| format!("{k}={v}")));
        argv
    }

    /// `vif <mode> online|offline` for one vif: online with the vif's settings, offline
    /// from the journal, as libxl calls it once xenstore is gone.
    pub fn vif_call(&self, vif: &SimVif, verb: &str) -> Vec<String> {
        let mut argv = vec!["vif".to_string(), self.mode.clone(), verb.to_string(), "type_if=vif".into()];
        if verb == "online" {
            argv.extend(vif.settings.iter().map(|(k, v)| format!("{k}={v}")));
        }
        argv
    }

    /// The guest that shows antispoofing: the first whose first vif is guarded and has an
    /// IPv4 address, static or leased (the forged source is IPv4), with that vif.
    pub fn spoof_candidate(&self) -> Option<(&SimGuest, &SimVif)> {
        self.guests.iter().find_map(|g| {
            let v = g.vifs.first()?;
            (self.guarded(v) && (v.dhcp || v.guest_addrs.iter().any(|a| a.is_ipv4()))).then_some((g, v))
        })
    }

    /// Whether vifnet filters this vif's sources: its own `antispoof=`, else the mode's.
    pub fn guarded(&self, v: &SimVif) -> bool {
        v.settings.get("antispoof").map_or(self.antispoof, |s| parse_bool("antispoof", s).unwrap_or(true))
    }

    /// Every guest address, for the lan host to ping.
    pub fn guest_addresses(&self) -> impl Iterator<Item = (&SimGuest, IpAddr)> {
        self.guests.iter().flat_map(|g| g.vifs.iter().flat_map(move |v| v.guest_addrs.iter().map(move |a| (g, a.ip()))))
    }

    /// Every vif whose guest asks for a lease.
    pub fn dhcp_vifs(&self) -> impl Iterator<Item = (&SimGuest, &SimVif)> {
        self.guests.iter().flat_map(|g| g.vifs.iter().filter(|v| v.dhcp).map(move |v| (g, v)))
    }

    /// Whether a lease is what the lab's DHCP service must give: an address of the prefix,
    /// and as router the host side of the vif it came through.
    pub fn lease_ok(&self, lease: &Lease) -> bool {
        let (addr, router) = *lease;
        self.dhcp.as_ref().is_some_and(|d| d.prefix.contains(addr) && router == nat::host_side(addr))
    }

    /// The names each guest looks up: its own full name (name.domain), and the next
    /// guest's bare name, through the search domain its lease gave it.
    pub fn name_checks(&self) -> Vec<NameCheck<'_>> {
        let Some(dhcp) = &self.dhcp else { return Vec::new() };
        let named: Vec<(&SimGuest, &SimVif, &str)> =
            self.guests.iter().filter_map(|g| g.vifs.iter().find_map(|v| Some((g, v, v.dns_name.as_deref()?)))).collect();
        let mut checks = Vec::new();
        for (i, (g, v, name)) in named.iter().enumerate() {
            checks.push(NameCheck { asker: g, query: format!("{name}.{}", dhcp.domain), owner: g, vif: v });
            let (other, ov, oname) = named[(i + 1) % named.len()];
            if other != *g {
                checks.push(NameCheck { asker: g, query: oname.to_string(), owner: other, vif: ov });
            }
        }
        checks
    }
}

/// The mode the configs select: xend's vif-script, else its network-script, else xl.conf's
/// `vif.default.script`; bridge when none says.
pub fn selected_mode(xend: Option<&XendConfig>, xl: Option<&XlConf>) -> Result<&'static str, ConfigError> {
    let of = |what: &str, script: &str| match script_role(script) {
        Some((_, mode)) if MODES.contains(&mode) => Ok(mode),
        _ => Err(ConfigError::bad(what, script, format!("is not a mode vifnet simulates ({})", MODES.join(", ")))),
    };
    let vif = xend.and_then(|x| x.vif_script.as_ref()).map(|s| of("vif-script", &s.script)).transpose()?;
    let network = xend.and_then(|x| x.network_script.as_ref()).map(|s| of("network-script", &s.script)).transpose()?;
    if let (Some(v), Some(n)) = (vif, network) {
        if v != n {
            return Err(ConfigError::bad("network-script", n, format!("does not match vif-script's mode ({v})")));
        }
    }
    let xl_mode = match xl.and_then(|x| x.default_script.as_deref()) {
        // A network-* name here is a mistake xl would run per vif: refuse it.
        Some(s) if matches!(script_role(s), Some((ScriptRole::Network, _))) => {
            return Err(ConfigError::bad("vif.default.script", s, "is a network script, not a vif script"))
        }
        Some(s) => Some(of("vif.default.script", s)?),
        None => None,
    };
    Ok(vif.or(network).or(xl_mode).unwrap_or("bridge"))
}

/// `network <mode> start` arguments from xend-config.sxp's network-script.
pub fn network_args(xend: Option<&XendConfig>) -> KeyValues {
    xend.and_then(|x| x.network_script.as_ref()).map(|s| s.args.clone()).unwrap_or_default()
}

/// What the lab needs to know of the mode beyond the configs: route mode's settings (the
/// mode file with the network-script arguments over it) place the gateway and the blocks;
/// nat mode's (as [`nat_in_lab`] makes them) give the prefix, the domain and the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimMode {
    Bridge,
    Route(RouteMode),
    Nat(NatMode),
}

/// Nat mode as the lab runs it, and a note for each setting changed: machine numbers in the
/// lab's own `hosts` file; /etc/ethers, the one file dnsmasq's read-ethers reads (dom0's
/// own in the lab); and vifnet's own dnsmasq, since the guests need a DHCP server and the
/// lab must never signal the host's.
pub fn nat_in_lab(mode: &NatMode, hosts: &Path) -> (NatMode, Vec<String>) {
    let mut notes = vec![format!("the lab keeps nat mode's machine numbers in {}, not in {}", hosts.display(), mode.hosts.display())];
    if mode.ethers != Path::new(ETHERS) {
        notes.push(format!("the lab writes {ETHERS} (dom0's own), which dnsmasq reads, instead of {}", mode.ethers.display()));
    }
    if !mode.run_dnsmasq {
        notes.push(format!("the lab runs vifnet's own dnsmasq (run_dnsmasq=true) instead of signalling {}", mode.dnsmasq_pidfile.display()));
    }
    let lab = NatMode { hosts: hosts.to_path_buf(), ethers: ETHERS.into(), run_dnsmasq: true, ..mode.clone() };
    (lab, notes)
}

/// A namespace name for `prefix` and `what`, within the 15-byte-free but tidy limits.
fn ns_name(prefix: &str, what: &str) -> String {
    format!("{prefix}-{what}")
}

pub fn lab(prefix: &str, xend: Option<&XendConfig>, xl: Option<&XlConf>, domains: &[DomainConfig], mode: &SimMode) -> Result<Lab, ConfigError> {
    let mut network_args = network_args(xend);
    // The route and nat modes' netdev has the network-script's over the mode file's; else
    // xl.conf's gatewaydev names the uplink, which start finds by the default route.
    let routed_uplink = |netdev: &Option<IfName>| match netdev {
        Some(n) => Ok(n.clone()),
        None => IfName::parse("vif.default.gatewaydev", xl.and_then(|x| x.default_gatewaydev.as_deref()).unwrap_or("eth0")),
    };
    let (mode_name, uplink) = match mode {
        SimMode::Bridge => ("bridge", IfName::parse("network-script netdev", network_args.get("netdev").unwrap_or("eth0"))?),
        SimMode::Route(m) => ("route", routed_uplink(&m.netdev)?),
        SimMode::Nat(m) => ("nat", routed_uplink(&m.netdev)?),
    };
    let default_bridge = match mode {
        SimMode::Bridge => xl.and_then(|x| x.default_bridge.clone()).or_else(|| network_args.get("bridge").map(String::from)),
        SimMode::Route(_) | SimMode::Nat(_) => None,
    };
    let mut etc_files = Vec::new();
    let dhcp = match mode {
        SimMode::Nat(m) => {
            let lan: Ipv4Network = LAN_NET.parse().expect("the lab's own subnet");
            if m.prefix.contains(lan.network()) || lan.contains(m.prefix.network()) {
                return Err(ConfigError::bad("nat mode prefix", m.prefix.to_string(), format!("overlaps the lab's lan {LAN_NET}: choose another")));
            }
            // Later arguments win: the lab's files and dnsmasq, whatever the network-script said.
            network_args.push("hosts", m.hosts.display().to_string());
            network_args.push("ethers", m.ethers.display().to_string());
            network_args.push("run_dnsmasq", if m.run_dnsmasq { "true" } else { "false" });
            // dom0's own ethers for vifnet and dnsmasq, and no resolver: dnsmasq answers the
            // guests' names and forwards nothing out of the lab.
            for (name, make_target) in [("ethers", true), ("resolv.conf", false)] {
                etc_files.push(EtcFile { netns: ns_name(prefix, "dom0"), name: name.into(), make_target });
            }
            Some(SimDhcp { prefix: m.prefix, domain: m.domain.clone() })
        }
        _ => None,
    };
    let vif_script_args = xend.and_then(|x| x.vif_script.as_ref()).map(|s| s.args.clone()).unwrap_or_default();

    let mut guests = Vec::new();
    let mut lan_routes: Vec<SimRoute> = Vec::new();
    // Every ip= so far and whose it is: two guests with one address reach neither reliably.
    let mut claimed: Vec<(IpNetwork, String)> = Vec::new();
    for (i, d) in domains.iter().enumerate() {
        let domid = i as u32 + 1;
        let mut vifs = Vec::new();
        for (devid, spec) in d.vifs.iter().enumerate() {
            let mut settings = KeyValues::default();
            // xend's per-script arguments first, then the domain's own settings over them.
            for (k, v) in vif_script_args.iter() {
                settings.push(k, v);
            }
            if let (Some(b), false) = (&default_bridge, spec.contains_key("bridge")) {
                settings.push("bridge", b.clone());
            }
            for (k, v) in spec.iter() {
                match k {
                    "mac" | "ip" | "bridge" | "vifname" | "mtu" | "antispoof" => settings.push(k, v),
                    // Keys that concern the toolstack or QEMU, not the host network.
                    _ => {}
                }
            }
            // Every setting is checked here, before any namespace exists.
            let at = |key: &str| format!("{} vif[{devid}] {key}", d.name);
            let ips = parse_ip_list(&at("ip"), settings.get("ip").unwrap_or(""))?;
            for ip in &ips {
                if let Some((_, owner)) = claimed.iter().find(|(c, _)| c == ip) {
                    let shown = if super::nft::is_host(ip) { ip.ip().to_string() } else { ip.to_string() };
                    return Err(ConfigError::bad(at("ip"), shown, format!("is already {owner}'s address")));
                }
            }
            claimed.extend(ips.iter().map(|ip| (*ip, format!("{} vif[{devid}]", d.name))));
            for key in ["bridge", "vifname"] {
                if let Some(v) = settings.get(key) {
                    IfName::parse(&at(key), v)?;
                }
            }
            if let Some(v) = settings.get("mac") {
                MacAddr::parse_unicast(&at("mac"), v)?;
            }
            if let Some(v) = settings.get("mtu") {
                parse_mtu(&at("mtu"), v)?;
            }
            if let Some(v) = settings.get("antispoof") {
                parse_bool(&at("antispoof"), v)?;
            }
            let (mut guest_addrs, mut guest_routes) = (Vec::new(), Vec::new());
            let (mut leased, mut dns_name) = (false, None);
            match mode {
                // On the lan's own subnets, next to the lan host.
                SimMode::Bridge => {
                    guest_addrs = ips.iter().map(|n| net_of(n.ip(), if n.is_ipv4() { 24 } else { 64 })).collect();
                }
                SimMode::Route(m) => {
                    if ips.is_empty() {
                        return Err(ConfigError::Missing {
                            key: at("ip"),
                            hint: "route mode routes the guest's own addresses: give ip= in the vif entry".into(),
                        });
                    }
                    for ip in &ips {
                        let g = routed_guest(*ip, m, &at("ip"))?;
                        guest_addrs.push(g.addr);
                        for r in g.routes {
                            if !guest_routes.contains(&r) {
                                guest_routes.push(r);
                            }
                        }
                        if !lan_routes.contains(&g.upstream) {
                            lan_routes.push(g.upstream);
                        }
                    }
                }
                // The guest leases its address; vifnet knows it by the domain's name, as
                // libxl gives it from /local/domain/<domid>/name.
                SimMode::Nat(m) => {
                    if !is_dns_name(&d.name) || d.name.contains('.') {
                        return Err(ConfigError::bad(format!("{} name", d.name), &d.name, "is not a DNS name for the guest (letters, digits and '-'), as nat mode needs"));
                    }
                    if !settings.contains_key("mac") {
                        return Err(ConfigError::Missing { key: at("mac"), hint: "nat mode leases the guest its address by MAC: give mac= in the vif entry".into() });
                    }
                    if devid >= 127 {
                        return Err(ConfigError::bad(at("vif"), devid.to_string(), "is past the 127 interfaces nat mode numbers"));
                    }
                    let iface = match ips.as_slice() {
                        [] => devid as u8 + 1,
                        [IpNetwork::V4(n)] if n.prefix() == 32 => super::hosts::machine_of_address(&super::hosts::HostsText::default(), &m.prefix, &d.name, n.ip()).map(|(_, y)| y).map_err(|_| {
                            ConfigError::bad(at("ip"), n.ip().to_string(), format!("is not a guest address of nat prefix {} (last byte 1 to 127)", m.prefix))
                        })?,
                        _ => return Err(ConfigError::bad(at("ip"), settings.get("ip").unwrap_or(""), "is not one IPv4 address (nat mode gives each interface one)")),
                    };
                    settings.push("name", d.name.clone());
                    leased = true;
                    dns_name = Some(nat::hostname(&d.name, iface));
                }
            }
            let guest_mac = settings.get("mac").map(String::from);
            vifs.push(SimVif { domid, devid: devid as u32, settings, guest_addrs, guest_routes, guest_mac, dhcp: leased, dns_name });
        }
        let netns = ns_name(prefix, &d.name);
        if vifs.iter().any(|v: &SimVif| v.dhcp) {
            // The guest's DHCP client writes its resolver there.
            etc_files.push(EtcFile { netns: netns.clone(), name: "resolv.conf".into(), make_target: false });
        }
        guests.push(SimGuest { name: d.name.clone(), netns, vifs });
    }
    let gateway_on_dummy = matches!(mode, SimMode::Route(m) if !m.gateway.is_empty() && m.gateway_kind == GatewayKind::Dummy);
    Ok(Lab {
        mode: mode_name.to_string(),
        dom0: ns_name(prefix, "dom0"),
        lan: ns_name(prefix, "lan"),
        uplink,
        network_args,
        lan_routes,
        gateway_on_dummy,
        antispoof: match mode {
            SimMode::Bridge => true,
            SimMode::Route(m) => m.antispoof,
            SimMode::Nat(m) => m.antispoof,
        },
        dhcp,
        etc_files,
        guests,
    })
}

fn net_of(addr: IpAddr, prefix: u8) -> IpNetwork {
    IpNetwork::new(addr, prefix).expect("a prefix within the family's length")
}

fn host_route(addr: IpAddr) -> IpNetwork {
    net_of(addr, if addr.is_ipv4() { 32 } else { 128 })
}

/// One routed guest address as each side of the lab sees it.
struct RoutedAddr {
    /// What the guest puts on its interface.
    addr: IpNetwork,
    /// The guest's routes: default via the gateway vifnet answers on the vif.
    routes: Vec<SimRoute>,
    /// How upstream reaches the address.
    upstream: SimRoute,
}

/// A guest of a routed block uses the block's prefix and the gateway in it, as a customer
/// of a routed /29 does; an address outside every block gets a /32 (/128) and an on-link
/// route to the gateway vifnet answers on the vif (dom0's uplink address when the mode has
/// no gateway, as with Xen's vif-route). Upstream routes the block, or that one address,
/// to dom0; with `uplink_proxy` it treats them as on-link and dom0 answers for each guest.
fn routed_guest(ip: IpNetwork, mode: &RouteMode, at: &str) -> Result<RoutedAddr, ConfigError> {
    let v4 = ip.is_ipv4();
    let gateway = answered(mode, &dom0_addrs()).into_iter().find(|a| a.is_ipv4() == v4).ok_or_else(|| {
        ConfigError::bad(at, ip.to_string(), "has no gateway of its family: add one to route mode's gateway (route.toml)")
    })?;
    let any: IpAddr = if v4 { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let default = SimRoute { dest: net_of(any, 0), via: Some(gateway.ip()) };
    let block = mode.gateway.iter().find(|b| b.is_ipv4() == v4 && b.contains(ip.ip()));
    let (addr, routes, upstream_dest) = match block {
        Some(b) => (net_of(ip.ip(), b.prefix()), vec![default], net_of(b.network(), b.prefix())),
        None => (host_route(ip.ip()), vec![SimRoute { dest: gateway, via: None }, default], ip),
    };
    let dom0 = dom0_addrs().into_iter().find(|a| a.is_ipv4() == v4).map(|a| a.ip());
    let upstream = SimRoute { dest: upstream_dest, via: if mode.uplink_proxy { None } else { dom0 } };
    Ok(RoutedAddr { addr, routes, upstream })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::domain::parse_domain_config;
    use crate::config::sxp::parse_xend_config;
    use crate::config::xlconf::parse_xl_conf;

    fn domain(name: &str, vif: &str) -> DomainConfig {
        parse_domain_config(&format!("name = \"{name}\"\nvif = [ '{vif}' ]\n"), &format!("{name}.cfg")).unwrap()
    }
    fn route_mode(gateway: &str, uplink_proxy: bool) -> RouteMode {
        RouteMode {
            netdev: None,
            gateway: crate::model::parse_gateway("t", gateway).unwrap(),
            gateway_link: IfName::parse("t", "dummy0").unwrap(),
            gateway_kind: GatewayKind::Dummy,
            uplink_proxy,
            antispoof: true,
        }
    }
    fn nat_mode() -> NatMode {
        NatMode {
            netdev: None,
            prefix: "10.10.0.0/16".parse().unwrap(),
            domain: "cluster.internal".into(),
            hosts: "/var/lib/vifnet/cluster-hosts".into(),
            ethers: "/etc/ethers".into(),
            run_dnsmasq: true,
            dnsmasq_pidfile: "/run/dnsmasq/dnsmasq.pid".into(),
            antispoof: true,
        }
    }
    fn nat_lab(domains: &[DomainConfig]) -> Result<Lab, ConfigError> {
        let (m, _) = nat_in_lab(&nat_mode(), Path::new("/tmp/t-state/nat-hosts"));
        lab("t", None, None, domains, &SimMode::Nat(m))
    }
    fn strings<T: ToString>(items: &[T]) -> Vec<String> {
        items.iter().map(T::to_string).collect()
    }
    fn xend(text: &str) -> XendConfig {
        parse_xend_config(text, "xend-config.sxp").unwrap()
    }

    #[test]
    fn the_mode_comes_from_xend_scripts_then_xl_conf() {
        let route = xend("(network-script 'network-route netdev=eth1')\n(vif-script vif-route)\n");
        assert_eq!(selected_mode(Some(&route), None), Ok("route"));
        let xl = |s: &str| parse_xl_conf(&format!("vif.default.script=\"{s}\"\n"), "xl.conf").unwrap();
        assert_eq!(selected_mode(None, Some(&xl("vifnet-route"))), Ok("route"));
        assert_eq!(selected_mode(None, Some(&xl("/etc/xen/scripts/vif-route"))), Ok("route"));
        assert_eq!(selected_mode(None, None), Ok("bridge"));
        assert_eq!(network_args(Some(&route)).get("netdev"), Some("eth1"));
        assert_eq!(selected_mode(None, Some(&xl("vifnet-nat"))), Ok("nat"));
        assert_eq!(selected_mode(Some(&xend("(network-script network-nat)\n(vif-script vif-nat)\n")), None), Ok("nat"));
        let e = selected_mode(None, Some(&xl("vif-openvswitch"))).unwrap_err().to_string();
        assert_eq!(e, "vif.default.script: \"vif-openvswitch\" is not a mode vifnet simulates (bridge, route, nat)");
        let mixed = xend("(network-script network-bridge)\n(vif-script vif-route)\n");
        assert!(selected_mode(Some(&mixed), None).unwrap_err().to_string().contains("does not match vif-script's mode (route)"));
        assert!(selected_mode(None, Some(&xl("network-route"))).is_err());
    }

    #[test]
    fn routed_guests_use_the_blocks_prefix_and_gateway_and_upstream_routes_the_block_to_dom0() {
        let m = SimMode::Route(route_mode("80.68.86.193/29 2001:db8:42::1/64", false));
        let domains = [
            domain("web", "mac=00:16:3e:5a:00:01, ip=80.68.86.194 2001:db8:42::194"),
            domain("mail", "mac=00:16:3e:5a:00:02, ip=80.68.86.195 2001:db8:42::195, bridge=xenbr0"),
        ];
        let lab = lab("t", None, None, &domains, &m).unwrap();
        assert_eq!((lab.mode.as_str(), lab.uplink.as_str(), lab.gateway_on_dummy), ("route", "eth0", true));
        let web = &lab.guests[0].vifs[0];
        assert_eq!(strings(&web.guest_addrs), ["80.68.86.194/29", "2001:db8:42::194/64"]);
        assert_eq!(strings(&web.guest_routes), ["default via 80.68.86.193", "default via 2001:db8:42::1"]);
        // Both guests share the blocks: upstream has one route for each.
        assert_eq!(strings(&lab.lan_routes), ["80.68.86.192/29 via 192.0.2.2", "2001:db8:42::/64 via 2001:db8::2"]);
        // A bridge= in the vif line is bridge mode's business: passed on, and no default added.
        assert_eq!(lab.guests[1].vifs[0].settings.get("bridge"), Some("xenbr0"));
        assert_eq!(web.settings.get("bridge"), None);
        assert_eq!(
            lab.vif_call(web, "online"),
            ["vif", "route", "online", "type_if=vif", "mac=00:16:3e:5a:00:01", "ip=80.68.86.194 2001:db8:42::194"]
        );
        assert_eq!(lab.vif_call(web, "offline"), ["vif", "route", "offline", "type_if=vif"]);
        let lan_pings: Vec<String> = lab.guest_addresses().map(|(g, a)| format!("{} {a}", g.name)).collect();
        assert_eq!(lan_pings, ["web 80.68.86.194", "web 2001:db8:42::194", "mail 80.68.86.195", "mail 2001:db8:42::195"]);
        assert_eq!(lab.spoof_candidate().map(|(g, _)| g.name.as_str()), Some("web"));
    }

    #[test]
    fn the_spoofing_check_picks_a_guarded_guest_with_ipv4() {
        let m = route_mode("80.68.86.193/29 2001:db8:42::1/64", false);
        let domains = [domain("v6", "ip=2001:db8:42::196"), domain("open", "ip=80.68.86.197, antispoof=no"), domain("web", "ip=80.68.86.194")];
        let l = lab("t", None, None, &domains, &SimMode::Route(m.clone())).unwrap();
        assert_eq!(l.spoof_candidate().map(|(g, _)| g.name.as_str()), Some("web"));
        let off = lab("t", None, None, &domains, &SimMode::Route(RouteMode { antispoof: false, ..m })).unwrap();
        assert!(off.spoof_candidate().is_none(), "the mode file turned antispoofing off");
    }

    #[test]
    fn with_uplink_proxy_upstream_has_the_block_on_link() {
        let xl = parse_xl_conf("vif.default.script=\"vifnet-route\"\nvif.default.gatewaydev=\"bond0\"\n", "xl.conf").unwrap();
        let m = SimMode::Route(route_mode("80.68.86.193/29", true));
        let lab = lab("t", None, Some(&xl), &[domain("web", "ip=80.68.86.194")], &m).unwrap();
        assert_eq!(strings(&lab.lan_routes), ["80.68.86.192/29 on-link"]);
        assert_eq!(lab.uplink.as_str(), "bond0", "xl.conf's gatewaydev is the uplink when the mode names none");
    }

    #[test]
    fn without_a_gateway_guests_use_dom0s_uplink_address_as_xen_did() {
        let mut m = route_mode("", false);
        m.netdev = Some(IfName::parse("t", "eth1").unwrap());
        let lab = lab("t", None, None, &[domain("web", "ip=198.51.100.7 2001:db8:7::7")], &SimMode::Route(m)).unwrap();
        let web = &lab.guests[0].vifs[0];
        assert_eq!(strings(&web.guest_addrs), ["198.51.100.7/32", "2001:db8:7::7/128"]);
        assert_eq!(
            strings(&web.guest_routes),
            ["192.0.2.2/32 on-link", "default via 192.0.2.2", "2001:db8::2/128 on-link", "default via 2001:db8::2"]
        );
        assert_eq!(strings(&lab.lan_routes), ["198.51.100.7/32 via 192.0.2.2", "2001:db8:7::7/128 via 2001:db8::2"]);
        assert_eq!((lab.uplink.as_str(), lab.gateway_on_dummy), ("eth1", false));
    }

    #[test]
    fn a_routed_guest_needs_addresses_and_a_gateway_of_each_family() {
        let m = SimMode::Route(route_mode("80.68.86.193/29", false));
        let e = lab("t", None, None, &[domain("web", "mac=00:16:3e:5a:00:01")], &m).unwrap_err().to_string();
        assert!(e.starts_with("web vif[0] ip: missing (route mode routes"), "{e}");
        let e = lab("t", None, None, &[domain("web", "ip=80.68.86.194 2001:db8:42::194")], &m).unwrap_err().to_string();
        assert_eq!(e, "web vif[0] ip: \"2001:db8:42::194/128\" has no gateway of its family: add one to route mode's gateway (route.toml)");
    }

    #[test]
    fn bridge_guests_sit_on_the_lans_subnets_with_the_default_bridge() {
        let x = xend("(network-script 'network-bridge netdev=eth0 bridge=xenbr0 takeover=yes')\n(vif-script vif-bridge)\n");
        let lab = lab("t", Some(&x), None, &[domain("web", "ip=192.0.2.10 2001:db8::10")], &SimMode::Bridge).unwrap();
        let web = &lab.guests[0].vifs[0];
        assert_eq!(strings(&web.guest_addrs), ["192.0.2.10/24", "2001:db8::10/64"]);
        assert!(web.guest_routes.is_empty() && lab.lan_routes.is_empty() && !lab.gateway_on_dummy);
        assert_eq!(web.settings.get("bridge"), Some("xenbr0"));
        assert_eq!(lab.network_call("start"), ["network", "bridge", "start", "netdev=eth0", "bridge=xenbr0", "takeover=yes"]);
        assert_eq!(lab.network_call("stop"), ["network", "bridge", "stop", "bridge=xenbr0"]);
    }

    #[test]
    fn the_nat_lab_uses_its_own_hosts_file_dom0s_ethers_and_its_own_dnsmasq() {
        let hosts = Path::new("/tmp/t-state/nat-hosts");
        let (m, notes) = nat_in_lab(&nat_mode(), hosts);
        assert_eq!((m.hosts.as_path(), m.ethers.as_path(), m.run_dnsmasq), (hosts, Path::new("/etc/ethers"), true));
        assert_eq!(notes, ["the lab keeps nat mode's machine numbers in /tmp/t-state/nat-hosts, not in /var/lib/vifnet/cluster-hosts"]);
        let system = NatMode { ethers: "/var/lib/vifnet/ethers".into(), run_dnsmasq: false, ..nat_mode() };
        let (m, notes) = nat_in_lab(&system, hosts);
        assert_eq!((m.ethers.as_path(), m.run_dnsmasq, notes.len()), (Path::new("/etc/ethers"), true, 3), "{notes:?}");
        assert!(notes[2].contains("instead of signalling /run/dnsmasq/dnsmasq.pid"), "never the host's dnsmasq: {notes:?}");
        // The network-script's own hosts= is overridden by the lab's, given last.
        let x = xend("(network-script 'network-nat hosts=/var/lib/x domain=lab.internal')\n(vif-script vif-nat)\n");
        let l = lab("t", Some(&x), None, &[domain("node1", "mac=00:16:3e:c1:00:01")], &SimMode::Nat(m)).unwrap();
        assert_eq!(
            l.network_call("start"),
            ["network", "nat", "start", "hosts=/var/lib/x", "domain=lab.internal", "hosts=/tmp/t-state/nat-hosts", "ethers=/etc/ethers", "run_dnsmasq=true"]
        );
        assert_eq!(l.network_call("stop"), ["network", "nat", "stop"]);
    }

    #[test]
    fn nat_guests_lease_their_addresses_and_are_known_by_their_domain_names() {
        let mut two = domain("node4", "mac=00:16:3e:c1:00:04");
        two.vifs.push(crate::config::kv::split_vif_spec("mac=00:16:3e:c1:01:04", "t").unwrap());
        let domains = [domain("node1", "mac=00:16:3e:c1:00:01"), domain("node2", "mac=00:16:3e:c1:00:02, ip=10.10.7.3"), two];
        let lab = nat_lab(&domains).unwrap();
        assert_eq!((lab.mode.as_str(), lab.uplink.as_str()), ("nat", "eth0"));
        assert!(lab.lan_routes.is_empty(), "upstream has no route back to the prefix: replies prove masquerade");
        let node1 = &lab.guests[0].vifs[0];
        assert!(node1.dhcp && node1.guest_addrs.is_empty() && node1.guest_routes.is_empty());
        assert_eq!(lab.vif_call(node1, "online"), ["vif", "nat", "online", "type_if=vif", "mac=00:16:3e:c1:00:01", "name=node1"]);
        let names: Vec<Option<&str>> = lab.dhcp_vifs().map(|(_, v)| v.dns_name.as_deref()).collect();
        assert_eq!(names, [Some("node1"), Some("node2-3"), Some("node4"), Some("node4-2")], "an explicit ip= names its interface");
        assert!(lab.guests[0].has_family(false) && !lab.guests[0].has_family(true), "a lease is IPv4");
        assert_eq!(lab.guest_addresses().count(), 0, "the lan host cannot reach NATed guests");
        assert_eq!(lab.spoof_candidate().map(|(g, _)| g.name.as_str()), Some("node1"));
        let etc: Vec<String> = lab.etc_files.iter().map(|f| format!("{}/{}{}", f.netns, f.name, if f.make_target { " (made)" } else { "" })).collect();
        assert_eq!(etc, ["t-dom0/ethers (made)", "t-dom0/resolv.conf", "t-node1/resolv.conf", "t-node2/resolv.conf", "t-node4/resolv.conf"]);

        let checks: Vec<String> = lab.name_checks().iter().map(|c| format!("{} {} {}", c.asker.name, c.query, c.vif.kernel_name())).collect();
        assert_eq!(
            checks,
            [
                "node1 node1.cluster.internal vif1.0",
                "node1 node2-3 vif2.0",
                "node2 node2-3.cluster.internal vif2.0",
                "node2 node4 vif3.0",
                "node4 node4.cluster.internal vif3.0",
                "node4 node1 vif1.0",
            ]
        );
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(lab.lease_ok(&(ip("10.10.0.1"), ip("10.10.0.129"))));
        assert!(lab.lease_ok(&(ip("10.10.3.2"), ip("10.10.3.130"))));
        assert!(!lab.lease_ok(&(ip("10.10.0.1"), ip("10.10.0.1"))), "the router is the vif's host side");
        assert!(!lab.lease_ok(&(ip("10.11.0.1"), ip("10.11.0.129"))), "outside the prefix");
    }

    #[test]
    fn a_single_nat_guest_resolves_only_itself() {
        let lab = nat_lab(&[domain("solo", "mac=00:16:3e:c1:00:01")]).unwrap();
        let checks: Vec<String> = lab.name_checks().iter().map(|c| c.query.clone()).collect();
        assert_eq!(checks, ["solo.cluster.internal"]);
    }

    #[test]
    fn nat_guests_need_a_mac_a_dns_name_and_addresses_of_the_prefix() {
        let e = |d: DomainConfig| nat_lab(&[d]).unwrap_err().to_string();
        assert!(e(domain("node1", "")).starts_with("node1 vif[0] mac: missing (nat mode leases the guest its address by MAC"));
        assert_eq!(
            e(domain("node_1", "mac=00:16:3e:c1:00:01")),
            "node_1 name: \"node_1\" is not a DNS name for the guest (letters, digits and '-'), as nat mode needs"
        );
        assert_eq!(
            e(domain("node1", "mac=00:16:3e:c1:00:01, ip=10.11.0.1")),
            "node1 vif[0] ip: \"10.11.0.1\" is not a guest address of nat prefix 10.10.0.0/16 (last byte 1 to 127)"
        );
        assert_eq!(
            e(domain("node1", "mac=00:16:3e:c1:00:01, ip=10.10.0.129")),
            "node1 vif[0] ip: \"10.10.0.129\" is not a guest address of nat prefix 10.10.0.0/16 (last byte 1 to 127)",
            "the host side's half"
        );
        assert!(e(domain("node1", "mac=00:16:3e:c1:00:01, ip=10.10.0.1 10.10.0.2")).contains("is not one IPv4 address"));
        let over = NatMode { prefix: "192.0.0.0/16".parse().unwrap(), ..nat_mode() };
        let e = lab("t", None, None, &[domain("node1", "mac=00:16:3e:c1:00:01")], &SimMode::Nat(over)).unwrap_err().to_string();
        assert_eq!(e, "nat mode prefix: \"192.0.0.0/16\" overlaps the lab's lan 192.0.2.0/24: choose another");
    }

    #[test]
    fn two_guests_claiming_one_address_are_refused_naming_the_first() {
        let m = route_mode("203.0.113.193/29", false);
        let e = lab("t", None, None, &[domain("web", "ip=203.0.113.194"), domain("db", "ip=203.0.113.194")], &SimMode::Route(m)).unwrap_err();
        assert_eq!(e.to_string(), "db vif[0] ip: \"203.0.113.194\" is already web vif[0]'s address");
        let e = lab("t", None, None, &[domain("web", "ip=192.0.2.10"), domain("db", "ip=192.0.2.0/24 192.0.2.10")], &SimMode::Bridge).unwrap_err();
        assert!(e.to_string().starts_with("db vif[0] ip: \"192.0.2.10\" is already web vif[0]'s"), "{e}");
    }
}
