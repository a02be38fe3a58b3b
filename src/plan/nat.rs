//! NAT mode (design.md §3): guests behind the host on a private range, masqueraded out of
//! the uplink, leased their addresses and given DNS names by dnsmasq. A guest's address
//! comes from its domain's machine number, allocated once per domain name and kept in our
//! hosts file, so it survives restore, migration and a new domid. Pure: facts in, plan out.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnetwork::{IpNetwork, Ipv4Network};
use serde::{Deserialize, Serialize};

pub use super::hosts::{machines, slot};
use super::hosts::{hosts_edit, hosts_with, machine_for, machine_of_address, replace_lines, HostsEdit, HostsView};
use super::nft::{again, Elem, ElemChange, Table};
use super::route::{host_prefix, sysctls_back, SysctlChange};
use super::{device_steps, Facts, Plan, PlanError, Step};
use crate::model::{DevType, IfName, MacAddr};

/// Host-wide settings of nat mode (modes/nat.toml, then arguments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatMode {
    /// The uplink; None: the device of the default route, found when the mode starts.
    pub netdev: Option<IfName>,
    pub prefix: Ipv4Network,
    pub domain: String,
    pub hosts: PathBuf,
    pub ethers: PathBuf,
    pub run_dnsmasq: bool,
    pub dnsmasq_pidfile: PathBuf,
    pub antispoof: bool,
}


/// The guest's address: the prefix, plus the machine number in the two bytes above the
/// last, plus the interface (devid + 1) in the last.
pub fn guest_address(prefix: &Ipv4Network, machine: u32, iface: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(prefix.network()) + (machine << 8) + u32::from(iface))
}

/// The host side of a guest's vif: the guest's address with 128 added to the last byte.
pub fn host_side(guest: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(guest) | 128)
}


/// A guest interface's DNS name: the domain's name for the first, `name-y` for the others.
pub fn hostname(name: &str, iface: u8) -> String {
    if iface == 1 {
        name.to_string()
    } else {
        format!("{name}-{iface}")
    }
}

/// Whether a MAC is spelled as vifnet writes it: lowercase, two digits a byte.
fn canonical_mac(m: &str) -> bool {
    m.len() == 17 && m.bytes().enumerate().all(|(i, b)| if i % 3 == 2 { b == b':' } else { b.is_ascii_digit() || (b'a'..=b'f').contains(&b) })
}

/// The first two fields of an ethers line, before any comment. Every call reads the whole
/// file (4000 lines at 4000 guests), so our own lines' shape, `xx:xx:xx:xx:xx:xx a.b.c.d`,
/// is split without a scan.
fn two_fields(line: &str) -> Option<(&str, &str)> {
    if let Some((m, rest)) = line.get(..17).zip(line.get(18..)) {
        if line.as_bytes()[17] == b' ' && !rest.is_empty() && !rest.starts_with([' ', '\t', '#']) && canonical_mac(m) {
            return Some((m, rest.split([' ', '\t', '#']).next().unwrap_or(rest)));
        }
    }
    let line = line.split_once('#').map_or(line, |(l, _)| l);
    let mut fields = line.split_ascii_whitespace();
    Some((fields.next()?, fields.next()?))
}

/// One `MAC IP` line of an ethers file, if the line is one.
pub fn ethers_fields(line: &str) -> Option<(MacAddr, IpAddr)> {
    let (m, a) = two_fields(line)?;
    Some((MacAddr::parse("ethers", m).ok()?, a.parse().ok()?))
}

/// One `MAC IP` of an ethers file, to find its lines without parsing every one: the lines
/// vifnet writes are in canonical form (lowercase, two digits a byte) and compare as text;
/// a line in any other spelling is parsed. A line counts only if both fields parse, as in
/// [`ethers_fields`]. At 4000 guests the file is scanned on every call: a line that is
/// not ours costs a comparison or two, no parse.
struct EthersEntry {
    mac: MacAddr,
    mac_text: String,
    ip_text: String,
}

