//! Route mode's lab: an "internet" host, dom0 with its uplink `up0`, and guests on veth
//! pairs named like netback's vifs, using addresses of a routed documentation /29 and a
//! /64. Shared by the host tests (tests/route.rs, `gateway_kind = "bridge"`: this
//! machine's kernel has no dummy driver) and the kernel lane (tests/kernel.rs, `dummy`).

use std::process::Output;

use super::*;

pub const INET_IP: &str = "198.51.100.1";
pub const INET_IP6: &str = "2001:db8:1::1";
pub const UPLINK_IP: &str = "198.51.100.2";
pub const UPLINK_IP6: &str = "2001:db8:1::2";
/// The routed blocks and the host's gateway address in each.
pub const BLOCK: &str = "203.0.113.192/29";
pub const BLOCK6: &str = "2001:db8:42::/64";
pub const GATEWAY: &str = "203.0.113.193/29 2001:db8:42::1/64";

/// Guest i (1 to 5) has .193 + i of the /29 and ::19x of the /64.
pub fn guest_ip(i: usize) -> String {
    format!("203.0.113.{}", 193 + i)
}
pub fn guest_ip6(i: usize) -> String {
    format!("2001:db8:42::{}", 193 + i)
}

pub struct RouteLab {
    pub inet: Netns,
    pub dom0: Netns,
    pub guests: Vec<Netns>,
    pub dirs: Dirs,
}

/// What route mode must leave as it found it, as text to compare.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub routes: String,
    pub proxies: String,
    pub addresses: String,
    pub sysctls: String,
    pub ruleset: String,
}

