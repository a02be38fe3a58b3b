//! `vifnet doctor`: what on this host will break guests, judged from observed facts (no
//! I/O here), each finding with the exact command or config line that fixes it.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::names::NFT_TABLE;
use crate::plan::VifJournal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Guests will not work (exit 2).
    Error,
    /// Worth knowing; nothing breaks now.
    Info,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub what: String,
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Info => "info",
        };
        write!(f, "{sev}: {}; fix: {}", self.what, self.fix)
    }
}

/// One nftables base chain, as `nft -j list ruleset` shows it; each rule is its `expr` list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BaseChain {
    pub family: String,
    pub table: String,
    pub name: String,
    pub hook: String,
    pub policy_drop: bool,
    pub rules: Vec<Vec<Value>>,
}

impl BaseChain {
    fn ours(&self) -> bool {
        self.table == NFT_TABLE && (self.family == "inet" || self.family == "bridge")
    }
    /// `ip filter FORWARD`, quoted where nft's parser needs it.
    fn id(&self) -> String {
        format!("{} {} {}", self.family, nft_name(&self.table), nft_name(&self.name))
    }
}

fn nft_name(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("\"{s}\"")
    }
}

/// Which modes this host uses: configured (an administrator's mode file), started, or with
/// guests online. Bridge also when neither of the others is: it is xl's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModesInUse {
    pub bridge: bool,
    pub route: bool,
    pub nat: bool,
}

/// A sysctl a started mode needs, and what it reads now (None: no such key here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlFact {
    pub key: String,
    pub want: String,
    pub now: Option<String>,
}

/// The user dnsmasq drops its privileges to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Owner and mode of a file dnsmasq reads, or of one of its directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathMode {
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub dir: bool,
}

/// Nat mode's facts: its dnsmasq, and the files dnsmasq must read (each with the
/// directories above it that exist; a file not made yet is made readable by vifnet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatHealth {
    pub run_dnsmasq: bool,
    pub dnsmasq_found: bool,
    pub reader: Reader,
    pub files: Vec<Vec<PathMode>>,
}

/// Route mode needs a dummy link for its gateway; whether the kernel can make one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DummyHealth {
    pub driver: bool,
    pub mode_file: PathBuf,
}

/// Everything `doctor` observed on the host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostHealth {
    pub root: bool,
    /// `nft --version`; None: no nft binary.
    pub nft_version: Option<String>,
    /// None: the ruleset could not be read (no or too old nft, not root).
    pub chains: Option<Vec<BaseChain>>,
    pub modes: ModesInUse,
    /// The bridge bridged guests join (br_netfilter shows their frames as its).
    pub bridge: String,
    /// bridge-nf-call-iptables and -ip6tables: Some(true) when they are 1.
    pub br_nf_ip: Option<bool>,
    pub br_nf_ip6: Option<bool>,
    pub sysctls: Vec<SysctlFact>,
    pub nat: Option<NatHealth>,
    /// Some when route mode is in use with a gateway on a dummy link.
    pub dummy: Option<DummyHealth>,
}