impl EthersEntry {
    fn new(mac: MacAddr, ip: Ipv4Addr) -> EthersEntry {
        EthersEntry { mac, mac_text: mac.to_string(), ip_text: ip.to_string() }
    }

    /// Whether the line's MAC and address are ours: `Some((false, false))` for a line
    /// that is not ours, whether or not it is a `MAC IP` line; `None` for a line that names
    /// our MAC or address but is not one.
    fn matches(&self, line: &str) -> Option<(bool, bool)> {
        let (m, a) = two_fields(line)?;
        let mac = if canonical_mac(m) { m == self.mac_text } else { MacAddr::parse("ethers", m).ok()? == self.mac };
        // An IPv4 address has one spelling; anything else must still be an address.
        let ip = a == self.ip_text;
        if mac && !ip && a.parse::<IpAddr>().is_err() {
            return None;
        }
        Some((mac, ip))
    }
}

/// The ethers file with `mac ip` in it: a line with the same MAC or the same address goes.
pub fn ethers_with(text: &str, mac: MacAddr, ip: Ipv4Addr) -> String {
    let e = EthersEntry::new(mac, ip);
    replace_lines(text, |l| e.matches(l).is_some_and(|(m, a)| m || a), &format!("{mac} {ip}"))
}

/// The MAC the ethers file leases `ip` to, if any.
pub fn ethers_owner(text: &str, ip: Ipv4Addr) -> Option<MacAddr> {
    let ip_text = ip.to_string();
    text.lines()
        .filter(|l| two_fields(l).is_some_and(|(_, a)| a == ip_text))
        .find_map(ethers_fields)
        .map(|(m, _)| m)
}

/// The ethers file without exactly the line `mac ip`.
pub fn ethers_without(text: &str, mac: MacAddr, ip: Ipv4Addr) -> String {
    let e = EthersEntry::new(mac, ip);
    let mut out = String::with_capacity(text.len());
    for l in text.lines().filter(|l| e.matches(l) != Some((true, true))) {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The dnsmasq we run for the guests: DHCP only for MACs in the ethers file (static), on
/// vif interfaces, names from our hosts file; the router and DNS server it hands out are
/// the host side of the vif the request came in on.
pub fn dnsmasq_config(mode: &NatMode, leases: &Path) -> String {
    let mut c = String::from("# Written by vifnet (nat mode); `vifnet network nat stop` stops this dnsmasq.\n");
    for line in [
        "interface=vif*".to_string(),
        "bind-dynamic".to_string(),
        format!("domain={}", mode.domain),
        format!("local=/{}/", mode.domain),
        format!("addn-hosts={}", mode.hosts.display()),
        "read-ethers".to_string(),
        format!("dhcp-range={},static,{}", mode.prefix.network(), mode.prefix.mask()),
        "no-ping".to_string(),
        format!("dhcp-leasefile={}", leases.display()),
    ] {
        c.push_str(&line);
        c.push('\n');
    }
    c
}

/// What `observe` read for nat mode's host-wide part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatHostFacts {
    pub uplink: Option<IfName>,
    pub netdev_missing: bool,
    /// The current value of net/ipv4/ip_forward.
    pub ip_forward: Option<String>,
}

/// A dnsmasq vifnet runs: its config and pid file, in the state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnDnsmasq {
    pub config: PathBuf,
    pub pidfile: PathBuf,
}

/// What nat mode's host-wide part did (`<state>/nat.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatHostRecord {
    pub mode: NatMode,
    pub uplink: IfName,
    pub sysctls: Vec<SysctlChange>,
    pub dnsmasq: Option<OwnDnsmasq>,
    /// The lines of the mode's sysctl drop-in, as start wrote it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropin: Vec<(String, String)>,
    /// The `key=value` settings the mode started with (xend's network-script arguments):
    /// `check` and `reload` read the mode file again under the same ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<(String, String)>,
}

impl NatHostRecord {
    /// The pid file of the dnsmasq that must reread the files.
    pub fn pidfile(&self) -> &Path {
        self.dnsmasq.as_ref().map(|d| d.pidfile.as_path()).unwrap_or(&self.mode.dnsmasq_pidfile)
    }
}

