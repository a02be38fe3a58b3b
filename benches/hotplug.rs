//! `make bench`: per-vif `vif <mode> online` and `offline` in bridge, route and nat mode,
//! the whole process as libxl runs it (exec, xenstore reads through a xenstored socket,
//! netlink, one nft transaction, the journal, hotplug-status), with antispoofing on, beside
//! 1 and 100 existing vifs. Reports median and p90; nothing here asserts a time.
//! `cargo bench --bench hotplug -- nat` runs one mode (`nat-live`: dnsmasq not paused).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vifnet::xenstore::fake;

const ROUNDS: usize = 40;
/// Bystanders are vif1.0 .. vif100.0; vif500.0 is the one measured.
const EXISTING: u32 = 100;
const MEASURED: u32 = 500;

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?}");
}

/// `ip -n <ns> -batch -`: one process for many links instead of one each.
fn ip_batch(ns: &str, batch: &str) {
    let mut c = Command::new("ip").args(["-n", ns, "-batch", "-"]).stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), batch.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "ip -n {ns} -batch");
}

struct Ns(String);
impl Ns {
    fn new(name: String) -> Ns {
        ip(&["netns", "add", &name]);
        Ns(name)
    }
}
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn report(what: &str, mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let (m, p90) = (percentile(&samples, 0.5), percentile(&samples, 0.9));
    println!("{what:<44} median {m:6.2} ms   p90 {p90:6.2} ms   ({} runs)", samples.len());
    (m, p90)
}

