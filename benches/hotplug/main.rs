//! `make bench`: `vifnet vif <mode> online` and `offline` as libxl runs them (the static
//! release binary forked and reaped, xenstore over a fake xenstored's socket, in a dom0
//! network namespace), in bridge, route (the gateway on each vif; then with uplink_proxy) and
//! nat mode, antispoofing on, beside N = 0, 100, 1000 and 4000 guests already online.
//!
//! Per verb and N: latency (median, p90, max) over fresh vif devices (each sample's vif is
//! a new veth its online has never seen), peak RSS and CPU time from `wait4`'s rusage of the
//! call itself, and the processes a call forks (the kernel's process events). Also: bursts
//! of 50 and 200 concurrent onlines then offlines beside 100 guests; `network <mode> start`
//! as a repair pass at each N and cold start/stop cycles with no guest; and the floor, the
//! same kernel changes made by one `nft -f -` and one `ip -batch -` process, and vifnet's
//! median as a ratio of it. Nothing here asserts a time; the checks are for what a run
//! leaves behind.
//!
//! `cargo bench --bench hotplug -- nat` runs one mode (`bridge`, `route`, `route-proxied`,
//! `nat`, `nat-live`); `VIFNET_BENCH_QUICK=1` runs N = 0 and 100 only, with fewer samples;
//! `VIFNET_BENCH_N=0,4000` only the levels named; `VIFNET_BENCH_BIN` runs another program in
//! vifnet's place (a wrapper that profiles each call, say).
//! Figures: stdout, `target/bench/hotplug.md`, `hotplug.csv` and `latency.png`.

mod host;
mod modes;
mod procs;
mod report;
mod run;
mod spawner;

use std::path::{Path, PathBuf};
use std::time::Instant;

use host::TempDir;
use run::Sizes;

fn main() {
    // First, while this process is small and single-threaded (see spawner.rs).
    let mut spawner = spawner::Spawner::start();
    let t0 = Instant::now();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench: needs root (network namespaces)");
        std::process::exit(1);
    }
    // cargo passes `--bench`; any other word names a mode to run alone.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let quick = std::env::var_os("VIFNET_BENCH_QUICK").is_some_and(|v| v != "0");
    let only_n = std::env::var("VIFNET_BENCH_N").ok().map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    let sizes = if quick {
        Sizes { rounds: 10, repairs: 2, cycles: 2, bursts: &[50], max_n: 100, only_n }
    } else {
        Sizes { rounds: 40, repairs: 5, cycles: 5, bursts: &[50, 200], max_n: u32::MAX, only_n }
    };
    let procs = procs::ProcEvents::open();
    if procs.is_none() {
        println!("bench: no process events connector (CONFIG_PROC_EVENTS): children per call not counted");
    }
    let tag = format!("vfb{}", std::process::id());
    let base = TempDir(std::env::temp_dir().join(&tag));
    // /run itself is not ours to write; /dev/shm is the same kind of file system.
    let shm = Path::new("/dev/shm");
    let run = TempDir(if shm.is_dir() { shm.join(&tag) } else { base.0.join("run") });
    let mut rows = Vec::new();
    let mut levels: Vec<u32> = Vec::new();
    for mode in &modes::ALL {
        if !only.is_empty() && !only.iter().any(|m| m == mode.run) {
            continue;
        }
        println!("{}: {}", mode.run, mode.title);
        rows.extend(run::mode(mode, &sizes, &mut spawner, procs.as_ref(), &tag, &base.0, &run.0));
        for n in mode.levels.iter().filter(|n| **n <= sizes.max_n) {
            if !levels.contains(n) {
                levels.push(*n);
            }
        }
    }
    drop(spawner);
    report::attach_floors(&mut rows);
    levels.sort();
    let table = report::table(&rows);
    let targets = report::targets(&rows);
    let elapsed = t0.elapsed().as_secs_f64();
    println!("\n{table}\nIssue 13's targets:\n{targets}");

    let out = out_dir();
    std::fs::create_dir_all(&out).unwrap();
    let md = markdown(&rows, &targets, elapsed);
    std::fs::write(out.join("hotplug.md"), md).unwrap();
    std::fs::write(out.join("hotplug.csv"), report::csv(&rows)).unwrap();
    let png = out.join("latency.png");
    match report::plot(&rows, &levels, &png) {
        Ok(()) => println!("figures: {}, {}, {}", out.join("hotplug.md").display(), out.join("hotplug.csv").display(), png.display()),
        Err(e) => println!("figures: {}, {} (no plot: {e})", out.join("hotplug.md").display(), out.join("hotplug.csv").display()),
    }
    println!("bench: {elapsed:.0} s in all");
}

/// `target/bench` of this package (or of `$CARGO_TARGET_DIR`).
fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench")
}

fn markdown(rows: &[report::Row], targets: &str, elapsed: f64) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let xen: Vec<String> = modes::ALL.iter().filter(|m| m.run != "nat-live").map(|m| format!("{} {:.1} / {:.1} ms", m.run, m.xen.0, m.xen.1)).collect();
    format!(
        "# vifnet hotplug bench\n\nKernel {}, {cpus} CPUs; `make bench`, {elapsed:.0} s. Times are ms per call, the whole process \
         from fork to reaping; N is the number of guests online beside the measured call; every online and offline sample \
         is on a vif device of its own. Peak RSS is the highest `ru_maxrss` of the calls (KiB), CPU the median user + system \
         time, children the most processes any call forked (its descendants included). The floor is `nft -f -` + \
         `ip -batch -` making the same kernel changes; ratio = vifnet's median / the floor's.\n\n{}\n## Issue 13's targets\n\n{targets}\n\
         Xen's scripts on the reference machine (xen-contract.md §7, iptables-nft), online / offline: {}.\n",
        kernel.trim(),
        report::markdown(rows),
        xen.join("; ")
    )
}
