//! Logging like Xen's scripts: one line per action to stderr and to syslog (facility
//! daemon) through /dev/log, without spawning `logger`.

use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

static SYSLOG: OnceLock<Option<UnixDatagram>> = OnceLock::new();
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Informational lines go only to syslog when quiet (the hotplug path); errors always go to stderr.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

fn syslog(severity: u8, msg: &str) {
    let sock = SYSLOG.get_or_init(|| {
        let s = UnixDatagram::unbound().ok()?;
        s.connect("/dev/log").ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    });
    if let Some(s) = sock {
        // <facility*8 + severity>, facility daemon = 3.
        let _ = s.send(format!("<{}>vifnet[{}]: {msg}", 3 * 8 + severity, std::process::id()).as_bytes());
    }
}

pub fn info(msg: &str) {
    syslog(6, msg);
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("vifnet: {msg}");
    }
}

pub fn warn(msg: &str) {
    syslog(4, msg);
    eprintln!("vifnet: warning: {msg}");
}

pub fn error(msg: &str) {
    syslog(3, msg);
    eprintln!("vifnet: {msg}");
}
