//! The nfnetlink wire format: the ABI constants, element keys as the kernel compares them,
//! the batch encoder and the answer decoder. Pure byte work; no socket.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

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

pub(super) const NLMSG_HDRLEN: usize = 16;
pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLMSG_DONE: u16 = 3;
pub(super) const NLMSG_OVERRUN: u16 = 4;

pub(super) const NLM_F_REQUEST: u16 = 0x01;
pub(super) const NLM_F_DUMP_INTR: u16 = 0x10;
pub(super) const NLM_F_ACK: u16 = 0x04;
pub(super) const NLM_F_DUMP: u16 = 0x300;
pub(super) const NLM_F_CREATE: u16 = 0x400;
// Flags of an NLMSG_ERROR answer.
pub(super) const NLM_F_CAPPED: u16 = 0x100;
pub(super) const NLM_F_ACK_TLVS: u16 = 0x200;
pub(super) const NLMSGERR_ATTR_MSG: u16 = 1;

pub(super) const NLA_F_NESTED: u16 = 1 << 15;
pub(super) const NLA_TYPE_MASK: u16 = !(1 << 15 | 1 << 14);

pub(super) const SOL_NETLINK: libc::c_int = 270;
pub(super) const NETLINK_NETFILTER: libc::c_int = 12;
pub(super) const NETLINK_CAP_ACK: libc::c_int = 10;
pub(super) const NETLINK_EXT_ACK: libc::c_int = 11;

pub(super) const NFNETLINK_V0: u8 = 0;
pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub(super) const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub(super) const NFNL_MSG_BATCH_END: u16 = 0x11;

pub(super) const NFT_MSG_GETTABLE: u8 = 1;
pub(super) const NFT_MSG_GETSET: u8 = 10;
pub(super) const NFT_MSG_NEWSETELEM: u8 = 12;
pub(super) const NFT_MSG_GETSETELEM: u8 = 13;
pub(super) const NFT_MSG_DELSETELEM: u8 = 14;
pub(super) const NFT_MSG_NEWGEN: u8 = 15;
pub(super) const NFT_MSG_GETGEN: u8 = 16;
/// Added in Linux 6.3.
pub(super) const NFT_MSG_DESTROYSETELEM: u8 = 30;

pub(super) const NFTA_TABLE_NAME: u16 = 1;
pub(super) const NFTA_GEN_ID: u16 = 1;
pub(super) const NFTA_SET_TABLE: u16 = 1;
pub(super) const NFTA_SET_NAME: u16 = 2;
pub(super) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub(super) const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub(super) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub(super) const NFTA_LIST_ELEM: u16 = 1;
pub(super) const NFTA_SET_ELEM_KEY: u16 = 1;
pub(super) const NFTA_SET_ELEM_KEY_END: u16 = 10;
pub(super) const NFTA_DATA_VALUE: u16 = 1;

pub(super) const NFT_NAME_MAXLEN: usize = 256;
pub(super) const NFT_DATA_VALUE_MAXLEN: usize = 64;

/// Set once the kernel has shown it does not know NFT_MSG_DESTROYSETELEM.
pub(super) static DESTROY_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

pub(super) fn nft_type(msg: u8) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg as u16
}

/// (key, key_end) of one element.
pub(super) type KeyPair = (Vec<u8>, Option<Vec<u8>>);

pub(super) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

// ---------------------------------------------------------------------------
// Encoder

pub(super) struct Builder {
    pub(super) buf: Vec<u8>,
}

impl Builder {
    pub(super) fn new(cap: usize) -> Self {
        Builder {
            buf: Vec::with_capacity(cap),
        }
    }

    /// nlmsghdr + nfgenmsg; returns the start offset for `msg_end`.
    pub(super) fn msg_begin(&mut self, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
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

    pub(super) fn msg_end(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    pub(super) fn pad(&mut self) {
        let n = align4(self.buf.len());
        self.buf.resize(n, 0);
    }

    pub(super) fn attr(&mut self, ty: u16, data: &[u8]) {
        self.buf
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    pub(super) fn attr_strz(&mut self, ty: u16, s: &str) {
        self.buf
            .extend_from_slice(&((4 + s.len() + 1) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    pub(super) fn nest_begin(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        start
    }

    pub(super) fn nest_end(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// One message about one element of `elem.set`.
    pub(super) fn elem_msg(&mut self, msg: u8, flags: u16, seq: u32, family: u8, table: &str, elem: &SetElem) {
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

    pub(super) fn batch_marker(&mut self, ty: u16, seq: u32) {
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

pub(super) struct NlMsg<'a> {
    pub(super) ty: u16,
    pub(super) flags: u16,
    pub(super) seq: u32,
    pub(super) payload: &'a [u8],
}

pub(super) fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}

pub(super) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Splits a datagram into netlink messages.
pub(super) fn split_msgs(mut b: &[u8]) -> Result<Vec<NlMsg<'_>>, String> {
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
pub(super) struct Attrs<'a>(pub(super) &'a [u8]);

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

pub(super) fn find_attr(b: &[u8], ty: u16) -> Option<&[u8]> {
    Attrs(b).find(|(t, _)| *t == ty).map(|(_, d)| d)
}

/// An NLMSG_ERROR answer: positive errno (0 = ACK) and the extended-ack text.
pub(super) struct NlAck {
    pub(super) errno: i32,
    pub(super) ext_msg: Option<String>,
}

pub(super) fn parse_ack(m: &NlMsg) -> Result<NlAck, String> {
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
pub(super) fn parse_elements(list: &[u8], out: &mut Vec<KeyPair>) {
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
pub(super) fn msg_elements(m: &NlMsg) -> Vec<KeyPair> {
    let mut out = Vec::new();
    if m.payload.len() >= 4 {
        if let Some(list) = find_attr(&m.payload[4..], NFTA_SET_ELEM_LIST_ELEMENTS) {
            parse_elements(list, &mut out);
        }
    }
    out
}

