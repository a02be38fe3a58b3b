//! One mode's run: its namespaces, fake xenstored and directories; the timed calls at each
//! number of guests online; the checks that nothing is left behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use vifnet::xenstore::fake::{self, FakeServer};

use crate::host::{self, add_vifs, del_vifs, signal, vif, HostFile, Ns, OwnDnsmasq};
use crate::modes::{common_keys, Mode};
use crate::procs::{Forks, ProcEvents};
use crate::report::{Call, Row};
use crate::spawner::{Done, Job, Order, Spawner};

/// Samples per verb at each N: each one on a vif device made for it alone.
pub struct Sizes {
    pub rounds: u32,
    /// `network <mode> start` when started already, at each N.
    pub repairs: u32,
    /// Cold `network <mode> start` + `stop` cycles, with no guest.
    pub cycles: u32,
    pub bursts: &'static [u32],
    /// Levels above this are skipped (a quick run).
    pub max_n: u32,
    /// Only these levels, if given (`VIFNET_BENCH_N=0,4000`: chasing one figure).
    pub only_n: Option<Vec<u32>>,
}

/// Domids: bystanders are 1..=N; then the warm-up's, the samples' (vifnet's and the
/// floor's, per level), the bursts'. libxl names the vif of domain d `vif<d>.0`.
const WARM: u32 = 4999;
fn sample(level: usize, i: u32) -> u32 {
    5000 + 100 * level as u32 + i
}
fn floor_sample(level: usize, i: u32) -> u32 {
    5050 + 100 * level as u32 + i
}
fn burst_domids(k: u32) -> std::ops::Range<u32> {
    let base = if k <= 50 { 6000 } else { 6100 };
    base..base + k
}

pub struct Run<'a> {
    mode: &'a Mode,
    sizes: &'a Sizes,
    spawner: &'a mut Spawner,
    procs: Option<&'a ProcEvents>,
    dom0: Ns,
    guests: Ns,
    base: PathBuf,
    state: PathBuf,
    sysctl: PathBuf,
    env: Vec<String>,
    xs: FakeServer,
    log: PathBuf,
    bin: &'static str,
    tools: Tools,
    /// Domains ever online (nat numbers each one for good).
    domains: BTreeSet<u32>,
    pub rows: Vec<Row>,
}

/// Absolute paths, for execve.
struct Tools {
    ip: String,
    nft: String,
}

fn which(name: &str) -> String {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().map(|d| format!("{d}/{name}")).find(|p| Path::new(p).exists()).unwrap_or_else(|| panic!("{name}: not found"))
}

fn backend(domid: u32) -> String {
    format!("/local/domain/0/backend/vif/{domid}/0")
}

