//! libxl runs many hotplug scripts at once. Here bursts of 64 concurrent vifnet calls,
//! onlines and offlines of all three modes, contend in one dom0 for the one lock, the one
//! state directory, the shared `inet vifnet` table (route and nat) and nat's files, and
//! must leave exactly the state the calls describe, run after run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

/// Guests with a vif in dom0; each burst touches `BURST` of them, so some stay as they are
/// while others change around them.
const VIFS: usize = 96;
const BURST: usize = 64;
const RUNS: usize = 20;

const BRIDGE: &str = "xenbr0";
/// Route mode's gateway (held by a port-less bridge: this kernel has no dummy driver). Its
/// /29 has only five guest addresses, so routed guests use /32s of 198.18.0.0/15 instead.
const GATEWAY: &str = "203.0.113.193/29";
const DOMAIN: &str = "xen.internal";
/// A line of the administrator's in the ethers file, which no burst may lose.
const ADMIN_ETHERS: &str = "02:00:00:00:00:99 192.0.2.250";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bridge,
    Route,
    Nat,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Bridge => "bridge",
            Mode::Route => "route",
            Mode::Nat => "nat",
        }
    }
}

/// xorshift64*: reproducible bursts from a printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn mode(&mut self) -> Mode {
        [Mode::Bridge, Mode::Route, Mode::Nat][self.below(3)]
    }
    /// `items` in a random order (Fisher-Yates).
    fn shuffled<T>(&mut self, mut items: Vec<T>) -> Vec<T> {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
        items
    }
}

// Guest i's names and addresses (i from 1 to VIFS), the same in every mode and run.
fn vif(i: usize) -> String {
    format!("vif{i}.0")
}
fn mac(i: usize) -> String {
    format!("00:16:3e:00:{:02x}:{:02x}", i >> 8, i & 0xff)
}
fn bridged_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, i as u8)
}
fn routed_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8)
}
fn machine(i: usize) -> String {
    format!("node{i}")
}
/// The EUI-64 link-local address of `mac(i)`: a bridged guest may send from it.
fn link_local(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0x0216, 0x3eff, 0xfe00, i as u16)
}
/// Nat mode's host side of a vif: the guest's address with 128 added to the last byte.
fn host_side(guest: Ipv4Addr) -> Ipv4Addr {
    let o = guest.octets();
    Ipv4Addr::new(o[0], o[1], o[2], o[3] | 128)
}

/// One vifnet call of a burst.
#[derive(Debug, Clone, Copy)]
enum Call {
    Online(usize, Mode),
    Offline(usize, Mode),
}

impl Call {
    fn index(self) -> usize {
        match self {
            Call::Online(i, _) | Call::Offline(i, _) => i,
        }
    }

    /// `vif <mode> online|offline vif=... [key=value...]`: an offline, as libxl's, gives
    /// only the vif; the journal says the rest.
    fn args(self) -> Vec<String> {
        let (i, mode, verb) = match self {
            Call::Online(i, m) => (i, m, "online"),
            Call::Offline(i, m) => (i, m, "offline"),
        };
        let mut args = vec!["vif".to_string(), mode.name().to_string(), verb.to_string(), format!("vif={}", vif(i))];
        if verb == "online" {
            args.extend(match mode {
                Mode::Bridge => vec![format!("mac={}", mac(i)), format!("ip={}", bridged_ip(i))],
                Mode::Route => vec![format!("ip={}", routed_ip(i))],
                Mode::Nat => vec![format!("name={}", machine(i)), format!("mac={}", mac(i))],
            });
        }
        args
    }
}

/// What the calls so far must have left: each guest's mode while online, and the address
/// nat mode gave each machine (kept for good once given, offline or not).
#[derive(Default)]
struct Expected {
    online: BTreeMap<usize, Mode>,
    nat_ip: BTreeMap<usize, Ipv4Addr>,
    /// Machines ever online in nat mode: their hosts lines stay, by design.
    ever_nat: BTreeSet<usize>,
    nat_started: bool,
    /// The dnsmasq nat's first online started: the same one serves to the end.
    dnsmasq: Option<i32>,
}

