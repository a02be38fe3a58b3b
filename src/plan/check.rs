//! `vifnet check`: what the journals and the host records say the host should have,
//! against what `observe` read, one difference at a time; and the plan that mends them
//! all (`--repair`, `reload`). Pure: expectations and a snapshot in, drifts and a plan out.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnetwork::{IpNetwork, Ipv4Network};
use serde::Serialize;

use super::nat::{self, NatHostRecord};
use super::nft::{Elem, ElemChange, Table};
use super::route::{self, host_prefix, HostRecord};
use super::{liveness, LinkFacts, Liveness, Plan, Step, VifJournal};
use crate::model::{GatewayKind, IfName, MacAddr};

/// One thing vifnet should have made and that should still be there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// A bridge port: on `bridge` and up.
    Port { dev: IfName, bridge: IfName, mtu: u32 },
    Up { dev: IfName },
    Address { dev: IfName, addr: IpNetwork },
    Route { dest: IpNetwork, dev: IfName, metric: u32 },
    Proxy { dev: IfName, addr: IpAddr },
    /// route mode's proxy entry, marked router, that answers the guest's IPv6 gateway.
    GatewayProxy { dev: IfName, addr: std::net::Ipv6Addr },
    Sysctl { key: String, value: String },
    Elem(Table, Elem),
    /// nat mode's `ip name name.domain` line (`nat::hosts_with` changes nothing).
    HostsLine { path: PathBuf, prefix: Ipv4Network, ip: Ipv4Addr, names: Vec<String>, pidfile: PathBuf },
    /// nat mode's `mac ip` line.
    EthersLine { path: PathBuf, mac: MacAddr, ip: Ipv4Addr, pidfile: PathBuf },
    /// route mode's gateway link, made by `create` if missing.
    Link { name: IfName, create: Step },
    /// Our dnsmasq, running.
    Dnsmasq { config: PathBuf, text: String, pidfile: PathBuf },
    /// A mode's sysctl drop-in at `path`, with these lines.
    DropIn { mode: &'static str, path: PathBuf, lines: Vec<(String, String)> },
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Want::Port { dev, bridge, .. } => write!(f, "port {dev} of bridge {bridge}"),
            Want::Up { dev } => write!(f, "link {dev}"),
            Want::Address { dev, addr } => write!(f, "address {addr} on {dev}"),
            Want::Route { dest, dev, metric } => write!(f, "route {dest} dev {dev} metric {metric}"),
            Want::Proxy { dev, addr } => write!(f, "proxy {addr} on {dev}"),
            Want::GatewayProxy { dev, addr } => write!(f, "proxy {addr} on {dev} (router)"),
            Want::Sysctl { key, value } => write!(f, "sysctl {key} = {value}"),
            Want::Elem(table, e) => write!(f, "element {table} {} {{ {e} }}", e.set_name()),
            Want::HostsLine { path, ip, names, .. } => write!(f, "line \"{ip} {}\" in {}", names.join(" "), path.display()),
            Want::EthersLine { path, mac, ip, .. } => write!(f, "line \"{mac} {ip}\" in {}", path.display()),
            Want::Link { name, .. } => write!(f, "gateway link {name}"),
            Want::Dnsmasq { pidfile, .. } => write!(f, "dnsmasq of {}", pidfile.display()),
            Want::DropIn { path, .. } => write!(f, "sysctl drop-in {}", path.display()),
        }
    }
}

/// A route of ours (our protocol number) as the kernel has it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OurRoute {
    pub dest: IpNetwork,
    pub oif: u32,
    pub metric: u32,
}

/// What `observe` read for a check: whole dumps, so that a check costs one round trip per
/// kind of object however many guests there are.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub links: BTreeMap<String, LinkFacts>,
    /// Addresses by link index.
    pub addrs: BTreeMap<u32, Vec<IpNetwork>>,
    pub routes: BTreeSet<OurRoute>,
    /// Proxy entries of ours: link index and address.
    pub proxies: BTreeSet<(u32, IpAddr)>,
    /// The elements of each of our tables that exists.
    pub elems: Vec<(Table, Vec<Elem>)>,
    /// The sysctls of `Needs::sysctls` that exist here.
    pub sysctls: BTreeMap<String, String>,
    /// The texts of `Needs::files` (a missing file is empty).
    pub files: BTreeMap<PathBuf, String>,
    /// The pid files of `Needs::pidfiles` that name a live process.
    pub live_pidfiles: BTreeSet<PathBuf>,
}