/// What one mode's run needs beyond the shared harness.
struct Mode {
    name: &'static str,
    /// Names this run (namespaces, directories, the word that runs it alone).
    run: &'static str,
    /// Printed above the figures.
    title: &'static str,
    /// `$VIFNET_MODES_DIR/<name>.toml`, given this run's temporary directory (for any
    /// file the mode edits); None: the shipped defaults.
    mode_file: fn(&Path) -> Option<String>,
    /// The backend keys that differ per mode (mac and frontend are common).
    keys: fn(u32) -> Vec<(&'static str, String)>,
    /// Keys outside the backend directory, as whole paths (the domain's name).
    domain_keys: fn(u32) -> Vec<(String, String)>,
    /// Host state the mode file refers to, made in dom0 before the first vif; the namespaces
    /// it returns are deleted at the end.
    setup: fn(dom0: &str, tag: &str) -> Vec<Ns>,
    /// `vifnet network <name> stop` after the last offline, undoing the host-wide part.
    stop: bool,
    /// The first online starts vifnet's dnsmasq (`<state>/dnsmasq.pid`); stop must end it.
    dnsmasq: bool,
    /// dnsmasq is stopped (SIGSTOP) while the calls are timed and continued after, so its
    /// own work (rereading the files on SIGHUP, going over the interfaces on each new
    /// address) stays out of the figures, as the target has it.
    pause_dnsmasq: bool,
    /// What must hold in this run's directory once every vif is offline again.
    check: fn(&Path),
    /// Xen's script on the reference machine, for comparison.
    reference: &'static str,
}

const BRIDGE: Mode = Mode {
    name: "bridge",
    run: "bridge",
    title: "vifnet vif bridge, antispoof on, whole process as libxl runs it (xenstore over a socket):",
    mode_file: |_| None,
    keys: |d| vec![("ip", format!("10.{}.{}.2", d >> 8, d & 0xff)), ("bridge", "xenbr0".into())],
    domain_keys: |_| Vec::new(),
    setup: |_, _| Vec::new(),
    stop: false,
    dnsmasq: false,
    pause_dnsmasq: false,
    check: |_| (),
    reference: "Xen's vif-bridge on the reference machine (xen-contract.md §7): online 22.6 ms, offline 68.5 ms (iptables-nft).",
};

/// The routed /29 of the issue: upstream routes the block to the host, the gateway is
/// answered on each vif, one IPv4 and one IPv6 address per guest. The gateway link is a
/// bridge because this kernel has no dummy driver.
const ROUTE: Mode = Mode {
    name: "route",
    run: "route",
    title: "vifnet vif route, antispoof on, gateway on each vif, 2 addresses per guest (IPv4 + IPv6):",
    mode_file: |_| Some("netdev = \"up0\"\ngateway = \"10.200.0.1/16 2001:db8:42::1/64\"\ngateway_kind = \"bridge\"\n".into()),
    // Inside the gateway's prefixes, clear of the gateway itself (10.200.0.1, ::1).
    keys: route_keys,
    domain_keys: |_| Vec::new(),
    setup: uplink,
    stop: true,
    dnsmasq: false,
    pause_dnsmasq: false,
    check: |_| (),
    reference: "Xen's vif-route on the reference machine (xen-contract.md §7): online 15.7 ms, offline 74.2 ms (iptables-nft, 1 addr).",
};

/// The heaviest per-vif path: the same, with upstream treating the block as on-link, so
/// each address is also proxied on the uplink and announced there.
const ROUTE_PROXIED: Mode = Mode {
    run: "route-proxied",
    title: "vifnet vif route, as above with uplink_proxy on (proxy ARP/NDP entries and announcements):",
    mode_file: |_| Some("netdev = \"up0\"\ngateway = \"10.200.0.1/16 2001:db8:42::1/64\"\ngateway_kind = \"bridge\"\nuplink_proxy = true\n".into()),
    ..ROUTE
};

/// Nat mode with our own dnsmasq: each guest's machine number from its domain's name in
/// the hosts file, its lease line in the ethers file, one SIGHUP to dnsmasq per call that
/// changed a file (dnsmasq, paused, rereads them after the timed calls). Both files are
/// this run's: vifnet runs here through setns, not `ip netns exec`, so the default
/// /etc/ethers would be the host's own. (dnsmasq's `read-ethers` still reads /etc/ethers,
/// only reads it; the run checks that the host's file is left as it was.)
const NAT: Mode = Mode {
    name: "nat",
    run: "nat",
    title: "vifnet vif nat, antispoof on, masquerade, our dnsmasq (hosts and ethers edits, SIGHUP):",
    mode_file: |dir| {
        let (hosts, ethers) = (dir.join("hosts"), dir.join("ethers"));
        Some(format!("netdev = \"up0\"\nhosts = \"{}\"\nethers = \"{}\"\nrun_dnsmasq = true\n", hosts.display(), ethers.display()))
    },
    // As libxl writes them: the domid, and the vif's devid.
    keys: |d| vec![("frontend-id", d.to_string()), ("handle", "0".into())],
    domain_keys: |d| vec![(format!("/local/domain/{d}/name"), format!("guest{d}"))],
    setup: uplink,
    stop: true,
    dnsmasq: true,
    pause_dnsmasq: true,
    // Every domain keeps its numbered line; no lease line outlives its vif.
    check: |dir| {
        let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap();
        assert_eq!(hosts.lines().count(), EXISTING as usize + 1, "nat: one hosts line per domain:\n{hosts}");
        assert!(hosts.lines().any(|l| l.split_whitespace().nth(1) == Some(&format!("guest{MEASURED}"))), "nat: guest{MEASURED} numbered");
        let ethers = std::fs::read_to_string(dir.join("ethers")).unwrap();
        assert_eq!(ethers, "", "nat: ethers lines left after every offline");
    },
    reference: "Xen's vif-nat on the reference machine (xen-contract.md §7): online 27.9 ms, offline 73.4 ms.",
};

/// The same with dnsmasq running throughout: on 2 cores, its reload and its rescans
/// compete with the next call.
const NAT_LIVE: Mode = Mode {
    run: "nat-live",
    title: "vifnet vif nat, as above with dnsmasq running during the timed calls (its work competing for the CPUs):",
    pause_dnsmasq: false,
    ..NAT
};

fn route_keys(d: u32) -> Vec<(&'static str, String)> {
    vec![("ip", format!("10.200.{}.{} 2001:db8:42::1:{d:x}", (d >> 8) + 1, d & 0xff))]
}

/// The uplink: a veth to an upstream namespace, so announcements leave on a real link.
fn uplink(dom0: &str, tag: &str) -> Vec<Ns> {
    let up = Ns::new(format!("{tag}-up"));
    ip(&["-n", dom0, "link", "add", "up0", "type", "veth", "peer", "name", "lan0", "netns", &up.0]);
    ip_batch(dom0, "addr add 198.51.100.2/24 dev up0\naddr add 2001:db8:1::2/64 dev up0 nodad\nlink set up0 up\n");
    ip_batch(&up.0, "addr add 198.51.100.1/24 dev lan0\nlink set lan0 up\n");
    vec![up]
}

/// Per mode: online and offline samples beside 1 and 100 vifs.
type Results = Vec<(&'static str, Vec<Duration>, Vec<Duration>)>;

/// `base` is on disk, like the nat files' homes (/var/lib, /etc); `run` holds the state
/// directory, on a tmpfs where there is one, like /run/vifnet on Debian.
fn bench(mode: &Mode, tag: &str, base: &Path, run: &Path) -> Results {
    let tag = format!("{tag}-{}", mode.run);
    let dom0 = Ns::new(format!("{tag}-dom0"));
    let guests = Ns::new(format!("{tag}-g"));
    let batch: String = (1..=EXISTING).chain([MEASURED]).map(|i| format!("link add vif{i}.0 type veth peer name e{i} netns {}\n", guests.0)).collect();
    ip_batch(&dom0.0, &batch);
    let _extra = (mode.setup)(&dom0.0, &tag);

    let base = base.join(mode.run);
    let state: PathBuf = run.join(mode.run).join("state");
    let modes: PathBuf = base.join("modes");
    // Route mode's sysctl drop-in goes here, never to the host's /run/sysctl.d.
    let sysctl: PathBuf = base.join("sysctl.d");
    std::fs::create_dir_all(&modes).unwrap();
    if let Some(text) = (mode.mode_file)(&base) {
        std::fs::write(modes.join(format!("{}.toml", mode.name)), text).unwrap();
    }
    let sock = base.join("xenstored.sock");
    let xs = fake::serve(&sock);
    let backend = |domid: u32| format!("/local/domain/0/backend/vif/{domid}/0");
    for d in (1..=EXISTING).chain([MEASURED]) {
        xs.set(&format!("{}/mac", backend(d)), &format!("00:16:3e:00:{:02x}:{:02x}", d >> 8, d & 0xff));
        xs.set(&format!("{}/frontend", backend(d)), &format!("/local/domain/{d}/device/vif/0"));
        for (k, v) in (mode.keys)(d) {
            xs.set(&format!("{}/{k}", backend(d)), &v);
        }
        for (path, v) in (mode.domain_keys)(d) {
            xs.set(&path, &v);
        }
    }
    // Only our own dnsmasq, by the pid it wrote, if the run fails before stopping it.
    let dnsmasq = OwnDnsmasq(state.join("dnsmasq.pid"));
    let host_ethers = HostFile::snapshot("/etc/ethers");

    let bin = env!("CARGO_BIN_EXE_vifnet");
    let name = mode.name;
    let vifnet = |args: &[&str]| {
        let mut c = Command::new(bin);
        c.args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("VIFNET_STATE_DIR", &state)
            .env("VIFNET_MODES_DIR", &modes)
            .env("VIFNET_SYSCTL_DIR", &sysctl)
            .env("XENSTORED_PATH", &sock);
        c
    };
    let run = |domid: u32, cmd: &str| -> Duration {
        let mut c = vifnet(&["vif", name, cmd, "type_if=vif"]);
        c.env("XENBUS_PATH", format!("backend/vif/{domid}/0")).env("vif", format!("vif{domid}.0")).env("netdev", "");
        let t = Instant::now();
        let out = c.output().expect("spawn vifnet");
        let dt = t.elapsed();
        if !out.status.success() {
            // Quiet under libxl: the reason is in xenstore, as libxl would read it.
            let why = xs.get(&format!("{}/hotplug-error", backend(domid)));
            panic!("vifnet {name} {cmd} vif{domid}.0: {}: {} {why:?}", out.status, String::from_utf8_lossy(&out.stderr));
        }
        dt
    };
    let ns_path = format!("/run/netns/{}", dom0.0);
    // Run everything from a thread inside dom0's namespace: children inherit it, and no
    // `ip netns exec` (2-3 ms of mount work) pollutes the figures.
    let results = std::thread::scope(|s| {
        s.spawn(|| {
            let f = std::fs::File::open(&ns_path).unwrap();
            // SAFETY: setns on a namespace fd, for this thread only.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            // Warm-up: the host-wide part (bridge, forwarding, gateway, table) is a one-time
            // cost, not a per-vif one.
            run(MEASURED, "online");
            let status = xs.get(&format!("{}/hotplug-status", backend(MEASURED)));
            assert_eq!(status.as_deref(), Some("connected"), "{name}: online did not report connected");
            let pid = dnsmasq.pid();
            assert_eq!(pid.is_some(), mode.dnsmasq, "{name}: dnsmasq running after the first online: {pid:?}");
            run(MEASURED, "offline");
            let mut out = Vec::new();
            for (label, bystanders) in [("1 vif", 0), ("100 vifs", EXISTING)] {
                for d in 1..=bystanders {
                    run(d, "online");
                }
                let (mut on, mut off) = (Vec::new(), Vec::new());
                let paused = pid.filter(|_| mode.pause_dnsmasq);
                signal(paused, libc::SIGSTOP);
                for _ in 0..ROUNDS {
                    on.push(run(MEASURED, "online"));
                    off.push(run(MEASURED, "offline"));
                }
                signal(paused, libc::SIGCONT);
                out.push((label, on, off));
            }
            for d in 1..=EXISTING {
                run(d, "offline");
            }
            // The same dnsmasq throughout: none restarted along the way.
            assert_eq!(dnsmasq.pid(), pid, "{name}: dnsmasq changed during the run");
            if mode.stop {
                let out = vifnet(&["network", name, "stop"]).output().expect("spawn vifnet");
                assert!(out.status.success(), "vifnet network {name} stop: {}", String::from_utf8_lossy(&out.stderr));
            }
            if let Some(pid) = pid {
                assert!(!running(pid), "{name}: dnsmasq (pid {pid}) still running after network stop");
            }
            assert_eq!(dnsmasq.pid(), None, "{name}: a dnsmasq of this run is still there");
            (mode.check)(&base);
            // Nothing of ours may stay behind, least of all a drop-in a reboot would apply.
            let left = std::fs::read_dir(&sysctl).map(|d| d.count()).unwrap_or(0);
            assert_eq!(left, 0, "{name}: {} still holds a sysctl drop-in", sysctl.display());
            out
        })
        .join()
        .expect("bench thread")
    });
    drop(xs);
    assert!(host_ethers.unchanged(), "{name}: the host's /etc/ethers changed during the run");
    drop(dnsmasq);
    results
}

/// A signal to the dnsmasq this run started (its pid checked by `OwnDnsmasq`), if any.
fn signal(pid: Option<i32>, sig: i32) {
    if let Some(pid) = pid {
        // SAFETY: kill on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "signal {sig} to dnsmasq {pid}");
    }
}

/// Whether the process is there and has not exited (a zombie, waiting for whoever
/// inherited the daemon to reap it, has let go of everything).
fn running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the parenthesised name: "pid (comm) S ...".
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|st| st != "Z" && st != "X")
}