impl Snapshot {
    /// The same, with each `ip -j` list in a fixed order: an address put back comes after
    /// the others in the kernel's local table, in the same place in every other respect.
    pub fn sorted(mut self) -> Snapshot {
        let sort = |text: &str| -> String {
            text.lines()
                .map(|l| {
                    let mut v: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(l).unwrap().iter().map(|x| x.to_string()).collect();
                    v.sort();
                    v.join(",")
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        self.routes = sort(&self.routes);
        self.addresses = sort(&self.addresses);
        self
    }
}

impl RouteLab {
    /// `n` guests, not yet online, and the mode file: `kind` holds the gateway; with
    /// `uplink_proxy` upstream treats the blocks as on-link, else it routes them to dom0.
    pub fn new(n: usize, kind: &str, uplink_proxy: bool) -> RouteLab {
        let inet = Netns::new("inet");
        let dom0 = Netns::new("rdom0");
        let dirs = Dirs::new();
        for ns in [&inet, &dom0] {
            ns.no_dad();
        }
        veth(&dom0, "up0", &inet, "eth0");
        inet.ok(&["ip", "addr", "add", &format!("{INET_IP}/24"), "dev", "eth0"]);
        inet.ok(&["ip", "addr", "add", &format!("{INET_IP6}/64"), "dev", "eth0"]);
        inet.ok(&["ip", "link", "set", "eth0", "up"]);
        dom0.ok(&["ip", "addr", "add", &format!("{UPLINK_IP}/24"), "dev", "up0"]);
        dom0.ok(&["ip", "addr", "add", &format!("{UPLINK_IP6}/64"), "dev", "up0"]);
        dom0.ok(&["ip", "link", "set", "up0", "up"]);
        dom0.ok(&["ip", "route", "add", "default", "via", INET_IP]);
        dom0.ok(&["ip", "-6", "route", "add", "default", "via", INET_IP6]);
        if uplink_proxy {
            // On-link: the internet host asks for each guest address on the wire. It is a
            // router that learns from unsolicited announcements, as upstream routers do.
            inet.ok(&["ip", "route", "add", BLOCK, "dev", "eth0"]);
            inet.ok(&["ip", "-6", "route", "add", BLOCK6, "dev", "eth0"]);
            inet.ok(&["sysctl", "-qw", "net.ipv4.conf.eth0.arp_accept=1"]);
            inet.ok(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
            inet.ok(&["sysctl", "-qw", "net.ipv6.conf.eth0.accept_untracked_na=1"]);
        } else {
            inet.ok(&["ip", "route", "add", BLOCK, "via", UPLINK_IP]);
            inet.ok(&["ip", "-6", "route", "add", BLOCK6, "via", UPLINK_IP6]);
        }
        std::fs::write(
            dirs.modes.join("route.toml"),
            format!("netdev = \"up0\"\ngateway = \"{GATEWAY}\"\ngateway_kind = \"{kind}\"\nuplink_proxy = {uplink_proxy}\n"),
        )
        .unwrap();
        inet.wait_up("eth0");
        let guests = (1..=n)
            .map(|i| {
                let g = Netns::new(&format!("r{i}"));
                g.no_dad();
                veth(&dom0, &format!("vif{i}.0"), &g, "eth0");
                g.ok(&["ip", "addr", "add", &format!("{}/29", guest_ip(i)), "dev", "eth0"]);
                g.ok(&["ip", "addr", "add", &format!("{}/64", guest_ip6(i)), "dev", "eth0"]);
                g.ok(&["ip", "link", "set", "eth0", "up"]);
                g.ok(&["ip", "route", "add", "default", "via", "203.0.113.193"]);
                g.ok(&["ip", "-6", "route", "add", "default", "via", "2001:db8:42::1"]);
                g
            })
            .collect();
        RouteLab { inet, dom0, guests, dirs }
    }

    pub fn guest(&self, i: usize) -> &Netns {
        &self.guests[i - 1]
    }

    pub fn vifnet(&self, args: &[&str]) -> Output {
        vifnet(&self.dom0, &self.dirs, &[], args)
    }

    pub fn ok(&self, args: &[&str]) {
        let out = self.vifnet(args);
        assert!(out.status.success(), "vifnet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn online(&self, i: usize) {
        let (vif, ip) = (format!("vif=vif{i}.0"), format!("ip={} {}", guest_ip(i), guest_ip6(i)));
        self.ok(&["vif", "route", "online", "type_if=vif", &vif, &ip]);
        self.dom0.wait_up(&format!("vif{i}.0"));
        self.guest(i).wait_up("eth0");
    }

    pub fn offline(&self, i: usize) {
        self.ok(&["vif", "route", "offline", "type_if=vif", &format!("vif=vif{i}.0")]);
    }

    /// Routes of every table, proxy entries, dom0's addresses, its forwarding and
    /// neighbour sysctls, and the ruleset without counter values.
    pub fn snapshot(&self) -> Snapshot {
        let d = &self.dom0;
        Snapshot {
            routes: d.ok(&["ip", "-j", "-4", "route", "show", "table", "all"]) + &d.ok(&["ip", "-j", "-6", "route", "show", "table", "all"]),
            proxies: d.ok(&["ip", "-j", "-4", "neigh", "show", "proxy"]) + &d.ok(&["ip", "-j", "-6", "neigh", "show", "proxy"]),
            // Brief: a veth that was never up has no qdisc yet, one that was has one.
            addresses: d.ok(&["ip", "-j", "-br", "addr"]),
            sysctls: d.within(routing_sysctls),
            ruleset: d.ok(&["nft", "-s", "list", "ruleset"]),
        }
    }

    /// Our drop-in's text ("" when there is none).
    pub fn dropin(&self) -> String {
        read(&self.dirs.sysctl.join("99-vifnet-route.conf"))
    }

    /// Our routes in dom0 (protocol 118), one line per route.
    pub fn our_routes(&self) -> String {
        self.dom0.ok(&["ip", "route", "show", "proto", "118"]) + &self.dom0.ok(&["ip", "-6", "route", "show", "proto", "118"])
    }

    /// The packets counted by `inet vifnet`'s IPv4 and IPv6 drop rules.
    pub fn drops(&self) -> (u64, u64) {
        let guard = self.dom0.ok(&["nft", "list", "chain", "inet", "vifnet", "guard"]);
        let count = |rule: &str| -> u64 {
            let line = guard.lines().find(|l| l.contains(rule)).unwrap_or_else(|| panic!("no {rule} in {guard}"));
            let n = line.split("packets ").nth(1).and_then(|r| r.split(' ').next()).unwrap();
            n.parse().unwrap()
        };
        (count("ip saddr != @vif_ip4"), count("ip6 saddr != @vif_ip6"))
    }
}

/// Every forwarding, router advertisement and proxy setting of this thread's namespace,
/// read from /proc/sys (the lanes' busybox sysctl cannot select keys).
fn routing_sysctls() -> String {
    let mut out = vec![format!("ip_forward={}", read(std::path::Path::new("/proc/sys/net/ipv4/ip_forward")))];
    for (family, keys) in [("ipv4", &["forwarding", "proxy_arp"][..]), ("ipv6", &["forwarding", "accept_ra", "proxy_ndp"][..])] {
        let dir = format!("/proc/sys/net/{family}/conf");
        let mut devs: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        devs.sort();
        for dev in devs {
            for key in keys {
                out.push(format!("{family}/{dev}/{key}={}", read(std::path::Path::new(&format!("{dir}/{dev}/{key}"))).trim()));
            }
        }
    }
    out.join("\n")
}

/// The whole route-mode story on one kernel: start, two guests reaching the internet host
/// and reached from it in both families, offline and stop giving back exactly what was
/// there. With `uplink_proxy`, no start (the first online does it, as under libxl), and
/// upstream learns the guests' addresses from our announcements before any traffic.
pub fn guests_route_both_ways_and_teardown_restores_everything(kind: &str, uplink_proxy: bool) {
    let lab = RouteLab::new(2, kind, uplink_proxy);
    let before = lab.snapshot();
    if !uplink_proxy {
        lab.ok(&["network", "route", "start"]);
    }
    let started = if uplink_proxy { None } else { Some(lab.snapshot()) };
    lab.online(1);
    lab.online(2);
    let gw_link = lab.dom0.ok(&["ip", "-j", "-d", "link", "show", "dev", "dummy0"]);
    assert!(gw_link.contains(&format!("\"info_kind\":\"{kind}\"")), "the gateway link is a {kind}: {gw_link}");
    assert!(lab.dropin().contains("net/ipv4/ip_forward = 1"), "drop-in: {}", lab.dropin());
    let ours = lab.our_routes();
    for i in 1..=2 {
        assert!(ours.contains(&format!("{} dev vif{i}.0 scope link metric 2", guest_ip(i))), "{ours}");
        assert!(ours.contains(&format!("{} dev vif{i}.0 metric 2", guest_ip6(i))), "{ours}");
    }
    if uplink_proxy {
        // The announcements: the internet host knows each guest at dom0's uplink MAC
        // before either side has sent a packet.
        let up0 = mac_of(&lab.dom0, "up0");
        for addr in [guest_ip(1), guest_ip6(1), guest_ip(2), guest_ip6(2)] {
            let mut seen = None;
            for _ in 0..100 {
                seen = neighbour(&lab.inet, "eth0", &addr);
                if seen.is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert_eq!(seen.as_deref(), Some(up0.as_str()), "{addr} announced at dom0's uplink");
        }
        let proxies = lab.dom0.ok(&["ip", "-4", "neigh", "show", "proxy"]) + &lab.dom0.ok(&["ip", "-6", "neigh", "show", "proxy"]);
        let (uplink, vifs): (Vec<&str>, Vec<&str>) = proxies.lines().partition(|l| l.contains("dev up0"));
        assert_eq!(uplink.len(), 4, "one proxy entry per guest address, on up0: {proxies}");
        // And the IPv6 gateway on each vif, answered as a router (no address on the vif).
        assert_eq!(vifs.len(), 2, "{proxies}");
        assert!(vifs.iter().all(|l| l.starts_with("2001:db8:42::1 dev vif") && l.contains("router")), "{proxies}");
    }
    for i in 1..=2 {
        let g = lab.guest(i);
        // The gateway answers on the vif with no address there (ARP for a local address,
        // a proxy NDP entry): the vif holds its link-local address only.
        assert!(g.pings("203.0.113.193") && g.pings("2001:db8:42::1"), "guest {i} reaches its gateway");
        let held = lab.dom0.ok(&["ip", "-br", "addr", "show", "dev", &format!("vif{i}.0")]);
        assert!(!held.contains("203.0.113.") && !held.contains("2001:db8:"), "vif{i}.0 holds no gateway address: {held}");
        assert!(g.pings(INET_IP), "guest {i} reaches the internet host (IPv4)");
        assert!(g.pings(INET_IP6), "guest {i} reaches the internet host (IPv6)");
        assert!(lab.inet.pings(&guest_ip(i)), "the internet host reaches guest {i} (IPv4)");
        assert!(lab.inet.pings(&guest_ip6(i)), "the internet host reaches guest {i} (IPv6)");
    }
    assert_eq!(lab.drops(), (0, 0), "honest traffic is not dropped");
    lab.offline(1);
    lab.offline(2);
    if let Some(started) = started {
        assert_eq!(lab.snapshot(), started, "offline gives back what start left");
    }
    assert!(lab.our_routes().is_empty());
    lab.ok(&["network", "route", "stop"]);
    assert_eq!(lab.snapshot(), before, "stop gives back what was there before");
    assert!(lab.dom0.run(&["ip", "link", "show", "dev", "dummy0"]).stdout.is_empty(), "the gateway link is gone");
    assert_eq!(lab.dropin(), "", "the drop-in is gone");
    assert_eq!(lab.dirs.journal_count(), 0);
}
