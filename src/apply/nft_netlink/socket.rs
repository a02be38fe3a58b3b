//! The NETLINK_NETFILTER socket: opened once per thread and namespace, kept for the
//! next call, and at the end of a process closed here or by a child (`close_later`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::apply::close_later::{close_in_child, Quiet};
use super::*;

// Socket

pub(super) struct Sock {
    pub(super) fd: OwnedFd,
    pub(super) seq: u32,
    /// Owner process and network namespace (dev, inode) at creation: a
    /// cached socket is reused only by the same process in the same netns.
    pub(super) pid: libc::pid_t,
    pub(super) netns: Option<(u64, u64)>,
    /// A batch sent on it deleted something: its close would wait for the destroy work.
    pub(super) deleted: bool,
}

thread_local! {
    /// The socket of this thread's last successful call, reused by the next.
    ///
    /// Why: closing a NETLINK_NETFILTER socket runs nf_tables' netlink
    /// release notifier, which (in recent kernels) first flushes the
    /// pending "destroy" work of earlier transactions if it has not started
    /// yet, and that work waits for an RCU grace period. Right after a
    /// transaction that deleted elements, close() therefore sleeps for
    /// ~8-30 ms (measured on 6.18; `nft delete element` pays it too).
    /// Keeping the socket open moves that wait out of the transaction, and
    /// [`release_socket`] moves it out of the process: a child closes it
    /// once the work is done.
    static SOCK_CACHE: std::cell::RefCell<Option<Sock>> = const { std::cell::RefCell::new(None) };
}

/// (dev, inode) of the calling thread's network namespace.
pub(super) fn current_netns() -> Option<(u64, u64)> {
    // SAFETY: stat on a NUL-terminated path into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::stat(c"/proc/thread-self/ns/net".as_ptr(), &mut st) };
    (r == 0).then_some((st.st_dev as u64, st.st_ino as u64))
}

/// A socket for this thread: the cached one if still valid, else a new one.
pub(super) fn take_sock() -> io::Result<Sock> {
    let cached = SOCK_CACHE
        .try_with(|c| c.borrow_mut().take())
        .ok()
        .flatten();
    let netns = current_netns();
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    if let Some(s) = cached {
        if s.pid == pid && netns.is_some() && s.netns == netns {
            return Ok(s);
        }
    }
    let mut s = Sock::open()?;
    s.pid = pid;
    s.netns = netns;
    Ok(s)
}

/// Gives a socket back for reuse, after an exchange that read every answer.
pub(super) fn put_sock(s: Sock) {
    let _ = SOCK_CACHE.try_with(|c| *c.borrow_mut() = Some(s));
}

/// Lets go of this thread's cached socket without waiting for its release (see
/// `SOCK_CACHE`): the last call of a process, before it exits.
/// Returns the pid of the child that closes it, if there was a socket.
pub fn release_socket() -> Option<libc::pid_t> {
    release_socket_queued_in(&crate::state::dir())
}

/// The same, with the children's queue file in `dir`.
pub(super) fn release_socket_queued_in(dir: &std::path::Path) -> Option<libc::pid_t> {
    let s = SOCK_CACHE.try_with(|c| c.borrow_mut().take()).ok().flatten()?;
    let queue = std::ffi::CString::new(dir.join(crate::names::NFT_RELEASE_QUEUE).into_os_string().into_encoded_bytes()).ok();
    // Adding elements leaves no destroy work (the kernel frees a new element's transaction
    // at commit), so an online's close is quick and forks nothing, unless another call's
    // deletes are still pending: then a child is waiting for them in the queue.
    if !s.deleted && !queue.as_deref().is_some_and(crate::apply::close_later::queue_busy) {
        return None;
    }
    let quiet = queue.map(|queue| Quiet { generation, netns: s.netns.map_or(0, |(_, ino)| ino), queue });
    close_in_child(s.fd, quiet.as_ref())
}