/// Runs `mode` whole and returns its rows. `base` is on disk, like the nat files' homes
/// (/var/lib, /etc); `run` holds the state directory, on a tmpfs where there is one, like
/// /run/vifnet on Debian.
pub fn mode(mode: &Mode, sizes: &Sizes, spawner: &mut Spawner, procs: Option<&ProcEvents>, tag: &str, base: &Path, run: &Path) -> Vec<Row> {
    let tag = format!("{tag}-{}", mode.run);
    let dom0 = Ns::new(format!("{tag}-dom0"));
    let guests = Ns::new(format!("{tag}-g"));
    let _extra = (mode.setup)(&dom0.0, &tag);
    let base = base.join(mode.run);
    let state = run.join(mode.run).join("state");
    let modes = base.join("modes");
    // Route mode's sysctl drop-in goes here, never to the host's /run/sysctl.d.
    let sysctl = base.join("sysctl.d");
    std::fs::create_dir_all(&modes).unwrap();
    if let Some(text) = (mode.mode_file)(&base) {
        std::fs::write(modes.join(format!("{}.toml", mode.name)), text).unwrap();
    }
    let sock = base.join("xenstored.sock");
    let xs = fake::serve(&sock);
    let env = vec![
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        format!("VIFNET_STATE_DIR={}", state.display()),
        format!("VIFNET_MODES_DIR={}", modes.display()),
        format!("VIFNET_SYSCTL_DIR={}", sysctl.display()),
        format!("XENSTORED_PATH={}", sock.display()),
    ];
    // Only our own dnsmasq, by the pid it wrote, if the run fails before stopping it.
    let dnsmasq = OwnDnsmasq(state.join("dnsmasq.pid"));
    let host_ethers = HostFile::snapshot("/etc/ethers");
    let log = base.join("calls.log");
    let mut r = Run {
        mode,
        sizes,
        spawner,
        procs,
        dom0,
        guests,
        base,
        state,
        sysctl,
        env,
        xs,
        log,
        // Another program in its place (a wrapper that profiles each call, say).
        bin: std::env::var("VIFNET_BENCH_BIN").map(|b| &*b.leak()).unwrap_or(env!("CARGO_BIN_EXE_vifnet")),
        tools: Tools { ip: which("ip"), nft: which("nft") },
        domains: BTreeSet::new(),
        rows: Vec::new(),
    };
    r.keys();
    r.measure(&dnsmasq);
    drop(r.xs);
    assert!(host_ethers.unchanged(), "{}: the host's /etc/ethers changed during the run", mode.run);
    drop(dnsmasq);
    r.rows
}