impl Snapshot {
    fn index(&self, dev: &IfName) -> Option<u32> {
        self.links.get(dev.as_str()).map(|l| l.index)
    }
    fn has_elem(&self, table: Table, e: &Elem) -> bool {
        self.elems.iter().any(|(t, es)| *t == table && es.contains(e))
    }
    fn text(&self, path: &PathBuf) -> &str {
        self.files.get(path).map(String::as_str).unwrap_or("")
    }
    fn name_of(&self, index: u32) -> Option<&str> {
        self.links.iter().find(|(_, l)| l.index == index).map(|(n, _)| n.as_str())
    }
}

/// A journal file as `check` found it.
#[derive(Debug, Clone)]
pub enum JournalEntry {
    Read(VifJournal),
    Corrupt { kernel_name: String, error: String },
}

/// Everything vifnet recorded: the vifs' journals and the started modes' records, with
/// nat mode's settings for vifs whose mode record is lost (the mode file's).
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub journals: Vec<JournalEntry>,
    pub route: Option<HostRecord>,
    pub nat: Option<NatHostRecord>,
    /// Mode file settings that differ from those a started mode runs with: (mode, key, was, now).
    pub mode_changes: Vec<ModeChange>,
    /// A started mode whose file no longer reads: (mode, the error).
    pub mode_errors: Vec<(&'static str, String)>,
    /// Where each mode's sysctl drop-in is.
    pub dropins: Vec<(&'static str, PathBuf)>,
}

impl Expected {
    fn dropin(&self, mode: &'static str, lines: &[(String, String)]) -> Option<Want> {
        let path = self.dropins.iter().find(|(m, _)| *m == mode)?.1.clone();
        (!lines.is_empty()).then(|| Want::DropIn { mode, path, lines: lines.to_vec() })
    }

    /// Nat mode's settings for the hosts and ethers lines: the started mode's.
    fn nat_ctx(&self) -> Option<(&nat::NatMode, &std::path::Path)> {
        self.nat.as_ref().map(|h| (&h.mode, h.pidfile()))
    }

    /// What the started modes stand for, each want with its mode as subject.
    fn mode_wants(&self) -> Vec<Subjected> {
        let mut wants = Vec::new();
        if let Some(r) = &self.route {
            let dropin = self.dropin("route", &r.dropin);
            wants.extend(route_host_wants(r).into_iter().chain(dropin).map(|w| ("route mode".to_string(), w)));
        }
        if let Some(n) = &self.nat {
            let dropin = self.dropin("nat", &n.dropin);
            wants.extend(nat_host_wants(n).into_iter().chain(dropin).map(|w| ("nat mode".to_string(), w)));
        }
        wants
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModeChange {
    pub mode: &'static str,
    pub key: String,
    pub was: String,
    pub now: String,
}

/// The settings of a started mode that its mode file (under the same arguments) now gives
/// otherwise, key by key: the settings' field names are the mode file's keys.
pub fn mode_changes<T: Serialize>(mode: &'static str, was: &T, now: &T) -> Vec<ModeChange> {
    let (serde_json::Value::Object(was), serde_json::Value::Object(now)) =
        (serde_json::to_value(was).unwrap_or_default(), serde_json::to_value(now).unwrap_or_default())
    else {
        return Vec::new();
    };
    let show = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "(none)".into(),
        Some(serde_json::Value::Array(a)) => a.iter().map(|x| x.as_str().map(String::from).unwrap_or_else(|| x.to_string())).collect::<Vec<_>>().join(" "),
        Some(other) => other.to_string(),
    };
    was.keys()
        .chain(now.keys().filter(|k| !was.contains_key(*k)))
        .filter(|k| was.get(*k) != now.get(*k))
        .map(|k| ModeChange { mode, key: k.clone(), was: show(was.get(k)), now: show(now.get(k)) })
        .collect()
}

/// What the files, sysctls and pid files a snapshot must hold for these expectations.
#[derive(Debug, Default)]
pub struct Needs {
    pub sysctls: BTreeSet<String>,
    pub files: BTreeSet<PathBuf>,
    pub pidfiles: BTreeSet<PathBuf>,
}

/// How one drift is mended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// Make it again.
    Add(Want),
    /// Ours, but no journal or record accounts for it: remove it (these steps).
    Remove(Vec<Step>),
    /// The journal's device is gone or another one: undo what it recorded, forget it.
    Undo(VifJournal),
    /// The journal cannot be read: forget it (its vif's offline undoes what its inputs say).
    Forget(String),
    /// The mode must be reloaded with its file (`vifnet reload`).
    Reload(&'static str),
}

/// One difference: the vif or mode it concerns, the object, what is wrong, and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub subject: String,
    pub object: String,
    pub problem: String,
    #[serde(skip)]
    pub fix: Fix,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.subject, self.object, self.problem)
    }
}

