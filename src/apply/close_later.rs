//! Closing a socket whose release would make the caller wait out an RCU grace period.
//!
//! Two sockets vifnet uses sleep in the kernel when they are closed:
//! - a packet socket: `packet_release()` calls `synchronize_net()`;
//! - a NETLINK_NETFILTER socket: its release notifier (`nft_rcv_nl_event`) takes the
//!   namespace's nf_tables commit mutex and flushes the pending destroy work, which waits
//!   for a grace period after any transaction that deleted something (ours or anyone's).
//!
//! Either way 10-15 ms here, at process exit, which libxl waits for. Nothing depends on
//! the close: the frames are sent and the transaction is committed before it. So the last
//! reference goes to a short-lived child that nobody waits for.

use std::os::fd::{BorrowedFd, IntoRawFd, OwnedFd};

/// `membarrier(2)`: returns after an RCU grace period on every CPU (`synchronize_rcu()`).
const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;

/// How long a child waits, at most, for a quiet moment before closing all the same.
const MAX_ROUNDS: usize = 40;

/// A counter every nf_tables commit advances, read on the socket itself; None if it
/// cannot be read. Called in the forked child, so it must not allocate.
pub type Generation = fn(BorrowedFd<'_>) -> Option<u32>;

/// Hands `fd` to a child that closes it once the parent has let go of its copy, and
/// returns the child's pid (nobody needs to wait for it); closes it here if no child can
/// be made.
///
/// With `generation` (a NETLINK_NETFILTER socket), the child first waits, holding no lock,
/// until two grace periods pass with no commit in between: then no destroy work is pending
/// and its close holds the commit mutex only for a moment, instead of keeping every other
/// transaction (the next vif's online) waiting behind a grace period. It gives up waiting
/// after [`MAX_ROUNDS`] (about a second of back-to-back deletions).
pub fn close_in_child(fd: OwnedFd, generation: Option<Generation>) -> Option<libc::pid_t> {
    let fd = fd.into_raw_fd();
    let mut pipe = [0; 2];
    // SAFETY: fd and the pipe are ours. The child (of a possibly multi-threaded parent)
    // makes only raw system calls, which are async-signal-safe, and leaves by _exit.
    unsafe {
        if libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            libc::close(fd);
            return None;
        }
        let pid = libc::fork();
        if pid == 0 {
            keep_only(fd, pipe[0]);
            // EOF once the parent has closed its copy: then ours is the last reference.
            let mut b = 0u8;
            libc::read(pipe[0], (&mut b as *mut u8).cast(), 1);
            if let Some(generation) = generation {
                wait_for_quiet(BorrowedFd::borrow_raw(fd), generation);
            }
            libc::close(fd);
            libc::_exit(0);
        }
        libc::close(pipe[0]);
        libc::close(fd);
        libc::close(pipe[1]);
        (pid > 0).then_some(pid)
    }
}

/// Returns once two grace periods passed without a commit (or after [`MAX_ROUNDS`]).
fn wait_for_quiet(fd: BorrowedFd<'_>, generation: Generation) {
    for _ in 0..MAX_ROUNDS {
        let before = generation(fd);
        // The second grace period starts after any destroy work queued before `before`
        // has begun its own, so it ends after that work's.
        if !(grace_period() && grace_period()) {
            return;
        }
        if before.is_none() || generation(fd) == before {
            return;
        }
    }
}

/// Waits for one RCU grace period; false if the kernel cannot (nohz_full refuses it).
fn grace_period() -> bool {
    // SAFETY: membarrier takes no pointers.
    unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0 }
}

/// Closes every descriptor but `a` and `b`: the lock, stdout and stderr (libxl's pipes),
/// xenstore and the other netlink sockets must not outlive the parent.
///
/// # Safety
/// Only in a freshly forked child.
unsafe fn keep_only(a: i32, b: i32) {
    let (lo, hi) = (a.min(b) as u32, a.max(b) as u32);
    if lo > 0 {
        libc::close_range(0, lo - 1, 0);
    }
    if hi > lo + 1 {
        libc::close_range(lo + 1, hi - 1, 0);
    }
    libc::close_range(hi + 1, u32::MAX, 0);
}