fn masquerade(uplink: &IfName, prefix: &Ipv4Network) -> Elem {
    Elem::Masq(uplink.clone(), *prefix)
}

/// `network nat start`, and the first online: forwarding, one masquerade element for the
/// prefix out of the uplink (an element: never a second rule), dnsmasq if we run it.
pub fn host_up(mode: &NatMode, facts: &NatHostFacts, state_dir: &Path) -> Result<(Plan, NatHostRecord), PlanError> {
    if let (true, Some(n)) = (facts.netdev_missing, &mode.netdev) {
        return Err(PlanError::NoSuchLink { key: "netdev".into(), name: n.to_string() });
    }
    let uplink = facts.uplink.clone().ok_or(PlanError::NoNatUplink)?;
    let mut plan = Plan::default();
    let mut sysctls = Vec::new();
    let key = "net/ipv4/ip_forward".to_string();
    if let Some(now) = facts.ip_forward.as_ref().filter(|v| *v != "1") {
        plan.push(Step::Sysctl { key: key.clone(), from: now.clone(), to: "1".into() });
        sysctls.push(SysctlChange { key: key.clone(), old: now.clone(), new: "1".into() });
    }
    let dropin = vec![(key, "1".to_string())];
    plan.push(Step::SysctlDropIn { mode: "nat", lines: Some(dropin.clone()) });
    plan.steps.extend(masquerade_steps(&uplink, &mode.prefix));
    let dnsmasq = mode.run_dnsmasq.then(|| OwnDnsmasq { config: state_dir.join("dnsmasq.conf"), pidfile: state_dir.join("dnsmasq.pid") });
    if let Some(d) = &dnsmasq {
        plan.push(Step::StartDnsmasq {
            config: d.config.clone(),
            text: dnsmasq_config(mode, &state_dir.join("dnsmasq.leases")),
            pidfile: d.pidfile.clone(),
        });
    }
    Ok((plan, NatHostRecord { mode: mode.clone(), uplink, sysctls, dnsmasq, dropin, args: Vec::new() }))
}

/// `network nat start` once started: the masquerade again, for when a ruleset flush took
/// it (the guests' filters are `super::filters_again`'s). Adds only.
pub fn masquerade_again(rec: &NatHostRecord) -> Plan {
    Plan { steps: masquerade_steps(&rec.uplink, &rec.mode.prefix).into() }
}

/// The table, its nat chain and set, and the masquerade element: all made only if missing.
fn masquerade_steps(uplink: &IfName, prefix: &Ipv4Network) -> [Step; 3] {
    [Step::EnsureNftTable(Table::Inet), Step::EnsureNftNat, Step::NftElements(Table::Inet, vec![ElemChange::Add(masquerade(uplink, prefix))])]
}

/// `network nat stop`: the reverse of `rec`. The hosts file stays: it is the record of the
/// machine numbers.
pub fn host_down(rec: &NatHostRecord, sysctls_now: &BTreeMap<String, String>) -> Plan {
    let mut plan = Plan::default();
    if let Some(d) = &rec.dnsmasq {
        plan.push(Step::StopDnsmasq { pidfile: d.pidfile.clone(), config: d.config.clone() });
    }
    plan.push(Step::NftElements(Table::Inet, vec![ElemChange::Delete(masquerade(&rec.uplink, &rec.mode.prefix))]));
    plan.push(Step::DeleteNftTableIfUnused(Table::Inet));
    plan.push(Step::SysctlDropIn { mode: "nat", lines: None });
    plan.steps.extend(sysctls_back(&rec.sysctls, sysctls_now));
    plan.push(Step::DropHostsIndex);
    plan
}

/// One NATed guest interface, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatVif {
    pub kernel_name: IfName,
    pub name: IfName,
    pub dev_type: DevType,
    /// The domain's name: its machine number and DNS name.
    pub domain_name: String,
    /// devid + 1, 1 to 127.
    pub iface: u8,
    pub mac: MacAddr,
    /// An explicit `ip=` inside the prefix.
    pub ip: Option<Ipv4Addr>,
    pub mtu: Option<u32>,
    pub antispoof: bool,
}

