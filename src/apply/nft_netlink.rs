//! nftables set-element updates over nfnetlink, without spawning `nft`.
//!
//! The per-guest hot path only adds and removes a handful of elements of
//! sets that already exist (tables, chains and sets are created once with
//! the `nft` binary elsewhere). Spawning `nft` costs ~2 ms a call; this
//! module talks to the kernel directly on a `NETLINK_NETFILTER` socket with
//! a small hand-written encoder.
//!
//! # Transactions
//!
//! [`apply`] sends every op in ONE nfnetlink batch:
//! `NFNL_MSG_BATCH_BEGIN` (res_id = `NFNL_SUBSYS_NFTABLES`), one
//! `NFT_MSG_NEWSETELEM` / `NFT_MSG_DESTROYSETELEM` message per element (each
//! with `NLM_F_ACK`), `NFNL_MSG_BATCH_END`, all in a single send, then reads
//! one answer per element message.
//!
//! Kernel behaviour when one message of a batch fails (checked by the test
//! `failed_batch_applies_nothing` below): nfnetlink keeps processing the
//! remaining messages (so that every error is reported), then aborts the
//! whole transaction: NOTHING of the batch is applied. The messages that
//! were valid on their own still get a zero ACK, so a zero ACK does not mean
//! "applied": the batch was committed only if no message got an error and
//! the batch header got no error either (a failed commit, or a failure to
//! queue the errors, is reported as an error on the BATCH_BEGIN sequence
//! number). All kernel answers are queued synchronously while the kernel
//! processes our send, so reading them never waits on anything but the
//! socket buffer; a receive timeout ([`RECV_TIMEOUT`]) still guards against
//! an answer that never comes.
//!
//! Each thread keeps its socket after a successful call and reuses it (same
//! process and network namespace only): closing a NETLINK_NETFILTER socket
//! right after a transaction that deleted elements sleeps ~8-30 ms in the
//! kernel (see `SOCK_CACHE`), and opening one costs ~0.1 ms of CPU. At the
//! end of a process, [`release_socket`] leaves the close to a child if the process
//! deleted anything (adds leave no destroy work; their close is quick).
//!
//! # Cost
//!
//! Measured on 6.18 (test `measure_apply_cost`): our own part is ~20 us of
//! user+sys per call. The kernel's work on the `flags interval`
//! concatenation sets (pipapo backend) dominates: ~0.2-0.3 ms to add one
//! element to each of the four vifnet sets, ~0.55-0.75 ms to delete them
//! with the sets otherwise empty, and growing with the set size
//! (~2.5-4 ms to delete with 64 other guests present), since pipapo
//! rebuilds its lookup tables on every change.
//!
//! # Idempotence
//!
//! * Add is create-if-missing: `NLM_F_CREATE` without `NLM_F_EXCL`, so adding
//!   an element that is already there succeeds. (Adding a range that
//!   *overlaps* a different existing range fails with EEXIST.)
//! * Delete is delete-if-present. Kernels >= 6.3 have
//!   `NFT_MSG_DESTROYSETELEM` (value 30 = 0x1e in `enum nf_tables_msg_types`:
//!   ..., `NFT_MSG_DELFLOWTABLE` = 24, `NFT_MSG_GETRULE_RESET` = 25,
//!   `NFT_MSG_DESTROYTABLE` = 26, `..CHAIN` 27, `..RULE` 28, `..SET` 29,
//!   `..SETELEM` 30), which ignores a missing element (but still fails on a
//!   missing set or table). Older kernels answer EINVAL to a message type
//!   they do not know (checked on 6.18 with unused numbers), maybe
//!   EOPNOTSUPP; then the batch was aborted as a whole, and we fall
//!   back to asking the kernel for each element to delete
//!   (`NFT_MSG_GETSET` for each set, so a missing set is still an error, and
//!   `NFT_MSG_GETSETELEM`, ENOENT = absent) and send a new single batch with
//!   `NFT_MSG_DELSETELEM` for the present ones only. Once the fallback has
//!   worked, later calls go straight to it.
//!
//! # Keys
//!
//! Keys are the raw bytes the kernel compares: for a concatenation, each
//! field padded to a multiple of 4 bytes (see [`key_ifname`], [`key_ether`],
//! [`key_ipv4`], [`key_ipv6`], [`concat`]). For a set with `flags interval`
//! on a concatenation (the pipapo backend), give the range end in
//! `key_end` (a single value is the range `[v, v]`, a prefix the range
//! `[first, last]`). Plain single-field interval sets (rbtree backend, which
//! need separate interval-end elements) are not supported. For a set whose
//! type is a single `ether_addr` (not a concatenation) the key is 6 bytes:
//! use `key_ether(mac)[..6]`.

use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::close_later::{close_in_child, Quiet};

/// nftables families (`enum nfproto`), as in `nft`'s `inet`, `ip`, `bridge`, `ip6`.
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_BRIDGE: u8 = 7;
pub const NFPROTO_IPV6: u8 = 10;

/// How long we wait for one kernel answer before giving up.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// One element of a set in table `family`/`table`: `key` is the encoded key
/// (concatenation fields each padded to 4 bytes), `key_end` the encoded end
/// of a range for sets with `flags interval` on concatenations (pipapo,
/// NFTA_SET_ELEM_KEY_END).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElem {
    pub set: String,
    pub key: Vec<u8>,
    pub key_end: Option<Vec<u8>>,
}

/// An element operation for [`apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElemOp {
    /// Create the element if missing (no error if present).
    Add(SetElem),
    /// Delete the element if present (no error if absent).
    Delete(SetElem),
}

impl ElemOp {
    pub fn elem(&self) -> &SetElem {
        match self {
            ElemOp::Add(e) | ElemOp::Delete(e) => e,
        }
    }

    /// "add element "vif1.0" . 192.0.2.10 to set vif_ip4"
    fn describe(&self) -> String {
        match self {
            ElemOp::Add(e) => format!("add element {} to set {}", describe_elem(e), e.set),
            ElemOp::Delete(e) => format!("delete element {} from set {}", describe_elem(e), e.set),
        }
    }
}

/// Errors of this module. Every message is one line naming the family,
/// table, set (where there is one) and the operation.
#[derive(Debug, thiserror::Error)]
pub enum NftNetlinkError {
    /// Rejected before anything was sent (bad name, bad key length...).
    #[error("nftables {family} {table}: {op}: invalid request: {reason}")]
    Invalid {
        family: &'static str,
        table: String,
        op: String,
        reason: String,
    },
    /// The netlink socket itself failed (open, send, receive).
    #[error("nftables {family} {table}: {op}: netlink socket error: {source}")]
    Io {
        family: &'static str,
        table: String,
        op: String,
        source: io::Error,
    },
    /// The kernel did not answer in time.
    #[error("nftables {family} {table}: {op}: no answer from the kernel within {timeout:?}")]
    Timeout {
        family: &'static str,
        table: String,
        op: String,
        timeout: Duration,
    },
    /// The kernel refused the request (for [`apply`]: the whole transaction
    /// was rolled back, nothing was applied).
    #[error("nftables {family} {table}: {op}: {message}")]
    Kernel {
        family: &'static str,
        table: String,
        set: Option<String>,
        op: String,
        /// Positive errno from the kernel.
        errno: i32,
        message: String,
    },
    /// The kernel answered something we cannot make sense of.
    #[error("nftables {family} {table}: {op}: unexpected netlink answer: {detail}")]
    Protocol {
        family: &'static str,
        table: String,
        op: String,
        detail: String,
    },
}

