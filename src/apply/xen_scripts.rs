//! Carries out `plan::xen_scripts`: dpkg-divert, renames and links in the scripts directory.

use std::path::Path;
use std::process::Command;

use super::ApplyError;
use crate::plan::xen_scripts::{KeepAside, ScriptStep, KEPT_SUFFIX};

/// Runs the steps in order in `dir` (`in_root`: the same directory as dpkg under its root
/// sees it); the first failure stops them (each step is safe to run again).
pub fn run(dir: &Path, in_root: &Path, target: &Path, keep: &KeepAside, steps: &[ScriptStep]) -> Result<(), ApplyError> {
    for step in steps {
        let failed = |message: String| ApplyError::Failed { what: step.to_string(), message };
        match step {
            ScriptStep::Divert(n) => {
                let (name, kept) = (in_root.join(n), in_root.join(format!("{n}{KEPT_SUFFIX}")));
                dpkg_divert(keep, &["--rename".as_ref(), "--divert".as_ref(), kept.as_os_str(), "--add".as_ref(), name.as_os_str()]).map_err(failed)?
            }
            ScriptStep::Undivert(n) => dpkg_divert(keep, &["--rename".as_ref(), "--remove".as_ref(), in_root.join(n).as_os_str()]).map_err(failed)?,
            ScriptStep::Rename { from, to } => std::fs::rename(dir.join(from), dir.join(to)).map_err(|e| failed(e.to_string()))?,
            ScriptStep::Link(n) => {
                let path = dir.join(n);
                let _ = std::fs::remove_file(&path);
                std::os::unix::fs::symlink(target, &path).map_err(|e| failed(e.to_string()))?
            }
            ScriptStep::Unlink(n) => std::fs::remove_file(dir.join(n)).map_err(|e| failed(e.to_string()))?,
        }
    }
    Ok(())
}

fn dpkg_divert(keep: &KeepAside, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let mut c = Command::new("dpkg-divert");
    if let KeepAside::Dpkg { root } = keep {
        c.arg("--root").arg(root);
    }
    let out = c.arg("--package").arg("vifnet").args(args).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().replace('\n', " "))
    }
}
