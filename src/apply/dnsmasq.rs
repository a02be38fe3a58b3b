//! dnsmasq, by its pid file: the one vifnet runs for nat mode (started and stopped here,
//! by its own pid, never by name), or the system's, told to reread its files.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::ApplyError;

use crate::observe::snapshot::dnsmasq_pid as running;

fn failed(what: &str, message: String) -> ApplyError {
    ApplyError::Failed { what: what.to_string(), message }
}

/// Writes the config and starts dnsmasq with it; one already running from this pid file
/// is kept. dnsmasq reports a bad config or a busy port before it detaches, so its exit
/// status tells.
pub fn start(config: &Path, text: &str, pidfile: &Path) -> Result<(), ApplyError> {
    if running(pidfile).is_some() {
        return Ok(());
    }
    super::files::replace(config, text)?;
    let out = Command::new("dnsmasq")
        .arg(format!("--conf-file={}", config.display()))
        .arg(format!("--pid-file={}", pidfile.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| failed("starting dnsmasq", format!("{e} (is dnsmasq installed?)")))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().replace('\n', " ");
        return Err(failed("starting dnsmasq", why));
    }
    Ok(())
}

/// Whether the process is still there and not merely waiting to be reaped (a zombie has
/// let go of its sockets and files already).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised name: "pid (comm) S ...".
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

/// Stops our dnsmasq (SIGTERM to the pid in its file, then waits for it to go) and removes
/// its config, pid and lease files.
pub fn stop(pidfile: &Path, config: &Path) -> Result<(), ApplyError> {
    if let Some(pid) = running(pidfile) {
        // SAFETY: a signal to the pid our own dnsmasq wrote.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        if alive(pid) {
            return Err(failed("stopping dnsmasq", format!("pid {pid} is still there after SIGTERM")));
        }
    }
    for f in [pidfile.to_path_buf(), config.to_path_buf(), config.with_extension("leases")] {
        let _ = std::fs::remove_file(f);
    }
    Ok(())
}

/// SIGHUP: dnsmasq rereads its hosts and ethers files (not its config). With no dnsmasq
/// running, the files are still right for when one starts: a warning, not a failure.
pub fn reload(pidfile: &Path) -> Result<(), ApplyError> {
    match running(pidfile) {
        // SAFETY: a signal to the pid dnsmasq wrote in its own pid file.
        Some(pid) => {
            unsafe { libc::kill(pid, libc::SIGHUP) };
        }
        None => crate::log::warn(&format!("no dnsmasq running from {}: the hosts and ethers files are written, nothing reread them", pidfile.display())),
    }
    Ok(())
}