/// What a live vif's journal stands for on the host. `nat` gives the hosts and ethers
/// lines' settings (the started mode's, or the mode file's).
pub fn vif_wants(j: &VifJournal, nat: Option<(&nat::NatMode, &std::path::Path)>) -> Vec<Want> {
    let (table, elems) = j.filter();
    let mut out = Vec::new();
    match j {
        VifJournal::Bridge(r) => out.push(Want::Port { dev: r.name.clone(), bridge: r.bridge.clone(), mtu: r.mtu }),
        VifJournal::Route(r) => {
            out.push(Want::Up { dev: r.name.clone() });
            out.extend(r.answered.iter().map(|a| Want::Address { dev: r.name.clone(), addr: *a }));
            out.extend(r.sysctls.iter().map(|c| Want::Sysctl { key: c.key.clone(), value: c.new.clone() }));
            out.extend(r.gateway.iter().filter_map(|g| match g.ip() {
                IpAddr::V6(addr) => Some(Want::GatewayProxy { dev: r.name.clone(), addr }),
                IpAddr::V4(_) => None,
            }));
            out.extend(r.ips.iter().map(|d| Want::Route { dest: *d, dev: r.name.clone(), metric: r.metric }));
            if let Some(up) = &r.proxy_dev {
                out.extend(r.proxied.iter().map(|a| Want::Proxy { dev: up.clone(), addr: *a }));
            }
        }
        VifJournal::Nat(r) => {
            out.push(Want::Up { dev: r.name.clone() });
            out.push(Want::Address { dev: r.name.clone(), addr: host_prefix(IpAddr::V4(r.host_side)) });
            out.push(Want::Route { dest: host_prefix(IpAddr::V4(r.guest)), dev: r.name.clone(), metric: r.metric });
            out.push(Want::Sysctl { key: format!("net/ipv4/conf/{}/proxy_arp", r.name), value: "1".into() });
            if let Some((mode, pidfile)) = nat {
                let names = vec![r.hostname.clone(), format!("{}.{}", r.hostname, mode.domain)];
                let pidfile = pidfile.to_path_buf();
                out.push(Want::HostsLine { path: mode.hosts.clone(), prefix: mode.prefix, ip: r.guest, names, pidfile: pidfile.clone() });
                out.push(Want::EthersLine { path: mode.ethers.clone(), mac: r.mac, ip: r.guest, pidfile });
            }
        }
    }
    out.extend(elems.into_iter().map(|e| Want::Elem(table, e)));
    out
}

/// The sysctls a started mode holds: its drop-in's lines (what start wanted, changed or
/// found so), and any change start recorded beyond them (a record older than drop-in lines).
fn sysctl_wants(dropin: &[(String, String)], changed: &[route::SysctlChange]) -> Vec<Want> {
    let mut keys = dropin.to_vec();
    for c in changed {
        if !keys.iter().any(|(k, _)| *k == c.key) {
            keys.push((c.key.clone(), c.new.clone()));
        }
    }
    keys.into_iter().map(|(key, value)| Want::Sysctl { key, value }).collect()
}

/// What route mode's host-wide part stands for: forwarding, the sysctls it set, the
/// gateway link with its addresses.
pub fn route_host_wants(rec: &HostRecord) -> Vec<Want> {
    let mut out = sysctl_wants(&rec.dropin, &rec.sysctls);
    if let Some(link) = &rec.gateway_link {
        let create = match rec.mode.gateway_kind {
            GatewayKind::Dummy => Step::CreateDummy { name: link.clone(), no_driver_hint: None },
            GatewayKind::Bridge => super::create_own_bridge(link),
        };
        out.push(Want::Link { name: link.clone(), create });
        out.push(Want::Up { dev: link.clone() });
        out.extend(rec.mode.gateway.iter().map(|g| Want::Address { dev: link.clone(), addr: *g }));
    }
    out
}

