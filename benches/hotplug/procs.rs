//! Counting the processes a call forks, with the kernel's process events connector
//! (NETLINK_CONNECTOR, CN_IDX_PROC): every fork on the host is reported, with its parent,
//! synchronously from `fork()` itself, so once a call has been reaped each fork it or its
//! descendants made is already queued here. Waited-for children count as much as orphans
//! (a subreaper would only see the orphans), and nothing is raced with `/proc`.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_CONNECTOR: i32 = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 1;
/// nlmsghdr (16) + cn_msg (20): where `struct proc_event` starts.
const EVENT: usize = 36;

pub struct ProcEvents {
    fd: OwnedFd,
}

/// Forks made under some roots: processes (new thread groups) and threads.
#[derive(Clone, Copy, Debug, Default)]
pub struct Forks {
    pub processes: u32,
    pub threads: u32,
}

impl ProcEvents {
    /// Listens to the host's process events (root, the initial network namespace). None if
    /// the kernel has no CONFIG_PROC_EVENTS.
    pub fn open() -> Option<ProcEvents> {
        // SAFETY: plain socket calls on our own descriptors and stack buffers.
        unsafe {
            let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, NETLINK_CONNECTOR);
            if fd < 0 {
                return None;
            }
            let fd = OwnedFd::from_raw_fd(fd);
            // Room for every fork on the host between two drains, compilers included.
            let size: libc::c_int = 16 << 20;
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, (&size as *const libc::c_int).cast(), 4);
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            addr.nl_groups = CN_IDX_PROC;
            if libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_nl).cast(), std::mem::size_of::<libc::sockaddr_nl>() as u32) != 0 {
                return None;
            }
            // nlmsghdr, cn_msg { id { idx, val }, seq, ack, len, flags }, then the op.
            let mut msg = Vec::new();
            msg.extend(40u32.to_ne_bytes());
            msg.extend((libc::NLMSG_DONE as u16).to_ne_bytes());
            msg.extend(0u16.to_ne_bytes());
            msg.extend(0u32.to_ne_bytes());
            msg.extend(0u32.to_ne_bytes());
            for v in [CN_IDX_PROC, CN_VAL_PROC, 0, 0] {
                msg.extend(v.to_ne_bytes());
            }
            msg.extend(4u16.to_ne_bytes());
            msg.extend(0u16.to_ne_bytes());
            msg.extend(PROC_CN_MCAST_LISTEN.to_ne_bytes());
            if libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) != msg.len() as isize {
                return None;
            }
            Some(ProcEvents { fd })
        }
    }

    /// Drops what is queued: forks from before the call to be counted.
    pub fn clear(&self) {
        self.read(|_, _, _, _| ());
    }

    /// The forks queued so far that descend from each of `roots` (pids of calls already
    /// reaped); None if the queue overflowed and events were lost.
    pub fn forks_under(&self, roots: &[i32]) -> Option<Vec<Forks>> {
        // Thread group -> index of the root it descends from.
        let mut tree: HashMap<i32, usize> = roots.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        let mut out = vec![Forks::default(); roots.len()];
        let complete = self.read(|_parent_pid, parent_tgid, child_pid, child_tgid| {
            if let Some(&root) = tree.get(&parent_tgid) {
                if child_pid == child_tgid {
                    out[root].processes += 1;
                    tree.insert(child_tgid, root);
                } else {
                    out[root].threads += 1;
                }
            }
        });
        complete.then_some(out)
    }

    /// Reads every queued message, calling `fork` for each fork event; false if the socket
    /// reported an overflow.
    fn read(&self, mut fork: impl FnMut(i32, i32, i32, i32)) -> bool {
        let mut buf = vec![0u8; 1 << 16];
        let mut complete = true;
        loop {
            // SAFETY: into our buffer.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::ENOBUFS) => {
                        complete = false;
                        continue;
                    }
                    Some(libc::EINTR) => continue,
                    _ => return complete,
                }
            }
            let mut off = 0usize;
            let n = n as usize;
            while off + EVENT + 32 <= n {
                let word = |at: usize| u32::from_ne_bytes(buf[off + at..off + at + 4].try_into().unwrap());
                let len = word(0) as usize;
                if word(EVENT) == PROC_EVENT_FORK {
                    // struct proc_event: what, cpu, timestamp_ns, then the fork's four pids.
                    let pid = |i: usize| word(EVENT + 16 + 4 * i) as i32;
                    fork(pid(0), pid(1), pid(2), pid(3));
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }
}
