//! Installing vifnet: `make install` / `uninstall` into a staging DESTDIR (every file under
//! it, nothing left after), Xen's script names taken over and given back (by dpkg-divert,
//! in a dpkg database of the test's own, or by rename). Nothing here touches the host's /etc
//! or dpkg database (tests/units.rs verifies the units).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_vifnet");
const XEN_NAMES: [&str; 6] = ["network-bridge", "vif-bridge", "network-route", "vif-route", "network-nat", "vif-nat"];

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(common::unique(tag));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every entry under `root`: its kind and bytes, or where a link points.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = p.symlink_metadata().unwrap();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".into()
            } else {
                format!("{:o} {}", m.permissions().mode_bits(), String::from_utf8_lossy(&std::fs::read(&p).unwrap()))
            };
            out.insert(p.strip_prefix(root).unwrap().display().to_string(), what);
        }
    }
    out
}

trait ModeBits {
    fn mode_bits(&self) -> u32;
}

impl ModeBits for std::fs::Permissions {
    fn mode_bits(&self) -> u32 {
        std::os::unix::fs::PermissionsExt::mode(self) & 0o7777
    }
}

/// `make <args>` in the checkout, installing the test's binary (no release build).
fn make(args: &[&str]) -> Output {
    Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(["-o", "build", &format!("BIN={BIN}")])
        .args(args)
        .output()
        .unwrap()
}

