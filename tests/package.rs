//! The Debian package `make deb` built (`make test-package` names it in VIFNET_DEB): what it
//! holds, lintian's verdict, and its whole life under the real dpkg, in a root of the
//! test's own (`dpkg --root`, the package's scripts run by dpkg with DPKG_ROOT set): install,
//! Xen's scripts diverted by `vifnet install-xen-scripts`, a guest brought up by the
//! installed `vif-bridge` with the installed mode files, then remove and purge, after which
//! nothing of it is left: no file, no diversion, Xen's scripts back.

mod common;

use std::path::Path;
use std::process::Command;

use common::{root_or_skip, unique, veth, Netns};

/// lintian's tags this package is known to carry, and why each stays.
const EXPLAINED: &[(&str, &str)] = &[
    // A static-pie executable is ET_DYN with no DT_NEEDED, which lintian reads as a shared
    // library; it is linked statically on purpose (0.5 ms less per hotplug call).
    ("shared-library-lacks-prerequisites", "usr/sbin/vifnet is a static-pie executable"),
    // vifnet-reload.service must run again after every (re)start of nftables.service,
    // whose `flush ruleset` takes vifnet's tables.
    ("systemd-service-file-refers-to-unusual-wantedby-target", "nftables.service, on purpose"),
    // Without systemd, xend-style hosts start a mode with `network-script`; there is no
    // daemon for an init script to run.
    ("package-supports-alternative-init-but-no-init.d-script", "no daemon: nothing for init.d"),
];

fn deb() -> Option<String> {
    let deb = std::env::var("VIFNET_DEB").ok().filter(|d| !d.is_empty());
    if deb.is_none() {
        eprintln!("skipped: VIFNET_DEB names no package (make test-package builds one and sets it)");
    }
    deb
}