impl Run<'_> {
    fn levels(&self) -> Vec<u32> {
        let wanted = |n: &u32| self.sizes.only_n.as_ref().is_none_or(|only| only.contains(n));
        self.mode.levels.iter().copied().filter(|n| *n <= self.sizes.max_n && wanted(n)).collect()
    }

    /// libxl's keys for every domain the run will bring online.
    fn keys(&self) {
        let top = self.levels().last().copied().unwrap_or(0);
        let levels = self.levels().len();
        let samples = (0..levels).flat_map(|l| (0..self.sizes.rounds).map(move |i| sample(l, i)));
        let bursts = self.sizes.bursts.iter().flat_map(|k| burst_domids(*k));
        for d in (1..=top).chain([WARM]).chain(samples).chain(bursts) {
            for (k, v) in common_keys(d).into_iter().chain((self.mode.keys)(d)) {
                self.xs.set(&format!("{}/{k}", backend(d)), &v);
            }
            for (path, v) in (self.mode.domain_keys)(d) {
                self.xs.set(&path, &v);
            }
        }
    }

    fn measure(&mut self, dnsmasq: &OwnDnsmasq) {
        let (mode, name) = (self.mode, self.mode.run);
        let t0 = Instant::now();
        if mode.cycles {
            self.cold_cycles();
            assert_eq!(dnsmasq.pid(), None, "{name}: dnsmasq left running by network stop");
        }
        // Warm-up: the host-wide part (bridge, forwarding, gateway, table, dnsmasq) is made by
        // the first online, once, not per vif.
        add_vifs(&self.dom0, &self.guests, [WARM]);
        self.domains.insert(WARM);
        self.vif(WARM, "online");
        let pid = dnsmasq.pid();
        assert_eq!(pid.is_some(), mode.dnsmasq, "{name}: dnsmasq running after the first online: {pid:?}");
        self.vif(WARM, "offline");
        del_vifs(&self.dom0, [WARM]);
        let paused = pid.filter(|_| mode.pause_dnsmasq);
        signal(paused, libc::SIGSTOP);

        let mut online = 0;
        for (level, n) in self.levels().into_iter().enumerate() {
            self.bystanders(online, n);
            online = n;
            self.level(level, n);
        }
        self.bystanders(online, 0);
        signal(paused, libc::SIGCONT);

        // The same dnsmasq throughout: none restarted along the way.
        assert_eq!(dnsmasq.pid(), pid, "{name}: dnsmasq changed during the run");
        if mode.stop {
            let stop = self.network("stop");
            self.rows.push(Row::new(name, 0, "stop", &[stop]));
        }
        if let Some(pid) = pid {
            assert!(!host::running(pid), "{name}: dnsmasq (pid {pid}) still running after network stop");
        }
        assert_eq!(dnsmasq.pid(), None, "{name}: a dnsmasq of this run is still there");
        (mode.check)(&self.base, self.domains.len());
        // Nothing of ours may stay behind, least of all a drop-in a reboot would apply.
        let left = std::fs::read_dir(&self.sysctl).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "{name}: {} still holds a sysctl drop-in", self.sysctl.display());
        let journals = std::fs::read_dir(self.state.join("vifs")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(journals, 0, "{name}: journals left in {}", self.state.display());
        println!("  {name}: done in {:.0} s, nothing left behind", t0.elapsed().as_secs_f64());
    }

    /// `network <mode> start` then `stop`, from nothing, with no guest.
    fn cold_cycles(&mut self) {
        let (mut starts, mut stops) = (Vec::new(), Vec::new());
        for _ in 0..self.sizes.cycles {
            starts.push(self.network("start"));
            stops.push(self.network("stop"));
        }
        let name = self.mode.run;
        self.rows.push(Row::new(name, 0, "cold start", &starts));
        self.rows.push(Row::new(name, 0, "cold stop", &stops));
    }

    /// Brings guests online (or offline, from the highest domid down) one after another
    /// until `to` are: each on its own veth, all made with one `ip -batch` first.
    fn bystanders(&mut self, from: u32, to: u32) {
        if from == to {
            return;
        }
        let t = Instant::now();
        let (domids, verb): (Vec<u32>, _) = if to > from { ((from + 1..=to).collect(), "online") } else { ((to + 1..=from).rev().collect(), "offline") };
        if verb == "online" {
            add_vifs(&self.dom0, &self.guests, domids.iter().copied());
            self.domains.extend(domids.iter().copied());
        }
        let created = t.elapsed();
        let jobs: Vec<Job> = domids.iter().map(|d| self.vif_job(*d, verb)).collect();
        for (chunk, done) in domids.chunks(500).zip(jobs.chunks(500)) {
            let done = self.spawner.run(&self.dom0.path(), &self.log.to_string_lossy(), Order::Sequential, done);
            for (d, done) in chunk.iter().zip(&done) {
                self.check(*d, verb, done);
            }
        }
        let calls = t.elapsed() - created;
        if verb == "offline" {
            del_vifs(&self.dom0, domids.iter().copied());
        }
        println!(
            "  {}: {} guests {verb} one after another in {:.1} s ({:.2} ms each on average){}",
            self.mode.run,
            domids.len(),
            calls.as_secs_f64(),
            calls.as_secs_f64() * 1e3 / domids.len() as f64,
            if verb == "online" { format!("; their {} veths made in {:.1} s", domids.len(), created.as_secs_f64()) } else { String::new() }
        );
    }

    /// The timed calls beside `n` guests: online and offline of fresh vifs, alternating with
    /// the floor's; start as a repair; at 100, the bursts.
    fn level(&mut self, level: usize, n: u32) {
        let name = self.mode.run;
        let rounds = self.sizes.rounds;
        let fresh: Vec<u32> = (0..rounds).map(|i| sample(level, i)).collect();
        let floors: Vec<u32> = (0..rounds).map(|i| floor_sample(level, i)).collect();
        add_vifs(&self.dom0, &self.guests, fresh.iter().chain(&floors).copied());
        self.domains.extend(fresh.iter().copied());
        let (mut on, mut off, mut fon, mut foff) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // vifnet's samples, then the floor's: interleaved, an nft process that follows one of
        // vifnet's offlines would wait, as it closes its socket, for the grace period of
        // vifnet's deletion, which is vifnet's cost, not the floor's.
        for d in &fresh {
            on.push(self.vif(*d, "online"));
            off.push(self.vif(*d, "offline"));
        }
        for f in &floors {
            fon.push(self.floor(*f, true));
            foff.push(self.floor(*f, false));
        }
        let mut repairs = Vec::new();
        for _ in 0..self.sizes.repairs {
            repairs.push(self.network("start"));
        }
        for (verb, calls) in [("online", &on), ("offline", &off), ("floor online", &fon), ("floor offline", &foff), ("repair start", &repairs)] {
            if !calls.is_empty() {
                self.rows.push(Row::new(name, n, verb, calls));
            }
        }
        del_vifs(&self.dom0, fresh.iter().chain(&floors).copied());
        let med = |v: &str| self.rows.iter().rev().find(|r| r.verb == v && r.n == n).map(|r| r.median).unwrap_or(f64::NAN);
        println!(
            "  {name} N={n}: online {:.2} ms, offline {:.2} ms (floor {:.2} / {:.2} ms), repair start {:.1} ms",
            med("online"),
            med("offline"),
            med("floor online"),
            med("floor offline"),
            med("repair start")
        );
        if self.mode.bursts && n == 100 {
            for &k in self.sizes.bursts {
                self.burst(n, k);
            }
        }
    }

    /// `k` onlines started at once, then, once all have ended, `k` offlines of the same vifs.
    fn burst(&mut self, n: u32, k: u32) {
        let domids: Vec<u32> = burst_domids(k).collect();
        add_vifs(&self.dom0, &self.guests, domids.iter().copied());
        self.domains.extend(domids.iter().copied());
        let (mut spans, mut busy) = (Vec::new(), Vec::new());
        for verb in ["online", "offline"] {
            let jobs: Vec<Job> = domids.iter().map(|d| self.vif_job(*d, verb)).collect();
            let done = self.exec(Order::Concurrent, &jobs);
            for (d, (done, _)) in domids.iter().zip(&done) {
                self.check(*d, verb, done);
            }
            let first = done.iter().map(|(d, _)| d.spawned).min().unwrap();
            let last = done.iter().map(|(d, _)| d.exited).max().unwrap();
            let makespan = (last - first) as f64 / 1e6;
            let calls: Vec<Call> = done.iter().map(|(d, f)| call(d, *f)).collect();
            let verb: &'static str = match (k, verb) {
                (50, "online") => "burst 50 online",
                (50, _) => "burst 50 offline",
                (200, "online") => "burst 200 online",
                (200, _) => "burst 200 offline",
                _ => if verb == "online" { "burst online" } else { "burst offline" },
            };
            let cpu: f64 = calls.iter().map(|c| c.cpu_ms).sum();
            busy.push(cpu / (makespan * cores()) * 100.0);
            let mut row = Row::new(self.mode.run, n, verb, &calls);
            row.makespan = Some(makespan);
            self.rows.push(row);
            spans.push(makespan);
        }
        del_vifs(&self.dom0, domids.iter().copied());
        // The calls' CPU time over what the CPUs could give in the makespan: low means the
        // calls spent the burst waiting, not working.
        println!(
            "  {} N={n}: burst of {k}: online makespan {:.0} ms (calls' CPU {:.0}% of the cores), offline {:.0} ms ({:.0}%)",
            self.mode.run, spans[0], busy[0], spans[1], busy[1]
        );
    }

    fn vif_job(&self, d: u32, verb: &str) -> Job {
        let mut env = self.env.clone();
        env.extend([format!("XENBUS_PATH=backend/vif/{d}/0"), format!("vif={}", vif(d)), "netdev=".into()]);
        Job { argv: [self.bin, "vif", self.mode.name, verb, "type_if=vif"].map(String::from).to_vec(), env, stdin: None }
    }

    /// Runs jobs through the spawner, counting what each one forked.
    fn exec(&mut self, order: Order, jobs: &[Job]) -> Vec<(Done, Option<Forks>)> {
        if let Some(p) = self.procs {
            p.clear();
        }
        let done = self.spawner.run(&self.dom0.path(), &self.log.to_string_lossy(), order, jobs);
        let pids: Vec<i32> = done.iter().map(|d| d.pid).collect();
        let forks = self.procs.and_then(|p| p.forks_under(&pids));
        done.into_iter().enumerate().map(|(i, d)| (d, forks.as_ref().map(|f| f[i]))).collect()
    }

    /// One timed `vif <mode> <verb>` of domain `d`, as libxl runs it.
    fn vif(&mut self, d: u32, verb: &str) -> Call {
        let job = self.vif_job(d, verb);
        let (done, forks) = self.exec(Order::Sequential, &[job]).remove(0);
        self.check(d, verb, &done);
        call(&done, forks)
    }

    /// A call failed: libxl would read why in xenstore; then the end of the calls' log.
    fn check(&self, d: u32, verb: &str, done: &Done) {
        let status = self.xs.get(&format!("{}/hotplug-status", backend(d)));
        let connected = status.as_deref() == Some("connected");
        // Online writes `connected`; offline removes it (libxl removes the directory after).
        if done.success() && (verb != "online" || connected) {
            return;
        }
        let why = self.xs.get(&format!("{}/hotplug-error", backend(d)));
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: String = log.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        panic!("{}: vif {verb} {}: wait status {:#x}, hotplug-status {status:?}, hotplug-error {why:?}\n{tail}", self.mode.run, vif(d), done.status);
    }

    fn network(&mut self, verb: &str) -> Call {
        let job = Job { argv: [self.bin, "network", self.mode.name, verb].map(String::from).to_vec(), env: self.env.clone(), stdin: None };
        let (done, forks) = self.exec(Order::Sequential, &[job]).remove(0);
        if !done.success() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("{}: network {verb}: wait status {:#x}\n{}", self.mode.run, done.status, log.lines().last().unwrap_or(""));
        }
        call(&done, forks)
    }

    /// The floor of one online or offline: `nft -f -`, then `ip -batch -`, then the
    /// builtin writes, one after another, timed as one.
    fn floor(&mut self, d: u32, online: bool) -> Call {
        let f = (self.mode.floor)(d, online);
        let env = vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
        let mut jobs = vec![
            Job { argv: vec![self.tools.nft.clone(), "-f".into(), "-".into()], env: env.clone(), stdin: Some(f.nft.into_bytes()) },
            Job { argv: vec![self.tools.ip.clone(), "-batch".into(), "-".into()], env, stdin: Some(f.ip.into_bytes()) },
        ];
        jobs.extend(f.writes.into_iter().map(|(path, value)| Job { argv: vec!["@write".into(), path, value], ..Job::default() }));
        let done = self.exec(Order::Sequential, &jobs);
        for (job, (d, _)) in jobs.iter().zip(&done) {
            assert!(d.success(), "{}: floor {}: {:?} failed (see {})", self.mode.run, if online { "online" } else { "offline" }, job.argv, self.log.display());
        }
        let procs: Vec<&(Done, Option<Forks>)> = done.iter().filter(|(d, _)| d.pid != 0).collect();
        let forks = procs.iter().map(|(_, f)| *f).try_fold(Forks::default(), |a, f| f.map(|f| Forks { processes: a.processes + f.processes, threads: a.threads + f.threads }));
        Call {
            wall_ms: (done.last().unwrap().0.exited - done[0].0.spawned) as f64 / 1e6,
            rss_kib: procs.iter().map(|(d, _)| d.maxrss_kib).max().unwrap_or(0),
            cpu_ms: procs.iter().map(|(d, _)| d.cpu_us).sum::<u64>() as f64 / 1e3,
            forks,
        }
    }
}

fn cores() -> f64 {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64
}

fn call(done: &Done, forks: Option<Forks>) -> Call {
    Call { wall_ms: done.wall_ms(), rss_kib: done.maxrss_kib, cpu_ms: done.cpu_us as f64 / 1e3, forks }
}
