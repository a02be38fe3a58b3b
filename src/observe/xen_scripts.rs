//! What is at each of Xen's script names (and ours) in the scripts directory, and which
//! of them dpkg diverts for vifnet.

use std::path::Path;
use std::process::Command;

use crate::plan::xen_scripts::{Found, KeepAside, NameFacts, KEPT_SUFFIX, OUR_NAMES, XEN_NAMES};

/// Every name vifnet installs, as it stands in `dir` (a path on this host; `in_root`, the
/// same directory as dpkg under its root sees it).
pub fn names(dir: &Path, in_root: &Path, keep: &KeepAside) -> std::io::Result<Vec<NameFacts>> {
    XEN_NAMES.iter().chain(OUR_NAMES.iter()).map(|&name| name_facts(dir, in_root, name, keep)).collect()
}

fn name_facts(dir: &Path, in_root: &Path, name: &'static str, keep: &KeepAside) -> std::io::Result<NameFacts> {
    let path = dir.join(name);
    let at = match path.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Nothing,
        Err(e) => return Err(e),
        // A link to any `vifnet` binary is ours: an earlier install under another prefix too.
        Ok(m) if m.file_type().is_symlink() && std::fs::read_link(&path)?.file_name().is_some_and(|n| n == "vifnet") => Found::OurLink,
        Ok(_) => Found::Other,
    };
    let kept = dir.join(format!("{name}{KEPT_SUFFIX}")).symlink_metadata().is_ok();
    let diverted = match keep {
        KeepAside::Dpkg { root } => diverted_for_us(&in_root.join(name), root)?,
        KeepAside::Rename => false,
    };
    Ok(NameFacts { name, at, kept, diverted })
}

/// `dpkg-divert --root <root> --listpackage <path>` names vifnet.
fn diverted_for_us(path: &Path, root: &Path) -> std::io::Result<bool> {
    let out = Command::new("dpkg-divert").arg("--root").arg(root).arg("--listpackage").arg(path).output()?;
    Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "vifnet")
}
