//! `make bench`: per-vif `vif bridge online` and `offline`, the whole process as libxl runs
//! it (exec, xenstore reads through a xenstored socket, netlink, one nft transaction, the
//! journal, hotplug-status), with antispoofing on, beside 1 and 100 existing vifs.
//! Reports median and p90; nothing here asserts a time.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use vifnet::xenstore::fake;

const ROUNDS: usize = 40;

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?}");
}

struct Ns(String);
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

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench: needs root (network namespaces)");
        std::process::exit(1);
    }
    let tag = format!("vfb{}", std::process::id());
    let dom0 = Ns(format!("{tag}-dom0"));
    let guests = Ns(format!("{tag}-g"));
    ip(&["netns", "add", &dom0.0]);
    ip(&["netns", "add", &guests.0]);
    let existing = 100;
    // vif1.0 .. vif100.0 are the bystanders, vif500.0 the one measured.
    let batch: String = (1..=existing)
        .chain([500])
        .map(|i| format!("link add vif{i}.0 type veth peer name e{i} netns {}\n", guests.0))
        .collect();
    let mut c = Command::new("ip").args(["-n", &dom0.0, "-batch", "-"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), batch.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success());

    let base = std::env::temp_dir().join(&tag);
    let state: PathBuf = base.join("state");
    let modes: PathBuf = base.join("modes");
    std::fs::create_dir_all(&modes).unwrap();
    let sock = base.join("xenstored.sock");
    let xs = fake::serve(&sock);
    let backend = |domid: u32| format!("/local/domain/0/backend/vif/{domid}/0");
    for d in (1..=existing).chain([500]) {
        xs.set(&format!("{}/mac", backend(d)), &format!("00:16:3e:00:{:02x}:{:02x}", d >> 8, d & 0xff));
        xs.set(&format!("{}/ip", backend(d)), &format!("10.{}.{}.2", d >> 8, d & 0xff));
        xs.set(&format!("{}/bridge", backend(d)), "xenbr0");
        xs.set(&format!("{}/frontend", backend(d)), &format!("/local/domain/{d}/device/vif/0"));
    }

    let bin = env!("CARGO_BIN_EXE_vifnet").to_string();
    let ns_path = format!("/run/netns/{}", dom0.0);
    let run = move |domid: u32, cmd: &str| -> Duration {
        let mut c = Command::new(&bin);
        c.args(["vif", "bridge", cmd, "type_if=vif"])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("VIFNET_STATE_DIR", &state)
            .env("VIFNET_MODES_DIR", &modes)
            .env("XENSTORED_PATH", &sock)
            .env("XENBUS_PATH", format!("backend/vif/{domid}/0"))
            .env("vif", format!("vif{domid}.0"))
            .env("netdev", "");
        let t = Instant::now();
        let out = c.output().expect("spawn vifnet");
        let dt = t.elapsed();
        assert!(out.status.success(), "vifnet {cmd} vif{domid}.0: {}", String::from_utf8_lossy(&out.stderr));
        dt
    };
    // Run everything from a thread inside dom0's namespace: children inherit it, and no
    // `ip netns exec` (2-3 ms of mount work) pollutes the figures.
    let results = std::thread::spawn(move || {
        let f = std::fs::File::open(&ns_path).unwrap();
        // SAFETY: setns on a namespace fd, for this thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        // Warm-up: bridge and table creation are one-time costs, not per-vif ones.
        run(500, "online");
        run(500, "offline");
        let mut out = Vec::new();
        for (label, bystanders) in [("1 vif", 0), ("100 vifs", existing)] {
            for d in 1..=bystanders {
                run(d, "online");
            }
            let (mut on, mut off) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                on.push(run(500, "online"));
                off.push(run(500, "offline"));
            }
            out.push((label, on, off));
        }
        for d in 1..=existing {
            run(d, "offline");
        }
        out
    })
    .join()
    .expect("bench thread");
    println!("vifnet vif bridge, antispoof on, whole process as libxl runs it (xenstore over a socket):");
    for (label, on, off) in results {
        report(&format!("online  beside {label}"), on);
        report(&format!("offline beside {label}"), off);
    }
    println!("Xen's vif-bridge on the reference machine (xen-contract.md §7): online 22.6 ms, offline 68.5 ms (iptables-nft).");
    println!("Target: online median <= 3 ms, offline <= 15 ms. Offline pays one nf_tables commit that deletes (kernel RCU grace period).");
    drop(xs);
    let _ = std::fs::remove_dir_all(&base);
}