impl Expected {
    fn record(&mut self, call: Call) {
        match call {
            Call::Online(i, m) => {
                assert!(self.online.insert(i, m).is_none(), "the test put {} online twice", vif(i));
                if m == Mode::Nat {
                    self.ever_nat.insert(i);
                    self.nat_started = true;
                }
            }
            Call::Offline(i, _) => {
                self.online.remove(&i);
            }
        }
    }
    fn in_mode(&self, mode: Mode) -> impl Iterator<Item = usize> + '_ {
        self.online.iter().filter(move |(_, m)| **m == mode).map(|(i, _)| *i)
    }
    fn nat_ip(&self, i: usize) -> Ipv4Addr {
        self.nat_ip[&i]
    }
}

/// dom0 with an uplink to an upstream host, `VIFS` vifs whose peers stay in dom0 (down),
/// bridge mode started, and mode files for route and nat with files of the test's own.
struct Lab {
    _upstream: Netns,
    dom0: Netns,
    dirs: Dirs,
}

impl Lab {
    fn new() -> Lab {
        let upstream = Netns::new("cup");
        let dom0 = Netns::new("cdom0");
        let dirs = Dirs::new();
        veth(&dom0, "up0", &upstream, "eth0");
        upstream.ok(&["ip", "addr", "add", "198.51.100.1/24", "dev", "eth0"]);
        upstream.ok(&["ip", "link", "set", "eth0", "up"]);
        dom0.ok(&["ip", "addr", "add", "198.51.100.2/24", "dev", "up0"]);
        dom0.ok(&["ip", "link", "set", "up0", "up"]);
        dom0.ok(&["ip", "route", "add", "default", "via", "198.51.100.1"]);
        // One `ip -batch` for all the veths: a hundred `ip` processes would take a second.
        let batch: String = (1..=VIFS).map(|i| format!("link add {} type veth peer name peer{i}\n", vif(i))).collect();
        let mut c = dom0.cmd(&["ip", "-batch", "-"]);
        c.stdin(Stdio::piped());
        let mut child = c.spawn().unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), batch.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "ip -batch");
        let lab = Lab { _upstream: upstream, dom0, dirs };
        std::fs::write(lab.ethers_path(), format!("# the administrator's\n{ADMIN_ETHERS}\n")).unwrap();
        std::fs::write(lab.dirs.modes.join("route.toml"), format!("netdev = \"up0\"\ngateway = \"{GATEWAY}\"\ngateway_kind = \"bridge\"\n")).unwrap();
        std::fs::write(
            lab.dirs.modes.join("nat.toml"),
            format!("netdev = \"up0\"\nhosts = \"{}\"\nethers = \"{}\"\nrun_dnsmasq = true\n", lab.hosts_path().display(), lab.ethers_path().display()),
        )
        .unwrap();
        // Route and nat make their host-wide part at their first online, as under libxl,
        // which never runs a network script; bridge mode needs its bridge first.
        vifnet_ok(&lab.dom0, &lab.dirs, &[], &["network", "bridge", "start"]);
        lab
    }

    fn hosts_path(&self) -> std::path::PathBuf {
        self.dirs.state.parent().unwrap().join("hosts")
    }
    fn ethers_path(&self) -> std::path::PathBuf {
        self.dirs.state.parent().unwrap().join("ethers")
    }

    /// Starts every call before waiting for any, so they all contend for the lock; then
    /// fails with every call that did not exit 0.
    fn burst(&self, calls: &[Call]) {
        let children: Vec<_> = calls
            .iter()
            .map(|call| {
                let args = call.args();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let mut c: Command = vifnet_command(&self.dom0, &self.dirs, &[], &args);
                (call, c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn vifnet"))
            })
            .collect();
        let failed: Vec<String> = children
            .into_iter()
            .filter_map(|(call, child)| {
                let out = child.wait_with_output().unwrap();
                (!out.status.success()).then(|| format!("{call:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
            })
            .collect();
        assert!(failed.is_empty(), "{} of {} concurrent calls failed:\n{}", failed.len(), calls.len(), failed.join("\n"));
    }

    fn json(&self, argv: &[&str]) -> Value {
        serde_json::from_str(&self.dom0.ok(argv)).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    }

    /// Our dnsmasq (started by nat's first online), if it runs: its pid file names it, and
    /// its command line our state directory.
    fn dnsmasq_pid(&self) -> Option<i32> {
        let pid: i32 = read(&self.dirs.state.join("dnsmasq.pid")).trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline).contains(&*self.dirs.state.to_string_lossy()).then_some(pid)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Only our own dnsmasq, by its pid; the namespaces and directories go after this.
        if let Some(pid) = self.dnsmasq_pid() {
            // SAFETY: kill(2) of one pid we checked is our dnsmasq.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

// ---- What the host must have: each helper compares one kind of state, whole. ----

/// `<state>/vifs` holds exactly one journal per online vif (no leftover temporary file),
/// each naming the mode and the inputs of its online.
fn assert_journals(lab: &Lab, exp: &Expected) {
    let dir = lab.dirs.state.join("vifs");
    let files: BTreeSet<String> =
        std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    let want: BTreeSet<String> = exp.online.keys().map(|&i| format!("{}.json", vif(i))).collect();
    assert_eq!(files, want, "journal files");
    for (&i, &mode) in &exp.online {
        let j: Value = serde_json::from_slice(&std::fs::read(dir.join(format!("{}.json", vif(i)))).unwrap()).unwrap();
        let name = vif(i);
        assert_eq!(
            (j["mode"].as_str(), j["kernel_name"].as_str(), j["name"].as_str()),
            (Some(mode.name()), Some(&*name), Some(&*name)),
            "journal of {name}: {j}"
        );
        let fields: Vec<(&str, Value)> = match mode {
            Mode::Bridge => vec![("bridge", BRIDGE.into()), ("guest_mac", mac(i).into()), ("ips", vec![format!("{}/32", bridged_ip(i))].into())],
            Mode::Route => vec![("ips", vec![format!("{}/32", routed_ip(i))].into()), ("gateway", vec!["203.0.113.193/32"].into())],
            Mode::Nat => vec![
                ("hostname", machine(i).into()),
                ("mac", mac(i).into()),
                ("guest", exp.nat_ip(i).to_string().into()),
                ("host_side", host_side(exp.nat_ip(i)).to_string().into()),
            ],
        };
        for (key, want) in fields {
            assert_eq!(j[key], want, "journal of {name}, {key}: {j}");
        }
    }
}

/// One nft element as text, as `nft list` would write it: `"vif3.0" . 10.0.0.1` is
/// `vif3.0 . 10.0.0.1`, a prefix `10.0.0.0/8`.
fn element_text(e: &Value) -> String {
    if let Some(s) = e.as_str() {
        return s.to_string();
    }
    if let Some(parts) = e.get("concat").and_then(Value::as_array) {
        return parts.iter().map(element_text).collect::<Vec<_>>().join(" . ");
    }
    if let Some(p) = e.get("prefix") {
        return format!("{}/{}", element_text(&p["addr"]), p["len"]);
    }
    if let Some(inner) = e.get("elem") {
        return element_text(&inner["val"]);
    }
    e.to_string()
}

/// Every set of an nft table with its elements (sorted); no sets when the table is absent.
fn nft_sets(lab: &Lab, family: &str) -> BTreeMap<String, Vec<String>> {
    let out = lab.dom0.run(&["nft", "-j", "list", "table", family, "vifnet"]);
    if !out.status.success() {
        return BTreeMap::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("set"))
        .map(|s| {
            let mut elems: Vec<String> = s["elem"].as_array().map(|a| a.iter().map(element_text).collect()).unwrap_or_default();
            elems.sort();
            (s["name"].as_str().unwrap().to_string(), elems)
        })
        .collect()
}

/// `bridge vifnet` guards exactly the bridged guests (port, MAC, IPv4 and link-local
/// address), `inet vifnet` exactly the routed and nat ones; nat's masquerade is one element.
fn assert_nft_elements(lab: &Lab, exp: &Expected) {
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let bridged: Vec<usize> = exp.in_mode(Mode::Bridge).collect();
    let mut want_bridge: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    want_bridge.insert("guarded", sorted(bridged.iter().map(|&i| vif(i)).collect()));
    want_bridge.insert("vif_mac", sorted(bridged.iter().map(|&i| format!("{} . {}", vif(i), mac(i))).collect()));
    want_bridge.insert("vif_ip4", sorted(bridged.iter().map(|&i| format!("{} . {}", vif(i), bridged_ip(i))).collect()));
    want_bridge.insert("vif_ip6", sorted(bridged.iter().map(|&i| format!("{} . {}", vif(i), link_local(i))).collect()));
    want_bridge.insert("vif_net4", vec![]);
    want_bridge.insert("vif_net6", vec![]);

    let inet: Vec<usize> = exp.online.iter().filter(|(_, m)| **m != Mode::Bridge).map(|(i, _)| *i).collect();
    let inet_ip = |i: usize| if exp.online[&i] == Mode::Route { routed_ip(i) } else { exp.nat_ip(i) };
    let mut want_inet: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    want_inet.insert("guarded", sorted(inet.iter().map(|&i| vif(i)).collect()));
    want_inet.insert("vif_ip4", sorted(inet.iter().map(|&i| format!("{} . {}", vif(i), inet_ip(i))).collect()));
    want_inet.insert("vif_ip6", vec![]);
    want_inet.insert("vif_net4", vec![]);
    want_inet.insert("vif_net6", vec![]);
    if exp.nat_started {
        want_inet.insert("masq_out", vec!["up0 . 10.0.0.0/8".to_string()]);
    }

    for (family, want) in [("bridge", want_bridge), ("inet", want_inet)] {
        let have = nft_sets(lab, family);
        for (set, elems) in want {
            let got = have.get(set).cloned().unwrap_or_default();
            if got != elems {
                let missing: Vec<_> = elems.iter().filter(|e| !got.contains(e)).collect();
                let extra: Vec<_> = got.iter().filter(|e| !elems.contains(e)).collect();
                panic!("nft set {family} vifnet {set}: missing {missing:?}, unexpected {extra:?}");
            }
        }
    }
}

/// Our routes (protocol 118) are exactly one host route per routed or nat guest, on its vif.
fn assert_routes(lab: &Lab, exp: &Expected) {
    let mut have: Vec<String> = Vec::new();
    for fam in ["-4", "-6"] {
        for r in lab.json(&["ip", "-j", fam, "route", "show", "table", "all", "proto", "118"]).as_array().unwrap() {
            have.push(format!("{} dev {}", r["dst"].as_str().unwrap(), r["dev"].as_str().unwrap()));
        }
    }
    have.sort();
    let mut want: Vec<String> = exp
        .online
        .iter()
        .filter_map(|(&i, &m)| match m {
            Mode::Bridge => None,
            Mode::Route => Some(format!("{} dev {}", routed_ip(i), vif(i))),
            Mode::Nat => Some(format!("{} dev {}", exp.nat_ip(i), vif(i))),
        })
        .collect();
    want.sort();
    assert_eq!(have, want, "routes of protocol 118");
}

/// Bridged vifs, and only they, are ports of the bridge; nat vifs hold their host side, and
/// no other vif an IPv4 address (a routed vif's gateway answers without one).
fn assert_links_and_addresses(lab: &Lab, exp: &Expected) {
    let masters: BTreeMap<String, Option<String>> = lab
        .json(&["ip", "-j", "link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["ifname"].as_str().unwrap().to_string(), l["master"].as_str().map(String::from)))
        .collect();
    let addrs: BTreeMap<String, Vec<String>> = lab
        .json(&["ip", "-j", "-4", "addr", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let a = l["addr_info"].as_array().unwrap().iter().map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"])).collect();
            (l["ifname"].as_str().unwrap().to_string(), a)
        })
        .collect();
    for i in 1..=VIFS {
        let name = vif(i);
        let mode = exp.online.get(&i).copied();
        let want_master = (mode == Some(Mode::Bridge)).then(|| BRIDGE.to_string());
        assert_eq!(masters.get(&name), Some(&want_master), "{name} ({mode:?}): its bridge");
        let want_addrs: Vec<String> = match mode {
            Some(Mode::Nat) => vec![format!("{}/32", host_side(exp.nat_ip(i)))],
            _ => vec![],
        };
        assert_eq!(addrs.get(&name).cloned().unwrap_or_default(), want_addrs, "{name} ({mode:?}): its IPv4 addresses");
    }
}

/// The hosts file has one `IP name name.domain` line per machine ever online in nat mode,
/// with an address of its own that never changes; the ethers file the administrator's
/// lines and one `MAC IP` line per nat guest online now. Learns each new machine's address.
fn assert_nat_files(lab: &Lab, exp: &mut Expected) {
    let hosts = read(&lab.hosts_path());
    let mut seen = BTreeSet::new();
    for line in hosts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let i: usize = f.get(1).and_then(|n| n.strip_prefix("node")).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("hosts line {line:?}"));
        let ip: Ipv4Addr = f[0].parse().unwrap_or_else(|_| panic!("hosts line {line:?}"));
        assert_eq!(line, format!("{ip} {} {}.{DOMAIN}", machine(i), machine(i)), "hosts line");
        assert!(ip.octets()[0] == 10 && ip.octets()[3] == 1, "{line:?}: vifN.0 is interface 1 of 10.m.m.0/24");
        assert!(seen.insert(i), "node{i} twice in hosts:\n{hosts}");
        let known = *exp.nat_ip.entry(i).or_insert(ip);
        assert_eq!(ip, known, "node{i} kept its address");
    }
    assert_eq!(seen, exp.ever_nat, "machines in hosts:\n{hosts}");
    let distinct: BTreeSet<_> = exp.nat_ip.values().collect();
    assert_eq!(distinct.len(), exp.nat_ip.len(), "every machine has its own address:\n{hosts}");

    let mut have: Vec<String> = read(&lab.ethers_path()).lines().map(String::from).collect();
    have.sort();
    let mut want: Vec<String> = vec!["# the administrator's".into(), ADMIN_ETHERS.into()];
    want.extend(exp.in_mode(Mode::Nat).map(|i| format!("{} {}", mac(i), exp.nat_ip(i))));
    want.sort();
    assert_eq!(have, want, "ethers lines");
}

/// Nat's dnsmasq runs, the very one started at the first nat online (rereading its files on
/// SIGHUP, never restarted), and answers for `machines` with the addresses in the hosts
/// file, asked at the host side of `server`, a nat guest online for a while (dnsmasq has
/// bound its address).
fn assert_dnsmasq_answers(lab: &Lab, exp: &mut Expected, server: Option<usize>, machines: &[usize]) {
    if !exp.nat_started {
        return;
    }
    let pid = lab.dnsmasq_pid().expect("our dnsmasq runs");
    assert_eq!(*exp.dnsmasq.get_or_insert(pid), pid, "dnsmasq was restarted");
    let Some(server) = server else { return };
    let at = host_side(exp.nat_ip(server)).to_string();
    for &i in machines {
        let fqdn = format!("{}.{DOMAIN}", machine(i));
        let want = exp.nat_ip(i).to_string();
        let answers = || {
            let out = lab.dom0.run(&["busybox", "nslookup", &fqdn, &at]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            (text.lines().any(|l| l.starts_with("Address") && l.split_whitespace().last() == Some(&*want)), text)
        };
        // dnsmasq rereads on SIGHUP and binds a new address from its own loop: soon, not at
        // once, so a slow machine gets two seconds.
        let deadline = Instant::now() + Duration::from_secs(2);
        let (mut ok, mut text) = answers();
        while !ok && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            (ok, text) = answers();
        }
        assert!(ok, "dnsmasq at {at} for {fqdn}, not {want}:\n{text}");
    }
}

/// vifnet's own comparison of its records with the host finds nothing to say.
fn assert_check_is_clean(lab: &Lab) {
    let out = vifnet(&lab.dom0, &lab.dirs, &[], &["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("all as recorded"), "vifnet check: {}\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
}

fn assert_exact_state(lab: &Lab, exp: &mut Expected) {
    // The nat files first: they tell each new machine's address, which the rest check.
    assert_nat_files(lab, exp);
    assert_journals(lab, exp);
    assert_nft_elements(lab, exp);
    assert_routes(lab, exp);
    assert_links_and_addresses(lab, exp);
    assert_check_is_clean(lab);
}

/// Every process of our binary (the calls' children that close sockets late included) has
/// gone a moment after the last call.
fn assert_no_vifnet_process_lingers() {
    let bin = std::fs::canonicalize(vifnet_bin()).unwrap();
    let ours = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
            .filter(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|exe| exe == bin))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ours().is_empty() {
        assert!(Instant::now() < deadline, "vifnet processes still running: {:?}", ours());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sixty_four_concurrent_calls_of_all_modes_leave_exactly_their_state_twenty_times() {
    if !root_or_skip() {
        return;
    }
    let seed: u64 = std::env::var("VIFNET_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    eprintln!("seed {seed} (VIFNET_SEED={seed} repeats this test's calls)");
    let mut rng = Rng(seed.max(1)); // xorshift never leaves 0
    let start = Instant::now();
    let lab = Lab::new();
    let mut exp = Expected::default();
    for run in 1..=RUNS {
        let t = Instant::now();
        // Some offline guests come online first, so that the burst has guests of every
        // mode to take offline while others come online beside them.
        let offline: Vec<usize> = (1..=VIFS).filter(|i| !exp.online.contains_key(i)).collect();
        let count = 4 + rng.below(13);
        let first: Vec<Call> = rng.shuffled(offline).into_iter().take(count).map(|i| Call::Online(i, rng.mode())).collect();
        lab.burst(&first);
        first.iter().for_each(|&c| exp.record(c));
        assert_exact_state(&lab, &mut exp);

        // The burst: BURST distinct guests, each going offline if online, else online in
        // a random mode; the others stay as they are.
        let burst: Vec<Call> = rng
            .shuffled((1..=VIFS).collect())
            .into_iter()
            .take(BURST)
            .map(|i| match exp.online.get(&i) {
                Some(&m) => Call::Offline(i, m),
                None => Call::Online(i, rng.mode()),
            })
            .collect();
        let onlines = burst.iter().filter(|c| matches!(c, Call::Online(..))).count();
        let b = Instant::now();
        lab.burst(&burst);
        let burst_secs = b.elapsed().as_secs_f64();
        burst.iter().for_each(|&c| exp.record(c));
        assert_exact_state(&lab, &mut exp);
        // The machines that came online in the burst, the last lines dnsmasq had to reread.
        let server = exp.in_mode(Mode::Nat).find(|i| !burst.iter().any(|c| matches!(c, Call::Online(j, _) if j == i)));
        let new_machines: Vec<usize> = burst.iter().filter(|c| matches!(c, Call::Online(_, Mode::Nat))).map(|c| c.index()).collect();
        assert_dnsmasq_answers(&lab, &mut exp, server, &new_machines);
        let by_mode = |m| exp.in_mode(m).count();
        eprintln!(
            "run {run}: {count} onlines, then {onlines} onlines and {} offlines at once ({burst_secs:.2} s); online now: {} bridge, {} route, {} nat; run {:.2} s",
            BURST - onlines,
            by_mode(Mode::Bridge),
            by_mode(Mode::Route),
            by_mode(Mode::Nat),
            t.elapsed().as_secs_f64()
        );
    }
    // Everything goes offline at once: nothing of any guest is left but nat's hosts lines.
    let last: Vec<Call> = exp.online.iter().map(|(&i, &m)| Call::Offline(i, m)).collect();
    lab.burst(&last);
    last.iter().for_each(|&c| exp.record(c));
    assert_exact_state(&lab, &mut exp);
    assert_no_vifnet_process_lingers();
    eprintln!("{RUNS} runs in {:.1} s", start.elapsed().as_secs_f64());
}
