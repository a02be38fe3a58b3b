//! nftables: each table is built once through the `nft` binary (one JSON transaction,
//! the `nftables` crate); per-vif set elements go straight over nfnetlink, one batch per
//! verb, because an `nft` process per guest would cost more than all the rest of online.

use ipnetwork::IpNetwork;

use super::nft_netlink::{self, concat, key_ether, key_ifname, key_ipv4, key_ipv6, ElemOp, SetElem, NFPROTO_BRIDGE, NFPROTO_INET};
use super::ApplyError;
use crate::names::NFT_TABLE;
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