impl NftNetlinkError {
    /// The kernel's errno, for [`NftNetlinkError::Kernel`] (and the OS error of `Io`).
    pub fn errno(&self) -> Option<i32> {
        match self {
            NftNetlinkError::Kernel { errno, .. } => Some(*errno),
            NftNetlinkError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Name of a family as `nft` spells it.
pub fn family_name(family: u8) -> &'static str {
    match family {
        NFPROTO_INET => "inet",
        NFPROTO_IPV4 => "ip",
        3 => "arp",
        5 => "netdev",
        NFPROTO_BRIDGE => "bridge",
        NFPROTO_IPV6 => "ip6",
        _ => "unknown-family",
    }
}

// ---------------------------------------------------------------------------
// Key encoders

/// Interface name key: 16 bytes (IFNAMSIZ), NUL padded, as nft's `ifname`
/// type. Names longer than 15 bytes are truncated (the kernel cannot have
/// them anyway).
pub fn key_ifname(name: &str) -> Vec<u8> {
    let mut k = vec![0u8; 16];
    let b = name.as_bytes();
    let n = b.len().min(15);
    k[..n].copy_from_slice(&b[..n]);
    k
}

/// Ethernet address key: 6 bytes + 2 bytes of padding (concatenation field).
pub fn key_ether(mac: [u8; 6]) -> Vec<u8> {
    let mut k = mac.to_vec();
    k.extend_from_slice(&[0, 0]);
    k
}

/// IPv4 address key: 4 bytes, network order.
pub fn key_ipv4(a: Ipv4Addr) -> Vec<u8> {
    a.octets().to_vec()
}

/// IPv6 address key: 16 bytes, network order.
pub fn key_ipv6(a: Ipv6Addr) -> Vec<u8> {
    a.octets().to_vec()
}

/// Concatenation of already padded fields (`ifname . ipv4_addr` etc.).
pub fn concat(fields: &[Vec<u8>]) -> Vec<u8> {
    let mut k = Vec::with_capacity(fields.iter().map(|f| f.len().div_ceil(4) * 4).sum());
    for f in fields {
        k.extend_from_slice(f);
        k.resize(k.len().div_ceil(4) * 4, 0);
    }
    k
}

// ---------------------------------------------------------------------------
// Protocol constants (uapi: linux/netlink.h, linux/netfilter/nfnetlink.h,
// linux/netfilter/nf_tables.h). They are ABI and never change.

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;

const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
// Flags of an NLMSG_ERROR answer.
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(1 << 15 | 1 << 14);

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_NETFILTER: libc::c_int = 12;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

const NFNETLINK_V0: u8 = 0;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;

const NFT_MSG_GETTABLE: u8 = 1;
const NFT_MSG_GETSET: u8 = 10;
const NFT_MSG_NEWSETELEM: u8 = 12;
const NFT_MSG_GETSETELEM: u8 = 13;
const NFT_MSG_DELSETELEM: u8 = 14;
const NFT_MSG_NEWGEN: u8 = 15;
const NFT_MSG_GETGEN: u8 = 16;
/// Added in Linux 6.3.
const NFT_MSG_DESTROYSETELEM: u8 = 30;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_GEN_ID: u16 = 1;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_DATA_VALUE: u16 = 1;

const NFT_NAME_MAXLEN: usize = 256;
const NFT_DATA_VALUE_MAXLEN: usize = 64;

/// Set once the kernel has shown it does not know NFT_MSG_DESTROYSETELEM.
static DESTROY_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

fn nft_type(msg: u8) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg as u16
}

/// (key, key_end) of one element.
type KeyPair = (Vec<u8>, Option<Vec<u8>>);

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

// ---------------------------------------------------------------------------
// Encoder

struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    fn new(cap: usize) -> Self {
        Builder {
            buf: Vec::with_capacity(cap),
        }
    }

