//! /run/vifnet: the lock every mutating verb holds, and the journals that let `offline`
//! and `stop` undo exactly what was done (design.md §4).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::names;
use crate::plan::takeover::TakeoverRecord;
use crate::plan::VifJournal;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{path}: another vifnet has held the lock for {secs} s; giving up")]
    LockTimeout { path: String, secs: u64 },
    #[error("{path}: unreadable journal: {err}")]
    Corrupt { path: String, err: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |err| StateError::Io { path: path.display().to_string(), err }
}

/// The state directory: `$VIFNET_STATE_DIR`, else /run/vifnet.
pub fn dir() -> PathBuf {
    std::env::var_os("VIFNET_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(names::STATE_DIR))
}

/// Held for the whole of a mutating verb; released when dropped (the fd closes).
pub struct Lock {
    _file: File,
}

/// How long a verb waits for the lock: libxl gives a script 40 s, so a waiter must give
/// up well before that with a clear error; `$VIFNET_LOCK_TIMEOUT` (seconds) overrides it.
pub fn lock_timeout() -> Duration {
    let secs = std::env::var("VIFNET_LOCK_TIMEOUT").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(30);
    Duration::from_secs(secs)
}

/// The lock every mutating verb holds, waited for at most `lock_timeout()`.
pub fn lock_for_change() -> Result<Lock, StateError> {
    lock(lock_timeout())
}

/// Takes the one flock on `<state>/lock`, waiting at most `timeout`. The wait blocks in the
/// kernel, which hands the lock over the moment it is released: polling with sleeps left a
/// burst of calls idle between their tries. A timer's SIGALRM ends the wait at the timeout.
pub fn lock(timeout: Duration) -> Result<Lock, StateError> {
    let d = dir();
    fs::create_dir_all(&d).map_err(io(&d))?;
    let path = d.join("lock");
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
    let fd = file.as_raw_fd();
    let failed = |err| StateError::Io { path: path.display().to_string(), err };
    // Uncontended, the usual case: no timer, no signal.
    // SAFETY: flock on an fd we own; no memory is involved.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Lock { _file: file });
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(failed(err));
    }
    let start = Instant::now();
    let _alarm = Alarm::arm(timeout).map_err(failed)?;
    loop {
        // SAFETY: as above; the blocking form, interrupted by the alarm.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
            return Ok(Lock { _file: file });
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) if start.elapsed() >= timeout => {
                return Err(StateError::LockTimeout { path: path.display().to_string(), secs: timeout.as_secs() });
            }
            // Another signal: wait on (the timer is still running).
            Some(libc::EINTR) => continue,
            _ => return Err(failed(err)),
        }
    }
}

/// A one-shot SIGALRM after a delay, whose handler does nothing but interrupt a blocking
/// system call (no SA_RESTART); disarmed, and the old handler back, when dropped.
struct Alarm {
    old: libc::sigaction,
}

extern "C" fn on_alarm(_: libc::c_int) {}

impl Alarm {
    fn arm(after: Duration) -> Result<Alarm, std::io::Error> {
        // SAFETY: plain structs for sigaction and setitimer, zeroed then filled; the handler
        // is async-signal-safe (it does nothing).
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_alarm as *const () as usize;
            libc::sigemptyset(&mut act.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGALRM, &act, &mut old) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let alarm = Alarm { old };
            let value = libc::timeval { tv_sec: after.as_secs() as libc::time_t, tv_usec: after.subsec_micros().max(1) as libc::suseconds_t };
            let timer = libc::itimerval { it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 }, it_value: value };
            if libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(alarm)
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        // SAFETY: a zero timer disarms it; the old action was read by sigaction itself.
        unsafe {
            let zero = libc::itimerval { it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 }, it_value: libc::timeval { tv_sec: 0, tv_usec: 0 } };
            libc::setitimer(libc::ITIMER_REAL, &zero, std::ptr::null_mut());
            libc::sigaction(libc::SIGALRM, &self.old, std::ptr::null_mut());
        }
    }
}

fn vif_path(kernel_name: &str) -> PathBuf {
    dir().join("vifs").join(format!("{kernel_name}.json"))
}

fn takeover_path(bridge: &str) -> PathBuf {
    dir().join("takeover").join(format!("{bridge}.json"))
}

/// Writes through a temporary file and a rename, so a reader never sees half a journal.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let parent = path.parent().expect("journal paths have a parent");
    fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&serde_json::to_vec_pretty(value).expect("records serialise")).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt { path: path.display().to_string(), err: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::Io { path: path.display().to_string(), err: e }),
    }
}

fn remove(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StateError::Io { path: path.display().to_string(), err: e }),
        _ => Ok(()),
    }
}

pub fn read_vif(kernel_name: &str) -> Result<Option<VifJournal>, StateError> {
    read_json(&vif_path(kernel_name))
}
/// Whether `kernel_name` has a journal (readable or not): one stat, no parsing.
pub fn has_vif(kernel_name: &str) -> bool {
    vif_path(kernel_name).exists()
}
pub fn write_vif(rec: &VifJournal) -> Result<(), StateError> {
    write_json(&vif_path(rec.kernel_name().as_str()), rec)
}
pub fn remove_vif(kernel_name: &str) -> Result<(), StateError> {
    remove(&vif_path(kernel_name))
}

/// One file of `<state>/vifs`: its vif's name, and its journal or why it cannot be read.
#[derive(Debug)]
pub struct JournalFile {
    pub kernel_name: String,
    pub journal: Result<VifJournal, StateError>,
}

/// Every vif journal file (sorted by name); a corrupt one is listed with its error, so that
/// one bad file hides no other vif.
pub fn journal_files() -> Result<Vec<JournalFile>, StateError> {
    let d = dir().join("vifs");
    let entries = match fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StateError::Io { path: d.display().to_string(), err: e }),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let p = entry.path();
        let Some(stem) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json")) else { continue };
        let journal = match read_json::<VifJournal>(&p) {
            Ok(Some(j)) => Ok(j),
            // Removed between the listing and the read: an offline just ran.
            Ok(None) => continue,
            Err(e) => Err(e),
        };
        out.push(JournalFile { kernel_name: stem.to_string(), journal });
    }
    out.sort_by(|a, b| a.kernel_name.cmp(&b.kernel_name));
    Ok(out)
}

/// Every readable vif journal (sorted by name); corrupt ones are `journal_files`' to report.
pub fn all_vifs() -> Result<Vec<VifJournal>, StateError> {
    Ok(journal_files()?.into_iter().filter_map(|f| f.journal.ok()).collect())
}

pub fn read_takeover(bridge: &str) -> Result<Option<TakeoverRecord>, StateError> {
    read_json(&takeover_path(bridge))
}
pub fn write_takeover(rec: &TakeoverRecord) -> Result<(), StateError> {
    write_json(&takeover_path(rec.bridge.as_str()), rec)
}
pub fn remove_takeover(bridge: &str) -> Result<(), StateError> {
    remove(&takeover_path(bridge))
}

fn host_path(mode: &str) -> PathBuf {
    dir().join(format!("{mode}.json"))
}

/// What a mode's host-wide part did (`<state>/<mode>.json`), if it has run.
pub fn read_host<T: DeserializeOwned>(mode: &str) -> Result<Option<T>, StateError> {
    read_json(&host_path(mode))
}
pub fn write_host<T: Serialize>(mode: &str, rec: &T) -> Result<(), StateError> {
    write_json(&host_path(mode), rec)
}
pub fn remove_host(mode: &str) -> Result<(), StateError> {
    remove(&host_path(mode))
}
