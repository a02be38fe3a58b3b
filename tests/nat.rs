//! Nat mode on this machine's kernel with the real dnsmasq (started by vifnet) and a real
//! DHCP client (udhcpc) in the guests' namespaces: leases, names, masquerade as the
//! upstream host sees it, restore under a new domid, concurrency, whole-field edits.

mod common;

use std::path::PathBuf;

use common::*;

const UPSTREAM: &str = "198.51.100.1";
const UPLINK: &str = "198.51.100.2";
const DOMAIN: &str = "xen.internal";

/// dom0 with its uplink to an upstream host, and guests on veths named like netback's.
/// dom0's /etc/ethers is its own (`ip netns exec` binds /etc/netns/<ns>/ethers over it),
/// so vifnet and the dnsmasq it starts never see the host's.
struct NatLab {
    upstream: Netns,
    dom0: Netns,
    dirs: Dirs,
    etc: Vec<PathBuf>,
}

impl NatLab {
    fn new() -> NatLab {
        host_etc(true);
        let upstream = Netns::new("nup");
        let dom0 = Netns::new("ndom0");
        let dirs = Dirs::new();
        veth(&dom0, "up0", &upstream, "eth0");
        upstream.ok(&["ip", "addr", "add", &format!("{UPSTREAM}/24"), "dev", "eth0"]);
        upstream.ok(&["ip", "link", "set", "eth0", "up"]);
        dom0.ok(&["ip", "addr", "add", &format!("{UPLINK}/24"), "dev", "up0"]);
        dom0.ok(&["ip", "link", "set", "up0", "up"]);
        let etc = PathBuf::from(format!("/etc/netns/{}", dom0.name));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("ethers"), "# the administrator's\n02:00:00:00:00:99 192.0.2.99\n").unwrap();
        let hosts = dirs.state.parent().unwrap().join("hosts");
        std::fs::write(dirs.modes.join("nat.toml"), format!("netdev = \"up0\"\nhosts = \"{}\"\n", hosts.display())).unwrap();
        upstream.wait_up("eth0");
        NatLab { upstream, dom0, dirs, etc: vec![etc] }
    }

    fn vifnet(&self, args: &[&str]) -> std::process::Output {
        vifnet(&self.dom0, &self.dirs, &[], args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.vifnet(args);
        assert!(out.status.success(), "vifnet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn hosts(&self) -> String {
        read(&self.dirs.state.parent().unwrap().join("hosts"))
    }

    fn ethers(&self) -> String {
        read(&self.etc[0].join("ethers"))
    }

    /// A guest namespace behind vif<domid>.<devid>, with this MAC, not yet online.
    fn guest(&mut self, vif: &str, mac: &str) -> Netns {
        let g = Netns::new("ng");
        veth(&self.dom0, vif, &g, "eth0");
        g.ok(&["ip", "link", "set", "eth0", "address", mac, "up"]);
        let etc = PathBuf::from(format!("/etc/netns/{}", g.name));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("resolv.conf"), "").unwrap();
        self.etc.push(etc);
        g
    }

    /// Moves a guest to a new vif, as a restore or a migration back gives it a new domid.
    fn replug(&self, g: &Netns, old: &str, new: &str, mac: &str) {
        self.dom0.ok(&["ip", "link", "del", old]);
        veth(&self.dom0, new, g, "eth0");
        g.ok(&["ip", "link", "set", "eth0", "address", mac, "up"]);
    }

    fn online(&self, vif: &str, name: &str, mac: &str) {
        self.ok(&["vif", "nat", "online", "type_if=vif", &format!("vif={vif}"), &format!("name={name}"), &format!("mac={mac}")]);
    }

    fn offline(&self, vif: &str) {
        self.ok(&["vif", "nat", "offline", "type_if=vif", &format!("vif={vif}")]);
    }

    fn dnsmasq_pid(&self) -> Option<String> {
        let pid = read(&self.dirs.state.join("dnsmasq.pid")).trim().to_string();
        (!pid.is_empty() && std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        // Only our own dnsmasq, by its pid, if a failed test left it running.
        if let Some(pid) = self.dnsmasq_pid() {
            let _ = std::process::Command::new("kill").arg(&pid).status();
        }
        for etc in &self.etc {
            let _ = std::fs::remove_dir_all(etc);
        }
        host_etc(false);
    }
}

/// Labs alive in this process, and what the first made: /etc/ethers, /etc/netns.
static HOST_ETC: std::sync::Mutex<(usize, bool, bool)> = std::sync::Mutex::new((0, false, false));

/// A lab's binds need /etc/netns and a file to bind over: an empty /etc/ethers where the
/// host has none. The first lab (`taking`) makes what is missing, the last one removes it
/// if it is still empty, so that the tests leave the host as they found it while other
/// labs still bind over it.
fn host_etc(taking: bool) {
    let mut users = HOST_ETC.lock().unwrap_or_else(|e| e.into_inner());
    let (ethers, netns) = (std::path::Path::new("/etc/ethers"), std::path::Path::new("/etc/netns"));
    if taking {
        if users.0 == 0 {
            users.1 = !ethers.exists() && std::fs::OpenOptions::new().create(true).append(true).open(ethers).is_ok();
            users.2 = !netns.exists() && std::fs::create_dir(netns).is_ok();
        }
        users.0 += 1;
    } else {
        users.0 -= 1;
        if users.0 == 0 {
            if std::mem::take(&mut users.1) && ethers.metadata().is_ok_and(|m| m.len() == 0) {
                let _ = std::fs::remove_file(ethers);
            }
            if std::mem::take(&mut users.2) {
                // Fails, as it should, while anything is left in it.
                let _ = std::fs::remove_dir(netns);
            }
        }
    }
}

/// The DHCP client's view: "address router" of the lease it got, or None.
fn lease(g: &Netns, dirs: &Dirs) -> Option<(String, String)> {
    let script = dirs.state.parent().unwrap().join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ncase $1 in bound|renew) ip addr flush dev $interface; ip addr add $ip/${mask:-8} dev $interface; \
         ip route replace default via $router; echo \"nameserver $dns\" > /etc/resolv.conf; echo \"LEASE $ip $router\";; esac\n",
    )
    .unwrap();
    run_ok(std::process::Command::new("chmod").args(["+x", script.to_str().unwrap()]));
    let out = g.run(&["udhcpc", "-i", "eth0", "-n", "-q", "-t", "6", "-T", "1", "-s", script.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| l.starts_with("LEASE "))?;
    let mut f = line.split_whitespace().skip(1);
    Some((f.next()?.to_string(), f.next()?.to_string()))
}