/// The ruleset's generation id (`NFT_MSG_GETGEN`), which every commit advances; None if
/// the kernel does not answer with one. It runs in a forked child: stack buffers only.
pub(super) fn generation(fd: BorrowedFd<'_>) -> Option<u32> {
    // nlmsghdr + nfgenmsg (AF_UNSPEC, version 0, res_id 0): no attributes.
    const LEN: usize = NLMSG_HDRLEN + 4;
    let mut req = [0u8; LEN];
    req[0..4].copy_from_slice(&(LEN as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&nft_type(NFT_MSG_GETGEN).to_ne_bytes());
    req[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    // SAFETY: send and recv on our socket, with buffers that outlive the calls.
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), LEN, 0) } != LEN as isize {
        return None;
    }
    let mut buf = [0u8; 512];
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    let msg = buf.get(..usize::try_from(n).ok()?)?;
    if msg.len() < NLMSG_HDRLEN + 4 || u16_at(msg, 4) != nft_type(NFT_MSG_NEWGEN) {
        return None;
    }
    let len = (u32_at(msg, 0) as usize).min(msg.len());
    let attrs = &msg[NLMSG_HDRLEN + 4..len];
    find_attr(attrs, NFTA_GEN_ID).and_then(|v| v.get(..4)).map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
}

/// Drops this thread's cached socket (tests, measurements).
#[cfg(test)]
pub(super) fn drop_cached_sock() {
    let _ = SOCK_CACHE.try_with(|c| c.borrow_mut().take());
}

impl Sock {
    pub(super) fn open() -> io::Result<Sock> {
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let sock = Sock {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            seq: 1,
            pid: 0,
            netns: None,
            deleted: false,
        };
        let tv = libc::timeval {
            tv_sec: RECV_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: RECV_TIMEOUT.subsec_micros() as libc::suseconds_t,
        };
        sock.setsockopt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        // Small ACKs (no copy of our request) and error strings; both are
        // optional (older kernels), hence no error check.
        let one: libc::c_int = 1;
        let _ = sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, &one);
        let _ = sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, &one);
        Ok(sock)
    }

    pub(super) fn setsockopt<T>(&self, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
        // SAFETY: val points to a live T of the given size.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                val as *const T as *const libc::c_void,
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Makes room for big batches: `want` bytes of send and receive buffer.
    pub(super) fn grow_buffers(&self, send: usize, recv: usize) {
        const DEFAULT: usize = 200 * 1024;
        for (want, force, plain) in [
            (send, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
            (recv, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        ] {
            if want > DEFAULT {
                let v = want.min(i32::MAX as usize / 2) as libc::c_int;
                if self.setsockopt(libc::SOL_SOCKET, force, &v).is_err() {
                    let _ = self.setsockopt(libc::SOL_SOCKET, plain, &v);
                }
            }
        }
    }

    /// Reserves `n` consecutive sequence numbers, returns the first.
    pub(super) fn seqs(&mut self, n: u32) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(n);
        s
    }

    pub(super) fn send(&self, buf: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: buf is a valid slice; the socket is unconnected, so the
            // destination is the kernel (portid 0).
            let n = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    buf.as_ptr() as *const libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n as usize != buf.len() {
                return Err(io::Error::other(format!(
                    "short netlink send ({n} of {} bytes)",
                    buf.len()
                )));
            }
            return Ok(());
        }
    }

    /// One datagram. `Ok(None)`: nothing came (timeout, or nothing queued
    /// when `nonblocking`).
    pub(super) fn recv(&self, buf: &mut [u8], nonblocking: bool) -> io::Result<Option<usize>> {
        let flags = libc::MSG_TRUNC | if nonblocking { libc::MSG_DONTWAIT } else { 0 };
        loop {
            // SAFETY: buf is a valid mutable slice of the given length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    flags,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(None),
                    _ => {
                        if e.raw_os_error() == Some(libc::ENOBUFS) {
                            return Err(io::Error::new(
                                e.kind(),
                                "netlink receive buffer overrun: kernel answers were lost",
                            ));
                        }
                        return Err(e);
                    }
                }
            }
            let n = n as usize;
            if n > buf.len() {
                return Err(io::Error::other(format!(
                    "netlink answer truncated ({n} bytes > {})",
                    buf.len()
                )));
            }
            return Ok(Some(n));
        }
    }
}

