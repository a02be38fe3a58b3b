//! Route mode's guests announced over BGP by BIRD (issue 15): a Xen host running vifnet and
//! BIRD with examples/route-bgp/bird.conf, an upstream router running BIRD with
//! examples/route-bgp/router.conf, and a client behind the router, each a network namespace.
//! A routed guest online is announced in both families and reachable from the client; its
//! offline withdraws it; a restarted BIRD announces it again; the gateway's block is never
//! announced. Every BIRD is a child of the test, killed by its PID.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::route::{guest_ip, guest_ip6};
use common::{root_or_skip, unique, veth, vifnet, vifnet_command, Dirs, Netns};

const ROUTER_A: &str = "198.51.100.1";
const HOST_A: &str = "198.51.100.2";
const ROUTER_A6: &str = "2001:db8:1::1";
const HOST_A6: &str = "2001:db8:1::2";
const CLIENT: &str = "192.0.2.2";
const CLIENT6: &str = "2001:db8:c::2";

fn example(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/route-bgp").join(name)).unwrap()
}

/// BIRD in a namespace, in the foreground as our child, with its control socket in a
/// directory of its own.
struct Bird {
    child: Child,
    dir: PathBuf,
    ns: String,
    config: String,
}

impl Bird {
    fn start(ns: &Netns, config: &str) -> Bird {
        let dir = std::env::temp_dir().join(unique("bird"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = Bird { child: spawn_bird(&ns.name, &dir, config), dir, ns: ns.name.clone(), config: config.to_string() };
        b.wait_ready();
        b
    }

    fn wait_ready(&mut self) {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if self.birdc(&["show", "status"]).contains("Daemon is up and running") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("bird in {} exited: {status}", self.ns);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("bird in {} did not come up", self.ns);
    }

    fn birdc(&self, args: &[&str]) -> String {
        let out = Command::new("birdc").arg("-s").arg(self.dir.join("sock")).args(args).output().expect("birdc");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Started again with the same config, after a stop.
    fn start_again(&mut self) {
        self.child = spawn_bird(&self.ns, &self.dir, &self.config);
        self.wait_ready();
    }

    fn stop(&mut self, signal: i32) {
        // Reaped already (stopped before): its PID may be another process's by now.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: a signal to our own child, by its PID, which we have not yet waited for.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let _ = self.child.wait();
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.stop(libc::SIGTERM);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn_bird(ns: &str, dir: &Path, config: &str) -> Child {
    let conf = dir.join("bird.conf");
    std::fs::write(&conf, config).unwrap();
    Command::new("ip")
        .args(["netns", "exec", ns, "bird", "-f", "-c"])
        .arg(&conf)
        .arg("-s")
        .arg(dir.join("sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bird (apt-get install bird2)")
}

/// One Xen host: its namespace, vifnet's directories, and its uplink's addresses.
struct Host {
    ns: Netns,
    dirs: Dirs,
    addr: &'static str,
    addr6: &'static str,
    /// The router's side of the link.
    router_dev: &'static str,
}

impl Host {
    /// BIRD's config for this host: the example's, with this host's addresses and AS.
    fn bird_conf(&self) -> String {
        let conf = example("bird.conf");
        if self.addr == HOST_A {
            return conf;
        }
        conf.replace("neighbor 198.51.100.1 ", "neighbor 198.51.100.129 ").replace(HOST_A, self.addr).replace(HOST_A6, self.addr6).replace("as 64512", "as 64513")
    }

    /// `vifnet watch` in this host's namespace, as vifnet-watch.service runs it.
    fn watch(&self) -> Watcher {
        let log = self.dirs.modes.with_file_name("watch.log");
        let w = Watcher(vifnet_command(&self.ns, &self.dirs, &[], &["watch"]).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap());
        // Listening once it says so: a carrier change before would go unseen.
        let end = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("watching") {
            assert!(Instant::now() < end, "vifnet watch did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        w
    }

    fn vifnet_ok(&self, args: &[&str]) {
        let out = vifnet(&self.ns, &self.dirs, &[], args);
        assert!(out.status.success(), "vifnet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A child killed by its PID when dropped.
struct Watcher(Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The router, its client, Xen hosts A and B with vifnet in route mode, and one guest with
/// a link to each host (`ea` to A's vif1.0, `eb` to B's vif2.0): the link that is up is
/// where the guest runs, as netfront's connection raises the vif's carrier.
struct Lab {
    router: Netns,
    client: Netns,
    hosts: Vec<Host>,
    guest: Netns,
}

fn lab() -> Lab {
    let (router, client, guest) = (Netns::new("bgpr"), Netns::new("bgpc"), Netns::new("bgpg"));
    for ns in [&router, &client, &guest] {
        ns.no_dad();
    }
    veth(&router, "cl", &client, "eth0");
    router.ok(&["ip", "addr", "add", "192.0.2.1/24", "dev", "cl"]);
    router.ok(&["ip", "addr", "add", "2001:db8:c::1/64", "dev", "cl"]);
    router.ok(&["ip", "link", "set", "cl", "up"]);
    router.ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
    client.ok(&["ip", "addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"]);
    client.ok(&["ip", "addr", "add", &format!("{CLIENT6}/64"), "dev", "eth0"]);
    client.ok(&["ip", "link", "set", "eth0", "up"]);
    client.ok(&["ip", "route", "add", "default", "via", "192.0.2.1"]);
    client.ok(&["ip", "-6", "route", "add", "default", "via", "2001:db8:c::1"]);
    let mut hosts = Vec::new();
    for (i, (router_dev, raddr, addr, raddr6, addr6)) in
        [("ha", ROUTER_A, HOST_A, ROUTER_A6, HOST_A6), ("hb", "198.51.100.129", "198.51.100.130", "2001:db8:2::1", "2001:db8:2::2")].into_iter().enumerate()
    {
        let ns = Netns::new(if i == 0 { "bgpa" } else { "bgpb" });
        ns.no_dad();
        veth(&router, router_dev, &ns, "up0");
        router.ok(&["ip", "addr", "add", &format!("{raddr}/25"), "dev", router_dev]);
        router.ok(&["ip", "addr", "add", &format!("{raddr6}/64"), "dev", router_dev]);
        router.ok(&["ip", "link", "set", router_dev, "up"]);
        ns.ok(&["ip", "addr", "add", &format!("{addr}/25"), "dev", "up0"]);
        ns.ok(&["ip", "addr", "add", &format!("{addr6}/64"), "dev", "up0"]);
        ns.ok(&["ip", "link", "set", "up0", "up"]);
        ns.ok(&["ip", "route", "add", "default", "via", raddr]);
        ns.ok(&["ip", "-6", "route", "add", "default", "via", raddr6]);
        let vif = format!("vif{}.0", i + 1);
        veth(&ns, &vif, &guest, if i == 0 { "ea" } else { "eb" });
        let dirs = Dirs::new();
        // The same gateway on every host: a guest keeps its default route wherever it runs.
        std::fs::write(dirs.modes.join("route.toml"), "netdev = \"up0\"\ngateway = \"203.0.113.193/29 2001:db8:42::1/64\"\ngateway_kind = \"bridge\"\n").unwrap();
        hosts.push(Host { ns, dirs, addr, addr6, router_dev });
    }
    client.wait_up("eth0");
    let lab = Lab { router, client, hosts, guest };
    lab.run_on("ea");
    lab
}

impl Lab {
    /// The guest runs behind `dev` (`ea`: host A, `eb`: host B): its addresses and default
    /// routes there, that link up and the other down.
    fn run_on(&self, dev: &str) {
        let other = if dev == "ea" { "eb" } else { "ea" };
        let g = &self.guest;
        g.ok(&["ip", "link", "set", other, "down"]);
        g.ok(&["ip", "addr", "flush", "dev", other]);
        g.ok(&["ip", "addr", "add", &format!("{}/29", guest_ip(1)), "dev", dev]);
        g.ok(&["ip", "addr", "add", &format!("{}/64", guest_ip6(1)), "dev", dev, "nodad"]);
        g.ok(&["ip", "link", "set", dev, "up"]);
        g.ok(&["ip", "route", "replace", "default", "via", "203.0.113.193", "dev", dev]);
        g.ok(&["ip", "-6", "route", "replace", "default", "via", "2001:db8:42::1", "dev", dev]);
    }

    /// `vif route <verb>` of host `h`'s vif for the guest.
    fn vif(&self, h: usize, verb: &str) {
        let vif = format!("vif=vif{}.0", h + 1);
        let ip = format!("ip={} {}", guest_ip(1), guest_ip6(1));
        let mut args = vec!["vif", "route", verb, "type_if=vif", vif.as_str()];
        if verb == "online" {
            args.push(&ip);
        }
        self.hosts[h].vifnet_ok(&args);
    }

    /// The router's kernel route to `dst`, as `ip route` prints it (empty: none).
    fn router_route(&self, dst: &str) -> String {
        let family = if dst.contains(':') { "-6" } else { "-4" };
        self.router.ok(&["ip", family, "route", "show", dst]).trim().to_string()
    }

    /// Waits until the router's route to `dst` satisfies `want`; how long it took.
    fn wait_router(&self, dst: &str, want: impl Fn(&str) -> bool, secs: u64) -> Option<Duration> {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(secs) {
            if want(&self.router_route(dst)) {
                return Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// What the router's route to `dst` through host `h` looks like.
    fn via(&self, h: usize, dst: &str) -> String {
        let host = &self.hosts[h];
        format!("via {} dev {} proto bird", if dst.contains(':') { host.addr6 } else { host.addr }, host.router_dev)
    }
}

/// Root, and BIRD, which this installs (Debian's bird2, through the Makefile's recipe that
/// starts no daemon on the host) when it is missing.
fn bird_here() -> bool {
    if !root_or_skip() {
        return false;
    }
    if Command::new("bird").arg("--version").output().is_err() {
        let make = Command::new("make").args(["-s", "-C", env!("CARGO_MANIFEST_DIR"), "install-missing", "PKGS=bird2"]).status();
        assert!(make.is_ok_and(|s| s.success()), "installing bird2");
    }
    true
}

#[test]
fn a_routed_guest_is_announced_over_bgp_while_online_and_withdrawn_after() {
    if !bird_here() {
        return;
    }
    let lab = lab();
    let _router_bird = Bird::start(&lab.router, &example("router.conf"));
    let a = &lab.hosts[0];
    let mut host_bird = Bird::start(&a.ns, &a.bird_conf());
    a.vifnet_ok(&["network", "route", "start"]);
    lab.vif(0, "online");
    let (ip4, ip6) = (guest_ip(1), guest_ip6(1));
    assert!(lab.wait_router(&ip4, |r| r.contains(&lab.via(0, &ip4)), 30).is_some(), "announced: {}\n{}", lab.router_route(&ip4), host_bird.birdc(&["show", "protocols", "all", "upstream"]));
    assert!(lab.wait_router(&ip6, |r| r.contains(&lab.via(0, &ip6)), 10).is_some(), "announced: {}", lab.router_route(&ip6));
    assert!(lab.client.pings(&ip4) && lab.client.pings(&ip6), "the client reaches the guest through the router");
    assert!(lab.guest.pings(CLIENT) && lab.guest.pings(CLIENT6));
    // Only guests: the gateway's block, the host's own addresses, nothing else.
    let learned = lab.router.ok(&["ip", "route", "show", "proto", "bird"]) + &lab.router.ok(&["ip", "-6", "route", "show", "proto", "bird"]);
    assert_eq!(learned.lines().count(), 2, "{learned}");

    // BIRD killed (SIGKILL: no goodbye to its peers), which takes its announcements away, and
    // started again: the guest is announced again, from the kernel's routes.
    host_bird.stop(libc::SIGKILL);
    assert!(lab.wait_router(&ip4, str::is_empty, 15).is_some(), "the router dropped the killed BIRD's route: {}", lab.router_route(&ip4));
    host_bird.start_again();
    assert!(lab.wait_router(&ip4, |r| r.contains(&lab.via(0, &ip4)), 30).is_some(), "announced again after BIRD's restart");
    assert!(lab.client.pings(&ip4));

    lab.vif(0, "offline");
    assert!(lab.wait_router(&ip4, str::is_empty, 10).is_some(), "withdrawn: {}", lab.router_route(&ip4));
    assert!(lab.wait_router(&ip6, str::is_empty, 10).is_some(), "withdrawn: {}", lab.router_route(&ip6));
    a.vifnet_ok(&["network", "route", "stop"]);
}

/// A client's ping of `dst` every 20 ms, as a child of the test; `-D -O`: each line has
/// its time, and a request with no answer yet is reported when the next one goes.
struct Pinger {
    child: Child,
}

/// A request: its sequence number and when it went (seconds since the epoch).
type Sent = (u32, f64);

/// What a ping run saw: requests never answered, by when they were sent (seconds since the
/// epoch), duplicate answers, and whether any came back as "Time to live exceeded".
struct Pinged {
    unanswered: Vec<Sent>,
    answered: usize,
    duplicates: usize,
    looped: bool,
}

impl Pinger {
    fn start(ns: &Netns, dst: &str, secs: u32) -> Pinger {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "ping", "-n", "-D", "-O", "-i", "0.02", "-W", "1", "-w", &secs.to_string(), dst])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Pinger { child }
    }

    fn finish(self) -> Pinged {
        let out = self.child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if std::env::var_os("BGP_DEBUG").is_some() {
            eprintln!("PING {:?} {}", out.status, text.lines().filter(|l| !l.contains("bytes from") && !l.contains("no answer")).collect::<Vec<_>>().join(" | "));
        }
        let time = |l: &str| l.strip_prefix('[')?.split(']').next()?.parse::<f64>().ok();
        let seq = |l: &str| l.split("icmp_seq=").nth(1)?.split(' ').next()?.parse::<u32>().ok();
        let answered: Vec<u32> = text.lines().filter(|l| l.contains("bytes from") && !l.contains("DUP!")).filter_map(seq).collect();
        // Reported when the next request went, 20 ms after this one.
        let unanswered = text
            .lines()
            .filter(|l| l.contains("no answer yet"))
            .filter_map(|l| Some((seq(l)?, time(l)? - 0.02)))
            .filter(|(s, _)| !answered.contains(s))
            .collect();
        Pinged { unanswered, answered: answered.len(), duplicates: text.matches("DUP!").count(), looped: text.contains("exceeded") }
    }
}

/// Whether `ns` reaches `dst` within 5 s: not black-holed, though the guest's own neighbour
/// entries may take a moment after a move.
fn reached(ns: &Netns, dst: &str) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if ns.succeeds(&["ping", "-n", "-c", "1", "-W", "1", dst]) {
            return true;
        }
    }
    false
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Xen's order for `xl migrate`: the vif comes online on B while the guest still runs on A
/// (B's vif has no carrier: nothing there yet), the guest moves (A's carrier down, B's up),
/// and A's vif goes offline after. The router keeps sending to A until the move, then to
/// B; a client pinging every 20 ms loses nothing before the move and at most a second's
/// worth after it, with no loop and no duplicate. Then the guest goes back to A without
/// B's offline ever running (B's vifnet gone with the host, say): it is still reached.
#[test]
fn a_guest_moved_from_a_to_b_is_followed_by_the_router() {
    if !bird_here() {
        return;
    }
    let lab = lab();
    let _router_bird = Bird::start(&lab.router, &example("router.conf"));
    let mut birds: Vec<Bird> = lab.hosts.iter().map(|h| Bird::start(&h.ns, &h.bird_conf())).collect();
    let mut watchers: Vec<Option<Watcher>> = lab.hosts.iter().map(|h| Some(h.watch())).collect();
    for h in &lab.hosts {
        h.vifnet_ok(&["network", "route", "start"]);
    }
    let (ip4, ip6) = (guest_ip(1), guest_ip6(1));
    lab.vif(0, "online");
    assert!(lab.wait_router(&ip4, |r| r.contains(&lab.via(0, &ip4)), 30).is_some(), "announced from A: {}", lab.router_route(&ip4));
    assert!(lab.wait_router(&ip6, |r| r.contains(&lab.via(0, &ip6)), 10).is_some(), "announced from A: {}", lab.router_route(&ip6));

    let secs = 7;
    let (p4, p6) = (Pinger::start(&lab.client, &ip4, secs), Pinger::start(&lab.client, &ip6, secs));
    std::thread::sleep(Duration::from_secs(1));
    lab.vif(1, "online");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(lab.router_route(&ip4).contains(&lab.via(0, &ip4)), "still A while the guest runs there: {}", lab.router_route(&ip4));
    let moved = now();
    lab.run_on("eb");
    // Both families at once: each wait's time counts from the move.
    let (switch4, switch6) = std::thread::scope(|s| {
        let six = s.spawn(|| lab.wait_router(&ip6, |r| r.contains(&lab.via(1, &ip6)), 10));
        (lab.wait_router(&ip4, |r| r.contains(&lab.via(1, &ip4)), 10), six.join().unwrap())
    });
    eprintln!("router switched to B {switch4:?} (IPv4) and {switch6:?} (IPv6) after the carrier moved");
    let tables = || birds.iter().map(|b| b.birdc(&["show", "route", "all"])).collect::<Vec<_>>().join("\n");
    let kernel = || lab.hosts.iter().map(|h| h.ns.ok(&["ip", "route", "show", "proto", "118"])).collect::<Vec<_>>().join("\n");
    assert!(switch4.is_some() && switch6.is_some(), "{} / {}\n{}\n{}", lab.router_route(&ip4), lab.router_route(&ip6), tables(), kernel());
    std::thread::sleep(Duration::from_secs(1));
    lab.vif(0, "offline");
    for (p, family) in [(p4, "IPv4"), (p6, "IPv6")] {
        let r = p.finish();
        let (before, after): (Vec<&Sent>, Vec<&Sent>) = r.unanswered.iter().partition(|(_, t)| *t < moved);
        let after_secs = after.len() as f64 * 0.02;
        eprintln!("{family}: {} answered; unanswered: {} before the move, {} after ({after_secs:.2} s worth); {} duplicates", r.answered, before.len(), after.len(), r.duplicates);
        assert!(before.is_empty(), "{family}: lost before the move: {before:?}");
        assert!(after_secs <= 1.0, "{family}: more than a second's worth lost after the move: {after:?}");
        assert_eq!((r.duplicates, r.looped), (0, false), "{family}: duplicates or a loop");
    }

    // Back to A, with B's `vifnet watch` gone (killed, say) and B's offline never run: B's
    // dead route leaves BIRD at its next scan, and the guest is reached at A.
    watchers[1] = None;
    lab.vif(0, "online");
    lab.run_on("ea");
    let back = lab.wait_router(&ip4, |r| r.contains(&lab.via(0, &ip4)), 10);
    eprintln!("back at A after {back:?} without B's watcher");
    assert!(back.is_some(), "back at A: {}", lab.router_route(&ip4));
    assert!(reached(&lab.client, &ip4) && reached(&lab.client, &ip6), "reached at A while B still has its vif's route");

    // A's BIRD killed while the guest runs there, then the guest moves to B (whose vif is
    // still online from before, and whose watcher systemd has started again): A's session
    // drops with its routes, B announces. (The kernel flushed B's proxy entry for the IPv6
    // gateway when the guest left; the watcher puts it back as the guest comes.)
    watchers[1] = Some(lab.hosts[1].watch());
    birds[0].stop(libc::SIGKILL);
    lab.run_on("eb");
    assert!(lab.wait_router(&ip4, |r| r.contains(&lab.via(1, &ip4)), 10).is_some(), "at B: {}", lab.router_route(&ip4));
    assert!(lab.wait_router(&ip6, |r| r.contains(&lab.via(1, &ip6)), 10).is_some(), "at B: {}", lab.router_route(&ip6));
    let b = &lab.hosts[1].ns;
    let debug = || {
        format!(
            "{}\n{}\nB: {}{}{}\nguest: {}{}{}",
            lab.router_route(&ip4),
            lab.router_route(&ip6),
            b.ok(&["ip", "route", "show", "proto", "118"]),
            b.ok(&["ip", "-6", "route", "show", "proto", "118"]),
            b.ok(&["ip", "neigh"]) + &b.ok(&["ip", "-6", "neigh"]) + &b.ok(&["ip", "-6", "neigh", "show", "proxy"]),
            lab.guest.ok(&["ip", "-br", "addr"]),
            lab.guest.ok(&["ip", "route"]) + &lab.guest.ok(&["ip", "-6", "route"]),
            lab.guest.ok(&["ip", "neigh"]) + &lab.guest.ok(&["ip", "-6", "neigh"]),
        )
    };
    assert!(reached(&lab.client, &ip4), "IPv4 reached at B with A's BIRD dead\n{}", debug());
    assert!(reached(&lab.client, &ip6), "IPv6 reached at B with A's BIRD dead\n{}", debug());
    drop(watchers);
}