fn make_ok(args: &[&str]) -> String {
    let out = make(args);
    assert!(out.status.success(), "make {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn vifnet(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// A scripts directory with Xen's six scripts in it, as xen-utils-common installs them.
fn xen_scripts(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for n in XEN_NAMES {
        std::fs::write(dir.join(n), format!("#!/bin/bash\n# Xen's {n}\n")).unwrap();
    }
}

#[test]
fn make_install_puts_every_file_under_destdir_and_uninstall_leaves_nothing() {
    let stage = Scratch::new("destdir");
    let destdir = stage.0.join("root");
    let d = format!("DESTDIR={}", destdir.display());
    make_ok(&["install", &d, "PREFIX=/usr"]);
    let installed = tree(&destdir);
    for f in [
        "usr/sbin/vifnet",
        "usr/lib/vifnet/vif-bridge",
        "usr/lib/vifnet/vifnet-nat",
        "usr/share/man/man8/vifnet.8",
        "usr/share/man/man5/vifnet-modes.5",
        "etc/vifnet/modes/bridge.toml",
        "etc/vifnet/modes/nat.toml",
        "usr/lib/systemd/system/vifnet@.service",
        "usr/lib/systemd/system/vifnet-reload.service",
        "etc/iproute2/rt_protos.d/vifnet.conf",
    ] {
        assert!(installed.contains_key(f), "{f} not installed: {installed:#?}");
    }
    assert_eq!(installed["usr/lib/vifnet/vif-route"], "-> ../../sbin/vifnet");
    assert!(installed["usr/lib/systemd/system/vifnet@.service"].contains("ExecStart=/usr/sbin/vifnet network %i start"));
    make_ok(&["install", &d, "PREFIX=/usr"]);
    assert_eq!(tree(&destdir), installed, "a second install changes nothing");

    make_ok(&["uninstall", &d, "PREFIX=/usr"]);
    assert!(!destdir.exists(), "uninstall leaves: {:#?}", tree(&destdir));
    make_ok(&["uninstall", &d, "PREFIX=/usr"]);

    // An edited mode file is the administrator's: install keeps it, uninstall leaves it.
    make_ok(&["install", &d]);
    let edited = destdir.join("etc/vifnet/modes/route.toml");
    std::fs::write(&edited, "netdev = \"eth1\"\n").unwrap();
    make_ok(&["install", &d]);
    assert_eq!(std::fs::read_to_string(&edited).unwrap(), "netdev = \"eth1\"\n");
    make_ok(&["uninstall", &d]);
    assert_eq!(tree(&destdir).into_keys().collect::<Vec<_>>(), ["etc", "etc/vifnet", "etc/vifnet/modes", "etc/vifnet/modes/route.toml"]);
}

#[test]
fn make_install_xen_scripts_keeps_xens_aside_and_uninstall_gives_them_back() {
    let stage = Scratch::new("destdir-xen");
    let destdir = &stage.0;
    let d = format!("DESTDIR={}", destdir.display());
    let scripts = destdir.join("etc/xen/scripts");

    let out = make(&["install-xen-scripts", &d]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("etc/xen/scripts does not exist: is Xen installed?"), "{said}");
    make_ok(&["uninstall", &d]);
    assert!(tree(destdir).is_empty(), "{:#?}", tree(destdir));

    xen_scripts(&scripts);
    let before = tree(destdir);
    make_ok(&["install-xen-scripts", &d]);
    let installed = tree(destdir);
    assert_eq!(installed["etc/xen/scripts/vif-bridge"], "-> /usr/local/sbin/vifnet");
    assert_eq!(installed["etc/xen/scripts/vifnet-route"], "-> /usr/local/sbin/vifnet");
    assert_eq!(installed["etc/xen/scripts/vif-bridge.xen"], before["etc/xen/scripts/vif-bridge"]);
    make_ok(&["install-xen-scripts", &d]);
    assert_eq!(tree(destdir), installed, "twice is once");
    make_ok(&["uninstall", &d]);
    assert_eq!(tree(destdir), before, "Xen's scripts back, byte for byte, and nothing of ours");
}

#[test]
fn xen_scripts_are_diverted_with_dpkg_and_given_back() {
    if Command::new("dpkg-divert").arg("--version").output().is_err() {
        eprintln!("skipped: no dpkg-divert");
        return;
    }
    let s = Scratch::new("divert");
    // A root of the test's own, with a dpkg database in it, as dpkg --root makes one.
    let (scripts, admin) = (s.0.join("etc/xen/scripts"), s.0.join("var/lib/dpkg"));
    xen_scripts(&scripts);
    std::fs::create_dir_all(&admin).unwrap();
    let before = tree(&scripts);
    let args = |verb: &'static str| [verb, "--root", s.0.to_str().unwrap(), "--target", "/usr/sbin/vifnet"];
    let diversions = || String::from_utf8_lossy(&Command::new("dpkg-divert").arg("--root").arg(&s.0).arg("--list").output().unwrap().stdout).into_owned();

    let out = vifnet(&args("install-xen-scripts"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list = diversions();
    for n in XEN_NAMES {
        assert!(list.contains(&format!("diversion of /etc/xen/scripts/{n} to /etc/xen/scripts/{n}.xen by vifnet")), "{n}: {list}");
        assert_eq!(std::fs::read_link(scripts.join(n)).unwrap(), Path::new("/usr/sbin/vifnet"));
    }
    let installed = tree(&scripts);
    let again = vifnet(&args("install-xen-scripts"));
    assert!(again.status.success() && again.stdout.is_empty(), "{again:?}");
    assert_eq!(tree(&scripts), installed, "twice is once");

    // What xen-utils' upgrade does under a diversion: its new script lands beside ours.
    std::fs::write(scripts.join("vif-bridge.xen"), "#!/bin/bash\n# Xen's vif-bridge, upgraded\n").unwrap();
    let out = vifnet(&args("uninstall-xen-scripts"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(diversions(), "");
    assert_eq!(std::fs::read_to_string(scripts.join("vif-bridge")).unwrap(), "#!/bin/bash\n# Xen's vif-bridge, upgraded\n");
    std::fs::write(scripts.join("vif-bridge"), "#!/bin/bash\n# Xen's vif-bridge\n").unwrap();
    assert_eq!(tree(&scripts), before);
    assert!(vifnet(&args("uninstall-xen-scripts")).stdout.is_empty(), "twice is once");

    // No scripts directory: one line naming it, exit 1.
    let missing = s.0.join("nowhere");
    let out = vifnet(&["install-xen-scripts", "--root", "/", "--dir", missing.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), err.lines().count()), (Some(1), 1), "{err}");
    assert!(err.contains("nowhere: no such directory"), "{err}");
}
