//! `vifnet doctor` in namespaces of its own: each broken host is made the way Docker, ufw or
//! a missing driver makes it, and the fix doctor prints is run as printed (through a
//! shell's word splitting, without a shell) to prove it is the exact fix.

mod common;

use std::process::Output;

use common::*;

struct Lab {
    ns: Netns,
    dirs: Dirs,
}

impl Lab {
    /// A namespace with these administrator's mode files.
    fn new(modes: &[(&str, &str)]) -> Lab {
        let lab = Lab { ns: Netns::new("doc"), dirs: Dirs::new() };
        for (mode, text) in modes {
            std::fs::write(lab.dirs.modes.join(format!("{mode}.toml")), text).unwrap();
        }
        lab
    }

    fn doctor(&self) -> (i32, Vec<String>) {
        let out: Output = vifnet(&self.ns, &self.dirs, &[], &["doctor"]);
        let lines = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
        (out.status.code().unwrap_or(-1), lines)
    }

    /// Runs the fix of every error line, as a shell would split it.
    fn apply_fixes(&self, lines: &[String]) {
        for l in lines.iter().filter(|l| l.starts_with("error: ")) {
            let fix = l.split_once("; fix: ").expect("a fix").1;
            let argv = shell_words(fix);
            self.ns.ok(&argv.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}

/// A shell's word splitting with single and double quotes (all a fix line uses).
fn shell_words(s: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut started) = (Vec::new(), String::new(), None, false);
    for c in s.chars() {
        match (quote, c) {
            (None, '\'' | '"') => (quote, started) = (Some(c), true),
            (Some(q), c) if c == q => quote = None,
            (None, ' ') => {
                if started {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            (_, c) => (word, started) = (word + &c.to_string(), true),
        }
    }
    if started {
        words.push(word);
    }
    words
}

const ROUTE_BRIDGE_GATEWAY: &str = "gateway = \"192.0.2.1/29\"\ngateway_kind = \"bridge\"\n";
const DOCKER: &str = "add table ip filter; add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }";

#[test]
fn healthy_namespace_exits_0_with_info_lines_only() {
    if !root_or_skip() {
        return;
    }
    let lab = Lab::new(&[("route", ROUTE_BRIDGE_GATEWAY)]);
    let (code, lines) = lab.doctor();
    assert_eq!(code, 0, "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("info: ")), "{lines:?}");
    let out = vifnet(&lab.ns, &lab.dirs, &[], &["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert!(v.as_array().unwrap().iter().all(|f| f["severity"] == "info" && f["fix"].is_string()), "{v}");
}

#[test]
fn docker_forward_drop_is_found_and_the_printed_nft_fix_makes_the_host_healthy() {
    if !root_or_skip() {
        return;
    }
    let lab = Lab::new(&[("route", ROUTE_BRIDGE_GATEWAY)]);
    lab.ns.ok(&["nft", DOCKER]);
    let (code, lines) = lab.doctor();
    assert_eq!(code, 2, "{lines:?}");
    let expected = "error: nft chain ip filter FORWARD (hook forward, policy drop) drops routed guests' traffic; \
        fix: nft 'insert rule ip filter FORWARD iifname \"vif*\" accept; insert rule ip filter FORWARD oifname \"vif*\" accept'";
    assert!(lines.iter().any(|l| l == expected), "{lines:?}");
    lab.apply_fixes(&lines);
    let (code, after) = lab.doctor();
    assert_eq!(code, 0, "after the fix: {after:?}");
    let chain = lab.ns.ok(&["nft", "list", "chain", "ip", "filter", "FORWARD"]);
    assert!(chain.contains("iifname \"vif*\" accept") && chain.contains("policy drop"), "{chain}");
}

#[test]
fn with_br_netfilter_docker_breaks_bridged_guests_and_the_printed_sysctl_fixes_it() {
    if !root_or_skip() {
        return;
    }
    // No mode file at all: bridge mode, xl's default.
    let lab = Lab::new(&[]);
    if !lab.ns.succeeds(&["test", "-e", "/proc/sys/net/bridge/bridge-nf-call-iptables"]) {
        eprintln!("skipped: no br_netfilter on this kernel");
        return;
    }
    lab.ns.ok(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
    lab.ns.ok(&["nft", DOCKER]);
    let (code, lines) = lab.doctor();
    assert_eq!(code, 2, "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("error: br_netfilter") && l.contains("ip filter FORWARD") && l.contains("fix: sysctl -w net.bridge.bridge-nf-call-iptables=0")), "{lines:?}");
    lab.apply_fixes(&lines);
    assert_eq!(lab.ns.ok(&["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"]).trim(), "0");
    let (code, after) = lab.doctor();
    assert_eq!(code, 0, "after the fix: {after:?}");
}

#[test]
fn ufw_like_input_drop_is_found_when_nat_mode_is_configured_and_the_fix_opens_dhcp_and_dns() {
    if !root_or_skip() {
        return;
    }
    let ufw = "add table inet ufwlike; add chain inet ufwlike input { type filter hook input priority 0; policy drop; }";
    // Without nat mode, dom0's input chain is none of our guests' business.
    let plain = Lab::new(&[("route", ROUTE_BRIDGE_GATEWAY)]);
    plain.ns.ok(&["nft", ufw]);
    assert_eq!(plain.doctor().0, 0, "{:?}", plain.doctor().1);

    let hosts = std::env::temp_dir().join(unique("hosts"));
    let lab = Lab::new(&[("nat", &format!("hosts = \"{}\"\n", hosts.display()))]);
    lab.ns.ok(&["nft", ufw]);
    let (code, lines) = lab.doctor();
    assert_eq!(code, 2, "{lines:?}");
    let expected = "error: nft chain inet ufwlike input (hook input, policy drop) drops NATed guests' DHCP (udp 67) and DNS (53) to dom0's dnsmasq; \
        fix: nft 'insert rule inet ufwlike input iifname \"vif*\" udp dport { 53, 67 } accept; insert rule inet ufwlike input iifname \"vif*\" tcp dport 53 accept'";
    assert!(lines.iter().any(|l| l == expected), "{lines:?}");
    lab.apply_fixes(&lines);
    let (code, after) = lab.doctor();
    assert_eq!(code, 0, "after the fix: {after:?}");
}

#[test]
fn a_dummy_gateway_is_flagged_exactly_when_the_kernel_cannot_make_a_dummy_link() {
    if !root_or_skip() {
        return;
    }
    // Asking the kernel would load a dummy module, and with it make dummy0 on the host:
    // only ask where it is loaded already or where there are no modules to load.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    if !std::path::Path::new("/sys/module/dummy").exists() && std::path::Path::new("/lib/modules").join(release.trim()).exists() {
        eprintln!("skipped: a dummy module could be loaded here");
        return;
    }
    let lab = Lab::new(&[("route", "gateway = \"192.0.2.1/29\"\ngateway_kind = \"dummy\"\n")]);
    let (code, lines) = lab.doctor();
    let flagged = lines.iter().any(|l| l.starts_with("error: route mode's gateway is on a dummy link") && l.contains("gateway_kind = \"bridge\""));
    // What the kernel says, not what doctor guessed: can a dummy link be made here?
    let can = lab.ns.succeeds(&["ip", "link", "add", "dtest0", "type", "dummy"]);
    assert_eq!(flagged, !can, "dummy driver {can}: {lines:?}");
    assert_eq!(code, if can { 0 } else { 2 }, "{lines:?}");
}

#[test]
fn a_started_route_mode_needs_forwarding_and_the_printed_sysctl_puts_it_back() {
    if !root_or_skip() {
        return;
    }
    let lab = Lab::new(&[("route", "netdev = \"up0\"\ngateway_kind = \"bridge\"\n")]);
    lab.ns.ok(&["ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
    lab.ns.ok(&["ip", "addr", "add", "198.51.100.2/24", "dev", "up0"]);
    lab.ns.ok(&["ip", "link", "set", "up0", "up"]);
    // Not started: a fresh namespace's ip_forward = 0 is nobody's problem yet.
    assert_eq!(lab.doctor().0, 0, "{:?}", lab.doctor().1);
    vifnet_ok(&lab.ns, &lab.dirs, &[], &["network", "route", "start"]);
    assert_eq!(lab.doctor().0, 0, "{:?}", lab.doctor().1);
    lab.ns.ok(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    let (code, lines) = lab.doctor();
    assert_eq!(code, 2, "{lines:?}");
    assert!(lines.contains(&"error: sysctl net/ipv4/ip_forward is 0, and the started mode needs 1; fix: sysctl -w net.ipv4.ip_forward=1".to_string()), "{lines:?}");
    lab.apply_fixes(&lines);
    assert_eq!(lab.ns.ok(&["sysctl", "-n", "net.ipv4.ip_forward"]).trim(), "1");
    assert_eq!(lab.doctor().0, 0);
    vifnet_ok(&lab.ns, &lab.dirs, &[], &["network", "route", "stop"]);
}

/// A routed guest's IPv4 gateway is answered by ARP for a local address, with no address
/// on its vif: arp_ignore set by the administrator breaks it, and doctor says so.
#[test]
fn a_routed_guests_gateway_needs_arp_ignore_0_and_doctor_says_so() {
    if !root_or_skip() {
        return;
    }
    let lab = Lab::new(&[("route", "netdev = \"up0\"\ngateway = \"203.0.113.193/29 2001:db8:42::1/64\"\ngateway_kind = \"bridge\"\n")]);
    lab.ns.ok(&["ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
    lab.ns.ok(&["ip", "link", "set", "up0", "up"]);
    lab.ns.ok(&["ip", "link", "add", "vif1.0", "type", "veth", "peer", "name", "g1"]);
    vifnet_ok(&lab.ns, &lab.dirs, &[], &["vif", "route", "online", "vif=vif1.0", "ip=203.0.113.194 2001:db8:42::194"]);
    assert_eq!(lab.doctor().0, 0, "{:?}", lab.doctor().1);
    lab.ns.ok(&["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1"]);
    let (code, lines) = lab.doctor();
    assert_eq!(code, 2, "{lines:?}");
    assert!(lines.contains(&"error: sysctl net/ipv4/conf/all/arp_ignore is 1, and the started mode needs 0; fix: sysctl -w net.ipv4.conf.all.arp_ignore=0".to_string()), "{lines:?}");
    lab.apply_fixes(&lines);
    assert_eq!(lab.doctor().0, 0);
    vifnet_ok(&lab.ns, &lab.dirs, &[], &["vif", "route", "offline", "vif=vif1.0"]);
    vifnet_ok(&lab.ns, &lab.dirs, &[], &["network", "route", "stop"]);
}

#[test]
fn shell_words_split_like_a_shell() {
    assert_eq!(shell_words("nft 'a \"vif*\" b; c' x"), ["nft", "a \"vif*\" b; c", "x"]);
    assert_eq!(shell_words("sysctl -w a=0  b=0"), ["sysctl", "-w", "a=0", "b=0"]);
}
