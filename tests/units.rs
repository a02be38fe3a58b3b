//! The systemd units we ship: `systemd-analyze verify` finds nothing to say about them,
//! with their binary path pointed at the vifnet under test.

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
        let text = std::fs::read_to_string(entry.path()).unwrap().replace("@SBINDIR@", &sbindir);
        let path = dir.join(entry.file_name());
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    assert!(!units.is_empty());
    let out = Command::new("systemd-analyze").arg("verify").arg("--man=no").args(&units).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}
