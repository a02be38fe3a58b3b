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

use std::ffi::CString;
use std::os::fd::{BorrowedFd, IntoRawFd, OwnedFd};

/// `membarrier(2)`: returns after an RCU grace period on every CPU (`synchronize_rcu()`).
const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;

/// How long the child at the head of the queue waits, at most, for a quiet moment before
/// closing all the same: about a second of back-to-back commits.
const MAX_ROUNDS: usize = 40;

/// A counter every nf_tables commit advances, read on the socket itself; None if it
/// cannot be read. Called in the forked child, so it must not allocate.
pub type Generation = fn(BorrowedFd<'_>) -> Option<u32>;

/// How a NETLINK_NETFILTER socket's child finds a moment when closing is quick.
pub struct Quiet {
    pub generation: Generation,
    /// The network namespace's inode: the generation counts that namespace's commits.
    pub netns: u64,
    /// A file the children queue on (flock), holding the last quiet (netns, generation).
    pub queue: CString,
}

/// Hands `fd` to a child that closes it once the parent has let go of its copy, and
/// returns the child's pid (nobody needs to wait for it); closes it here if no child can
/// be made.
///
/// With `quiet` (a NETLINK_NETFILTER socket), the child first waits, holding no kernel
/// lock, for a moment when no destroy work is pending, so that its close holds the commit
/// mutex only briefly instead of keeping the next vif's transaction waiting behind a
/// grace period. Children of a burst of calls queue on a file lock: the first waits for two
/// grace periods without a commit and writes down that generation; the others then close at
/// once if nothing was committed since. So one child at a time waits, and none polls.
pub fn close_in_child(fd: OwnedFd, quiet: Option<&Quiet>) -> Option<libc::pid_t> {
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
            if let Some(q) = quiet {
                wait_in_queue(BorrowedFd::borrow_raw(fd), q);
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

/// Whether a child holds the queue: a call that deleted something may have left destroy
/// work pending, which closing a NETLINK_NETFILTER socket would wait for. A queue nobody
/// holds (or that does not exist) means no call's work is known to be pending.
pub fn queue_busy(queue: &std::ffi::CStr) -> bool {
    // SAFETY: raw calls on a NUL-terminated path; the descriptor is closed before return.
    unsafe {
        let file = libc::open(queue.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if file < 0 {
            return false;
        }
        let busy = libc::flock(file, libc::LOCK_EX | libc::LOCK_NB) != 0;
        libc::close(file);
        busy
    }
}

/// Returns when closing `fd` will not wait on destroy work: at once if nothing was
/// committed since the last quiet moment a child wrote down, else after waiting for one.
/// The queue's lock is held until the child exits, after its close.
fn wait_in_queue(fd: BorrowedFd<'_>, q: &Quiet) {
    // SAFETY: raw calls on a NUL-terminated path and a stack buffer.
    let file = unsafe { libc::open(q.queue.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC, 0o600) };
    if file < 0 || unsafe { libc::flock(file, libc::LOCK_EX) } != 0 {
        wait_for_quiet(fd, q.generation);
        return;
    }
    let mut last = [0u8; 12];
    let read = unsafe { libc::pread(file, last.as_mut_ptr().cast(), last.len(), 0) };
    let now = (q.generation)(fd);
    if read == last.len() as isize && now.is_some() && record(q.netns, now) == last {
        return;
    }
    if let Some(quiet_at) = wait_for_quiet(fd, q.generation) {
        let rec = record(q.netns, Some(quiet_at));
        unsafe { libc::pwrite(file, rec.as_ptr().cast(), rec.len(), 0) };
    }
}

/// The queue file's content: netns inode and generation, native-endian.
fn record(netns: u64, generation: Option<u32>) -> [u8; 12] {
    let mut r = [0u8; 12];
    r[..8].copy_from_slice(&netns.to_ne_bytes());
    r[8..].copy_from_slice(&generation.unwrap_or(0).to_ne_bytes());
    r
}

/// Waits until two grace periods pass without a commit (or [`MAX_ROUNDS`] of them), and
/// returns the generation that stayed the same, if one did.
fn wait_for_quiet(fd: BorrowedFd<'_>, generation: Generation) -> Option<u32> {
    for _ in 0..MAX_ROUNDS {
        let before = generation(fd)?;
        // The second grace period starts after any destroy work queued before `before`
        // has begun its own, so it ends after that work's.
        if !(grace_period() && grace_period()) {
            return None;
        }
        if generation(fd) == Some(before) {
            return Some(before);
        }
    }
    None
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
