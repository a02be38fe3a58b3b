//! Sysctls: /proc/sys (per network namespace for net/), and our drop-in that keeps them
//! across a `sysctl --system`.

use super::ApplyError;
use crate::names::{sysctl_dropin_path, sysctl_dropin_text};

/// Writes `value` to /proc/sys/`key` (slash form, so interface names with dots are safe).
/// A key that is not there belongs to a device that is gone: nothing left to set.
pub fn write(key: &str, value: &str) -> Result<(), ApplyError> {
    match std::fs::write(format!("/proc/sys/{key}"), value) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r.map_err(|e| ApplyError::Failed { what: format!("sysctl {key}={value}"), message: e.to_string() }),
    }
}

/// Writes the mode's drop-in with these settings (through a rename, `files::replace`: a
/// reload never reads half of it), or removes it (`None`; a missing file is success).
pub fn drop_in(mode: &str, lines: Option<&[(String, String)]>) -> Result<(), ApplyError> {
    let path = sysctl_dropin_path(mode);
    let fail = |e: std::io::Error| ApplyError::Failed { what: path.display().to_string(), message: e.to_string() };
    let Some(lines) = lines else {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(fail(e)),
            _ => Ok(()),
        };
    };
    let text = sysctl_dropin_text(mode, lines);
    super::files::replace(&path, &text)
}