/// A NATed vif's journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatVifRecord {
    pub kernel_name: IfName,
    pub name: IfName,
    pub dev_type: DevType,
    pub hostname: String,
    pub mac: MacAddr,
    pub guest: Ipv4Addr,
    pub host_side: Ipv4Addr,
    pub antispoof: bool,
    pub metric: u32,
    pub mtu: Option<u32>,
    /// proxy_arp on the vif before online.
    pub proxy_arp_was: String,
    #[serde(flatten)]
    pub origin: super::Origin,
}

/// What `observe` read for one nat vif.
pub struct NatVifFacts {
    pub links: Facts,
    /// The hosts file, through its index (or its text, in tests).
    pub hosts: Box<dyn HostsView>,
    pub ethers: String,
    pub proxy_arp: String,
}

/// Elements a vif's record stands for (none without antispoofing).
pub fn record_elements(rec: &NatVifRecord) -> Vec<Elem> {
    if rec.antispoof {
        super::nft::routed_guest_elements(&rec.name, &[host32(rec.guest)])
    } else {
        Vec::new()
    }
}

fn proxy_arp_key(dev: &IfName) -> String {
    format!("net/ipv4/conf/{dev}/proxy_arp")
}

fn host32(a: Ipv4Addr) -> IpNetwork {
    host_prefix(IpAddr::V4(a))
}

/// `online` / `add`: address the guest by its machine number, route and answer it, lease
/// and name it. The hosts and ethers files change only where they must, and dnsmasq is
/// told to reread them only when one did.
pub fn vif_up(vif: &NatVif, host: &NatHostRecord, facts: &NatVifFacts, previous: Option<&NatVifRecord>) -> Result<(Plan, NatVifRecord), PlanError> {
    let mode = &host.mode;
    let hosts = facts.hosts.as_ref();
    let (machine, iface) = match vif.ip {
        Some(ip) => machine_of_address(hosts, &mode.prefix, &vif.domain_name, ip)?,
        None => (machine_for(hosts, &mode.prefix, &vif.domain_name)?, vif.iface),
    };
    let guest = guest_address(&mode.prefix, machine, iface);
    let name = hostname(&vif.domain_name, iface);
    // Offline removes a vif's ethers line: another MAC leased this address is another vif
    // online under the same machine name (this vif's own earlier online is no clash).
    let ours_before = previous.is_some_and(|p| p.guest == guest);
    if let Some(mac) = ethers_owner(&facts.ethers, guest).filter(|m| *m != vif.mac && !ours_before) {
        return Err(PlanError::NameOnline { name, ip: guest.to_string(), mac: mac.to_string() });
    }
    let rec = NatVifRecord {
        kernel_name: vif.kernel_name.clone(),
        name: vif.name.clone(),
        dev_type: vif.dev_type,
        hostname: name.clone(),
        mac: vif.mac,
        guest,
        host_side: host_side(guest),
        antispoof: vif.antispoof,
        metric: super::route::metric(vif.dev_type),
        mtu: vif.mtu,
        proxy_arp_was: previous.map(|p| p.proxy_arp_was.clone()).unwrap_or_else(|| facts.proxy_arp.clone()),
        origin: Default::default(),
    };
    let mut plan = Plan::default();
    plan.steps.extend(device_steps(&vif.kernel_name, &vif.name, &facts.links)?);
    let changes = again(&previous.map(record_elements).unwrap_or_default(), &record_elements(&rec));
    if rec.antispoof {
        plan.push(Step::EnsureNftTable(Table::Inet));
    }
    if !changes.is_empty() {
        plan.push(Step::NftElements(Table::Inet, changes));
    }
    if let Some(p) = previous.filter(|p| p.guest != rec.guest) {
        plan.steps.extend(vif_state(p, true));
    }
    plan.push(Step::LinkUp { dev: rec.name.clone(), mtu: rec.mtu });
    plan.steps.extend(vif_state(&rec, false));
    let dev = &rec.name;
    if facts.proxy_arp != "1" {
        plan.push(Step::Sysctl { key: proxy_arp_key(dev), from: facts.proxy_arp.clone(), to: "1".into() });
    }
    let full = format!("{name}.{}", mode.domain);
    let hosts_changed = hosts_step(&mut plan, mode, hosts, guest, &[name.clone(), full])?;
    let ethers_new = ethers_with(&facts.ethers, vif.mac, guest);
    let changed = file_step(&mut plan, &mode.ethers, &facts.ethers, ethers_new) | hosts_changed;
    // Again over a journal: an earlier online may have been killed between its writes and
    // its signal, so dnsmasq is told even when the files are already right.
    if changed || previous.is_some() {
        plan.push(Step::SignalDnsmasq { pidfile: host.pidfile().to_path_buf() });
    }
    Ok((plan, rec))
}