/// The dnsmasq a run's vifnet started, known only by the pid file vifnet gave it.
struct OwnDnsmasq(PathBuf);
impl OwnDnsmasq {
    /// The pid in the file, if it is a live dnsmasq started with this very pid file.
    fn pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(&self.0).ok()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let ours = format!("--pid-file={}", self.0.display());
        let is_dnsmasq = args.first().is_some_and(|a| a.ends_with(b"dnsmasq"));
        (is_dnsmasq && args.contains(&ours.as_bytes())).then_some(pid)
    }
}
impl Drop for OwnDnsmasq {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // SAFETY: a signal to the dnsmasq this run started, by its own pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// A host file the bench must not change (read only: its length, mtime and inode).
struct HostFile(&'static str, Option<(u64, i64, i64, u64)>);
impl HostFile {
    fn snapshot(path: &'static str) -> HostFile {
        HostFile(path, Self::stat(path))
    }
    fn stat(path: &str) -> Option<(u64, i64, i64, u64)> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.len(), m.mtime(), m.mtime_nsec(), m.ino()))
    }
    fn unchanged(&self) -> bool {
        Self::stat(self.0) == self.1
    }
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench: needs root (network namespaces)");
        std::process::exit(1);
    }
    // cargo passes `--bench`; any other word names a mode to run alone.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let tag = format!("vfb{}", std::process::id());
    let base = TempDir(std::env::temp_dir().join(&tag));
    // /run itself is not ours to write; /dev/shm is the same kind of file system.
    let shm = Path::new("/dev/shm");
    let run = TempDir(if shm.is_dir() { shm.join(&tag) } else { base.0.join("run") });
    for mode in [BRIDGE, ROUTE, ROUTE_PROXIED, NAT, NAT_LIVE] {
        if !only.is_empty() && !only.iter().any(|m| m == mode.run) {
            continue;
        }
        let results = bench(&mode, &tag, &base.0, &run.0);
        println!("{}", mode.title);
        for (label, on, off) in results {
            report(&format!("online  beside {label}"), on);
            report(&format!("offline beside {label}"), off);
        }
        println!("{}", mode.reference);
    }
    println!("Target: online median <= 3 ms (nat: dnsmasq's own work excluded), offline <= 15 ms.");
}

/// The run's directory, removed at the end even when a mode fails.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