    /// nlmsghdr + nfgenmsg; returns the start offset for `msg_end`.
    fn msg_begin(&mut self, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, patched later
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
        self.buf.push(family);
        self.buf.push(NFNETLINK_V0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    fn msg_end(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        let n = align4(self.buf.len());
        self.buf.resize(n, 0);
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        self.buf
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn attr_strz(&mut self, ty: u16, s: &str) {
        self.buf
            .extend_from_slice(&((4 + s.len() + 1) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    fn nest_begin(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn nest_end(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// One message about one element of `elem.set`.
    fn elem_msg(&mut self, msg: u8, flags: u16, seq: u32, family: u8, table: &str, elem: &SetElem) {
        let m = self.msg_begin(nft_type(msg), flags, seq, family, 0);
        self.attr_strz(NFTA_SET_ELEM_LIST_TABLE, table);
        self.attr_strz(NFTA_SET_ELEM_LIST_SET, &elem.set);
        let list = self.nest_begin(NFTA_SET_ELEM_LIST_ELEMENTS);
        let item = self.nest_begin(NFTA_LIST_ELEM);
        let k = self.nest_begin(NFTA_SET_ELEM_KEY);
        self.attr(NFTA_DATA_VALUE, &elem.key);
        self.nest_end(k);
        if let Some(end) = &elem.key_end {
            let k = self.nest_begin(NFTA_SET_ELEM_KEY_END);
            self.attr(NFTA_DATA_VALUE, end);
            self.nest_end(k);
        }
        self.nest_end(item);
        self.nest_end(list);
        self.msg_end(m);
    }

    fn batch_marker(&mut self, ty: u16, seq: u32) {
        let m = self.msg_begin(
            ty,
            NLM_F_REQUEST,
            seq,
            libc::AF_UNSPEC as u8,
            NFNL_SUBSYS_NFTABLES,
        );
        self.msg_end(m);
    }
}

// ---------------------------------------------------------------------------
// Decoder

struct NlMsg<'a> {
    ty: u16,
    flags: u16,
    seq: u32,
    payload: &'a [u8],
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Splits a datagram into netlink messages.
fn split_msgs(mut b: &[u8]) -> Result<Vec<NlMsg<'_>>, String> {
    let mut out = Vec::new();
    while b.len() >= NLMSG_HDRLEN {
        let len = u32_at(b, 0) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(format!(
                "bad netlink message length {len} (datagram rest {})",
                b.len()
            ));
        }
        out.push(NlMsg {
            ty: u16_at(b, 4),
            flags: u16_at(b, 6),
            seq: u32_at(b, 8),
            payload: &b[NLMSG_HDRLEN..len],
        });
        b = &b[align4(len).min(b.len())..];
    }
    Ok(out)
}

/// Iterates over the netlink attributes of a buffer: (type, payload).
struct Attrs<'a>(&'a [u8]);

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.0;
        if b.len() < 4 {
            return None;
        }
        let len = u16_at(b, 0) as usize;
        if len < 4 || len > b.len() {
            self.0 = &[];
            return None;
        }
        let ty = u16_at(b, 2) & NLA_TYPE_MASK;
        self.0 = &b[align4(len).min(b.len())..];
        Some((ty, &b[4..len]))
    }
}

fn find_attr(b: &[u8], ty: u16) -> Option<&[u8]> {
    Attrs(b).find(|(t, _)| *t == ty).map(|(_, d)| d)
}

/// An NLMSG_ERROR answer: positive errno (0 = ACK) and the extended-ack text.
struct NlAck {
    errno: i32,
    ext_msg: Option<String>,
}

fn parse_ack(m: &NlMsg) -> Result<NlAck, String> {
    let p = m.payload;
    if p.len() < 4 {
        return Err("short NLMSG_ERROR".into());
    }
    let err = i32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
    let mut ext_msg = None;
    if m.flags & NLM_F_ACK_TLVS != 0 && p.len() >= 4 + NLMSG_HDRLEN {
        // The request's header follows the error, then its payload unless
        // the answer is capped, then the TLVs.
        let orig_len = u32_at(p, 4) as usize;
        let off = if m.flags & NLM_F_CAPPED != 0 {
            4 + NLMSG_HDRLEN
        } else {
            4 + align4(orig_len)
        };
        if off <= p.len() {
            if let Some(s) = find_attr(&p[off..], NLMSGERR_ATTR_MSG) {
                let s = s.split(|&c| c == 0).next().unwrap_or(&[]);
                let s = String::from_utf8_lossy(s).trim().to_string();
                if !s.is_empty() {
                    ext_msg = Some(s);
                }
            }
        }
    }
    Ok(NlAck {
        errno: -err,
        ext_msg,
    })
}

/// (key, key_end) of each element of an NFTA_SET_ELEM_LIST_ELEMENTS nest.
fn parse_elements(list: &[u8], out: &mut Vec<KeyPair>) {
    for (ty, item) in Attrs(list) {
        if ty != NFTA_LIST_ELEM {
            continue;
        }
        let value = |attr: u16| {
            find_attr(item, attr)
                .and_then(|d| find_attr(d, NFTA_DATA_VALUE))
                .map(|v| v.to_vec())
        };
        // Catch-all elements have no key: skip them.
        if let Some(key) = value(NFTA_SET_ELEM_KEY) {
            out.push((key, value(NFTA_SET_ELEM_KEY_END)));
        }
    }
}

/// Elements carried by a NEWSETELEM message (payload after nfgenmsg).
fn msg_elements(m: &NlMsg) -> Vec<KeyPair> {
    let mut out = Vec::new();
    if m.payload.len() >= 4 {
        if let Some(list) = find_attr(&m.payload[4..], NFTA_SET_ELEM_LIST_ELEMENTS) {
            parse_elements(list, &mut out);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Socket

struct Sock {
    fd: OwnedFd,
    seq: u32,
    /// Owner process and network namespace (dev, inode) at creation: a
    /// cached socket is reused only by the same process in the same netns.
    pid: libc::pid_t,
    netns: Option<(u64, u64)>,
    /// A batch sent on it deleted something: its close would wait for the destroy work.
    deleted: bool,
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
fn current_netns() -> Option<(u64, u64)> {
    // SAFETY: stat on a NUL-terminated path into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::stat(c"/proc/thread-self/ns/net".as_ptr(), &mut st) };
    (r == 0).then_some((st.st_dev as u64, st.st_ino as u64))
}

/// A socket for this thread: the cached one if still valid, else a new one.
fn take_sock() -> io::Result<Sock> {
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
fn put_sock(s: Sock) {
    let _ = SOCK_CACHE.try_with(|c| *c.borrow_mut() = Some(s));
}

/// Lets go of this thread's cached socket without waiting for its release (see
/// `SOCK_CACHE`): the last call of a process, before it exits.
/// Returns the pid of the child that closes it, if there was a socket.
pub fn release_socket() -> Option<libc::pid_t> {
    release_socket_queued_in(&crate::state::dir())
}

/// The same, with the children's queue file in `dir`.
fn release_socket_queued_in(dir: &std::path::Path) -> Option<libc::pid_t> {
    let s = SOCK_CACHE.try_with(|c| c.borrow_mut().take()).ok().flatten()?;
    let queue = std::ffi::CString::new(dir.join(crate::names::NFT_RELEASE_QUEUE).into_os_string().into_encoded_bytes()).ok();
    // Adding elements leaves no destroy work (the kernel frees a new element's transaction
    // at commit), so an online's close is quick and forks nothing, unless another call's
    // deletes are still pending: then a child is waiting for them in the queue.
    if !s.deleted && !queue.as_deref().is_some_and(super::close_later::queue_busy) {
        return None;
    }
    let quiet = queue.map(|queue| Quiet { generation, netns: s.netns.map_or(0, |(_, ino)| ino), queue });
    close_in_child(s.fd, quiet.as_ref())
}

/// The ruleset's generation id (`NFT_MSG_GETGEN`), which every commit advances; None if
/// the kernel does not answer with one. It runs in a forked child: stack buffers only.
fn generation(fd: BorrowedFd<'_>) -> Option<u32> {
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
fn drop_cached_sock() {
    let _ = SOCK_CACHE.try_with(|c| c.borrow_mut().take());
}

impl Sock {
    fn open() -> io::Result<Sock> {
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

    fn setsockopt<T>(&self, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
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
    fn grow_buffers(&self, send: usize, recv: usize) {
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
    fn seqs(&mut self, n: u32) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(n);
        s
    }

    fn send(&self, buf: &[u8]) -> io::Result<()> {
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
    fn recv(&self, buf: &mut [u8], nonblocking: bool) -> io::Result<Option<usize>> {
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

// ---------------------------------------------------------------------------
// Error helpers

#[derive(Clone, Copy)]
struct Ctx<'a> {
    family: u8,
    table: &'a str,
}

impl<'a> Ctx<'a> {
    fn fam(&self) -> &'static str {
        family_name(self.family)
    }
    fn io(&self, op: &str, source: io::Error) -> NftNetlinkError {
        NftNetlinkError::Io {
            family: self.fam(),
            table: self.table.into(),
            op: op.into(),
            source,
        }
    }
    fn timeout(&self, op: &str) -> NftNetlinkError {
        NftNetlinkError::Timeout {
            family: self.fam(),
            table: self.table.into(),
            op: op.into(),
            timeout: RECV_TIMEOUT,
        }
    }
    fn protocol(&self, op: &str, detail: impl Into<String>) -> NftNetlinkError {
        NftNetlinkError::Protocol {
            family: self.fam(),
            table: self.table.into(),
            op: op.into(),
            detail: detail.into(),
        }
    }
    fn invalid(&self, op: &str, reason: impl Into<String>) -> NftNetlinkError {
        NftNetlinkError::Invalid {
            family: self.fam(),
            table: self.table.into(),
            op: op.into(),
            reason: reason.into(),
        }
    }
    fn kernel(
        &self,
        set: Option<&str>,
        op: &str,
        ack: &NlAck,
        hint: &str,
        tail: &str,
    ) -> NftNetlinkError {
        let mut message = io::Error::from_raw_os_error(ack.errno).to_string();
        if !hint.is_empty() {
            let _ = write!(message, " ({hint})");
        }
        if let Some(m) = &ack.ext_msg {
            let _ = write!(message, ": kernel says: {m}");
        }
        message.push_str(tail);
        NftNetlinkError::Kernel {
            family: self.fam(),
            table: self.table.into(),
            set: set.map(Into::into),
            op: op.into(),
            errno: ack.errno,
            message,
        }
    }
    fn open(&self, op: &str) -> Result<Sock, NftNetlinkError> {
        take_sock().map_err(|e| self.io(&format!("{op}: opening NETLINK_NETFILTER socket"), e))
    }
    fn check_name(
        &self,
        op: impl FnOnce() -> String,
        what: &str,
        name: &str,
    ) -> Result<(), NftNetlinkError> {
        if name.is_empty() || name.len() >= NFT_NAME_MAXLEN || name.contains('\0') {
            return Err(self.invalid(&op(), format!("bad {what} name {name:?}")));
        }
        Ok(())
    }
}

fn elem_hint(op: &ElemOp, errno: i32) -> &'static str {
    match (op, errno) {
        (_, libc::ENOENT) => "no such set or table",
        (ElemOp::Add(_), libc::EEXIST) => {
            "clashes with an existing element, e.g. an overlapping range"
        }
        (_, libc::EINVAL) => "key length or range does not fit the set's type",
        (_, libc::EPERM) => "needs CAP_NET_ADMIN",
        (ElemOp::Add(_), libc::ENFILE) => "set is full",
        (_, libc::EOPNOTSUPP) => "not supported by the kernel or the set",
        _ => "",
    }
}

// ---------------------------------------------------------------------------
// Element keys as text, for error messages: `"vif1.0" . 192.0.2.10`.

fn key_fields(key: &[u8]) -> Option<Vec<String>> {
    if key.len() < 16 {
        return None;
    }
    let name = &key[..16];
    let n = name.iter().position(|&c| c == 0)?;
    if n == 0
        || !name[..n].iter().all(|c| c.is_ascii_graphic())
        || name[n..].iter().any(|&c| c != 0)
    {
        return None;
    }
    let mut fields = vec![format!("\"{}\"", String::from_utf8_lossy(&name[..n]))];
    let rest = &key[16..];
    match rest.len() {
        0 => {}
        4 => fields.push(Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]).to_string()),
        16 => fields.push(Ipv6Addr::from(<[u8; 16]>::try_from(rest).ok()?).to_string()),
        8 if rest[6..] == [0, 0] => fields.push(
            rest[..6]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        ),
        _ => fields.push(hex(rest)),
    }
    Some(fields)
}

fn hex(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for c in b {
        let _ = write!(s, "{c:02x}");
    }
    s
}

fn describe_elem(e: &SetElem) -> String {
    let start = key_fields(&e.key);
    match &e.key_end {
        None => start.map(|f| f.join(" . ")).unwrap_or_else(|| hex(&e.key)),
        Some(end) if *end == e.key => start.map(|f| f.join(" . ")).unwrap_or_else(|| hex(&e.key)),
        Some(end) => match (start, key_fields(end)) {
            (Some(a), Some(b)) if a.len() == b.len() => a
                .iter()
                .zip(&b)
                .map(|(x, y)| {
                    if x == y {
                        x.clone()
                    } else {
                        format!("{x}-{y}")
                    }
                })
                .collect::<Vec<_>>()
                .join(" . "),
            _ => format!("{}-{}", hex(&e.key), hex(end)),
        },
    }
}

// ---------------------------------------------------------------------------
// apply

/// One element message of a batch.
struct Item<'a> {
    msg: u8,
    flags: u16,
    op: &'a ElemOp,
}

/// Why a batch was not committed.
enum BatchFailure {
    /// Socket trouble, timeout, bad answer.
    Local(NftNetlinkError),
    /// The kernel refused: errors per item index, and/or on the batch itself.
    Refused {
        batch: Option<NlAck>,
        items: Vec<(usize, NlAck)>,
    },
}

/// Sends `items` as one transaction and collects the answers.
fn run_batch(sock: &mut Sock, ctx: Ctx, items: &[Item]) -> Result<(), BatchFailure> {
    const OP: &str = "apply element batch";
    let n = items.len() as u32;
    let base = sock.seqs(n + 2);
    let mut b = Builder::new(64 + items.len() * 128);
    b.batch_marker(NFNL_MSG_BATCH_BEGIN, base);
    for (i, it) in items.iter().enumerate() {
        b.elem_msg(
            it.msg,
            NLM_F_REQUEST | NLM_F_ACK | it.flags,
            base + 1 + i as u32,
            ctx.family,
            ctx.table,
            it.op.elem(),
        );
    }
    b.batch_marker(NFNL_MSG_BATCH_END, base + 1 + n);
    // An ACK costs well under 1 KiB of receive buffer (skb truesize).
    sock.grow_buffers(b.buf.len() * 2, items.len() * 1024 + 64 * 1024);
    sock.send(&b.buf)
        .map_err(|e| BatchFailure::Local(ctx.io(OP, e)))?;

    let mut answered = vec![false; items.len()];
    let mut remaining = items.len();
    let mut item_errors: Vec<(usize, NlAck)> = Vec::new();
    let mut batch_error: Option<NlAck> = None;
    let mut buf = vec![0u8; 16 * 1024];
    while remaining > 0 {
        // After an error on the batch itself (commit failed, or the kernel
        // could not queue the per-message answers) some answers may never
        // come: take what is already queued and stop.
        let got = sock
            .recv(&mut buf, batch_error.is_some())
            .map_err(|e| BatchFailure::Local(ctx.io(OP, e)))?;
        let Some(len) = got else {
            if batch_error.is_some() {
                break;
            }
            return Err(BatchFailure::Local(ctx.timeout(OP)));
        };
        let msgs = split_msgs(&buf[..len]).map_err(|d| BatchFailure::Local(ctx.protocol(OP, d)))?;
        for m in msgs {
            if m.ty == NLMSG_OVERRUN {
                return Err(BatchFailure::Local(ctx.protocol(OP, "NLMSG_OVERRUN")));
            }
            if m.ty != NLMSG_ERROR {
                continue;
            }
            let ack = parse_ack(&m).map_err(|d| BatchFailure::Local(ctx.protocol(OP, d)))?;
            if m.seq == base {
                if ack.errno != 0 {
                    batch_error = Some(ack);
                }
            } else if m.seq > base && m.seq <= base + n {
                let i = (m.seq - base - 1) as usize;
                if !answered[i] {
                    answered[i] = true;
                    remaining -= 1;
                    if ack.errno != 0 {
                        item_errors.push((i, ack));
                    }
                }
            }
        }
    }
    if batch_error.is_none() && item_errors.is_empty() {
        Ok(())
    } else {
        Err(BatchFailure::Refused {
            batch: batch_error,
            items: item_errors,
        })
    }
}

/// Turns a refused batch into the error of its first failing op.
fn refused_error(
    ctx: Ctx,
    ops: &[&ElemOp],
    batch: Option<NlAck>,
    items: Vec<(usize, NlAck)>,
) -> NftNetlinkError {
    let total = ops.len();
    let tail = |others: usize| {
        let mut t = format!("; transaction of {total} op(s) rolled back, nothing applied");
        if others > 0 {
            let _ = write!(t, " ({others} other op(s) failed too)");
        }
        t
    };
    if let Some((i, ack)) = items.iter().min_by_key(|(i, _)| *i) {
        let op = ops[*i];
        return ctx.kernel(
            Some(&op.elem().set),
            &op.describe(),
            ack,
            elem_hint(op, ack.errno),
            &tail(items.len() - 1),
        );
    }
    let ack = batch.unwrap_or(NlAck {
        errno: libc::EIO,
        ext_msg: None,
    });
    let mut sets: Vec<&str> = Vec::new();
    for o in ops {
        if !sets.contains(&o.elem().set.as_str()) {
            sets.push(&o.elem().set);
        }
    }
    let op = format!("commit of element batch on set(s) {}", sets.join(", "));
    ctx.kernel(None, &op, &ack, "", &tail(0))
}

/// Applies all ops in one transaction. Add is create-if-missing (no
/// NLM_F_EXCL). Delete is delete-if-present (NFT_MSG_DESTROYSETELEM, or on
/// kernels older than 6.3 a GETSETELEM check then DELSETELEM of the present
/// elements, still in one batch). On error nothing is applied.
pub fn apply(family: u8, table: &str, ops: &[ElemOp]) -> Result<(), NftNetlinkError> {
    let destroy = if DESTROY_UNSUPPORTED.load(Ordering::Relaxed) {
        None
    } else {
        Some(NFT_MSG_DESTROYSETELEM)
    };
    apply_inner(family, table, ops, destroy)
}

/// `destroy`: the message type to try for deletes (`None`: go straight to
/// the GETSETELEM + DELSETELEM fallback). Tests use other values to play
/// an old kernel.
fn apply_inner(
    family: u8,
    table: &str,
    ops: &[ElemOp],
    destroy: Option<u8>,
) -> Result<(), NftNetlinkError> {
    if ops.is_empty() {
        return Ok(());
    }
    let ctx = Ctx { family, table };
    ctx.check_name(|| "apply".into(), "table", table)?;
    for op in ops {
        let e = op.elem();
        let d = || op.describe();
        ctx.check_name(d, "set", &e.set)?;
        if e.key.is_empty() || e.key.len() > NFT_DATA_VALUE_MAXLEN {
            return Err(ctx.invalid(
                &d(),
                format!(
                    "key of {} bytes (1 to {NFT_DATA_VALUE_MAXLEN} allowed)",
                    e.key.len()
                ),
            ));
        }
        if let Some(end) = &e.key_end {
            if end.len() != e.key.len() {
                return Err(ctx.invalid(
                    &d(),
                    format!(
                        "range end of {} bytes for a key of {}",
                        end.len(),
                        e.key.len()
                    ),
                ));
            }
        }
    }
    let mut sock = ctx.open("apply")?;
    sock.deleted |= ops.iter().any(|op| matches!(op, ElemOp::Delete(_)));
    let r = apply_on(&mut sock, ctx, ops, destroy);
    if r.is_ok() {
        put_sock(sock);
    }
    r
}

fn apply_on(
    sock: &mut Sock,
    ctx: Ctx,
    ops: &[ElemOp],
    destroy: Option<u8>,
) -> Result<(), NftNetlinkError> {
    let Some(destroy_msg) = destroy else {
        return apply_fallback(sock, ctx, ops);
    };
    let items: Vec<Item> = ops
        .iter()
        .map(|op| match op {
            ElemOp::Add(_) => Item {
                msg: NFT_MSG_NEWSETELEM,
                flags: NLM_F_CREATE,
                op,
            },
            ElemOp::Delete(_) => Item {
                msg: destroy_msg,
                flags: 0,
                op,
            },
        })
        .collect();
    match run_batch(sock, ctx, &items) {
        Ok(()) => Ok(()),
        Err(BatchFailure::Local(e)) => Err(e),
        Err(BatchFailure::Refused { batch, items: errs }) => {
            let destroy_refused = errs.iter().any(|(i, a)| {
                matches!(ops[*i], ElemOp::Delete(_))
                    && (a.errno == libc::EINVAL || a.errno == libc::EOPNOTSUPP)
            });
            if !destroy_refused {
                let all: Vec<&ElemOp> = ops.iter().collect();
                return Err(refused_error(ctx, &all, batch, errs));
            }
            // Maybe a kernel without DESTROYSETELEM (< 6.3): the batch was
            // aborted as a whole, do it the old way. If the EINVAL had
            // another cause, the fallback reports it.
            apply_fallback(sock, ctx, ops)?;
            if destroy_msg == NFT_MSG_DESTROYSETELEM {
                DESTROY_UNSUPPORTED.store(true, Ordering::Relaxed);
            }
            Ok(())
        }
    }
}

/// Deletes without DESTROYSETELEM: checks which elements exist, then one
/// batch with NEWSETELEM for the adds and DELSETELEM for the present ones.
fn apply_fallback(sock: &mut Sock, ctx: Ctx, ops: &[ElemOp]) -> Result<(), NftNetlinkError> {
    let dels: Vec<usize> = (0..ops.len())
        .filter(|&i| matches!(ops[i], ElemOp::Delete(_)))
        .collect();
    let present = probe_elements(sock, ctx, ops, &dels)?;

    // Walk the ops in order, tracking what will be in the set at each step,
    // so that add-then-delete and repeated deletes behave as with DESTROY.
    let mut state: Vec<(&SetElem, bool)> = dels
        .iter()
        .zip(&present)
        .map(|(&i, &p)| (ops[i].elem(), p))
        .collect();
    let mut items: Vec<Item> = Vec::with_capacity(ops.len());
    for op in ops {
        let e = op.elem();
        let slot = match state.iter().position(|(s, _)| *s == e) {
            Some(p) => p,
            None => {
                state.push((e, false));
                state.len() - 1
            }
        };
        match op {
            ElemOp::Add(_) => {
                items.push(Item {
                    msg: NFT_MSG_NEWSETELEM,
                    flags: NLM_F_CREATE,
                    op,
                });
                state[slot].1 = true;
            }
            ElemOp::Delete(_) => {
                if state[slot].1 {
                    items.push(Item {
                        msg: NFT_MSG_DELSETELEM,
                        flags: 0,
                        op,
                    });
                    state[slot].1 = false;
                }
            }
        }
    }
    if items.is_empty() {
        return Ok(());
    }
    match run_batch(sock, ctx, &items) {
        Ok(()) => Ok(()),
        Err(BatchFailure::Local(e)) => Err(e),
        Err(BatchFailure::Refused { batch, items: errs }) => {
            let sent: Vec<&ElemOp> = items.iter().map(|it| it.op).collect();
            Err(refused_error(ctx, &sent, batch, errs))
        }
    }
}

/// For each op index in `dels`: is that element in its set right now?
/// A missing set is an error (GETSET), a missing element is `false`.
fn probe_elements(
    sock: &mut Sock,
    ctx: Ctx,
    ops: &[ElemOp],
    dels: &[usize],
) -> Result<Vec<bool>, NftNetlinkError> {
    const OP: &str = "check elements to delete";
    if dels.is_empty() {
        return Ok(Vec::new());
    }
    let mut sets: Vec<&str> = Vec::new();
    for &i in dels {
        let s = ops[i].elem().set.as_str();
        if !sets.contains(&s) {
            sets.push(s);
        }
    }
    // Requests: sets first (seq base..), then elements (seq base+sets..).
    let nreq = (sets.len() + dels.len()) as u32;
    let base = sock.seqs(nreq);
    let mut b = Builder::new(nreq as usize * 128);
    for (j, s) in sets.iter().enumerate() {
        let m = b.msg_begin(
            nft_type(NFT_MSG_GETSET),
            NLM_F_REQUEST | NLM_F_ACK,
            base + j as u32,
            ctx.family,
            0,
        );
        b.attr_strz(NFTA_SET_TABLE, ctx.table);
        b.attr_strz(NFTA_SET_NAME, s);
        b.msg_end(m);
    }
    let ebase = base + sets.len() as u32;
    for (j, &i) in dels.iter().enumerate() {
        b.elem_msg(
            NFT_MSG_GETSETELEM,
            NLM_F_REQUEST | NLM_F_ACK,
            ebase + j as u32,
            ctx.family,
            ctx.table,
            ops[i].elem(),
        );
    }
    sock.grow_buffers(b.buf.len() * 2, nreq as usize * 2048 + 64 * 1024);
    sock.send(&b.buf).map_err(|e| ctx.io(OP, e))?;

    let mut acks: Vec<Option<NlAck>> = (0..nreq).map(|_| None).collect();
    let mut found: Vec<Vec<KeyPair>> = vec![Vec::new(); dels.len()];
    let mut remaining = nreq as usize;
    let mut buf = vec![0u8; 32 * 1024];
    while remaining > 0 {
        let Some(len) = sock.recv(&mut buf, false).map_err(|e| ctx.io(OP, e))? else {
            return Err(ctx.timeout(OP));
        };
        for m in split_msgs(&buf[..len]).map_err(|d| ctx.protocol(OP, d))? {
            if m.seq < base || m.seq >= base + nreq {
                continue;
            }
            let k = (m.seq - base) as usize;
            if m.ty == NLMSG_ERROR {
                if acks[k].is_none() {
                    acks[k] = Some(parse_ack(&m).map_err(|d| ctx.protocol(OP, d))?);
                    remaining -= 1;
                }
            } else if m.ty == nft_type(NFT_MSG_NEWSETELEM) && k >= sets.len() {
                found[k - sets.len()].extend(msg_elements(&m));
            }
        }
    }
    for (j, s) in sets.iter().enumerate() {
        let ack = acks[j].as_ref().expect("all answered");
        if ack.errno != 0 {
            let hint = if ack.errno == libc::ENOENT {
                "no such set or table"
            } else {
                ""
            };
            return Err(ctx.kernel(
                Some(s),
                &format!("look up set {s} to delete elements"),
                ack,
                hint,
                "; nothing applied",
            ));
        }
    }
    let mut present = Vec::with_capacity(dels.len());
    for (j, &i) in dels.iter().enumerate() {
        let ack = acks[sets.len() + j].as_ref().expect("all answered");
        let e = ops[i].elem();
        match ack.errno {
            0 => {
                // The kernel may answer with the element *containing* the
                // key (intervals): present only if it is exactly ours.
                let want_end = e.key_end.as_ref().unwrap_or(&e.key);
                present.push(
                    found[j]
                        .iter()
                        .any(|(k, ke)| *k == e.key && ke.as_ref().unwrap_or(k) == want_end),
                );
            }
            libc::ENOENT => present.push(false),
            _ => {
                let op = &ops[i];
                return Err(ctx.kernel(
                    Some(&e.set),
                    &op.describe(),
                    ack,
                    elem_hint(op, ack.errno),
                    "; nothing applied",
                ));
            }
        }
    }
    Ok(present)
}

// ---------------------------------------------------------------------------
// Queries

/// True if the table exists (NFT_MSG_GETTABLE), used to decide whether the
/// one-time table setup must run.
pub fn table_exists(family: u8, table: &str) -> Result<bool, NftNetlinkError> {
    const OP: &str = "look up table";
    let ctx = Ctx { family, table };
    ctx.check_name(|| OP.into(), "table", table)?;
    let mut sock = ctx.open(OP)?;
    let seq = sock.seqs(1);
    let mut b = Builder::new(64 + table.len());
    let m = b.msg_begin(
        nft_type(NFT_MSG_GETTABLE),
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        family,
        0,
    );
    b.attr_strz(NFTA_TABLE_NAME, table);
    b.msg_end(m);
    sock.send(&b.buf).map_err(|e| ctx.io(OP, e))?;
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let Some(len) = sock.recv(&mut buf, false).map_err(|e| ctx.io(OP, e))? else {
            return Err(ctx.timeout(OP));
        };
        for m in split_msgs(&buf[..len]).map_err(|d| ctx.protocol(OP, d))? {
            if m.ty != NLMSG_ERROR || m.seq != seq {
                continue;
            }
            let ack = parse_ack(&m).map_err(|d| ctx.protocol(OP, d))?;
            let r = match ack.errno {
                0 => Ok(true),
                libc::ENOENT => Ok(false),
                _ => Err(ctx.kernel(None, OP, &ack, "", "")),
            };
            if r.is_ok() {
                put_sock(sock);
            }
            return r;
        }
    }
}

/// Lists the elements of a set (NFT_MSG_GETSETELEM dump) as (key, key_end)
/// byte vectors, for `status` and tests. Catch-all elements are left out.
#[allow(clippy::type_complexity)]
pub fn list_elements(
    family: u8,
    table: &str,
    set: &str,
) -> Result<Vec<(Vec<u8>, Option<Vec<u8>>)>, NftNetlinkError> {
    let op = format!("list elements of set {set}");
    let ctx = Ctx { family, table };
    ctx.check_name(|| op.clone(), "table", table)?;
    ctx.check_name(|| op.clone(), "set", set)?;
    let mut sock = ctx.open(&op)?;
    // A dump is interrupted (NLM_F_DUMP_INTR) when the ruleset changes
    // under it: try again a few times.
    for _ in 0..5 {
        let seq = sock.seqs(1);
        let mut b = Builder::new(64 + table.len() + set.len());
        let m = b.msg_begin(
            nft_type(NFT_MSG_GETSETELEM),
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            family,
            0,
        );
        b.attr_strz(NFTA_SET_ELEM_LIST_TABLE, table);
        b.attr_strz(NFTA_SET_ELEM_LIST_SET, set);
        b.msg_end(m);
        sock.send(&b.buf).map_err(|e| ctx.io(&op, e))?;

        let mut out = Vec::new();
        let mut interrupted = false;
        let mut buf = vec![0u8; 64 * 1024];
        'dump: loop {
            let Some(len) = sock.recv(&mut buf, false).map_err(|e| ctx.io(&op, e))? else {
                return Err(ctx.timeout(&op));
            };
            for m in split_msgs(&buf[..len]).map_err(|d| ctx.protocol(&op, d))? {
                if m.seq != seq {
                    continue;
                }
                if m.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match m.ty {
                    NLMSG_DONE => {
                        let err = if m.payload.len() >= 4 {
                            -(u32_at(m.payload, 0) as i32)
                        } else {
                            0
                        };
                        if err != 0 {
                            let ack = NlAck {
                                errno: err,
                                ext_msg: None,
                            };
                            return Err(ctx.kernel(Some(set), &op, &ack, "", ""));
                        }
                        break 'dump;
                    }
                    NLMSG_ERROR => {
                        let ack = parse_ack(&m).map_err(|d| ctx.protocol(&op, d))?;
                        if ack.errno == 0 {
                            break 'dump;
                        }
                        let hint = if ack.errno == libc::ENOENT {
                            "no such set or table"
                        } else {
                            ""
                        };
                        return Err(ctx.kernel(Some(set), &op, &ack, hint, ""));
                    }
                    t if t == nft_type(NFT_MSG_NEWSETELEM) => out.extend(msg_elements(&m)),
                    _ => {}
                }
            }
        }
        if !interrupted {
            put_sock(sock);
            return Ok(out);
        }
    }
    Err(ctx.protocol(
        &op,
        "dump kept being interrupted by concurrent ruleset changes",
    ))
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    use std::sync::atomic::AtomicUsize;
    use std::os::fd::AsFd;

    /// The real table (created by the one-time setup with `nft`).
    const TABLE: &str = r#"
table bridge vifnet {
  set guarded { type ifname; }
  set vif_mac { type ifname . ether_addr; }
  set vif_ip4 { type ifname . ipv4_addr; flags interval; }
  set vif_ip6 { type ifname . ipv6_addr; flags interval; }
  chain prerouting { type filter hook prerouting priority -300; policy accept; iifname @guarded jump guard; }
  chain guard { iifname . ether saddr != @vif_mac counter drop; }
}
"#;
    const T: &str = "vifnet";
    const F: u8 = NFPROTO_BRIDGE;
    const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x01];

    static NS_COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A network namespace of our own, deleted on drop (even on panic).
    struct Netns {
        name: String,
    }

    impl Netns {
        fn new() -> Netns {
            let name = format!(
                "vfnl-{}-{}",
                std::process::id(),
                NS_COUNTER.fetch_add(1, Ordering::SeqCst)
            );
            let out = Command::new("ip")
                .args(["netns", "add", &name])
                .output()
                .expect("cannot run `ip` (iproute2)");
            assert!(
                out.status.success(),
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Netns { name }
        }

        fn with_table() -> Netns {
            let ns = Netns::new();
            ns.nft_stdin(TABLE);
            ns
        }

        fn nft_stdin(&self, script: &str) {
            let mut child = Command::new("ip")
                .args(["netns", "exec", &self.name, "nft", "-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("cannot run ip netns exec nft (apt-get install nftables)");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "nft -f - failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        fn nft(&self, args: &[&str]) -> String {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.name, "nft"])
                .args(args)
                .output()
                .expect("cannot run nft");
            assert!(
                out.status.success(),
                "nft {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }

        /// Runs `f` in a fresh thread that has joined the namespace, so the
        /// test runner's other threads stay where they are.
        fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
            let path = format!("/run/netns/{}", self.name);
            std::thread::scope(|s| {
                s.spawn(move || {
                    let file =
                        std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    // SAFETY: setns on a valid namespace fd, for this thread only.
                    let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(r, 0, "setns {path}: {}", io::Error::last_os_error());
                    f()
                })
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))
            })
        }

        /// Elements of a set as nft prints them (`"vif1.0" . 198.51.100.0/24`),
        /// from `nft -j list set`, sorted.
        fn elements(&self, set: &str) -> Vec<String> {
            let out = self.nft(&["-j", "list", "set", "bridge", T, set]);
            let v: serde_json::Value = serde_json::from_str(&out).expect("nft -j output is JSON");
            let mut elems: Vec<String> = v["nftables"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|o| o.get("set"))
                .flat_map(|s| {
                    s.get("elem")
                        .and_then(|e| e.as_array())
                        .cloned()
                        .unwrap_or_default()
                })
                .map(|e| render(&e))
                .collect();
            elems.sort();
            elems
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .output();
        }
    }

    /// Renders an nft JSON element the way `nft list` prints it.
    fn render(v: &serde_json::Value) -> String {
        use serde_json::Value;
        match v {
            Value::String(s) => {
                let is_mac = s.len() == 17 && s.split(':').count() == 6;
                if s.parse::<std::net::IpAddr>().is_ok() || is_mac {
                    s.clone()
                } else {
                    format!("\"{s}\"")
                }
            }
            Value::Number(n) => n.to_string(),
            Value::Object(o) => {
                if let Some(c) = o.get("concat") {
                    c.as_array()
                        .unwrap()
                        .iter()
                        .map(render)
                        .collect::<Vec<_>>()
                        .join(" . ")
                } else if let Some(p) = o.get("prefix") {
                    format!("{}/{}", render(&p["addr"]), p["len"])
                } else if let Some(r) = o.get("range") {
                    format!("{}-{}", render(&r[0]), render(&r[1]))
                } else if let Some(e) = o.get("elem") {
                    render(&e["val"])
                } else {
                    v.to_string()
                }
            }
            _ => v.to_string(),
        }
    }

    fn elem(set: &str, key: Vec<u8>, key_end: Option<Vec<u8>>) -> SetElem {
        SetElem {
            set: set.into(),
            key,
            key_end,
        }
    }

    fn ip4_range(ifname: &str, a: &str, b: &str) -> SetElem {
        let k = |s: &str| concat(&[key_ifname(ifname), key_ipv4(s.parse().unwrap())]);
        elem("vif_ip4", k(a), Some(k(b)))
    }

    fn ip6_range(ifname: &str, a: &str, b: &str) -> SetElem {
        let k = |s: &str| concat(&[key_ifname(ifname), key_ipv6(s.parse().unwrap())]);
        elem("vif_ip6", k(a), Some(k(b)))
    }

    /// The elements of one guest vif, in all four sets.
    fn guest_elems(ifname: &str) -> Vec<SetElem> {
        vec![
            elem("guarded", key_ifname(ifname), None),
            elem(
                "vif_mac",
                concat(&[key_ifname(ifname), key_ether(MAC)]),
                None,
            ),
            ip4_range(ifname, "192.0.2.10", "192.0.2.10"),
            ip4_range(ifname, "198.51.100.0", "198.51.100.255"),
            ip6_range(ifname, "2001:db8::10", "2001:db8::10"),
            ip6_range(ifname, "2001:db8:1::", "2001:db8:1::ffff:ffff:ffff:ffff"),
        ]
    }

    fn adds(e: &[SetElem]) -> Vec<ElemOp> {
        e.iter().cloned().map(ElemOp::Add).collect()
    }

    fn dels(e: &[SetElem]) -> Vec<ElemOp> {
        e.iter().cloned().map(ElemOp::Delete).collect()
    }

    fn assert_all_empty(ns: &Netns) {
        for s in ["guarded", "vif_mac", "vif_ip4", "vif_ip6"] {
            assert_eq!(
                ns.elements(s),
                Vec::<String>::new(),
                "set {s} should be empty"
            );
        }
    }

    fn assert_guest_present(ns: &Netns) {
        assert_eq!(ns.elements("guarded"), vec![r#""vif1.0""#]);
        assert_eq!(
            ns.elements("vif_mac"),
            vec![r#""vif1.0" . 00:16:3e:00:00:01"#]
        );
        assert_eq!(
            ns.elements("vif_ip4"),
            vec![r#""vif1.0" . 192.0.2.10"#, r#""vif1.0" . 198.51.100.0/24"#]
        );
        assert_eq!(
            ns.elements("vif_ip6"),
            vec![
                r#""vif1.0" . 2001:db8:1::/64"#,
                r#""vif1.0" . 2001:db8::10"#
            ]
        );
        // And the plain text listing, exactly as an operator would see it.
        let text = ns.nft(&["list", "set", "bridge", T, "vif_ip4"]);
        assert!(text.contains(r#""vif1.0" . 192.0.2.10"#), "{text}");
        assert!(text.contains(r#""vif1.0" . 198.51.100.0/24"#), "{text}");
    }

    #[test]
    fn key_encoders() {
        assert_eq!(key_ifname("vif1.0"), b"vif1.0\0\0\0\0\0\0\0\0\0\0".to_vec());
        assert_eq!(key_ifname("a-very-long-interface-name").len(), 16);
        assert_eq!(key_ifname("a-very-long-interface-name")[15], 0);
        assert_eq!(key_ether(MAC), vec![0x00, 0x16, 0x3e, 0, 0, 1, 0, 0]);
        assert_eq!(key_ipv4("192.0.2.10".parse().unwrap()), vec![192, 0, 2, 10]);
        assert_eq!(key_ipv6("2001:db8::1".parse().unwrap()).len(), 16);
        assert_eq!(concat(&[key_ifname("x"), key_ether(MAC)]).len(), 24);
        assert_eq!(
            concat(&[vec![1, 2, 3], vec![4]]),
            vec![1, 2, 3, 0, 4, 0, 0, 0]
        );
    }

    #[test]
    fn encoding_layout() {
        let mut b = Builder::new(0);
        b.elem_msg(
            NFT_MSG_NEWSETELEM,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
            7,
            F,
            "t",
            &elem("s", vec![1, 2, 3, 4], Some(vec![5, 6, 7, 8])),
        );
        let m = split_msgs(&b.buf).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(u32_at(&b.buf, 0) as usize, b.buf.len());
        assert_eq!(m[0].ty, 0x0a0c);
        assert_eq!(m[0].flags, 0x405);
        assert_eq!(m[0].seq, 7);
        assert_eq!(&m[0].payload[..4], &[F, 0, 0, 0]);
        let attrs: Vec<_> = Attrs(&m[0].payload[4..]).collect();
        assert_eq!(attrs[0], (NFTA_SET_ELEM_LIST_TABLE, &b"t\0"[..]));
        assert_eq!(attrs[1], (NFTA_SET_ELEM_LIST_SET, &b"s\0"[..]));
        assert_eq!(attrs[2].0, NFTA_SET_ELEM_LIST_ELEMENTS);
        let mut out = Vec::new();
        parse_elements(attrs[2].1, &mut out);
        assert_eq!(out, vec![(vec![1, 2, 3, 4], Some(vec![5, 6, 7, 8]))]);
        // Total: 16 hdr + 4 nfgen + 8 + 8 + (4 + 4 + (4+8) + (4+8)) = 68.
        assert_eq!(b.buf.len(), 68);
    }

    #[test]
    fn describe_elements() {
        assert_eq!(
            describe_elem(&ip4_range("vif1.0", "192.0.2.10", "192.0.2.10")),
            r#""vif1.0" . 192.0.2.10"#
        );
        assert_eq!(
            describe_elem(&ip4_range("vif1.0", "198.51.100.0", "198.51.100.255")),
            r#""vif1.0" . 198.51.100.0-198.51.100.255"#
        );
        assert_eq!(
            describe_elem(&elem(
                "vif_mac",
                concat(&[key_ifname("vif1.0"), key_ether(MAC)]),
                None
            )),
            r#""vif1.0" . 00:16:3e:00:00:01"#
        );
        assert_eq!(describe_elem(&elem("x", vec![1, 2], None)), "0x0102");
        assert_eq!(family_name(NFPROTO_BRIDGE), "bridge");
    }

    #[test]
    fn add_list_delete_roundtrip() {
        let ns = Netns::with_table();
        let g = guest_elems("vif1.0");
        ns.run(|| {
            assert!(table_exists(F, T).unwrap());
            apply(F, T, &adds(&g)).expect("add all in one batch");
        });
        assert_guest_present(&ns);

        // Adding again is fine and changes nothing.
        ns.run(|| apply(F, T, &adds(&g)).expect("add twice"));
        assert_guest_present(&ns);

        // list_elements gives the encoded keys back.
        ns.run(|| {
            assert_eq!(
                list_elements(F, T, "guarded").unwrap(),
                vec![(key_ifname("vif1.0"), None)]
            );
            assert_eq!(
                list_elements(F, T, "vif_mac").unwrap(),
                vec![(g[1].key.clone(), None)]
            );
            let mut ip4 = list_elements(F, T, "vif_ip4").unwrap();
            ip4.sort();
            assert_eq!(
                ip4,
                vec![
                    (g[2].key.clone(), g[2].key_end.clone()),
                    (g[3].key.clone(), g[3].key_end.clone())
                ]
            );
            let ip6 = list_elements(F, T, "vif_ip6").unwrap();
            assert_eq!(ip6.len(), 2);
            assert!(ip6.contains(&(g[5].key.clone(), g[5].key_end.clone())));
        });

        // Deleting them all in one batch leaves the sets empty; deleting
        // again (absent) succeeds.
        ns.run(|| apply(F, T, &dels(&g)).expect("delete all"));
        assert_all_empty(&ns);
        ns.run(|| {
            apply(F, T, &dels(&g)).expect("delete absent");
            assert_eq!(list_elements(F, T, "vif_ip4").unwrap(), vec![]);
            // An empty op list is a no-op.
            apply(F, T, &[]).unwrap();
        });
        assert_all_empty(&ns);
    }

    #[test]
    fn mixed_batch_keeps_order() {
        let ns = Netns::with_table();
        let a = guest_elems("vif1.0");
        let b = guest_elems("vif2.0");
        ns.run(|| apply(F, T, &adds(&a)).unwrap());
        // Move vif1.0's elements out and vif2.0's in, one transaction.
        let mut ops = dels(&a);
        ops.extend(adds(&b));
        ns.run(|| apply(F, T, &ops).unwrap());
        assert_eq!(ns.elements("guarded"), vec![r#""vif2.0""#]);
        assert_eq!(
            ns.elements("vif_ip4"),
            vec![r#""vif2.0" . 192.0.2.10"#, r#""vif2.0" . 198.51.100.0/24"#]
        );
    }

    #[test]
    fn missing_set_or_table_is_an_error() {
        let ns = Netns::with_table();
        ns.run(|| {
            let e = apply(
                F,
                T,
                &[ElemOp::Add(elem("nosuch", key_ifname("vif1.0"), None))],
            )
            .unwrap_err();
            let s = e.to_string();
            assert!(
                s.contains("nosuch")
                    && s.contains("vifnet")
                    && s.contains("bridge")
                    && s.contains("add element"),
                "{s}"
            );
            assert_eq!(e.errno(), Some(libc::ENOENT), "{s}");
            eprintln!("missing set (add): {s}");

            let e = apply(
                F,
                T,
                &[ElemOp::Delete(elem("nosuch", key_ifname("vif1.0"), None))],
            )
            .unwrap_err();
            let s = e.to_string();
            assert!(s.contains("nosuch") && s.contains("delete element"), "{s}");
            eprintln!("missing set (delete): {s}");

            // Same through the pre-6.3 path.
            let e = apply_inner(
                F,
                T,
                &[ElemOp::Delete(elem("nosuch", key_ifname("vif1.0"), None))],
                None,
            )
            .unwrap_err();
            let s = e.to_string();
            assert!(s.contains("nosuch") && s.contains("vifnet"), "{s}");
            eprintln!("missing set (fallback delete): {s}");

            let e = apply(
                F,
                "nosuchtable",
                &[ElemOp::Add(elem("guarded", key_ifname("vif1.0"), None))],
            )
            .unwrap_err();
            let s = e.to_string();
            assert!(s.contains("nosuchtable") && s.contains("guarded"), "{s}");
            eprintln!("missing table: {s}");

            // Wrong key length for the set's type.
            let e = apply(
                F,
                T,
                &[ElemOp::Add(elem("vif_mac", key_ifname("vif1.0"), None))],
            )
            .unwrap_err();
            assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
            eprintln!("bad key: {e}");

            let e = list_elements(F, T, "nosuch").unwrap_err();
            assert!(e.to_string().contains("nosuch"), "{e}");
            assert!(list_elements(F, "nosuchtable", "guarded").is_err());
        });
    }

    #[test]
    fn table_exists_true_false() {
        let ns = Netns::new();
        ns.run(|| {
            assert!(!table_exists(F, T).unwrap());
        });
        ns.nft_stdin(TABLE);
        ns.run(|| {
            assert!(table_exists(F, T).unwrap());
            assert!(!table_exists(NFPROTO_INET, T).unwrap(), "other family");
            assert!(!table_exists(F, "other").unwrap());
        });
    }

    /// The generation the closing child watches advances with every commit, and only then;
    /// the child closes the socket and exits by itself, leaving the elements committed.
    #[test]
    fn release_hands_the_socket_to_a_child_that_waits_for_a_quiet_generation() {
        let ns = Netns::with_table();
        let g = guest_elems("vif1.0");
        let dir = std::env::temp_dir().join(format!("vfnl-queue-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let children = ns.run(|| {
            let sock = Sock::open().unwrap();
            let before = generation(sock.fd.as_fd()).expect("the kernel's generation id");
            assert_eq!(generation(sock.fd.as_fd()), Some(before), "no commit, same generation");
            apply(F, T, &adds(&g)).unwrap();
            let added = generation(sock.fd.as_fd()).unwrap();
            assert_ne!(added, before, "a commit advances the generation");
            apply(F, T, &dels(&g)).unwrap();
            assert_ne!(generation(sock.fd.as_fd()), Some(added));
            // Two in a row: the second finds the first's quiet generation in the queue file.
            let first = release_socket_queued_in(&dir).expect("a child holding the socket");
            assert!(release_socket_queued_in(&dir).is_none(), "nothing cached any more");
            apply(F, T, &adds(&g)).unwrap();
            let busy = release_socket_queued_in(&dir).expect("adds only, but the first child's wait is pending: a child");
            for child in [first, busy] {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
            }
            apply(F, T, &adds(&g)).unwrap();
            assert!(release_socket_queued_in(&dir).is_none(), "adds only, nothing pending: closed here, no child");
            apply(F, T, &dels(&g)).unwrap();
            apply(F, T, &adds(&g)).unwrap();
            let second = release_socket_queued_in(&dir).expect("a second child");
            [second]
        });
        for child in children {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
        }
        let queued = std::fs::read(dir.join(crate::names::NFT_RELEASE_QUEUE)).unwrap();
        assert_eq!(queued.len(), 12, "netns and the quiet generation");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(ns.elements("guarded"), vec![r#""vif1.0""#], "the commits stand");
    }

    /// Kernel behaviour: when one message of a batch fails, the kernel
    /// still processes (and ACKs) the others, then aborts the transaction:
    /// nothing of the batch is applied.
    #[test]
    fn failed_batch_applies_nothing() {
        let ns = Netns::with_table();
        let g = guest_elems("vif1.0");
        // Valid adds, then one op on a missing set.
        let mut ops = adds(&g);
        ops.push(ElemOp::Add(elem("nosuch", key_ifname("vif1.0"), None)));
        let e = ns.run(|| apply(F, T, &ops).unwrap_err());
        assert!(
            e.to_string().contains("nosuch") && e.to_string().contains("rolled back"),
            "{e}"
        );
        assert_all_empty(&ns);

        // An overlapping range fails (EEXIST even without NLM_F_EXCL) and
        // takes the rest of its batch with it.
        ns.run(|| {
            apply(
                F,
                T,
                &[ElemOp::Add(ip4_range(
                    "vif1.0",
                    "198.51.100.0",
                    "198.51.100.255",
                ))],
            )
            .unwrap()
        });
        let ops = vec![
            ElemOp::Add(g[0].clone()),
            ElemOp::Add(ip4_range("vif1.0", "198.51.100.0", "198.51.100.127")),
            ElemOp::Delete(ip4_range("vif1.0", "198.51.100.0", "198.51.100.255")),
        ];
        let e = ns.run(|| apply(F, T, &ops).unwrap_err());
        eprintln!("overlap: {e}");
        assert_eq!(e.errno(), Some(libc::EEXIST), "{e}");
        assert!(e.to_string().contains("vif_ip4"), "{e}");
        assert_eq!(ns.elements("guarded"), Vec::<String>::new());
        assert_eq!(
            ns.elements("vif_ip4"),
            vec![r#""vif1.0" . 198.51.100.0/24"#]
        );
    }

    /// The pre-6.3 path: GETSETELEM to find the present elements, then
    /// DELSETELEM for those only.
    #[test]
    fn delete_fallback_without_destroy() {
        let ns = Netns::with_table();
        let g = guest_elems("vif1.0");
        ns.run(|| {
            // Only half present: the fallback must delete those and skip the rest.
            apply(F, T, &adds(&g[..3])).unwrap();
            apply_inner(F, T, &dels(&g), None).expect("fallback delete");
        });
        assert_all_empty(&ns);
        ns.run(|| {
            apply_inner(F, T, &dels(&g), None).expect("fallback delete of absent elements");
            // Add then delete in the same batch; and delete a range that is
            // only contained in (not equal to) a present one: absent.
            apply(
                F,
                T,
                &[ElemOp::Add(ip4_range(
                    "vif1.0",
                    "198.51.100.0",
                    "198.51.100.255",
                ))],
            )
            .unwrap();
            let ops = vec![
                ElemOp::Add(g[0].clone()),
                ElemOp::Delete(g[0].clone()),
                ElemOp::Delete(g[0].clone()),
                ElemOp::Delete(ip4_range("vif1.0", "198.51.100.1", "198.51.100.1")),
            ];
            apply_inner(F, T, &ops, None).unwrap();
        });
        assert_eq!(ns.elements("guarded"), Vec::<String>::new());
        assert_eq!(
            ns.elements("vif_ip4"),
            vec![r#""vif1.0" . 198.51.100.0/24"#]
        );

        // A kernel that does not know the message type answers EINVAL or
        // EOPNOTSUPP; play one with an unused message type number.
        ns.run(|| {
            apply(F, T, &adds(&g)).unwrap();
            apply_inner(F, T, &dels(&g), Some(0xfe)).expect("fallback after unknown message type");
        });
        assert_all_empty(&ns);
        assert!(!DESTROY_UNSUPPORTED.load(Ordering::Relaxed));
    }

    /// Not a timed assertion: prints what apply() costs (run with
    /// `cargo test --lib measure -- --nocapture` to see it).
    #[test]
    fn measure_apply_cost() {
        fn cpu_us() -> f64 {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime fills ts.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
        }
        let ns = Netns::with_table();
        let g = guest_elems("vif1.0");
        // One element per set: the typical per-vif batch.
        let four = vec![g[0].clone(), g[1].clone(), g[2].clone(), g[4].clone()];
        // The two hash sets only, to see our own cost without the kernel's
        // pipapo (interval) work.
        let two = vec![g[0].clone(), g[1].clone()];
        const N: usize = 100;
        let report = ns.run(|| {
            let mut lines = Vec::new();
            // (label, elements, destroy type, reuse the thread's socket?)
            let modes = [
                ("4 elems, DESTROYSETELEM, cached socket", &four, Some(NFT_MSG_DESTROYSETELEM), true),
                ("4 elems, DESTROYSETELEM, new socket per call (incl. close)", &four, Some(NFT_MSG_DESTROYSETELEM), false),
                ("4 elems, pre-6.3 fallback, cached socket", &four, None, true),
                ("2 elems in the hash sets only, cached socket", &two, Some(NFT_MSG_DESTROYSETELEM), true),
                ("2 elems in the hash sets only, new socket per call", &two, Some(NFT_MSG_DESTROYSETELEM), false),
                ("", &four, None, true), // marker: populate 64 other guests, then measure again
                ("4 elems, 64 other guests in the sets, cached socket", &four, Some(NFT_MSG_DESTROYSETELEM), true),
            ];
            for (label, elems, destroy, cached) in modes {
                if label.is_empty() {
                    let others: Vec<ElemOp> = (0..64).flat_map(|i| adds(&guest_elems(&format!("vif{}.0", i + 10)))).collect();
                    apply(F, T, &others).unwrap();
                    continue;
                }
                let (add_ops, del_ops) = (adds(elems), dels(elems));
                drop_cached_sock();
                let mut t = [(0.0f64, 0.0f64); 2]; // (wall, cpu) for add, delete
                for _ in 0..N {
                    for (k, ops) in [&add_ops, &del_ops].into_iter().enumerate() {
                        let (c, w) = (cpu_us(), std::time::Instant::now());
                        apply_inner(F, T, ops, destroy).unwrap();
                        if !cached {
                            drop_cached_sock();
                        }
                        t[k].0 += w.elapsed().as_secs_f64() * 1e6;
                        t[k].1 += cpu_us() - c;
                    }
                }
                let n = N as f64;
                lines.push(format!(
                    "{label}: add {:.0} us wall / {:.0} us user+sys; delete {:.0} us wall / {:.0} us user+sys",
                    t[0].0 / n, t[0].1 / n, t[1].0 / n, t[1].1 / n
                ));
            }
            lines
        });
        for l in report {
            eprintln!("apply() mean of {N}: {l}");
        }
        assert_eq!(ns.elements("guarded").len(), 64);
    }
}
