//! Files vifnet edits (nat mode's hosts and ethers): the whole new text replaces the old
//! by a rename, so a reader never sees half of it and a crash leaves one or the other.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::ApplyError;

fn fail(path: &Path) -> impl Fn(std::io::Error) -> ApplyError + '_ {
    move |e| ApplyError::Failed { what: path.display().to_string(), message: e.to_string() }
}

/// Whether `path` is itself a mount point: a file bind-mounted over, as `ip netns exec`
/// does with /etc/netns/<ns>/ethers. A rename cannot replace it; it is written in place.
fn is_mount_root(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return false };
    // The raw syscall, not glibc's statx(): with fat LTO and a static glibc, std's weak
    // reference to statx() leaves the symbol unresolved, and the call jumps to address 0.
    // SAFETY: statx into a zeroed struct we own, with a NUL-terminated path.
    unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        libc::syscall(libc::SYS_statx, libc::AT_FDCWD, c.as_ptr(), 0, 0u32, &mut stx as *mut libc::statx) == 0
            && stx.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
            && stx.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
    }
}

/// Replaces the file's text (readable by all: dnsmasq rereads it as its own user).
pub fn replace(path: &Path, text: &str) -> Result<(), ApplyError> {
    if is_mount_root(path) {
        return std::fs::write(path, text).map_err(fail(path));
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(fail(dir))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.vifnet-{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(fail(path))
}

/// Adds `line` at the end of nat mode's hosts file, which is `at` bytes long as planned
/// (we hold the lock), and to its index. Readers see the file without the line or with
/// all of it: one `write` of an O_APPEND file.
pub fn append_hosts_line(path: &Path, at: u64, prefix: &ipnetwork::Ipv4Network, line: &str) -> Result<(), ApplyError> {
    let facts = crate::plan::hosts::parse_hosts(line).first().and_then(|l| crate::plan::hosts::LineFacts::of(prefix, l));
    let written = (|| {
        let dir = path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir)?;
        let mut f = std::fs::OpenOptions::new().append(true).create(true).mode(0o644).open(path)?;
        if f.metadata()?.len() != at {
            return Err(std::io::Error::other(format!("changed while planned ({at} bytes then, {} now); try again", f.metadata()?.len())));
        }
        f.write_all(format!("{line}\n").as_bytes())
    })();
    written.map_err(fail(path))?;
    let state = crate::state::dir();
    let indexed = match facts {
        Some(facts) => crate::observe::hosts_index::appended(&state, path, prefix, at, &facts),
        None => crate::observe::hosts_index::forget(&state),
    };
    indexed.map_err(fail(&crate::observe::hosts_index::dir(&state)))
}

/// Cuts nat mode's hosts file back to `len` bytes (a rolled-back append); its index is
/// rebuilt by the next reader.
pub fn truncate_hosts_file(path: &Path, len: u64) -> Result<(), ApplyError> {
    let state = crate::state::dir();
    crate::observe::hosts_index::forget(&state).map_err(fail(&crate::observe::hosts_index::dir(&state)))?;
    let f = std::fs::OpenOptions::new().write(true).open(path).map_err(fail(path))?;
    f.set_len(len).map_err(fail(path))
}

/// Removes the index of nat mode's hosts file (`network nat stop`).
pub fn drop_hosts_index() -> Result<(), ApplyError> {
    let state = crate::state::dir();
    crate::observe::hosts_index::drop(&state).map_err(fail(&crate::observe::hosts_index::dir(&state)))
}
