//! The systemd units we ship: `systemd-analyze verify` finds nothing to say about them,
//! with their binary path pointed at the vifnet under test, the template as each mode's
//! instance, and their `Documentation=` man pages found in man/.

mod common;

use std::process::Command;

#[test]
fn shipped_units_verify_clean() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("skipped: no systemd-analyze");
        return;
    }
    let dir = std::env::temp_dir().join(common::unique("units"));
    std::fs::create_dir_all(&dir).unwrap();
    let sbindir = std::path::Path::new(common::vifnet_bin()).parent().unwrap().display().to_string();
    let mut units = Vec::new();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd")).unwrap().flatten() {
        // A drop-in directory (vifnet@route.service.d) goes beside the units, as installed.
        if entry.path().is_dir() {
            let to = dir.join(entry.file_name());
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(entry.path()).unwrap().flatten() {
                std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
            }
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap().replace("@SBINDIR@", &sbindir);
        let name = entry.file_name().to_string_lossy().into_owned();
        std::fs::write(dir.join(&name), text).unwrap();
        match name.strip_suffix("@.service") {
            Some(template) => units.extend(["bridge", "route", "nat"].map(|m| dir.join(format!("{template}@{m}.service")))),
            None => units.push(dir.join(name)),
        }
    }
    assert!(!units.is_empty());
    // man(1) looks in MANPATH's man8/ and man5/: a directory of links to ours.
    let manpath = dir.join("man");
    for (section, page) in [("man8", "vifnet.8"), ("man5", "vifnet-modes.5")] {
        std::fs::create_dir_all(manpath.join(section)).unwrap();
        std::os::unix::fs::symlink(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(page), manpath.join(section).join(page)).unwrap();
    }
    let out = Command::new("systemd-analyze").env("MANPATH", &manpath).arg("verify").args(&units).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}
