//! Builds and removes a simulated lab (plan::simulate::Lab): namespaces, veth pairs standing
//! in for netback vifs, and vifnet itself run per vif as libxl would. Used by `setup
//! --simulate` and `make demo`; it touches only the namespaces it creates and their
//! /etc/netns directories.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::plan::simulate::{Lab, Lease, SimRoute, DOM0_ADDR, DOM0_ADDR6, LAN_ADDR, LAN_ADDR6};

/// Where `ip netns exec` finds the files it binds over /etc in a namespace.
fn etc_dir(ns: &str) -> PathBuf {
    Path::new("/etc/netns").join(ns)
}

/// Runs `ip` with these arguments; a failure is an error naming the command.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn in_ns(ns: &str, argv: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(argv);
    c
}

fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    let out = in_ns(ns, &["sysctl", "-qw", &format!("{key}={value}")]).output().context("sysctl")?;
    if !out.status.success() {
        bail!("sysctl {key} in {ns}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Runs this very binary inside `ns`, as libxl runs a hotplug script. Its sysctl drop-in
/// goes under the lab's state directory: /run/sysctl.d is the host's, shared by every
/// namespace, and a `sysctl --system` would apply the lab's settings to the host.
pub fn vifnet_in(ns: &str, state_dir: &Path, modes_dir: &Path, args: &[String], env: &[(&str, String)]) -> Result<String> {
    let exe = std::env::current_exe().context("locating the vifnet binary")?;
    let mut c = in_ns(ns, &[exe.to_str().unwrap_or("vifnet")]);
    c.args(args).env("VIFNET_STATE_DIR", state_dir).env("VIFNET_MODES_DIR", modes_dir);
    c.env("VIFNET_SYSCTL_DIR", state_dir.join("sysctl.d"));
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().context("running vifnet")?;
    if !out.status.success() {
        bail!("vifnet {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip route add` of a lab route in `ns`, out of `dev`.
fn add_route(ns: &str, r: &SimRoute, dev: &str) -> Result<()> {
    let dest = r.dest.to_string();
    let mut argv = vec!["-n", ns, "route", "add", &dest];
    let via = r.via.map(|v| v.to_string());
    if let Some(v) = &via {
        argv.extend(["via", v]);
    }
    argv.extend(["dev", dev]);
    ip(&argv)
}

/// What the lab made on the host itself, for its removal to take back: kept beside the
/// lab's /etc/netns directories, since `--keep` and `--teardown` are two processes.
fn made_record(lab: &Lab) -> PathBuf {
    Path::new("/etc/netns").join(format!(".{}.made", lab.dom0))
}

/// Makes each namespace's own /etc files (empty), before anything runs there. A bind needs
/// its target on the host: an empty /etc/ethers is made where the file may be missing; no
/// other host file is made or written. What it made (/etc/netns, /etc/ethers) is recorded
/// for `remove`.
fn prepare_etc(lab: &Lab) -> Result<()> {
    if lab.etc_files.is_empty() {
        return Ok(());
    }
    let mut made: Vec<String> = Vec::new();
    if !Path::new("/etc/netns").exists() {
        made.push("/etc/netns".into());
    }
    std::fs::create_dir_all("/etc/netns").context("creating /etc/netns")?;
    for f in &lab.etc_files {
        let target = Path::new("/etc").join(&f.name);
        if !target.exists() {
            if !f.make_target {
                bail!("{}: this host has none, so `ip netns exec {}` could not put the lab's own over it", target.display(), f.netns);
            }
            std::fs::OpenOptions::new().create(true).append(true).open(&target).with_context(|| format!("creating an empty {}", target.display()))?;
            made.push(target.display().to_string());
        }
        let dir = etc_dir(&f.netns);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join(&f.name), "").with_context(|| format!("writing {}", dir.join(&f.name).display()))?;
    }
    let record = made_record(lab);
    std::fs::write(&record, made.join("\n")).with_context(|| format!("writing {}", record.display()))
}

/// Refuses to run anything in `ns` unless each of its own /etc files is in place and has a
/// host file to be bound over: otherwise vifnet and dnsmasq there would use the host's
/// /etc/ethers.
pub fn etc_ready(lab: &Lab, ns: &str) -> Result<()> {
    for f in lab.etc_files.iter().filter(|f| f.netns == ns) {
        let own = etc_dir(ns).join(&f.name);
        let target = Path::new("/etc").join(&f.name);
        if !own.exists() || !target.exists() {
            bail!("{ns}: {} or {} is missing, so the host's own file would be used: refusing to run there", own.display(), target.display());
        }
    }
    Ok(())
}

/// Namespaces, the lan host, dom0's uplink, and one veth pair per vif.
pub fn build(lab: &Lab) -> Result<()> {
    prepare_etc(lab)?;
    let up = lab.uplink.as_str();
    for ns in std::iter::once(&lab.dom0).chain(std::iter::once(&lab.lan)).chain(lab.guests.iter().map(|g| &g.netns)) {
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        // Duplicate address detection would only delay the demo by a second.
        sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")?;
        sysctl(ns, "net.ipv6.conf.all.accept_dad", "0")?;
    }
    ip(&["-n", &lab.dom0, "link", "add", up, "type", "veth", "peer", "name", "eth0", "netns", &lab.lan])?;
    ip(&["-n", &lab.lan, "addr", "add", LAN_ADDR, "dev", "eth0"])?;
    ip(&["-n", &lab.lan, "addr", "add", LAN_ADDR6, "dev", "eth0", "nodad"])?;
    ip(&["-n", &lab.lan, "link", "set", "eth0", "up"])?;
    for r in &lab.lan_routes {
        add_route(&lab.lan, r, "eth0")?;
    }
    ip(&["-n", &lab.dom0, "addr", "add", DOM0_ADDR, "dev", up])?;
    ip(&["-n", &lab.dom0, "addr", "add", DOM0_ADDR6, "dev", up, "nodad"])?;
    ip(&["-n", &lab.dom0, "link", "set", up, "up"])?;
    ip(&["-n", &lab.dom0, "route", "add", "default", "via", "192.0.2.1", "dev", up])?;
    ip(&["-n", &lab.dom0, "-6", "route", "add", "default", "via", "2001:db8::1", "dev", up])?;
    for g in &lab.guests {
        for v in &g.vifs {
            let eth = v.guest_dev();
            ip(&["-n", &lab.dom0, "link", "add", &v.kernel_name(), "type", "veth", "peer", "name", &eth, "netns", &g.netns])?;
            // netback creates the vif down with the all-FE MAC; the guest side has the configured MAC.
            ip(&["-n", &lab.dom0, "link", "set", &v.kernel_name(), "address", "fe:ff:ff:ff:ff:ff"])?;
            if let Some(mac) = &v.guest_mac {
                ip(&["-n", &g.netns, "link", "set", &eth, "address", mac])?;
            }
            for a in &v.guest_addrs {
                let text = a.to_string();
                let mut argv = vec!["-n", &g.netns, "addr", "add", &text, "dev", &eth];
                if a.is_ipv6() {
                    argv.push("nodad");
                }
                ip(&argv)?;
            }
            ip(&["-n", &g.netns, "link", "set", &eth, "up"])?;
            for r in &v.guest_routes {
                add_route(&g.netns, r, &eth)?;
            }
        }
    }
    Ok(())
}

/// Pings `dst` from `ns` for up to 2 s.
pub fn ping(ns: &str, dst: &str, from: Option<&str>) -> bool {
    let fam = if dst.contains(':') { "-6" } else { "-4" };
    let mut argv = vec!["ping", fam, "-c", "1", "-w", "2", "-q"];
    if let Some(f) = from {
        argv.extend(["-I", f]);
    }
    argv.push(dst);
    in_ns(ns, &argv).output().map(|o| o.status.success()).unwrap_or(false)
}

/// udhcpc's script in a stand-in guest: the lease on the interface, the default route
/// through the router, and the resolver and search domain it was given in the guest's
/// own /etc/resolv.conf (bound there by `ip netns exec`).
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# Written by vifnet setup --simulate for its stand-in guests.
case "$1" in
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-32}" dev "$interface"
    ip route replace default via "$router" dev "$interface"
    {
        [ -n "$domain" ] && echo "search $domain"
        for s in $dns; do echo "nameserver $s"; done
    } > /etc/resolv.conf
    echo "LEASE $ip $router"
    ;;
esac
"#;

/// Runs udhcpc in every guest that asks for a lease, all at once (each retries for up to
/// 6 s), and returns what each vif's guest got, by the vif's kernel name.
pub fn leases(lab: &Lab, dir: &Path) -> Result<HashMap<String, Option<Lease>>> {
    let script = dir.join("udhcpc.script");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&script, UDHCPC_SCRIPT).with_context(|| format!("writing {}", script.display()))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let script = script.to_str().context("the lab's directory is not UTF-8")?;
    let mut clients = Vec::new();
    for (g, v) in lab.dhcp_vifs() {
        etc_ready(lab, &g.netns)?;
        let dev = v.guest_dev();
        let argv = ["udhcpc", "-i", &dev, "-n", "-q", "-t", "6", "-T", "1", "-s", script];
        let child = in_ns(&g.netns, &argv).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().context("running udhcpc")?;
        clients.push((v.kernel_name(), child));
    }
    let mut got = HashMap::new();
    for (vif, child) in clients {
        let out = child.wait_with_output().context("waiting for udhcpc")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let lease = text.lines().rev().find_map(|l| {
            let mut f = l.strip_prefix("LEASE ")?.split_whitespace();
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        });
        got.insert(vif, lease);
    }
    Ok(got)
}

/// What a guest's resolver answers for a name (`getent hosts`): the address and names.
pub fn resolve(ns: &str, name: &str) -> Option<String> {
    let out = in_ns(ns, &["getent", "hosts", name]).output().ok()?;
    let answer = String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    (out.status.success() && !answer.is_empty()).then_some(answer)
}

/// Stops the dnsmasq whose pid is in `pidfile` (SIGTERM, then up to 5 s for it to go), if
/// it is one: only ever the lab's own, left running when `network nat stop` failed.
/// Whether there was one.
pub fn stop_dnsmasq(pidfile: &Path) -> bool {
    let Some(pid) = std::fs::read_to_string(pidfile).ok().and_then(|t| t.trim().parse::<i32>().ok()) else { return false };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "dnsmasq" {
        return false;
    }
    // SAFETY: a signal to the pid the lab's own dnsmasq wrote, checked to be a dnsmasq.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Adds an address to a guest that is not its own, for showing that antispoofing drops it.
pub fn add_guest_addr(ns: &str, dev: &str, addr: &str) -> Result<()> {
    ip(&["-n", ns, "addr", "add", addr, "dev", dev])
}

/// Echo requests `ns` has received so far (Icmp InEchos in its /proc/net/snmp): what the
/// lan host saw, whatever the sender's ping says.
pub fn echo_requests_seen(ns: &str) -> Result<u64> {
    let out = in_ns(ns, &["cat", "/proc/net/snmp"]).output().context("reading /proc/net/snmp")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut icmp = text.lines().filter(|l| l.starts_with("Icmp: "));
    let (Some(names), Some(values)) = (icmp.next(), icmp.next()) else { bail!("{ns}: no Icmp counters in /proc/net/snmp") };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "InEchos")
        .and_then(|(_, v)| v.parse().ok())
        .with_context(|| format!("{ns}: no InEchos counter in /proc/net/snmp"))
}

/// Whether a dummy link can be made without loading a module. Loading dummy.ko creates
/// `dummy0` in the host's own namespace, which the lab must not touch.
pub fn dummy_driver_present() -> bool {
    if Path::new("/sys/module/dummy").exists() {
        return true;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let builtin = std::fs::read_to_string(format!("/lib/modules/{}/modules.builtin", release.trim())).unwrap_or_default();
    builtin.lines().any(|l| l.ends_with("/dummy.ko"))
}

/// Deletes the lab's namespaces by their exact names, then their /etc/netns directories
/// (and /etc/netns itself once empty); missing ones are fine.
pub fn remove(lab: &Lab) -> Vec<String> {
    let mut errors = Vec::new();
    for ns in lab.guests.iter().map(|g| &g.netns).chain([&lab.lan, &lab.dom0]) {
        if Path::new("/run/netns").join(ns).exists() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                errors.push(e.to_string());
            }
        }
    }
    for f in &lab.etc_files {
        let dir = etc_dir(&f.netns);
        if dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                errors.push(format!("removing {}: {e}", dir.display()));
            }
        }
    }
    // The host files the lab made, if they are still as it made them: an empty ethers, an
    // /etc/netns with nothing else in it.
    let record = made_record(lab);
    let made = std::fs::read_to_string(&record).unwrap_or_default();
    let _ = std::fs::remove_file(&record);
    for path in made.lines().rev() {
        let p = Path::new(path);
        let _ = if p.is_dir() { std::fs::remove_dir(p) } else if p.metadata().is_ok_and(|m| m.len() == 0) { std::fs::remove_file(p) } else { Ok(()) };
    }
    errors
}