/// What the guest's resolver answers for a name or an address (getent hosts).
fn resolve(g: &Netns, what: &str) -> String {
    String::from_utf8_lossy(&g.run(&["getent", "hosts", what]).stdout).split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn a_guest_leases_its_scheme_address_resolves_its_name_and_is_masqueraded() {
    if !root_or_skip() {
        return;
    }
    let mut lab = NatLab::new();
    let before = (lab.dom0.ok(&["nft", "list", "ruleset"]), lab.ethers());
    let mac = "00:16:3e:00:01:01";
    let g = lab.guest("vif3.0", mac);
    lab.online("vif3.0", "web", mac);
    assert!(lab.dnsmasq_pid().is_some(), "the first online started dnsmasq");
    assert_eq!(lab.hosts(), format!("10.0.0.1 web web.{DOMAIN}\n"));
    assert!(lab.ethers().ends_with(&format!("{mac} 10.0.0.1\n")) && lab.ethers().starts_with("# the administrator's\n"), "{}", lab.ethers());
    assert_eq!(lease(&g, &lab.dirs), Some(("10.0.0.1".into(), "10.0.0.129".into())), "the scheme's address, the host side as router");
    assert_eq!(resolve(&g, &format!("web.{DOMAIN}")), format!("10.0.0.1 web.{DOMAIN}"));
    assert!(resolve(&g, "10.0.0.1").starts_with("10.0.0.1 web"), "and the reverse: {}", resolve(&g, "10.0.0.1"));
    // The upstream host has no route to 10/8: a reply comes back only if the request
    // left with the uplink's address, and its own counter says so.
    lab.upstream.ok(&["nft", &format!("add table inet seen; add chain inet seen c {{ type filter hook input priority 0; }}; add rule inet seen c ip saddr {UPLINK} icmp type echo-request counter; add rule inet seen c ip saddr 10.0.0.0/8 counter")]);
    assert!(g.pings(UPSTREAM), "the guest reaches the upstream host");
    let seen = lab.upstream.ok(&["nft", "list", "chain", "inet", "seen", "c"]);
    let counts: Vec<&str> = seen.lines().filter(|l| l.contains("counter")).collect();
    assert!(!counts[0].contains("packets 0 ") && counts[1].contains("packets 0 "), "masqueraded, never the private source: {seen}");
    // A source that is not the guest's own is dropped in dom0, and counted there.
    g.ok(&["ip", "addr", "add", "10.0.0.77/32", "dev", "eth0"]);
    let spoofed = g.run(&["ping", "-c", "2", "-i", "0.2", "-w", "1", "-q", "-I", "10.0.0.77", UPSTREAM]);
    assert!(!spoofed.status.success(), "a forged source got a reply");
    let guard = lab.dom0.ok(&["nft", "list", "chain", "inet", "vifnet", "guard"]);
    assert!(!guard.lines().find(|l| l.contains("ip saddr != @vif_ip4")).unwrap().contains("packets 0 "), "{guard}");
    let ip_forward = || lab.dom0.ok(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(ip_forward().trim(), "1");

    lab.offline("vif3.0");
    assert_eq!(lab.hosts(), format!("10.0.0.1 web web.{DOMAIN}\n"), "the name and address stay reserved");
    assert_eq!(lab.ethers(), before.1, "the ethers line went, the administrator's stayed");
    lab.ok(&["network", "nat", "stop"]);
    assert_eq!(lab.dnsmasq_pid(), None, "dnsmasq stopped");
    assert_eq!(lab.dom0.ok(&["nft", "list", "ruleset"]), before.0);
    assert_eq!(ip_forward().trim(), "0", "forwarding as it was");
    assert_eq!(lab.dirs.journal_count(), 0);
}

#[test]
fn a_restored_guest_under_a_new_domid_keeps_its_address_and_name() {
    if !root_or_skip() {
        return;
    }
    let mut lab = NatLab::new();
    let (mac_a, mac_b) = ("00:16:3e:00:02:01", "00:16:3e:00:02:02");
    let a = lab.guest("vif4.0", mac_a);
    let b = lab.guest("vif5.0", mac_b);
    lab.online("vif4.0", "db", mac_a);
    lab.online("vif5.0", "cache", mac_b);
    assert_eq!(lease(&a, &lab.dirs).map(|l| l.0).as_deref(), Some("10.0.0.1"));
    assert_eq!(lease(&b, &lab.dirs).map(|l| l.0).as_deref(), Some("10.0.1.1"));
    // db is saved and restored: offline, then online as domain 9.
    lab.offline("vif4.0");
    lab.replug(&a, "vif4.0", "vif9.0", mac_a);
    lab.online("vif9.0", "db", mac_a);
    assert_eq!(lease(&a, &lab.dirs), Some(("10.0.0.1".into(), "10.0.0.129".into())), "the same lease after the restore");
    assert_eq!(resolve(&a, &format!("db.{DOMAIN}")), format!("10.0.0.1 db.{DOMAIN}"));
    assert!(a.pings(UPSTREAM));
    assert_eq!(lab.hosts(), format!("10.0.0.1 db db.{DOMAIN}\n10.0.1.1 cache cache.{DOMAIN}\n"));
    lab.offline("vif9.0");
    lab.offline("vif5.0");
    lab.ok(&["network", "nat", "stop"]);
}

#[test]
fn fifty_concurrent_onlines_leave_fifty_exact_lines_and_dom1_is_not_dom10() {
    if !root_or_skip() {
        return;
    }
    let lab = NatLab::new();
    let peers = Netns::new("npeers");
    let n = 50;
    let batch: String = (1..=n).map(|i| format!("link add vif{i}.0 type veth peer name e{i} netns {}\n", peers.name)).collect();
    let mut c = lab.dom0.cmd(&["ip", "-batch", "-"]);
    c.stdin(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), batch.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let mac = |i: usize| format!("00:16:3e:00:10:{i:02x}");
    std::thread::scope(|s| {
        let lab = &lab;
        let calls: Vec<_> = (1..=n)
            .map(|i| s.spawn(move || lab.vifnet(&["vif", "nat", "online", &format!("vif=vif{i}.0"), &format!("name=dom{i}"), &format!("mac={}", mac(i))])))
            .collect();
        for c in calls {
            let out = c.join().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    });
    let hosts = lab.hosts();
    let ethers = lab.ethers();
    assert_eq!(hosts.lines().count(), n);
    assert_eq!(ethers.lines().count(), n + 2, "ours and the administrator's two");
    let addrs: std::collections::HashSet<&str> = hosts.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(addrs.len(), n, "distinct addresses");
    for i in 1..=n {
        let line = hosts.lines().find(|l| l.split_whitespace().nth(1) == Some(&format!("dom{i}"))).unwrap_or_else(|| panic!("dom{i} in {hosts}"));
        let ip = line.split_whitespace().next().unwrap();
        assert_eq!(line, format!("{ip} dom{i} dom{i}.{DOMAIN}"));
        assert!(ethers.contains(&format!("{} {ip}\n", mac(i))), "dom{i}");
    }
    // dom1 goes and comes back: dom10's lines are untouched, whole fields only.
    let dom10 = |t: &str| t.lines().filter(|l| l.contains("dom10 ") || l.contains(&mac(10))).map(String::from).collect::<Vec<_>>();
    let (h10, e10) = (dom10(&hosts), dom10(&ethers));
    lab.ok(&["vif", "nat", "offline", "vif=vif1.0"]);
    lab.ok(&["vif", "nat", "online", "vif=vif1.0", "name=dom1", &format!("mac={}", mac(1))]);
    assert_eq!((dom10(&lab.hosts()), dom10(&lab.ethers())), (h10, e10));
    assert_eq!(lab.hosts(), hosts, "dom1 got its number back");
    std::thread::scope(|s| {
        let lab = &lab;
        for i in 1..=n {
            s.spawn(move || lab.ok(&["vif", "nat", "offline", &format!("vif=vif{i}.0")]));
        }
    });
    assert_eq!(lab.ethers().lines().count(), 2);
    lab.ok(&["network", "nat", "stop"]);
}

#[test]
fn start_three_times_is_one_masquerade() {
    if !root_or_skip() {
        return;
    }
    let lab = NatLab::new();
    for _ in 0..3 {
        lab.ok(&["network", "nat", "start"]);
    }
    let set = lab.dom0.ok(&["nft", "list", "set", "inet", "vifnet", "masq_out"]);
    assert_eq!(set.matches("\"up0\" . 10.0.0.0/8").count(), 1, "{set}");
    let chain = lab.dom0.ok(&["nft", "list", "chain", "inet", "vifnet", "postrouting"]);
    assert_eq!(chain.matches("masquerade").count(), 1, "{chain}");
    assert!(lab.dnsmasq_pid().is_some());
    lab.ok(&["network", "nat", "stop"]);
    assert_eq!(lab.dnsmasq_pid(), None);
    assert_eq!(lab.dom0.ok(&["nft", "list", "ruleset"]), "");
}

#[test]
fn an_explicit_address_inside_the_prefix_is_honoured() {
    if !root_or_skip() {
        return;
    }
    let mut lab = NatLab::new();
    let mac = "00:16:3e:00:03:01";
    let g = lab.guest("vif6.0", mac);
    lab.ok(&["vif", "nat", "online", "vif=vif6.0", "name=mail", &format!("mac={mac}"), "ip=10.0.5.3"]);
    assert_eq!(lease(&g, &lab.dirs), Some(("10.0.5.3".into(), "10.0.5.131".into())));
    assert_eq!(lab.hosts(), format!("10.0.5.3 mail-3 mail-3.{DOMAIN}\n"), "interface 3 of machine 5");
    lab.offline("vif6.0");
    lab.ok(&["network", "nat", "stop"]);
}

/// The hosts file numbers 65,000 machines: an online still finds the lowest free number
/// and a machine's own line, and adds its line at the end: the file is not written again
/// (same inode, every earlier byte as it was). An edit by hand is seen (the index is built
/// again), and stop removes the index, not the file.
#[test]
fn at_65000_numbered_machines_an_online_appends_its_line_and_an_edit_by_hand_is_seen() {
    if !root_or_skip() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let mut lab = NatLab::new();
    let path = lab.dirs.state.parent().unwrap().join("hosts");
    // Machines 0..65000 but 3; machine 7 is `old`'s.
    let mut text = String::from("# numbered by an earlier life of this host\n");
    for m in (0u32..65000).filter(|m| *m != 3) {
        let name = if m == 7 { "old".to_string() } else { format!("m{m}") };
        text.push_str(&format!("10.{}.{}.1 {name} {name}.{DOMAIN}\n", m >> 8, m & 0xff));
    }
    std::fs::write(&path, &text).unwrap();
    let ino = std::fs::metadata(&path).unwrap().ino();
    let (mac1, mac2) = ("00:16:3e:00:05:01", "00:16:3e:00:05:02");
    let _g1 = lab.guest("vif8.0", mac1);
    let _g2 = lab.guest("vif9.0", mac2);
    lab.online("vif8.0", "fresh", mac1);
    lab.online("vif9.0", "old", mac2);
    let after = lab.hosts();
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino, "the file was written again");
    assert_eq!(&after[..text.len()], text, "an earlier line changed");
    assert_eq!(&after[text.len()..], format!("10.0.3.1 fresh fresh.{DOMAIN}\n"), "the lowest free number, at the end; old keeps machine 7");
    assert!(lab.ethers().contains(&format!("{mac2} 10.0.7.1")), "{}", lab.ethers());
    lab.offline("vif9.0");
    // By hand: old's line goes. Its next online takes the lowest free number, 65000.
    let edited: String = after.lines().filter(|l| !l.contains(" old ")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, &edited).unwrap();
    lab.online("vif9.0", "old", mac2);
    assert!(lab.hosts().ends_with(&format!("10.0.7.1 old old.{DOMAIN}\n")), "the freed number 7 is the lowest: {}", &lab.hosts()[lab.hosts().len() - 80..]);
    lab.offline("vif9.0");
    lab.offline("vif8.0");
    lab.ok(&["network", "nat", "stop"]);
    assert!(!lab.dirs.state.join("nat-hosts.index").exists(), "stop leaves the index behind");
    assert_eq!(lab.hosts().lines().count(), 65001, "stop keeps the file");
}

/// The administrator reloads the firewall (`nft flush ruleset`, as nftables.service does)
/// while a guest is online: offline and stop find our sets gone, which is what they were
/// to do, and succeed; the next online builds the table again.
#[test]
fn offline_and_stop_after_a_ruleset_flush_succeed_and_leave_nothing() {
    if !root_or_skip() {
        return;
    }
    let mut lab = NatLab::new();
    let mac = "00:16:3e:00:04:01";
    let _g = lab.guest("vif7.0", mac);
    lab.online("vif7.0", "ci", mac);
    lab.dom0.ok(&["nft", "flush", "ruleset"]);
    lab.offline("vif7.0");
    lab.online("vif7.0", "ci", mac);
    let guarded = lab.dom0.ok(&["nft", "list", "set", "inet", "vifnet", "guarded"]);
    assert!(guarded.contains("\"vif7.0\""), "online puts the table back: {guarded}");
    lab.ok(&["network", "nat", "start"]);
    let set = lab.dom0.ok(&["nft", "list", "set", "inet", "vifnet", "masq_out"]);
    assert_eq!(set.matches("\"up0\" . 10.0.0.0/8").count(), 1, "start puts the masquerade back: {set}");
    lab.dom0.ok(&["nft", "delete", "table", "inet", "vifnet"]);
    lab.offline("vif7.0");
    lab.ok(&["network", "nat", "stop"]);
    assert_eq!(lab.dnsmasq_pid(), None);
    assert_eq!(lab.dom0.ok(&["nft", "list", "ruleset"]), "");
}

/// A second online changes nothing at all: links, addresses, routes, the ruleset, the
/// hosts and ethers files and the journals, byte for byte, and dnsmasq is not signalled.
/// A second vif given the same machine name (and so the same address) is refused, and
/// the first one's ethers line stays.
#[test]
fn a_second_online_changes_nothing_and_a_machine_name_online_elsewhere_is_refused() {
    if !root_or_skip() {
        return;
    }
    let mut lab = NatLab::new();
    let _g1 = lab.guest("vif1.0", "00:16:3e:00:04:01");
    let _g2 = lab.guest("vif2.0", "00:16:3e:00:04:02");
    lab.online("vif1.0", "web", "00:16:3e:00:04:01");
    let dump = || (host_dump(&lab.dom0), lab.hosts(), lab.ethers(), state_bytes(&lab.dirs));
    let once = dump();
    lab.online("vif1.0", "web", "00:16:3e:00:04:01");
    assert_eq!(dump(), once);
    let out = lab.vifnet(&["vif", "nat", "online", "vif=vif2.0", "name=web", "mac=00:16:3e:00:04:02"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("name web: its address 10.0.0.1 is online already for MAC 00:16:3e:00:04:01"), "{err}");
    assert_eq!(dump(), once, "nothing changed");
    lab.offline("vif1.0");
    lab.ok(&["network", "nat", "stop"]);
}

/// Lines of the hosts and ethers files lost to an edit, an ethers line of the prefix that no
/// guest accounts for, and our dnsmasq killed: `check` names each, `--repair` writes the
/// lines back, removes the stray one (the administrator's lines kept) and starts dnsmasq
/// again, and the guest leases its address.
#[test]
fn check_finds_lost_lines_and_a_dead_dnsmasq_and_repair_mends_them() {
    if !root_or_skip() {
        return;
    }
    let mut lab = NatLab::new();
    let g = lab.guest("vif3.0", "00:16:3e:00:05:01");
    lab.online("vif3.0", "db", "00:16:3e:00:05:01");
    let (hosts, ethers) = (lab.hosts(), lab.ethers());
    let pid = lab.dnsmasq_pid().expect("our dnsmasq runs");
    std::process::Command::new("kill").arg(&pid).status().unwrap();
    while lab.dnsmasq_pid().is_some_and(|p| p == pid) && std::path::Path::new(&format!("/proc/{pid}/comm")).exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::fs::write(lab.dirs.state.parent().unwrap().join("hosts"), "").unwrap();
    // The guest's line lost, and one left for a guest no journal knows.
    std::fs::write(lab.etc[0].join("ethers"), "# the administrator's\n02:00:00:00:00:99 192.0.2.99\n00:16:3e:00:05:99 10.0.7.1\n").unwrap();
    let out = lab.vifnet(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.lines().any(|l| l.starts_with("nat mode: dnsmasq of ") && l.ends_with(": not running")), "{text}");
    assert!(text.contains("vif3.0: line \"10.0.0.1 db db.xen.internal\" in "), "{text}");
    assert!(text.contains("vif3.0: line \"00:16:3e:00:05:01 10.0.0.1\" in /etc/ethers: missing or different"), "{text}");
    assert!(text.contains("10.0.7.1: line \"00:16:3e:00:05:99 10.0.7.1\" in /etc/ethers: not in any journal"), "{text}");
    lab.ok(&["check", "--repair"]);
    assert_eq!(String::from_utf8_lossy(&lab.vifnet(&["check"]).stdout), "all as recorded\n");
    assert_eq!((lab.hosts(), lab.ethers()), (hosts, ethers), "the lines are back, the administrator's kept");
    assert!(lab.dnsmasq_pid().is_some());
    assert_eq!(lease(&g, &lab.dirs), Some(("10.0.0.1".into(), "10.0.0.129".into())));
    lab.offline("vif3.0");
    lab.ok(&["network", "nat", "stop"]);
}