/// The sysctls the started modes and the online guests depend on, and the values they need:
/// what start and online set, and, for a routed guest's IPv4 gateway (answered by ARP for a
/// local address, with no address on the vif), arp_ignore 0 (the kernel takes the higher
/// of `all` and the vif's).
pub fn wanted_sysctls(route: Option<&super::route::HostRecord>, nat_started: bool, vifs: &[VifJournal]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = Vec::new();
    let one = |k: String| (k, "1".to_string());
    if route.is_some() || nat_started {
        keys.push(one("net/ipv4/ip_forward".to_string()));
    }
    if let Some(rec) = route {
        keys.push(one("net/ipv6/conf/all/forwarding".to_string()));
        if let (true, Some(up)) = (rec.mode.uplink_proxy, &rec.uplink) {
            keys.push(one(format!("net/ipv6/conf/{up}/proxy_ndp")));
        }
    }
    for v in vifs {
        match v {
            VifJournal::Nat(r) => keys.push(one(format!("net/ipv4/conf/{}/proxy_arp", r.name))),
            VifJournal::Route(r) => {
                if let (Some(dev), true) = (&r.proxy_dev, r.proxied.iter().any(|a| a.is_ipv6())) {
                    keys.push(one(format!("net/ipv6/conf/{dev}/proxy_ndp")));
                }
                keys.extend(r.sysctls.iter().map(|c| (c.key.clone(), c.new.clone())));
                if r.gateway.iter().any(|g| g.is_ipv4()) {
                    keys.push(("net/ipv4/conf/all/arp_ignore".into(), "0".into()));
                    keys.push((format!("net/ipv4/conf/{}/arp_ignore", r.name), "0".into()));
                }
            }
            VifJournal::Bridge(_) => {}
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    keys.retain(|(k, _)| seen.insert(k.clone()));
    keys
}

/// The oldest nft whose JSON vifnet's batches use.
pub const NFT_MIN: (u32, u32, u32) = (0, 9, 3);

/// "nftables v1.0.6 (Lester Gooch #5)" -> (1, 0, 6).
pub fn nft_version(line: &str) -> Option<(u32, u32, u32)> {
    let v = line.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut n = v.split('.').map(|p| p.trim_end_matches(|c: char| !c.is_ascii_digit()).parse::<u32>());
    Some((n.next()?.ok()?, n.next().unwrap_or(Ok(0)).ok()?, n.next().unwrap_or(Ok(0)).ok()?))
}

pub fn findings(h: &HostHealth) -> Vec<Finding> {
    let mut out = Vec::new();
    let error = |what: String, fix: String| Finding { severity: Severity::Error, what, fix };
    if !h.root {
        out.push(error("not root: vifnet changes the host only as root, and the nftables ruleset was not checked".into(), "run as root".into()));
    }
    match h.nft_version.as_deref().map(|l| (l, nft_version(l))) {
        None => out.push(error("nft is not installed: vifnet builds its tables through it".into(), "apt-get install nftables".into())),
        Some((line, v)) if v.is_none_or(|v| v < NFT_MIN) => {
            out.push(error(format!("nft is too old ({line}): vifnet needs 0.9.3 or later"), "apt-get install nftables (0.9.3 or later)".into()))
        }
        _ => {}
    }
    if let Some(chains) = &h.chains {
        out.extend(chain_findings(h, chains));
    }
    for s in &h.sysctls {
        if let Some(now) = s.now.as_ref().filter(|now| **now != s.want) {
            out.push(error(format!("sysctl {} is {now}, and the started mode needs {}", s.key, s.want), format!("sysctl -w {}={}", sysctl_name(&s.key), s.want)));
        }
    }
    if let Some(nat) = &h.nat {
        out.extend(nat_findings(nat));
    }
    if let Some(d) = h.dummy.as_ref().filter(|d| !d.driver) {
        out.push(error(
            "route mode's gateway is on a dummy link, and this kernel has no dummy driver".into(),
            format!("add gateway_kind = \"bridge\" to {} (or apt-get install linux-image-amd64)", d.mode_file.display()),
        ));
    }
    out
}

/// `net.ipv4.ip_forward`; slash form when an interface name has a dot (`vif5.0`).
fn sysctl_name(key: &str) -> String {
    if key.contains('.') {
        key.to_string()
    } else {
        key.replace('/', ".")
    }
}

/// What a guest's packet must be accepted by: any one of these matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Match {
    /// `iifname`/`oifname` equal to, or a wildcard starting with, this.
    Iface(&'static str, String),
    /// A destination port (udp, tcp or th).
    Port(u64),
}

type Need = Vec<Match>;

fn vif(key: &'static str) -> Match {
    Match::Iface(key, "vif".into())
}

/// The needs (by index) a chain drops before any rule accepts them, and why; None: it drops
/// none. Heuristic: jumps are not followed, and any accept mentioning the need counts.
fn dropped_by(chain: &BaseChain, needs: &[Need]) -> Option<(Vec<usize>, &'static str)> {
    let mut met = vec![false; needs.len()];
    let unmet = |met: &[bool]| -> Vec<usize> { (0..met.len()).filter(|i| !met[*i]).collect() };
    for rule in &chain.rules {
        let Some(verdict) = rule.last().and_then(|e| e.as_object()).and_then(|o| o.keys().next()) else { continue };
        let conditional = rule.iter().any(|e| e.get("match").is_some());
        match verdict.as_str() {
            "accept" if !conditional => return None,
            "accept" => {
                for (i, need) in needs.iter().enumerate() {
                    met[i] |= need.iter().any(|m| rule.iter().any(|e| matches(e, m)));
                }
            }
            "drop" | "reject" if !conditional && !unmet(&met).is_empty() => return Some((unmet(&met), "an unconditional drop rule")),
            _ => {}
        }
    }
    let left = unmet(&met);
    (chain.policy_drop && !left.is_empty()).then_some((left, "policy drop"))
}

fn matches(expr: &Value, m: &Match) -> bool {
    let Some(mt) = expr.get("match").filter(|mt| mt["op"] == "==" || mt["op"] == "in") else { return false };
    let right: Vec<&Value> = match mt["right"].get("set").and_then(Value::as_array) {
        Some(set) => set.iter().collect(),
        None => vec![&mt["right"]],
    };
    match m {
        Match::Iface(key, prefix) => mt["left"]["meta"]["key"] == *key && right.iter().any(|r| r.as_str().is_some_and(|s| s.starts_with(prefix.as_str()))),
        Match::Port(p) => {
            mt["left"]["payload"]["field"] == "dport"
                && right.iter().any(|r| match (r.as_u64(), r["range"].as_array()) {
                    (Some(v), _) => v == *p,
                    (None, Some(ends)) => ends[0].as_u64().is_some_and(|a| a <= *p) && ends[1].as_u64().is_some_and(|b| *p <= b),
                    _ => false,
                })
        }
    }
}

fn chain_findings(h: &HostHealth, chains: &[BaseChain]) -> Vec<Finding> {
    let mut out = Vec::new();
    let foreign = || chains.iter().filter(|c| !c.ours());
    let both_ways = [vec![vif("iifname")], vec![vif("oifname")]];
    let vif_accepts = |c: &BaseChain, missing: &[usize]| -> String {
        let rules: Vec<String> = missing.iter().map(|i| format!("insert rule {} {} \"vif*\" accept", c.id(), ["iifname", "oifname"][*i])).collect();
        format!("nft '{}'", rules.join("; "))
    };
    // Routed and NATed guests' packets cross the forward hook of IPv4 (ip, inet) and, routed, IPv6.
    let mut routed: Vec<(&str, &[&str])> = Vec::new();
    if h.modes.route {
        routed.push(("routed", &["ip", "ip6", "inet"]));
    }
    if h.modes.nat {
        routed.push(("NATed", &["ip", "inet"]));
    }
    for c in foreign().filter(|c| c.hook == "forward") {
        let guests: Vec<&str> = routed.iter().filter(|(_, fams)| fams.contains(&c.family.as_str())).map(|(g, _)| *g).collect();
        let bridged = h.modes.bridge && c.family == "bridge";
        if guests.is_empty() && !bridged {
            continue;
        }
        if let Some((missing, why)) = dropped_by(c, &both_ways) {
            let whose = if bridged { "bridged".to_string() } else { guests.join(" and ") };
            out.push(Finding {
                severity: Severity::Error,
                what: format!("nft chain {} (hook forward, {why}) drops {whose} guests' traffic", c.id()),
                fix: vif_accepts(c, &missing),
            });
        }
    }
    if h.modes.nat {
        out.extend(input_findings(chains));
    }
    out.extend(br_netfilter_finding(h, chains));
    out
}

/// br_netfilter hands bridged frames to the ip/ip6/inet forward hook, as the bridge's: the
/// vif accepts do not match them, so the fix is to turn it off.
fn br_netfilter_finding(h: &HostHealth, chains: &[BaseChain]) -> Option<Finding> {
    let mut keys: Vec<(&str, [&str; 2])> = Vec::new();
    if h.br_nf_ip == Some(true) {
        keys.push(("bridge-nf-call-iptables", ["ip", "inet"]));
    }
    if h.br_nf_ip6 == Some(true) {
        keys.push(("bridge-nf-call-ip6tables", ["ip6", "inet"]));
    }
    if keys.is_empty() {
        return None;
    }
    let via_bridge = [vec![Match::Iface("iifname", h.bridge.clone())], vec![Match::Iface("oifname", h.bridge.clone())]];
    let droppers: Vec<String> = chains
        .iter()
        .filter(|c| !c.ours())
        .filter(|c| c.hook == "forward" && keys.iter().any(|(_, fams)| fams.contains(&c.family.as_str())))
        .filter(|c| dropped_by(c, &via_bridge).is_some())
        .map(BaseChain::id)
        .collect();
    let fix = format!("sysctl -w {}", keys.iter().map(|(k, _)| format!("net.bridge.{k}=0")).collect::<Vec<_>>().join(" "));
    let names = keys.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(" and ");
    Some(if droppers.is_empty() {
        Finding { severity: Severity::Info, what: format!("br_netfilter is on ({names} = 1): bridged guests' frames also pass the ip/ip6/inet forward chains, so a drop policy there would cut them off"), fix }
    } else {
        Finding {
            severity: if h.modes.bridge { Severity::Error } else { Severity::Info },
            what: format!("br_netfilter ({names} = 1) passes bridged guests' frames through nft chain {}, which drops them", droppers.join(", ")),
            fix,
        }
    })
}

/// Input chains matter to nat mode only: its guests ask dom0's dnsmasq for DHCP and DNS.
fn input_findings(chains: &[BaseChain]) -> Vec<Finding> {
    let own = |p| vec![vif("iifname"), Match::Port(p)];
    let needs = [own(67), own(53)];
    chains
        .iter()
        .filter(|c| !c.ours() && c.hook == "input" && (c.family == "ip" || c.family == "inet"))
        .filter_map(|c| {
            let (_, why) = dropped_by(c, &needs)?;
            let id = c.id();
            Some(Finding {
                severity: Severity::Error,
                what: format!("nft chain {id} (hook input, {why}) drops NATed guests' DHCP (udp 67) and DNS (53) to dom0's dnsmasq"),
                fix: format!("nft 'insert rule {id} iifname \"vif*\" udp dport {{ 53, 67 }} accept; insert rule {id} iifname \"vif*\" tcp dport 53 accept'"),
            })
        })
        .collect()
}

fn nat_findings(nat: &NatHealth) -> Vec<Finding> {
    let mut out = Vec::new();
    if nat.run_dnsmasq && !nat.dnsmasq_found {
        out.push(Finding {
            severity: Severity::Error,
            what: "dnsmasq is not installed, and nat mode runs it for its guests' DHCP and DNS".into(),
            fix: "apt-get install dnsmasq-base".into(),
        });
    }
    let r = &nat.reader;
    for chain in &nat.files {
        for p in chain {
            let (bit, letter) = if p.dir { (1, 'x') } else { (4, 'r') };
            let (class, shift) = if p.uid == r.uid {
                ('u', 6)
            } else if p.gid == r.gid {
                ('g', 3)
            } else {
                ('o', 0)
            };
            if (p.mode >> shift) & bit == 0 {
                let what = if p.dir { "enter" } else { "read" };
                out.push(Finding {
                    severity: Severity::Error,
                    what: format!("dnsmasq, as user {}, cannot {what} {} (mode {:o})", r.name, p.path.display(), p.mode & 0o7777),
                    fix: format!("chmod {class}+{letter} {}", p.path.display()),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(family: &str, table: &str, name: &str, hook: &str, drop: bool, rules: Vec<Value>) -> BaseChain {
        let rules = rules.into_iter().map(|r| r.as_array().unwrap().clone()).collect();
        BaseChain { family: family.into(), table: table.into(), name: name.into(), hook: hook.into(), policy_drop: drop, rules }
    }

    fn healthy() -> HostHealth {
        HostHealth { root: true, nft_version: Some("nftables v1.0.6 (Lester Gooch #5)".into()), chains: Some(vec![]), bridge: "xenbr0".into(), ..Default::default() }
    }

    fn docker() -> BaseChain {
        chain("ip", "filter", "FORWARD", "forward", true, vec![json!([{"jump": {"target": "DOCKER-USER"}}])])
    }

    fn lines(h: &HostHealth) -> Vec<String> {
        findings(h).iter().map(|f| f.to_string()).collect()
    }

    fn iface_accept(key: &str, name: &str) -> Value {
        json!([{"match": {"op": "==", "left": {"meta": {"key": key}}, "right": name}}, {"accept": null}])
    }

    #[test]
    fn a_healthy_host_has_no_finding() {
        assert!(lines(&healthy()).is_empty());
    }

    #[test]
    fn docker_forward_policy_drop_breaks_routed_guests_with_the_exact_nft_fix() {
        let mut h = healthy();
        h.modes.route = true;
        h.chains = Some(vec![docker()]);
        assert_eq!(
            lines(&h),
            ["error: nft chain ip filter FORWARD (hook forward, policy drop) drops routed guests' traffic; fix: nft 'insert rule ip filter FORWARD iifname \"vif*\" accept; insert rule ip filter FORWARD oifname \"vif*\" accept'"]
        );
        // Once both directions are accepted, the chain no longer matters.
        let mut fixed = docker();
        fixed.rules.insert(0, iface_accept("oifname", "vif*").as_array().unwrap().clone());
        fixed.rules.insert(0, iface_accept("iifname", "vif*").as_array().unwrap().clone());
        h.chains = Some(vec![fixed]);
        assert!(lines(&h).is_empty(), "{:?}", lines(&h));
    }

    #[test]
    fn only_the_missing_direction_is_added() {
        let mut h = healthy();
        h.modes.nat = true;
        let mut c = docker();
        c.rules.insert(0, iface_accept("iifname", "vif*").as_array().unwrap().clone());
        h.chains = Some(vec![c]);
        let l = lines(&h);
        assert_eq!(l.len(), 1);
        assert!(l[0].ends_with("fix: nft 'insert rule ip filter FORWARD oifname \"vif*\" accept'"), "{l:?}");
    }

    #[test]
    fn an_unconditional_drop_before_the_accepts_counts_and_ours_never_does() {
        let mut h = healthy();
        h.modes.route = true;
        let drop = chain("inet", "fw", "fwd", "forward", false, vec![json!([{"counter": null}, {"drop": null}]), iface_accept("iifname", "vif*")]);
        let ours = chain("inet", "vifnet", "forward", "forward", true, vec![]);
        h.chains = Some(vec![drop, ours]);
        let l = lines(&h);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(l[0].contains("nft chain inet fw fwd (hook forward, an unconditional drop rule)"), "{l:?}");
    }

    #[test]
    fn a_forward_drop_does_not_touch_bridged_guests_without_br_netfilter() {
        let mut h = healthy();
        h.modes.bridge = true;
        h.chains = Some(vec![docker()]);
        assert!(lines(&h).is_empty());
        h.br_nf_ip = Some(true);
        assert_eq!(
            lines(&h),
            ["error: br_netfilter (bridge-nf-call-iptables = 1) passes bridged guests' frames through nft chain ip filter FORWARD, which drops them; fix: sysctl -w net.bridge.bridge-nf-call-iptables=0"]
        );
        h.chains = Some(vec![]);
        h.br_nf_ip6 = Some(true);
        let l = lines(&h);
        assert!(l[0].starts_with("info: br_netfilter is on") && l[0].ends_with("net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0"), "{l:?}");
    }

    #[test]
    fn a_foreign_bridge_family_drop_breaks_bridged_guests() {
        let mut h = healthy();
        h.modes.bridge = true;
        h.chains = Some(vec![chain("bridge", "filter", "FORWARD", "forward", true, vec![])]);
        assert!(lines(&h)[0].contains("nft chain bridge filter FORWARD (hook forward, policy drop) drops bridged guests' traffic"));
    }

    #[test]
    fn ufw_like_input_drop_needs_dhcp_and_dns_accepted() {
        let ufw = chain("inet", "ufwlike", "input", "input", true, vec![]);
        let f = input_findings(std::slice::from_ref(&ufw));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].fix, "nft 'insert rule inet ufwlike input iifname \"vif*\" udp dport { 53, 67 } accept; insert rule inet ufwlike input iifname \"vif*\" tcp dport 53 accept'");
        let ports = |right: Value| json!([{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": right}}, {"accept": null}]);
        let mut open = ufw.clone();
        open.rules = vec![ports(json!({"set": [53, 67]})).as_array().unwrap().clone()];
        assert!(input_findings(&[open.clone()]).is_empty());
        open.rules = vec![ports(json!({"range": [60, 70]})).as_array().unwrap().clone()];
        assert_eq!(input_findings(&[open]).len(), 1, "DNS is still dropped");
        let mut by_vif = ufw;
        by_vif.rules = vec![iface_accept("iifname", "vif*").as_array().unwrap().clone()];
        assert!(input_findings(&[by_vif]).is_empty());
    }

    #[test]
    fn nft_missing_or_too_old() {
        assert_eq!(nft_version("nftables v1.0.6 (Lester Gooch #5)"), Some((1, 0, 6)));
        assert_eq!(nft_version("nftables v0.9.3 (Topsy)"), Some((0, 9, 3)));
        let mut h = healthy();
        h.nft_version = Some("nftables v0.9.0 (Fearless Fosdick)".into());
        assert!(lines(&h)[0].starts_with("error: nft is too old (nftables v0.9.0"));
        h.nft_version = None;
        assert_eq!(lines(&h), ["error: nft is not installed: vifnet builds its tables through it; fix: apt-get install nftables"]);
    }

    #[test]
    fn sysctls_a_started_mode_needs() {
        let mut h = healthy();
        h.sysctls = vec![
            SysctlFact { key: "net/ipv4/ip_forward".into(), want: "1".into(), now: Some("0".into()) },
            SysctlFact { key: "net/ipv4/conf/vif5.0/proxy_arp".into(), want: "1".into(), now: Some("0".into()) },
            SysctlFact { key: "net/ipv6/conf/all/forwarding".into(), want: "1".into(), now: None },
        ];
        assert_eq!(
            lines(&h),
            [
                "error: sysctl net/ipv4/ip_forward is 0, and the started mode needs 1; fix: sysctl -w net.ipv4.ip_forward=1",
                "error: sysctl net/ipv4/conf/vif5.0/proxy_arp is 0, and the started mode needs 1; fix: sysctl -w net/ipv4/conf/vif5.0/proxy_arp=1",
            ]
        );
    }

    #[test]
    fn dnsmasq_missing_and_unreadable_files() {
        let pm = |path: &str, uid, mode, dir| PathMode { path: path.into(), uid, gid: 0, mode, dir };
        let nat = NatHealth {
            run_dnsmasq: true,
            dnsmasq_found: false,
            reader: Reader { name: "nobody".into(), uid: 65534, gid: 65534 },
            files: vec![vec![pm("/var/lib/vifnet/nat-hosts", 0, 0o640, false), pm("/var/lib/vifnet", 0, 0o700, true), pm("/var/lib", 0, 0o755, true)]],
        };
        let h = HostHealth { nat: Some(nat), ..healthy() };
        assert_eq!(
            lines(&h),
            [
                "error: dnsmasq is not installed, and nat mode runs it for its guests' DHCP and DNS; fix: apt-get install dnsmasq-base",
                "error: dnsmasq, as user nobody, cannot read /var/lib/vifnet/nat-hosts (mode 640); fix: chmod o+r /var/lib/vifnet/nat-hosts",
                "error: dnsmasq, as user nobody, cannot enter /var/lib/vifnet (mode 700); fix: chmod o+x /var/lib/vifnet",
            ]
        );
    }

    #[test]
    fn no_dummy_driver_for_a_dummy_gateway() {
        let h = HostHealth { dummy: Some(DummyHealth { driver: false, mode_file: "/etc/vifnet/modes/route.toml".into() }), ..healthy() };
        assert_eq!(
            lines(&h),
            ["error: route mode's gateway is on a dummy link, and this kernel has no dummy driver; fix: add gateway_kind = \"bridge\" to /etc/vifnet/modes/route.toml (or apt-get install linux-image-amd64)"]
        );
    }

    #[test]
    fn not_root() {
        let h = HostHealth { root: false, chains: None, ..healthy() };
        assert_eq!(lines(&h)[0], "error: not root: vifnet changes the host only as root, and the nftables ruleset was not checked; fix: run as root");
    }
}
