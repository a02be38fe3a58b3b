//! Builds and removes a simulated lab (plan::simulate::Lab): namespaces, veth pairs standing
//! in for netback vifs, and vifnet itself run per vif as libxl would. Used by `setup
//! --simulate` and `make demo`; it touches only the namespaces it creates.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::plan::simulate::{Lab, SimRoute, DOM0_ADDR, DOM0_ADDR6, LAN_ADDR, LAN_ADDR6};

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

/// Namespaces, the lan host, dom0's uplink, and one veth pair per vif.
pub fn build(lab: &Lab) -> Result<()> {
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

/// Deletes the lab's namespaces by their exact names; missing ones are fine.
pub fn remove(lab: &Lab) -> Vec<String> {
    let mut errors = Vec::new();
    for ns in lab.guests.iter().map(|g| &g.netns).chain([&lab.lan, &lab.dom0]) {
        if Path::new("/run/netns").join(ns).exists() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                errors.push(e.to_string());
            }
        }
    }
    errors
}