/// What nat mode's host-wide part stands for: forwarding, the masquerade, our dnsmasq.
pub fn nat_host_wants(rec: &NatHostRecord) -> Vec<Want> {
    let mut out = sysctl_wants(&rec.dropin, &rec.sysctls);
    out.push(Want::Elem(Table::Inet, Elem::Masq(rec.uplink.clone(), rec.mode.prefix)));
    if let Some(d) = &rec.dnsmasq {
        let leases = d.config.with_file_name("dnsmasq.leases");
        out.push(Want::Dnsmasq { config: d.config.clone(), text: nat::dnsmasq_config(&rec.mode, &leases), pidfile: d.pidfile.clone() });
    }
    out
}

/// A want and the vif or mode it is reported under.
type Subjected = (String, Want);
/// A journal whose device is gone or another, and which.
type StaleJournal = (VifJournal, Liveness);

/// The journals' and records' wants, each with the subject it is reported under; stale
/// journals apart (their own drift undoes them).
fn all_wants(exp: &Expected, snap: &Snapshot) -> (Vec<Subjected>, Vec<StaleJournal>) {
    let mut wants = exp.mode_wants();
    let mut stale = Vec::new();
    for entry in &exp.journals {
        let JournalEntry::Read(j) = entry else { continue };
        match liveness(j, snap.index(j.name())) {
            Liveness::Live => wants.extend(vif_wants(j, exp.nat_ctx()).into_iter().map(|w| (j.kernel_name().to_string(), w))),
            other => stale.push((j.clone(), other)),
        }
    }
    (wants, stale)
}

/// The sysctls, files and pid files a snapshot must read for `exp`.
pub fn needs(exp: &Expected) -> Needs {
    let mut n = Needs::default();
    let mut wants: Vec<Want> = exp.mode_wants().into_iter().map(|(_, w)| w).collect();
    for entry in &exp.journals {
        if let JournalEntry::Read(j) = entry {
            wants.extend(vif_wants(j, exp.nat_ctx()));
        }
    }
    for w in wants {
        match w {
            Want::Sysctl { key, .. } => {
                n.sysctls.insert(key);
            }
            Want::HostsLine { path, .. } | Want::EthersLine { path, .. } | Want::DropIn { path, .. } => {
                n.files.insert(path);
            }
            Want::Dnsmasq { pidfile, .. } => {
                n.pidfiles.insert(pidfile);
            }
            _ => {}
        }
    }
    n
}

/// Why `want` is not as it should be on `snap`; None when it is.
fn problem(want: &Want, snap: &Snapshot) -> Option<String> {
    let missing = || Some("missing".to_string());
    let link = |dev: &IfName| snap.links.get(dev.as_str());
    match want {
        Want::Port { dev, bridge, .. } => {
            let l = link(dev)?;
            let on = snap.index(bridge).is_some_and(|b| l.master == Some(b));
            match (on, l.up) {
                (true, true) => None,
                (false, _) => Some(format!("not on bridge {bridge}")),
                (true, false) => Some("down".into()),
            }
        }
        Want::Up { dev } => match link(dev) {
            Some(l) if l.up => None,
            Some(_) => Some("down".into()),
            None => Some("no such link".into()),
        },
        Want::Address { dev, addr } => {
            let i = snap.index(dev)?;
            (!snap.addrs.get(&i).is_some_and(|a| a.contains(addr))).then(|| "missing".into())
        }
        Want::Route { dest, dev, metric } => {
            let oif = snap.index(dev)?;
            (!snap.routes.contains(&OurRoute { dest: *dest, oif, metric: *metric })).then(|| "missing".into())
        }
        Want::Proxy { dev, addr } => {
            let i = snap.index(dev)?;
            (!snap.proxies.contains(&(i, *addr))).then(|| "missing".into())
        }
        Want::GatewayProxy { dev, addr } => {
            let i = snap.index(dev)?;
            (!snap.proxies.contains(&(i, IpAddr::V6(*addr)))).then(|| "missing".into())
        }
        // A key that does not exist here (IPv6 disabled, a device gone) is nobody's drift.
        Want::Sysctl { key, value } => snap.sysctls.get(key).filter(|now| *now != value).map(|now| format!("is {now}")),
        Want::Elem(table, e) => (!snap.has_elem(*table, e)).then(|| "missing".into()),
        Want::HostsLine { path, prefix, ip, names, .. } => {
            let text = snap.text(path);
            (super::hosts::hosts_with(text, prefix, *ip, names) != text).then(|| "missing or different".into())
        }
        Want::EthersLine { path, mac, ip, .. } => {
            let text = snap.text(path);
            (nat::ethers_with(text, *mac, *ip) != text).then(|| "missing or different".into())
        }
        Want::Link { name, .. } => link(name).is_none().then(missing).flatten(),
        Want::Dnsmasq { pidfile, .. } => (!snap.live_pidfiles.contains(pidfile)).then(|| "not running".into()),
        Want::DropIn { mode, path, lines } => match snap.text(path) {
            "" => Some("missing".into()),
            text => (text != crate::names::sysctl_dropin_text(mode, lines)).then(|| "differs".into()),
        },
    }
}

