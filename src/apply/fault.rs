//! A testing aid for the fault tests: with `VIFNET_FAULT_KILL_AT=n` set, the process kills
//! itself with SIGKILL (as the OOM killer, a libxl timeout or a power cut would end it)
//! just before the n-th step it applies, counting from 0 across the call. Unset, it costs
//! one environment lookup per call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Called before each step a setup or teardown applies.
pub fn point() {
    static AT: OnceLock<Option<usize>> = OnceLock::new();
    static STEP: AtomicUsize = AtomicUsize::new(0);
    let Some(at) = *AT.get_or_init(|| std::env::var("VIFNET_FAULT_KILL_AT").ok()?.parse().ok()) else { return };
    if STEP.fetch_add(1, Ordering::SeqCst) == at {
        // SAFETY: a signal to ourselves; SIGKILL cannot be caught, nothing after it runs.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}
