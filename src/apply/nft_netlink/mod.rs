//! nftables set-element updates over nfnetlink, without spawning `nft`.
//!
//! The per-guest hot path only adds and removes a handful of elements of
//! sets that already exist (tables, chains and sets are created once with
//! the `nft` binary elsewhere). Spawning `nft` costs ~2 ms a call; this
//! module talks to the kernel directly on a `NETLINK_NETFILTER` socket with
//! a small hand-written encoder.
//!
//! Here: the batch ([`apply`]) and its errors. `wire.rs`: the format (constants, keys,
//! encoder, decoder); `socket.rs`: the socket, kept per thread and closed at the end;
//! `probe.rs`: what the kernel has (the delete fallback, tables, a set's elements).
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod probe;
mod socket;
mod wire;

use probe::*;
use socket::*;
use wire::*;

pub use probe::{list_elements, table_exists};
pub use socket::release_socket;
pub use wire::{concat, key_ether, key_ifname, key_ipv4, key_ipv6};

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

#[cfg(test)]
mod tests;

