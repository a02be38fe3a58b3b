//! nftables: each table is built once through the `nft` binary (one JSON transaction,
//! the `nftables` crate); per-vif set elements go straight over nfnetlink, one batch per
//! verb, because an `nft` process per guest would cost more than all the rest of online.

use ipnetwork::IpNetwork;

use super::nft_netlink::{self, concat, key_ether, key_ifname, key_ipv4, key_ipv6, ElemOp, SetElem, NFPROTO_BRIDGE, NFPROTO_INET};
use super::ApplyError;
use crate::names::NFT_TABLE;
use crate::model::{IfName, MacAddr};
use crate::plan::nft::{Elem, ElemChange, Table};

fn nl(e: nft_netlink::NftNetlinkError) -> ApplyError {
    ApplyError::Nft(e.to_string())
}

fn nfproto(table: Table) -> u8 {
    match table {
        Table::Bridge => NFPROTO_BRIDGE,
        Table::Inet => NFPROTO_INET,
    }
}

/// Creates the table whole when it is missing (callers hold the lock, so two vifs cannot
/// both create it).
pub fn ensure_table(table: Table) -> Result<(), ApplyError> {
    if nft_netlink::table_exists(nfproto(table), NFT_TABLE).map_err(nl)? {
        return Ok(());
    }
    nftables::helper::apply_ruleset(&table.definition()).map_err(|e| ApplyError::Nft(format!("creating table {table}: {e}")))
}

/// Deletes the table when no guest has elements in it any more.
pub fn delete_table_if_unused(table: Table) -> Result<(), ApplyError> {
    if !nft_netlink::table_exists(nfproto(table), NFT_TABLE).map_err(nl)? {
        return Ok(());
    }
    for set in table.sets() {
        // A set that is not there (nat mode's, in a table only route mode used) is empty.
        match nft_netlink::list_elements(nfproto(table), NFT_TABLE, set) {
            Err(e) if e.errno() == Some(libc::ENOENT) => {}
            r => {
                if !r.map_err(nl)?.is_empty() {
                    return Ok(());
                }
            }
        }
    }
    let mut batch = nftables::batch::Batch::new();
    batch.delete(nftables::schema::NfListObject::Table(nftables::schema::Table { family: table.family(), name: NFT_TABLE.into(), handle: None }));
    nftables::helper::apply_ruleset(&batch.to_nftables()).map_err(|e| ApplyError::Nft(format!("deleting table {table}: {e}")))
}

/// Adds nat mode's set and masquerade chain to `inet vifnet` when its set is missing (under
/// the lock, so only one call makes them).
pub fn ensure_nat() -> Result<(), ApplyError> {
    match nft_netlink::list_elements(NFPROTO_INET, NFT_TABLE, crate::names::SET_MASQ_OUT) {
        Err(e) if e.errno() == Some(libc::ENOENT) => {}
        r => return r.map(|_| ()).map_err(nl),
    }
    nftables::helper::apply_ruleset(&crate::plan::nft::nat_part()).map_err(|e| ApplyError::Nft(format!("adding nat to table inet {NFT_TABLE}: {e}")))
}

/// The kernel's form of one element: key (and range end for prefixes).
pub fn encode(elem: &Elem) -> SetElem {
    let set = elem.set_name().to_string();
    match elem {
        Elem::Guarded(port) => SetElem { set, key: key_ifname(port.as_str()), key_end: None },
        Elem::Mac(port, mac) => SetElem { set, key: concat(&[key_ifname(port.as_str()), key_ether(mac.0)]), key_end: None },
        Elem::Ip(port, net) if crate::plan::nft::is_host(net) => {
            let addr = match net {
                IpNetwork::V4(n) => key_ipv4(n.ip()),
                IpNetwork::V6(n) => key_ipv6(n.ip()),
            };
            SetElem { set, key: concat(&[key_ifname(port.as_str()), addr]), key_end: None }
        }
        Elem::Masq(uplink, net) => {
            let name = key_ifname(uplink.as_str());
            let (first, last) = (key_ipv4(net.network()), key_ipv4(net.broadcast()));
            SetElem { set, key: concat(&[name.clone(), first]), key_end: Some(concat(&[name, last])) }
        }
        Elem::Ip(port, net) => {
            let (first, last) = match net {
                IpNetwork::V4(n) => (key_ipv4(n.network()), key_ipv4(n.broadcast())),
                IpNetwork::V6(n) => {
                    let first = u128::from(n.network());
                    let last = first | (u128::MAX.checked_shr(n.prefix() as u32).unwrap_or(0));
                    (key_ipv6(first.into()), key_ipv6(last.into()))
                }
            };
            let name = key_ifname(port.as_str());
            SetElem { set, key: concat(&[name.clone(), first]), key_end: Some(concat(&[name, last])) }
        }
    }
}

