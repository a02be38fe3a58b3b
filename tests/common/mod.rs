//! Test scaffolding: network namespaces of our own (unique names, removed in Drop even when
//! the test fails), running the real binary inside them, raw frames from a guest.
#![allow(dead_code)]

pub mod route;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique tag for this test process and call: names never collide with other runs.
pub fn unique(tag: &str) -> String {
    format!("vft{}-{}-{tag}", std::process::id() % 100000, COUNTER.fetch_add(1, Ordering::SeqCst))
}

pub fn root_or_skip() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (network namespaces)");
        return false;
    }
    true
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = unique(tag);
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// No duplicate address detection on links made from now on: their IPv6 addresses,
    /// link-local ones too, are usable (and stop changing flags) at once.
    pub fn no_dad(&self) {
        self.ok(&["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
        self.ok(&["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"]);
    }

    pub fn cmd(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(argv);
        c
    }

    /// Runs a command in the namespace and returns its output, whatever the exit code.
    pub fn run(&self, argv: &[&str]) -> Output {
        self.cmd(argv).output().expect("spawn ip netns exec")
    }

    /// Runs a command in the namespace and fails the test if it fails.
    pub fn ok(&self, argv: &[&str]) -> String {
        run_ok(&mut self.cmd(argv))
    }

    pub fn succeeds(&self, argv: &[&str]) -> bool {
        self.run(argv).status.success()
    }

    /// Pings for up to 2 s (a second try if the first is lost): true when a reply came back.
    pub fn pings(&self, dst: &str) -> bool {
        let fam = if dst.contains(':') { "-6" } else { "-4" };
        let out = self.run(&["ping", fam, "-c", "1", "-w", "2", "-q", dst]);
        if !out.status.success() {
            eprintln!("ping {dst} from {}: {}{}", self.name, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        out.status.success()
    }

    /// Waits until `dev` is operationally up: after carrier comes, the kernel's linkwatch
    /// activates the device's queue up to a second later, and drops what is sent before.
    pub fn wait_up(&self, dev: &str) {
        for _ in 0..300 {
            let out = self.ok(&["ip", "-j", "link", "show", "dev", dev]);
            if out.contains("\"operstate\":\"UP\"") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{dev} in {} did not come up", self.name);
    }

    /// Runs `f` in a thread that has joined this namespace.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).expect("open netns");
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a valid namespace fd, affecting only this new thread.
            assert_eq!(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
            f()
        })
        .join()
        .expect("thread in netns")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if std::env::var_os("VIFNET_KEEP_NETNS").is_none() {
            let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        }
    }
}

pub fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("spawn {c:?}: {e}"));
    assert!(out.status.success(), "{c:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A shell command here (in the lanes' VMs: their own init namespace); fails the test if it fails.
pub fn sh(cmd: &str) -> String {
    run_ok(Command::new("sh").args(["-c", cmd]))
}

/// A veth pair: `a` in `ns_a`, `b` in `ns_b`.
pub fn veth(ns_a: &Netns, a: &str, ns_b: &Netns, b: &str) {
    ns_a.ok(&["ip", "link", "add", a, "type", "veth", "peer", "name", b, "netns", &ns_b.name]);
}

/// Per-test state, mode and sysctl drop-in directories, so tests run side by side, never
/// read /etc/vifnet and never write /run/sysctl.d.
pub struct Dirs {
    pub state: PathBuf,
    pub modes: PathBuf,
    pub sysctl: PathBuf,
}

impl Dirs {
    pub fn new() -> Dirs {
        let base = std::env::temp_dir().join(unique("dirs"));
        let d = Dirs { state: base.join("state"), modes: base.join("modes"), sysctl: base.join("sysctl") };
        std::fs::create_dir_all(&d.modes).unwrap();
        d
    }
    pub fn journal_count(&self) -> usize {
        std::fs::read_dir(self.state.join("vifs")).map(|d| d.count()).unwrap_or(0)
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        if let Some(base) = self.state.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

pub fn vifnet_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vifnet")
}

/// Runs vifnet in `ns` with our directories and extra environment (nothing inherited
/// that libxl would set, so the test says exactly what the call sees).
pub fn vifnet(ns: &Netns, dirs: &Dirs, env: &[(&str, &str)], args: &[&str]) -> Output {
    run_vifnet(ns.cmd(&[vifnet_bin()]), dirs, env, args)
}

/// The same in this process's own network namespace: only in the lanes' VMs, whose init
/// namespace is the test's own.
pub fn vifnet_here(dirs: &Dirs, args: &[&str]) -> Output {
    let lane = std::env::var("VIFNET_LANE").unwrap_or_default();
    assert!(!lane.is_empty(), "changes this namespace: in a VM lane only (VIFNET_LANE)");
    run_vifnet(Command::new(vifnet_bin()), dirs, &[], args)
}

/// The command `vifnet` runs, not yet started: for tests that start many at once.
pub fn vifnet_command(ns: &Netns, dirs: &Dirs, env: &[(&str, &str)], args: &[&str]) -> Command {
    with_our_env(ns.cmd(&[vifnet_bin()]), dirs, env, args)
}

fn run_vifnet(c: Command, dirs: &Dirs, env: &[(&str, &str)], args: &[&str]) -> Output {
    with_our_env(c, dirs, env, args).output().expect("spawn vifnet")
}

fn with_our_env(mut c: Command, dirs: &Dirs, env: &[(&str, &str)], args: &[&str]) -> Command {
    c.args(args);
    for k in ["vif", "netdev", "bridge", "ip", "INTERFACE", "XENBUS_PATH", "type_if", "XENSTORED_PATH"] {
        c.env_remove(k);
    }
    c.env("VIFNET_STATE_DIR", &dirs.state).env("VIFNET_MODES_DIR", &dirs.modes).env("VIFNET_SYSCTL_DIR", &dirs.sysctl);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

pub fn vifnet_ok(ns: &Netns, dirs: &Dirs, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = vifnet(ns, dirs, env, args);
    assert!(out.status.success(), "vifnet {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The MAC of a link, as `ip` reports it.
pub fn mac_of(ns: &Netns, dev: &str) -> String {
    let out = ns.ok(&["ip", "-j", "link", "show", "dev", dev]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["address"].as_str().unwrap().to_string()
}

/// Sends one raw Ethernet frame out of `dev` in `ns` (for forged ARP and spoofed frames).
pub fn send_frame(ns: &Netns, dev: &str, frame: Vec<u8>) {
    let dev = dev.to_string();
    ns.within(move || {
        let cdev = CString::new(dev.clone()).unwrap();
        // SAFETY: plain socket calls on a fresh AF_PACKET socket, buffers owned here.
        unsafe {
            let ifindex = libc::if_nametoindex(cdev.as_ptr());
            assert!(ifindex > 0, "no {dev}");
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(fd >= 0, "AF_PACKET socket");
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex as i32;
            sll.sll_protocol = u16::from_be_bytes([frame[12], frame[13]]).to_be();
            let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            assert_eq!(libc::bind(fd, &sll as *const libc::sockaddr_ll as *const libc::sockaddr, len), 0, "bind");
            let n = libc::send(fd, frame.as_ptr() as *const libc::c_void, frame.len(), 0);
            assert_eq!(n as usize, frame.len(), "send");
            libc::close(fd);
            assert_eq!(n as usize, frame.len(), "sendto");
        }
    });
}

pub fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s.split(':').map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
    v.try_into().unwrap()
}

/// An ARP request "who has `target_ip`? tell `sender_ip` at `sender_mac`", broadcast,
/// from Ethernet source `eth_src`: how a guest would poison a neighbour's cache.
pub fn arp_request(eth_src: [u8; 6], sender_mac: [u8; 6], sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend(eth_src);
    f.extend([0x08, 0x06]); // ARP
    f.extend([0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]); // Ethernet, IPv4, request
    f.extend(sender_mac);
    f.extend(sender_ip);
    f.extend([0; 6]);
    f.extend(target_ip);
    f.resize(60, 0);
    f
}

/// The neighbour entry `ip` has for `addr` on `dev` in `ns`, as (lladdr, state).
pub fn neighbour(ns: &Netns, dev: &str, addr: &str) -> Option<String> {
    let out = ns.ok(&["ip", "-j", "neigh", "show", "dev", dev, "to", addr]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    v.get(0).and_then(|e| e["lladdr"].as_str()).map(String::from)
}

/// What a takeover must give back exactly: the uplink's addresses, every route of both
/// families in every table, and its MAC, as `ip -j` prints them.
pub fn uplink_snapshot(ns: &Netns, dev: &str) -> Vec<String> {
    vec![
        ns.ok(&["ip", "-j", "addr", "show", "dev", dev]),
        ns.ok(&["ip", "-j", "-4", "route", "show", "table", "all"]),
        ns.ok(&["ip", "-j", "-6", "route", "show", "table", "all"]),
        mac_of(ns, dev),
    ]
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Everything a verb may change in `ns`, as `ip -j` and `nft -j` print it (no counter
/// values): links, addresses, routes of both families in every table, proxy entries, the
/// ruleset. Taken once no address is tentative any more, so that two dumps of an unchanged
/// host are equal.
pub fn host_dump(ns: &Netns) -> String {
    for _ in 0..300 {
        if !ns.ok(&["ip", "addr"]).contains("tentative") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    [
        vec!["ip", "-j", "link"],
        vec!["ip", "-j", "addr"],
        vec!["ip", "-j", "-4", "route", "show", "table", "all"],
        vec!["ip", "-j", "-6", "route", "show", "table", "all"],
        vec!["ip", "-j", "neigh", "show", "proxy"],
        vec!["nft", "-s", "-j", "list", "ruleset"],
    ]
    .iter()
    .map(|argv| ns.ok(argv))
    .collect::<Vec<_>>()
    .join("\n")
}

/// The bytes of every journal and record in a state directory, by file name.
pub fn state_bytes(dirs: &Dirs) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in [dirs.state.clone(), dirs.state.join("vifs")] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "json")) {
            out.push((e.path().display().to_string(), std::fs::read(e.path()).unwrap()));
        }
    }
    out.sort();
    out
}