/// Every difference between what vifnet recorded and what the host has, in the order
/// the repair takes them: journals to forget or undo, modes, then objects missing, then
/// objects of ours that nothing accounts for.
pub fn drift(exp: &Expected, snap: &Snapshot) -> Vec<Drift> {
    let mut out = Vec::new();
    for entry in &exp.journals {
        if let JournalEntry::Corrupt { kernel_name, error } = entry {
            out.push(Drift { subject: kernel_name.clone(), object: "journal".into(), problem: format!("unreadable: {error}"), fix: Fix::Forget(kernel_name.clone()) });
        }
    }
    let (wants, stale) = all_wants(exp, snap);
    for (j, live) in &stale {
        out.push(Drift { subject: j.kernel_name().to_string(), object: format!("journal of {} mode", j.mode()), problem: live.to_string(), fix: Fix::Undo(j.clone()) });
    }
    for (mode, error) in &exp.mode_errors {
        out.push(Drift { subject: format!("{mode} mode"), object: "mode file".into(), problem: error.clone(), fix: Fix::Reload(mode) });
    }
    for c in &exp.mode_changes {
        out.push(Drift {
            subject: format!("{} mode", c.mode),
            object: format!("mode file key {}", c.key),
            problem: format!("changed since the mode started: {} -> {}", c.was, c.now),
            fix: Fix::Reload(c.mode),
        });
    }
    for (subject, want) in &wants {
        if let Some(problem) = problem(want, snap) {
            out.push(Drift { subject: subject.clone(), object: want.to_string(), problem, fix: Fix::Add(want.clone()) });
        }
    }
    out.extend(extras(exp, snap, &wants, &stale));
    out
}