/// The write of a file whose text changes; whether it does.
fn file_step(plan: &mut Plan, path: &Path, old: &str, new: String) -> bool {
    let changed = old != new;
    if changed {
        plan.push(Step::WriteFile { path: path.to_path_buf(), from: old.to_string(), to: new });
    }
    changed
}

/// The hosts file's edit that gives it `ip names...`, if it needs one: the line at the end
/// (each call's case: its size does not matter), or, when another line has the address or
/// the first name, the file written again. Whether there is one.
fn hosts_step(plan: &mut Plan, mode: &NatMode, hosts: &dyn HostsView, ip: Ipv4Addr, names: &[String]) -> Result<bool, PlanError> {
    match hosts_edit(hosts, ip, names) {
        HostsEdit::Keep => return Ok(false),
        HostsEdit::Append => {
            let line = format!("{ip} {}", names.join(" "));
            plan.push(Step::AppendHostsLine { path: mode.hosts.clone(), at: hosts.length().0, prefix: mode.prefix, line });
        }
        HostsEdit::Rewrite => {
            let unreadable = |message| PlanError::HostsUnreadable { path: mode.hosts.display().to_string(), message };
            let text = hosts.text().map_err(unreadable)?;
            let to = hosts_with(&text, &mode.prefix, ip, names);
            file_step(plan, &mode.hosts, &text, to);
        }
    }
    Ok(true)
}

/// The vif's address, route to the guest, as steps that make them (or remove them).
fn vif_state(rec: &NatVifRecord, down: bool) -> Vec<Step> {
    let (dev, addr, dest, metric) = (rec.name.clone(), host32(rec.host_side), host32(rec.guest), rec.metric);
    if down {
        vec![Step::DelRoute { dest, dev: dev.clone(), metric }, Step::DelAddress { dev, addr }]
    } else {
        vec![Step::AddAddress { dev: dev.clone(), addr }, Step::AddRoute { dest, dev, metric }]
    }
}