/// `encode` backwards: the element a set's key (and range end) stands for; None for a
/// key no element of ours encodes to.
pub fn decode(set: &str, key: &[u8], key_end: Option<&[u8]>) -> Option<Elem> {
    use crate::names::{SET_GUARDED, SET_MASQ_OUT, SET_VIF_IP4, SET_VIF_IP6, SET_VIF_MAC, SET_VIF_NET4, SET_VIF_NET6};
    let name = |k: &[u8]| -> Option<IfName> {
        let raw = k.get(..16)?;
        let len = raw.iter().position(|b| *b == 0).unwrap_or(16);
        IfName::parse("nft element", std::str::from_utf8(&raw[..len]).ok()?).ok()
    };
    let v4 = |k: &[u8]| -> Option<std::net::Ipv4Addr> { Some(<[u8; 4]>::try_from(k.get(16..20)?).ok()?.into()) };
    let v6 = |k: &[u8]| -> Option<std::net::Ipv6Addr> { Some(<[u8; 16]>::try_from(k.get(16..32)?).ok()?.into()) };
    // Our ranges are whole prefixes: the bits that differ between first and last are the host part.
    let span = |first: u128, last: u128, bits: u32| bits.checked_sub((last ^ first).count_ones()).map(|n| n as u8);
    let port = name(key)?;
    let elem = match set {
        s if s == SET_GUARDED => Elem::Guarded(port),
        s if s == SET_VIF_MAC => Elem::Mac(port, MacAddr(key.get(16..22)?.try_into().ok()?)),
        s if s == SET_VIF_IP4 => Elem::Ip(port, IpNetwork::new(v4(key)?.into(), 32).ok()?),
        s if s == SET_VIF_IP6 => Elem::Ip(port, IpNetwork::new(v6(key)?.into(), 128).ok()?),
        s if s == SET_VIF_NET4 || s == SET_MASQ_OUT => {
            let (first, last) = (v4(key)?, v4(key_end?)?);
            let len = span(u32::from(first) as u128, u32::from(last) as u128, 32)?;
            let net = ipnetwork::Ipv4Network::new(first, len).ok()?;
            if s == SET_MASQ_OUT { Elem::Masq(port, net) } else { Elem::Ip(port, IpNetwork::V4(net)) }
        }
        s if s == SET_VIF_NET6 => {
            let (first, last) = (v6(key)?, v6(key_end?)?);
            let len = span(u128::from(first), u128::from(last), 128)?;
            Elem::Ip(port, IpNetwork::new(first.into(), len).ok()?)
        }
        _ => return None,
    };
    Some(elem)
}

/// Every element of our sets in `table`, read back; None when the table does not exist
/// (a set that is missing has none).
pub fn elements(table: Table) -> Result<Option<Vec<Elem>>, ApplyError> {
    if !nft_netlink::table_exists(nfproto(table), NFT_TABLE).map_err(nl)? {
        return Ok(None);
    }
    let mut out = Vec::new();
    for set in table.sets() {
        let listed = match nft_netlink::list_elements(nfproto(table), NFT_TABLE, set) {
            Err(e) if e.errno() == Some(libc::ENOENT) => continue,
            r => r.map_err(nl)?,
        };
        out.extend(listed.iter().filter_map(|(key, end)| decode(set, key, end.as_deref())));
    }
    Ok(Some(out))
}

pub fn apply_elements(table: Table, changes: &[ElemChange]) -> Result<(), ApplyError> {
    let ops: Vec<ElemOp> = changes
        .iter()
        .map(|c| match c {
            ElemChange::Add(e) => ElemOp::Add(encode(e)),
            ElemChange::Delete(e) => ElemOp::Delete(encode(e)),
        })
        .collect();
    match nft_netlink::apply(nfproto(table), NFT_TABLE, &ops) {
        // Only removals, and a set or the table is gone (`nft flush ruleset`, a reload of
        // nftables.service): its elements went with it. The batch was rolled back as a
        // whole, so the elements of the sets still there are removed again, alone.
        Err(e) if e.errno() == Some(libc::ENOENT) && ops.iter().all(|o| matches!(o, ElemOp::Delete(_))) => {
            let left: Vec<ElemOp> = ops.into_iter().filter(|o| set_exists(table, &o.elem().set)).collect();
            if left.is_empty() {
                return Ok(());
            }
            nft_netlink::apply(nfproto(table), NFT_TABLE, &left).map_err(nl)
        }
        r => r.map_err(nl),
    }
}

/// Whether `set` is in our table; an answer other than "no such set or table" counts as
/// yes, so that the retry reports it.
fn set_exists(table: Table, set: &str) -> bool {
    !matches!(nft_netlink::list_elements(nfproto(table), NFT_TABLE, set), Err(e) if e.errno() == Some(libc::ENOENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_takes_back_what_encode_made() {
        let port = IfName::parse("t", "vif5.0").unwrap();
        let mac = MacAddr([0, 0x16, 0x3e, 0, 0, 5]);
        let elems = [
            Elem::Guarded(port.clone()),
            Elem::Mac(port.clone(), mac),
            Elem::Ip(port.clone(), "192.0.2.5/32".parse().unwrap()),
            Elem::Ip(port.clone(), "2001:db8::5/128".parse().unwrap()),
            Elem::Ip(port.clone(), "198.51.100.0/24".parse().unwrap()),
            Elem::Ip(port.clone(), "2001:db8:42::/64".parse().unwrap()),
            Elem::Masq(port.clone(), "10.0.0.0/8".parse().unwrap()),
        ];
        for e in elems {
            let enc = encode(&e);
            assert_eq!(decode(&enc.set, &enc.key, enc.key_end.as_deref()), Some(e.clone()), "{e}");
        }
        assert_eq!(decode("nosuch", &encode(&Elem::Guarded(port)).key, None), None);
    }
}