/// Routes, proxy entries and set elements of ours that no journal or record accounts for
/// (a stale journal's are its undo's).
fn extras(exp: &Expected, snap: &Snapshot, wants: &[Subjected], stale: &[StaleJournal]) -> Vec<Drift> {
    let mut accounted: Vec<&Want> = wants.iter().map(|(_, w)| w).collect();
    let stale_wants: Vec<Want> = stale.iter().flat_map(|(j, _)| vif_wants(j, exp.nat_ctx())).collect();
    accounted.extend(stale_wants.iter());
    let mut elems: HashSet<(Table, &Elem)> = HashSet::new();
    let mut routes = Vec::new();
    let mut proxies = Vec::new();
    for w in accounted {
        match w {
            Want::Elem(t, e) => {
                elems.insert((*t, e));
            }
            Want::Route { dest, dev, metric } => routes.push((*dest, dev.as_str(), *metric)),
            Want::Proxy { dev, addr } => proxies.push((dev.as_str(), *addr)),
            Want::GatewayProxy { dev, addr } => proxies.push((dev.as_str(), IpAddr::V6(*addr))),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let extra = |subject: String, object: String, step: Step| Drift { subject, object, problem: "not in any journal".into(), fix: Fix::Remove(vec![step]) };
    for (table, es) in &snap.elems {
        for e in es.iter().filter(|e| !elems.contains(&(*table, e))) {
            let subject = match e {
                Elem::Guarded(p) | Elem::Mac(p, _) | Elem::Ip(p, _) | Elem::Masq(p, _) => p.to_string(),
            };
            let object = Want::Elem(*table, e.clone()).to_string();
            out.push(extra(subject, object, Step::NftElements(*table, vec![ElemChange::Delete(e.clone())])));
        }
    }
    for r in &snap.routes {
        let Some(dev) = snap.name_of(r.oif) else { continue };
        if !routes.contains(&(r.dest, dev, r.metric)) {
            let Ok(dev) = IfName::parse("link", dev) else { continue };
            let object = Want::Route { dest: r.dest, dev: dev.clone(), metric: r.metric }.to_string();
            out.push(extra(dev.to_string(), object, Step::DelRoute { dest: r.dest, dev, metric: r.metric }));
        }
    }
    out.extend(extra_ethers_lines(exp, snap, &stale_wants, wants));
    for (index, addr) in &snap.proxies {
        let Some(dev) = snap.name_of(*index) else { continue };
        if !proxies.contains(&(dev, *addr)) {
            let Ok(dev) = IfName::parse("link", dev) else { continue };
            let object = Want::Proxy { dev: dev.clone(), addr: *addr }.to_string();
            out.push(extra(dev.to_string(), object, Step::DelProxy { dev, addr: *addr }));
        }
    }
    out
}

/// Lines of the ethers file that lease an address of nat mode's prefix to no online guest:
/// offline removes a guest's line, so these are left by vifnet calls that never finished.
/// The administrator's lines for other addresses are theirs.
fn extra_ethers_lines(exp: &Expected, snap: &Snapshot, stale: &[Want], wants: &[Subjected]) -> Vec<Drift> {
    let Some(nat) = &exp.nat else { return Vec::new() };
    let path = &nat.mode.ethers;
    let accounted: Vec<(MacAddr, Ipv4Addr)> = wants
        .iter()
        .map(|(_, w)| w)
        .chain(stale)
        .filter_map(|w| match w {
            Want::EthersLine { mac, ip, .. } => Some((*mac, *ip)),
            _ => None,
        })
        .collect();
    let text = snap.text(path);
    let extra: Vec<(MacAddr, Ipv4Addr)> = text
        .lines()
        .filter_map(nat::ethers_fields)
        .filter_map(|(mac, ip)| match ip {
            IpAddr::V4(v4) if nat.mode.prefix.contains(v4) && !accounted.contains(&(mac, v4)) => Some((mac, v4)),
            _ => None,
        })
        .collect();
    let to = extra.iter().fold(text.to_string(), |t, (mac, ip)| nat::ethers_without(&t, *mac, *ip));
    let steps = vec![Step::WriteFile { path: path.clone(), from: text.to_string(), to }, Step::SignalDnsmasq { pidfile: nat.pidfile().to_path_buf() }];
    extra
        .iter()
        .map(|(mac, ip)| Drift {
            subject: ip.to_string(),
            object: format!("line \"{mac} {ip}\" in {}", path.display()),
            problem: "not in any journal".into(),
            fix: Fix::Remove(steps.clone()),
        })
        .collect()
}

/// The steps that make the missing wants of `drifts` again, in setup order: elements of
/// one table in one transaction, the edits of one file folded into one write, dnsmasq
/// told once per pid file.
pub fn additions(drifts: &[Drift], snap: &Snapshot) -> Plan {
    let mut plan = Plan::default();
    let mut elems: Vec<(Table, Vec<ElemChange>)> = Vec::new();
    let mut files: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut signal: BTreeSet<PathBuf> = BTreeSet::new();
    for d in drifts {
        let Fix::Add(want) = &d.fix else { continue };
        match want.clone() {
            Want::Port { dev, bridge, mtu } => plan.push(Step::AttachPort { port: dev, bridge, mtu }),
            Want::Up { dev } => plan.push(Step::LinkUp { dev, mtu: None }),
            Want::Address { dev, addr } => plan.push(Step::AddAddress { dev, addr }),
            Want::Route { dest, dev, metric } => plan.push(Step::AddRoute { dest, dev, metric }),
            Want::Proxy { dev, addr } => plan.push(Step::AddProxy { dev, addr }),
            Want::GatewayProxy { dev, addr } => plan.push(Step::AddGatewayProxy { dev, addr }),
            Want::Sysctl { key, value } => {
                let from = snap.sysctls.get(&key).cloned().unwrap_or_default();
                plan.push(Step::Sysctl { key, from, to: value });
            }
            Want::Elem(table, e) => match elems.iter_mut().find(|(t, _)| *t == table) {
                Some((_, changes)) => changes.push(ElemChange::Add(e)),
                None => elems.push((table, vec![ElemChange::Add(e)])),
            },
            Want::HostsLine { path, prefix, ip, names, pidfile } => {
                let text = files.entry(path.clone()).or_insert_with(|| snap.text(&path).to_string());
                *text = super::hosts::hosts_with(text, &prefix, ip, &names);
                signal.insert(pidfile);
            }
            Want::EthersLine { path, mac, ip, pidfile } => {
                let text = files.entry(path.clone()).or_insert_with(|| snap.text(&path).to_string());
                *text = nat::ethers_with(text, mac, ip);
                signal.insert(pidfile);
            }
            Want::Link { name, create } => {
                plan.push(create);
                plan.push(Step::LinkUp { dev: name, mtu: None });
            }
            Want::Dnsmasq { config, text, pidfile } => plan.push(Step::StartDnsmasq { config, text, pidfile }),
            Want::DropIn { mode, lines, .. } => plan.push(Step::SysctlDropIn { mode, lines: Some(lines) }),
        }
    }
    // Before the ports and links come up, as online orders it; a table a flush took comes back whole.
    let mut firewall = Vec::new();
    for (table, changes) in elems {
        firewall.push(Step::EnsureNftTable(table));
        if changes.iter().any(|c| matches!(c, ElemChange::Add(Elem::Masq(..)))) {
            firewall.push(Step::EnsureNftNat);
        }
        firewall.push(Step::NftElements(table, changes));
    }
    plan.steps.splice(0..0, firewall);
    for (path, to) in files {
        let from = snap.text(&path).to_string();
        plan.push(Step::WriteFile { path, from, to });
    }
    plan.steps.extend(signal.into_iter().map(|pidfile| Step::SignalDnsmasq { pidfile }));
    plan
}

/// The steps that remove what `drifts` found of ours and unaccounted for (teardown order:
/// firewall first, one transaction per table).
pub fn removals(drifts: &[Drift]) -> Plan {
    let mut plan = Plan::default();
    let mut elems: Vec<(Table, Vec<ElemChange>)> = Vec::new();
    for step in drifts.iter().filter_map(|d| if let Fix::Remove(steps) = &d.fix { Some(steps) } else { None }).flatten() {
        match step.clone() {
            Step::NftElements(table, changes) => match elems.iter_mut().find(|(t, _)| *t == table) {
                Some((_, c)) => c.extend(changes),
                None => elems.push((table, changes)),
            },
            // One write of a file takes all its extra lines (each of their drifts carries it).
            other if plan.steps.contains(&other) => {}
            other => plan.push(other),
        }
    }
    let firewall = elems.into_iter().map(|(t, c)| Step::NftElements(t, c));
    plan.steps.splice(0..0, firewall);
    plan
}

/// A journalled vif's xenstore backend, as `gc` found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The journal names none: the vif was brought up by hand.
    Unnamed,
    Gone,
    There,
    /// xenstore could not be asked.
    Unknown,
}

/// Whether `gc` may remove a vif's state: its device and its backend are both gone (a guest
/// destroyed without its offline), and nothing else.
pub fn collectable(live: Liveness, backend: Backend) -> bool {
    live == Liveness::DeviceGone && matches!(backend, Backend::Unnamed | Backend::Gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DevType;
    use crate::plan::route::RouteVifRecord;
    use crate::plan::{BridgeVifRecord, Origin};

    fn name(s: &str) -> IfName {
        IfName::parse("t", s).unwrap()
    }
    fn link(index: u32, master: Option<u32>, up: bool) -> LinkFacts {
        LinkFacts { index, kind: None, mtu: 1500, master, up, mac: None, ours: false }
    }
    fn routed(vif: &str, index: u32) -> VifJournal {
        VifJournal::Route(RouteVifRecord {
            kernel_name: name(vif),
            name: name(vif),
            dev_type: DevType::Vif,
            ips: vec!["192.0.2.5/32".parse().unwrap()],
            antispoof: true,
            metric: 2,
            mtu: None,
            // A journal from before `gateway`: the gateway's address on the vif.
            answered: vec!["192.0.2.1/32".parse().unwrap()],
            gateway: vec![],
            sysctls: vec![],
            proxy_dev: None,
            proxied: vec![],
            origin: Origin { ifindex: Some(index), backend: None },
        })
    }
    fn healthy(j: &VifJournal) -> Snapshot {
        let mut s = Snapshot::default();
        s.links.insert("vif5.0".into(), link(7, None, true));
        s.addrs.insert(7, vec!["192.0.2.1/32".parse().unwrap()]);
        s.routes.insert(OurRoute { dest: "192.0.2.5/32".parse().unwrap(), oif: 7, metric: 2 });
        let (t, e) = j.filter();
        s.elems.push((t, e));
        s
    }
    fn expected(j: &VifJournal) -> Expected {
        Expected { journals: vec![JournalEntry::Read(j.clone())], ..Default::default() }
    }
    fn lines(d: &[Drift]) -> Vec<String> {
        d.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn a_healthy_vif_has_no_drift() {
        let j = routed("vif5.0", 7);
        assert_eq!(lines(&drift(&expected(&j), &healthy(&j))), Vec::<String>::new());
    }

    #[test]
    fn a_flushed_ruleset_is_one_line_per_element_and_one_transaction_to_mend() {
        let j = routed("vif5.0", 7);
        let mut s = healthy(&j);
        s.elems.clear();
        let d = drift(&expected(&j), &s);
        assert_eq!(
            lines(&d),
            [
                "vif5.0: element inet vifnet guarded { \"vif5.0\" }: missing",
                "vif5.0: element inet vifnet vif_ip4 { \"vif5.0\" . 192.0.2.5 }: missing"
            ]
        );
        let plan = additions(&d, &s);
        assert_eq!(plan.steps.len(), 2, "{plan}");
        assert_eq!(plan.steps[0], Step::EnsureNftTable(Table::Inet));
    }

    #[test]
    fn a_vanished_device_makes_the_journal_stale_and_its_objects_are_not_extras() {
        let j = routed("vif5.0", 7);
        let mut s = healthy(&j);
        s.links.clear();
        let d = drift(&expected(&j), &s);
        assert_eq!(lines(&d), ["vif5.0: journal of route mode: stale: device gone"]);
        assert!(matches!(d[0].fix, Fix::Undo(_)));
        // Another device under the same name.
        s.links.insert("vif5.0".into(), link(9, None, true));
        assert_eq!(lines(&drift(&expected(&j), &s)), ["vif5.0: journal of route mode: stale: ifindex 7 is now 9"]);
    }

    #[test]
    fn objects_of_ours_that_no_journal_accounts_for_are_extras() {
        let j = routed("vif5.0", 7);
        let mut s = healthy(&j);
        s.links.insert("vif6.0".into(), link(8, None, true));
        s.routes.insert(OurRoute { dest: "192.0.2.6/32".parse().unwrap(), oif: 8, metric: 2 });
        s.elems[0].1.push(Elem::Guarded(name("vif6.0")));
        let d = drift(&expected(&j), &s);
        assert_eq!(
            lines(&d),
            [
                "vif6.0: element inet vifnet guarded { \"vif6.0\" }: not in any journal",
                "vif6.0: route 192.0.2.6/32 dev vif6.0 metric 2: not in any journal"
            ]
        );
        let plan = removals(&d);
        assert!(matches!(plan.steps[0], Step::NftElements(Table::Inet, _)));
        assert!(matches!(plan.steps[1], Step::DelRoute { .. }));
    }

    #[test]
    fn a_port_off_its_bridge_is_attached_again() {
        let j = VifJournal::Bridge(BridgeVifRecord {
            kernel_name: name("vif5.0"),
            name: name("vif5.0"),
            dev_type: DevType::Vif,
            bridge: name("xenbr0"),
            guest_mac: None,
            ips: vec![],
            antispoof: false,
            mtu: 1500,
            origin: Origin::default(),
        });
        let mut s = Snapshot::default();
        s.links.insert("xenbr0".into(), link(3, None, true));
        s.links.insert("vif5.0".into(), link(7, None, true));
        let d = drift(&expected(&j), &s);
        assert_eq!(lines(&d), ["vif5.0: port vif5.0 of bridge xenbr0: not on bridge xenbr0"]);
        assert_eq!(additions(&d, &s).steps, [Step::AttachPort { port: name("vif5.0"), bridge: name("xenbr0"), mtu: 1500 }]);
        s.links.get_mut("vif5.0").unwrap().master = Some(3);
        assert!(drift(&expected(&j), &s).is_empty());
    }

    #[test]
    fn gc_takes_only_what_lost_both_its_device_and_its_backend() {
        assert!(collectable(Liveness::DeviceGone, Backend::Gone));
        assert!(collectable(Liveness::DeviceGone, Backend::Unnamed));
        assert!(!collectable(Liveness::DeviceGone, Backend::There), "a guest being restored");
        assert!(!collectable(Liveness::DeviceGone, Backend::Unknown));
        assert!(!collectable(Liveness::Live, Backend::Gone));
        assert!(!collectable(Liveness::Replaced { was: 7, now: 9 }, Backend::Gone), "a new guest's device: its online undoes the old state");
    }

    #[test]
    fn a_corrupt_journal_is_reported_on_its_own_line() {
        let exp = Expected { journals: vec![JournalEntry::Corrupt { kernel_name: "vif9.0".into(), error: "EOF".into() }], ..Default::default() };
        let d = drift(&exp, &Snapshot::default());
        assert_eq!(lines(&d), ["vif9.0: journal: unreadable: EOF"]);
        assert_eq!(d[0].fix, Fix::Forget("vif9.0".into()));
    }
}