fn ok(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(out.status.success(), "{c:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_package_holds_what_an_administrator_expects_and_lintian_has_nothing_unexplained() {
    let Some(deb) = deb() else { return };
    let name = Path::new(&deb).file_name().unwrap().to_string_lossy().into_owned();
    let version = ok(Command::new("dpkg-deb").args(["-f", &deb, "Version"])).trim().to_string();
    assert_eq!(name, format!("vifnet_{version}_amd64.deb"));
    let conffiles = ok(Command::new("dpkg-deb").args(["--info", &deb, "conffiles"]));
    assert_eq!(conffiles, "/etc/iproute2/rt_protos.d/vifnet.conf\n/etc/vifnet/modes/bridge.toml\n/etc/vifnet/modes/nat.toml\n/etc/vifnet/modes/route.toml\n");
    let files = ok(Command::new("dpkg-deb").args(["-c", &deb]));
    for f in [
        "./usr/sbin/vifnet",
        "./usr/lib/vifnet/vif-bridge -> ../../sbin/vifnet",
        "./usr/lib/vifnet/vifnet-route -> ../../sbin/vifnet",
        "./usr/share/man/man8/vifnet.8.gz",
        "./usr/share/man/man5/vifnet-modes.5.gz",
        "./lib/systemd/system/vifnet@.service",
        "./lib/systemd/system/vifnet-reload.service",
        "./usr/share/doc/vifnet/examples/route-29/route.toml",
        "./usr/share/doc/vifnet/copyright",
        "./usr/share/doc/vifnet/changelog.gz",
    ] {
        assert!(files.contains(f), "{f} not in the package:\n{files}");
    }
    assert!(!files.contains("etc/xen"), "the package holds nothing of Xen's");

    if Command::new("lintian").arg("--version").output().is_err() {
        eprintln!("lintian not installed: its check skipped (make test-package installs it)");
        return;
    }
    let out = Command::new("lintian").args(["--tag-display-limit", "0", "-I", &deb]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let unexplained: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with(['E', 'W', 'I']) && l.contains("vifnet"))
        .filter(|l| !EXPLAINED.iter().any(|(tag, _)| l.split_whitespace().nth(2) == Some(tag)))
        .collect();
    assert!(unexplained.is_empty(), "lintian tags nobody explained:\n{}", unexplained.join("\n"));
}

#[test]
fn installed_by_dpkg_it_brings_a_guest_up_and_purged_it_leaves_nothing() {
    let Some(deb) = deb() else { return };
    if !root_or_skip() {
        return;
    }
    let root = std::env::temp_dir().join(unique("dpkg-root"));
    let _cleanup = Cleanup(root.clone());
    let admin = root.join("var/lib/dpkg");
    for d in ["info", "updates"] {
        std::fs::create_dir_all(admin.join(d)).unwrap();
    }
    for f in ["status", "available"] {
        std::fs::write(admin.join(f), "").unwrap();
    }
    let scripts = root.join("etc/xen/scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    for n in ["vif-bridge", "network-bridge"] {
        std::fs::write(scripts.join(n), format!("#!/bin/bash\n# Xen's {n}\n")).unwrap();
    }
    let dpkg = |args: &[&str]| {
        let mut c = Command::new("dpkg");
        c.arg(format!("--root={}", root.display())).args(["--force-script-chrootless", "--log=/dev/null"]).args(args);
        ok(&mut c)
    };
    // The root has no nftables or iproute2 package: the host's binaries serve.
    dpkg(&["--force-depends", "-i", &deb]);
    let listed = dpkg(&["-L", "vifnet"]);
    for f in listed.lines().filter(|l| l.starts_with('/')) {
        assert!(root.join(&f[1..]).symlink_metadata().is_ok(), "{f} listed but not there");
    }
    assert_eq!(std::fs::read_to_string(scripts.join("vif-bridge")).unwrap(), "#!/bin/bash\n# Xen's vif-bridge\n", "installing touches no Xen script");

    let sbin = root.join("usr/sbin/vifnet");
    ok(Command::new(&sbin).args(["install-xen-scripts", "--root"]).arg(&root));
    let diversions = || ok(Command::new("dpkg-divert").arg("--root").arg(&root).arg("--list"));
    assert!(diversions().contains("diversion of /etc/xen/scripts/vif-bridge to /etc/xen/scripts/vif-bridge.xen by vifnet"));
    assert_eq!(std::fs::read_link(scripts.join("vif-bridge")).unwrap(), Path::new("/usr/sbin/vifnet"));

    // A guest on xenbr0 through the installed multi-call names and mode files.
    let (dom0, lan, guest) = (Netns::new("pkg-dom0"), Netns::new("pkg-lan"), Netns::new("pkg-g1"));
    veth(&dom0, "up0", &lan, "eth0");
    veth(&dom0, "vif1.0", &guest, "eth0");
    lan.ok(&["ip", "addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    lan.ok(&["ip", "link", "set", "eth0", "up"]);
    guest.ok(&["ip", "link", "set", "eth0", "address", "00:16:3e:00:00:01"]);
    guest.ok(&["ip", "addr", "add", "192.0.2.11/24", "dev", "eth0"]);
    guest.ok(&["ip", "link", "set", "eth0", "up"]);
    let state = root.join("run/vifnet");
    let installed = |name: &str, args: &[&str]| {
        let mut c = dom0.cmd(&[root.join("usr/lib/vifnet").join(name).to_str().unwrap()]);
        c.args(args).env("VIFNET_STATE_DIR", &state).env("VIFNET_MODES_DIR", root.join("etc/vifnet/modes")).env("VIFNET_SYSCTL_DIR", root.join("run/sysctl.d"));
        c.env("vif", "vif1.0");
        ok(&mut c)
    };
    installed("network-bridge", &["start"]);
    dom0.ok(&["ip", "link", "set", "up0", "master", "xenbr0", "up"]);
    installed("vif-bridge", &["online", "type_if=vif", "mac=00:16:3e:00:00:01", "ip=192.0.2.11"]);
    dom0.wait_up("vif1.0");
    assert!(guest.pings("192.0.2.1"), "the guest reaches the lan through the installed vifnet");
    let status = installed("network-bridge", &["status"]);
    assert!(status.contains("vif1.0"), "{status}");
    installed("vif-bridge", &["offline", "type_if=vif"]);
    dom0.ok(&["ip", "link", "set", "up0", "nomaster"]);
    installed("network-bridge", &["stop"]);
    let _ = std::fs::remove_dir_all(root.join("run"));

    dpkg(&["--remove", "vifnet"]);
    assert_eq!(diversions(), "", "removal takes the diversions back");
    assert_eq!(std::fs::read_to_string(scripts.join("vif-bridge")).unwrap(), "#!/bin/bash\n# Xen's vif-bridge\n", "and gives Xen's script back");
    dpkg(&["--purge", "vifnet"]);
    let mut left = Vec::new();
    walk(&root, &root, &mut left);
    left.retain(|p| !p.starts_with("var"));
    assert_eq!(left, ["etc", "etc/xen", "etc/xen/scripts", "etc/xen/scripts/network-bridge", "etc/xen/scripts/vif-bridge"], "purge leaves only what was there before");
    let known = Command::new("dpkg-query").arg(format!("--root={}", root.display())).args(["-W", "vifnet"]).output().unwrap();
    assert!(!known.status.success(), "dpkg forgot it: {}", String::from_utf8_lossy(&known.stdout));
}

struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        out.push(p.strip_prefix(root).unwrap().display().to_string());
        if p.symlink_metadata().unwrap().is_dir() {
            walk(root, &p, out);
        }
    }
}
