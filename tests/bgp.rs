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
use common::{root_or_skip, unique, veth, vifnet, Dirs, Netns};

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

    /// Killed (SIGKILL: no goodbye to its peers) and started again with the same config.
    fn restart_killed(&mut self) {
        self.stop(libc::SIGKILL);
        self.child = spawn_bird(&self.ns, &self.dir, &self.config);
        self.wait_ready();
    }

    fn stop(&mut self, signal: i32) {
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

/// The router, its client, one Xen host with vifnet in route mode and one guest.
struct Lab {
    router: Netns,
    client: Netns,
    host: Netns,
    guest: Netns,
    dirs: Dirs,
}

fn lab() -> Lab {
    let (router, client, host, guest) = (Netns::new("bgpr"), Netns::new("bgpc"), Netns::new("bgpa"), Netns::new("bgpg"));
    for ns in [&router, &client, &host, &guest] {
        ns.no_dad();
    }
    veth(&router, "ha", &host, "up0");
    veth(&router, "cl", &client, "eth0");
    router.ok(&["ip", "addr", "add", &format!("{ROUTER_A}/25"), "dev", "ha"]);
    router.ok(&["ip", "addr", "add", &format!("{ROUTER_A6}/64"), "dev", "ha"]);
    router.ok(&["ip", "addr", "add", "192.0.2.1/24", "dev", "cl"]);
    router.ok(&["ip", "addr", "add", "2001:db8:c::1/64", "dev", "cl"]);
    for dev in ["ha", "cl"] {
        router.ok(&["ip", "link", "set", dev, "up"]);
    }
    router.ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
    client.ok(&["ip", "addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"]);
    client.ok(&["ip", "addr", "add", &format!("{CLIENT6}/64"), "dev", "eth0"]);
    client.ok(&["ip", "link", "set", "eth0", "up"]);
    client.ok(&["ip", "route", "add", "default", "via", "192.0.2.1"]);
    client.ok(&["ip", "-6", "route", "add", "default", "via", "2001:db8:c::1"]);
    host.ok(&["ip", "addr", "add", &format!("{HOST_A}/25"), "dev", "up0"]);
    host.ok(&["ip", "addr", "add", &format!("{HOST_A6}/64"), "dev", "up0"]);
    host.ok(&["ip", "link", "set", "up0", "up"]);
    host.ok(&["ip", "route", "add", "default", "via", ROUTER_A]);
    host.ok(&["ip", "-6", "route", "add", "default", "via", ROUTER_A6]);
    veth(&host, "vif1.0", &guest, "eth0");
    guest.ok(&["ip", "addr", "add", &format!("{}/29", guest_ip(1)), "dev", "eth0"]);
    guest.ok(&["ip", "addr", "add", &format!("{}/64", guest_ip6(1)), "dev", "eth0"]);
    guest.ok(&["ip", "link", "set", "eth0", "up"]);
    guest.ok(&["ip", "route", "add", "default", "via", "203.0.113.193"]);
    guest.ok(&["ip", "-6", "route", "add", "default", "via", "2001:db8:42::1"]);
    let dirs = Dirs::new();
    // The same gateway on every host: a guest keeps its default route wherever it runs.
    std::fs::write(dirs.modes.join("route.toml"), "netdev = \"up0\"\ngateway = \"203.0.113.193/29 2001:db8:42::1/64\"\ngateway_kind = \"bridge\"\n").unwrap();
    client.wait_up("eth0");
    Lab { router, client, host, guest, dirs }
}

impl Lab {
    fn vifnet_ok(&self, args: &[&str]) {
        let out = vifnet(&self.host, &self.dirs, &[], args);
        assert!(out.status.success(), "vifnet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
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
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

#[test]
fn a_routed_guest_is_announced_over_bgp_while_online_and_withdrawn_after() {
    if !root_or_skip() {
        return;
    }
    if Command::new("bird").arg("--version").output().is_err() {
        eprintln!("skipped: no bird (make test-deps installs bird2)");
        return;
    }
    let lab = lab();
    let _router_bird = Bird::start(&lab.router, &example("router.conf"));
    let mut host_bird = Bird::start(&lab.host, &example("bird.conf"));
    lab.vifnet_ok(&["network", "route", "start"]);
    let (ip4, ip6) = (guest_ip(1), guest_ip6(1));
    lab.vifnet_ok(&["vif", "route", "online", "type_if=vif", "vif=vif1.0", &format!("ip={ip4} {ip6}")]);

    let via4 = format!("via {HOST_A} dev ha proto bird");
    let via6 = format!("via {HOST_A6} dev ha proto bird");
    assert!(lab.wait_router(&ip4, |r| r.contains(&via4), 30).is_some(), "announced: {}\n{}", lab.router_route(&ip4), host_bird.birdc(&["show", "protocols", "all", "upstream"]));
    assert!(lab.wait_router(&ip6, |r| r.contains(&via6), 10).is_some(), "announced: {}", lab.router_route(&ip6));
    assert!(lab.client.pings(&ip4) && lab.client.pings(&ip6), "the client reaches the guest through the router");
    assert!(lab.guest.pings(CLIENT) && lab.guest.pings(CLIENT6));
    // Only guests: the gateway's block, the host's own addresses, nothing else.
    let learned = lab.router.ok(&["ip", "route", "show", "proto", "bird"]) + &lab.router.ok(&["ip", "-6", "route", "show", "proto", "bird"]);
    assert_eq!(learned.lines().count(), 2, "{learned}");

    // BIRD killed and started again: the guest is announced again, from the kernel's routes.
    host_bird.restart_killed();
    assert!(lab.wait_router(&ip4, |r| r.contains(&via4), 30).is_some(), "announced again after BIRD's restart");
    assert!(lab.client.pings(&ip4));

    lab.vifnet_ok(&["vif", "route", "offline", "type_if=vif", "vif=vif1.0"]);
    assert!(lab.wait_router(&ip4, str::is_empty, 10).is_some(), "withdrawn: {}", lab.router_route(&ip4));
    assert!(lab.wait_router(&ip6, str::is_empty, 10).is_some(), "withdrawn: {}", lab.router_route(&ip6));
    lab.vifnet_ok(&["network", "route", "stop"]);
}