/// `offline` / `remove`: the reverse, firewall first. The ethers line goes (no lease for a
/// guest that is not there); the hosts line stays, so the name and the address stay
/// reserved for the machine.
/// `mode` and `pidfile` are the host-wide part's (`NatHostRecord`), or the mode file's when
/// its record is lost.
pub fn vif_down(rec: &NatVifRecord, mode: &NatMode, pidfile: &Path, ethers: &str) -> Plan {
    let mut plan = Plan::default();
    let deletes: Vec<ElemChange> = record_elements(rec).into_iter().map(ElemChange::Delete).collect();
    if !deletes.is_empty() {
        plan.push(Step::NftElements(Table::Inet, deletes));
    }
    plan.steps.extend(vif_state(rec, true));
    if rec.proxy_arp_was != "1" {
        plan.push(Step::Sysctl { key: proxy_arp_key(&rec.name), from: "1".into(), to: rec.proxy_arp_was.clone() });
    }
    plan.push(Step::LinkDown { dev: rec.name.clone() });
    if file_step(&mut plan, &mode.ethers, ethers, ethers_without(ethers, rec.mac, rec.guest)) {
        plan.push(Step::SignalDnsmasq { pidfile: pidfile.to_path_buf() });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::hosts::HostsText;

    fn prefix(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    #[test]
    fn the_scheme_numbers_65536_machines_of_127_interfaces() {
        let p = prefix("10.0.0.0/8");
        assert_eq!(machines(&p), 65536);
        assert_eq!(guest_address(&p, 0x0102, 1).to_string(), "10.1.2.1");
        assert_eq!(host_side(guest_address(&p, 0x0102, 1)).to_string(), "10.1.2.129");
        assert_eq!(host_side(guest_address(&p, 65535, 127)).to_string(), "10.255.255.255");
        assert_eq!(machines(&prefix("10.200.0.0/16")), 256);
        assert_eq!(machines(&prefix("192.168.7.0/24")), 1);
        assert_eq!(hostname("web", 1), "web");
        assert_eq!(hostname("web", 2), "web-2");
    }

    fn host() -> NatHostRecord {
        let mode = NatMode {
            netdev: None,
            prefix: prefix("10.0.0.0/8"),
            domain: "x".into(),
            hosts: "/h".into(),
            ethers: "/e".into(),
            run_dnsmasq: true,
            dnsmasq_pidfile: "/p".into(),
            antispoof: true,
        };
        let (_, rec) = host_up(&mode, &NatHostFacts { uplink: Some(IfName::parse("t", "up0").unwrap()), ..Default::default() }, Path::new("/s")).unwrap();
        rec
    }

    #[test]
    fn online_writes_the_files_and_signals_dnsmasq_only_when_they_change() {
        let name = IfName::parse("t", "vif7.0").unwrap();
        let vif = NatVif {
            kernel_name: name.clone(),
            name: name.clone(),
            dev_type: DevType::Vif,
            domain_name: "web".into(),
            iface: 1,
            mac: MacAddr::parse("t", "00:16:3e:00:00:07").unwrap(),
            ip: None,
            mtu: None,
            antispoof: true,
        };
        let link = super::super::LinkFacts { index: 7, kind: None, mtu: 1500, master: None, up: false, mac: None, ours: false };
        let p = prefix("10.0.0.0/8");
        let mut facts = NatVifFacts {
            links: Facts { links: [("vif7.0".to_string(), link)].into() },
            hosts: Box::new(HostsText::new(String::new(), &p)),
            ethers: String::new(),
            proxy_arp: "0".into(),
        };
        let lines = |p: &Plan| p.steps.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (plan, rec) = vif_up(&vif, &host(), &facts, None).unwrap();
        let l = lines(&plan);
        assert!(l.contains(&"ip addr add 10.0.0.129/32 dev vif7.0".to_string()), "{l:?}");
        assert!(l.contains(&"ip route add 10.0.0.1/32 dev vif7.0 proto 118 metric 2".to_string()), "{l:?}");
        assert!(l.contains(&"sysctl -w net/ipv4/conf/vif7.0/proxy_arp=1 (was 0)".to_string()), "{l:?}");
        assert!(l.contains(&"echo '10.0.0.1 web web.x' >> /h".to_string()), "a new line at the end: {l:?}");
        assert_eq!(l.last().unwrap(), "kill -HUP $(cat /s/dnsmasq.pid)");
        // The files already say so: a first online has nothing to write and nobody to wake;
        // a repeated one wakes dnsmasq (the online it repeats may have died before it did).
        facts.hosts = Box::new(HostsText::new("10.0.0.1 web web.x\n".into(), &p));
        facts.ethers = "00:16:3e:00:00:07 10.0.0.1\n".into();
        facts.proxy_arp = "1".into();
        let (plan, _) = vif_up(&vif, &host(), &facts, None).unwrap();
        assert!(!lines(&plan).iter().any(|s| s.starts_with("write") || s.starts_with("kill") || s.contains("proxy_arp")), "{:?}", lines(&plan));
        let (plan, _) = vif_up(&vif, &host(), &facts, Some(&rec)).unwrap();
        assert!(!lines(&plan).iter().any(|s| s.starts_with("write") || s.contains("proxy_arp")), "{:?}", lines(&plan));
        assert_eq!(lines(&plan).last().unwrap(), "kill -HUP $(cat /s/dnsmasq.pid)");
        // Offline: the ethers line goes, the hosts line stays, proxy_arp as it was.
        let host = host();
        let l = lines(&vif_down(&rec, &host.mode, host.pidfile(), &facts.ethers));
        assert!(l.contains(&"write /e (0 lines, was 1)".to_string()) && !l.iter().any(|s| s.starts_with("write /h")), "{l:?}");
        assert!(l.contains(&"sysctl -w net/ipv4/conf/vif7.0/proxy_arp=0 (was 1)".to_string()), "{l:?}");
        // Start again after a ruleset flush: table, nat chain and masquerade; then this
        // guest's filter, as adds.
        let again = masquerade_again(&host);
        assert!(matches!(again.steps[..], [Step::EnsureNftTable(Table::Inet), Step::EnsureNftNat, Step::NftElements(Table::Inet, ref a)] if a.len() == 1));
        let again = crate::plan::filters_again(&[crate::plan::VifJournal::Nat(rec.clone())]);
        let Some(Step::NftElements(Table::Inet, adds)) = again.steps.last() else { panic!("{:?}", lines(&again)) };
        assert_eq!(adds.len(), record_elements(&rec).len(), "{adds:?}");
        assert!(!adds.is_empty() && adds.iter().all(|c| matches!(c, ElemChange::Add(_))));
    }

    #[test]
    fn our_lines_split_as_any_line_does() {
        fn slow(l: &str) -> Option<(&str, &str)> {
            let l = l.split_once('#').map_or(l, |(l, _)| l);
            let mut f = l.split_ascii_whitespace();
            f.next().zip(f.next())
        }
        for l in ["00:16:3e:00:00:01 10.0.0.1", "00:16:3e:00:00:01 10.0.0.1 # vm", "00:16:3e:00:00:01 10.0.0.1#vm", "00:16:3e:00:00:01  10.0.0.1",
            "00:16:3e:00:00:01\t10.0.0.1", "00:16:3e:00:00:01 #10.0.0.1", "00:16:3e:00:00:01 ", "00:16:3E:00:00:01 host", "# 00:16:3e:00:00:01 10.0.0.1", ""] {
            assert_eq!(two_fields(l), slow(l), "{l:?}");
        }
    }

    #[test]
    fn ethers_edits_match_whole_fields_and_keep_other_lines() {
        let mac = MacAddr::parse("t", "00:16:3e:00:00:01").unwrap();
        let ethers = "00:16:3e:00:00:10 10.0.0.10\n00:16:3E:00:00:01 10.0.9.9\naa:bb:cc:dd:ee:ff printer\n0:16:3e:0:0:1 printer\n";
        let with = ethers_with(ethers, mac, "10.0.0.1".parse().unwrap());
        assert_eq!(with, "00:16:3e:00:00:10 10.0.0.10\n00:16:3e:00:00:01 10.0.0.1\naa:bb:cc:dd:ee:ff printer\n0:16:3e:0:0:1 printer\n", "in place of the stale line; a line leasing by name is not one");
        assert_eq!(ethers_owner(&with, "10.0.0.1".parse().unwrap()), Some(mac));
        assert_eq!(ethers_owner(&with, "10.0.0.2".parse().unwrap()), None);
        assert_eq!(ethers_without(&with, mac, "10.0.0.1".parse().unwrap()), "00:16:3e:00:00:10 10.0.0.10\naa:bb:cc:dd:ee:ff printer\n0:16:3e:0:0:1 printer\n");
        assert_eq!(ethers_with(&with, mac, "10.0.0.1".parse().unwrap()), with, "twice is once");
        let short = "0:16:3e:0:0:1 10.0.0.1 # by hand\n";
        assert_eq!(ethers_without(short, mac, "10.0.0.1".parse().unwrap()), "", "any spelling of the MAC");
    }
}
