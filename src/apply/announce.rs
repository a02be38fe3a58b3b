//! Telling upstream where a guest now is: a gratuitous ARP (IPv4) or an unsolicited
//! neighbour advertisement with the override flag (IPv6) on the uplink, for each address
//! the uplink proxies. After a restore or a migration, upstream's neighbour cache still
//! points at the old host; this updates it at once instead of after its timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{FromRawFd, OwnedFd};

use netlink_packet_route::address::{AddressAttribute, AddressScope};
use rtnetlink::Handle;

use super::{find_link, ApplyError};
use crate::model::IfName;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;

/// ARP request "who has `addr`? tell `addr` at `mac`", broadcast: the form of gratuitous
/// ARP that every stack accepts (RFC 5227 §3).
pub fn gratuitous_arp(mac: [u8; 6], addr: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend([0xff; 6]);
    f.extend(mac);
    f.extend(ETH_P_ARP.to_be_bytes());
    f.extend([0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]); // Ethernet, IPv4, request
    f.extend(mac);
    f.extend(addr.octets());
    f.extend([0; 6]);
    f.extend(addr.octets());
    f.resize(60, 0);
    f
}

/// An unsolicited neighbour advertisement (RFC 4861 §7.2.6) for `target` at `mac`, from
/// the uplink's link-local `src` to all nodes, override set so caches take the new MAC.
pub fn unsolicited_na(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0]; // NA, code 0, checksum, flags: O
    icmp.extend(target.octets());
    icmp.extend([2, 1]); // option: target link-layer address, 8 bytes
    icmp.extend(mac);
    let sum = icmpv6_checksum(src, all_nodes, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend([0x33, 0x33, 0, 0, 0, 1]);
    f.extend(mac);
    f.extend(ETH_P_IPV6.to_be_bytes());
    f.extend([0x60, 0, 0, 0]);
    f.extend((icmp.len() as u16).to_be_bytes());
    f.extend([58, 255]); // ICMPv6, hop limit 255 (receivers drop anything less)
    f.extend(src.octets());
    f.extend(all_nodes.octets());
    f.extend(icmp);
    f
}

/// The ICMPv6 checksum: ones' complement sum over the pseudo-header and the message.
fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40 + msg.len());
    pseudo.extend(src.octets());
    pseudo.extend(dst.octets());
    pseudo.extend((msg.len() as u32).to_be_bytes());
    pseudo.extend([0, 0, 0, 58]);
    pseudo.extend(msg);
    !ones_complement_sum(&pseudo)
}

fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The link-local address of the link with `index`, the source of an advertisement.
async fn link_local(handle: &Handle, index: u32) -> Option<Ipv6Addr> {
    let addrs = crate::observe::address_messages(handle, index).await.ok()?;
    addrs.iter().filter(|a| a.header.scope == AddressScope::Link).find_map(|a| {
        a.attributes.iter().find_map(|attr| match attr {
            AddressAttribute::Address(IpAddr::V6(v6)) => Some(*v6),
            _ => None,
        })
    })
}

/// Sends one frame per address on `dev`. Best effort: the guest works without it (upstream
/// relearns when its cache entry expires), so a failure is a warning, not a failed online.
pub async fn send(handle: &Handle, dev: &IfName, addrs: &[IpAddr]) -> Result<(), ApplyError> {
    let Some(link) = find_link(handle, dev).await? else { return Ok(()) };
    let Some(mac) = link.mac else { return Ok(()) };
    let src = if addrs.iter().any(|a| a.is_ipv6()) { link_local(handle, link.index).await } else { None };
    let frames: Vec<Vec<u8>> = addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(v4) => Some(gratuitous_arp(mac.0, *v4)),
            IpAddr::V6(v6) => src.map(|s| unsolicited_na(mac.0, s, *v6)),
        })
        .collect();
    if let Err(e) = send_frames(link.index, &frames) {
        crate::log::warn(&format!("{dev}: announcing {} failed: {e}", addrs.len()));
    }
    Ok(())
}

fn send_frames(ifindex: u32, frames: &[Vec<u8>]) -> std::io::Result<()> {
    // SAFETY: a fresh socket we own and close; buffers outlive the calls.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut result = Ok(());
        for f in frames {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex as i32;
            sll.sll_protocol = u16::from_be_bytes([f[12], f[13]]).to_be();
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&f[..6]);
            let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            let n = libc::sendto(fd, f.as_ptr().cast(), f.len(), 0, (&sll as *const libc::sockaddr_ll).cast(), len);
            if n < 0 {
                result = Err(std::io::Error::last_os_error());
                break;
            }
        }
        // packet_release() waits out a grace period: not our caller's wait.
        super::close_later::close_in_child(OwnedFd::from_raw_fd(fd), None);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

    #[test]
    fn gratuitous_arp_claims_the_address_for_our_mac() {
        let f = gratuitous_arp(MAC, "203.0.113.194".parse().unwrap());
        assert_eq!(f.len(), 60);
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[22..28], &MAC, "sender MAC");
        assert_eq!(&f[28..32], &[203, 0, 113, 194], "sender IP");
        assert_eq!(&f[38..42], &[203, 0, 113, 194], "target IP = sender IP");
    }

    #[test]
    fn unsolicited_na_is_well_formed() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let target: Ipv6Addr = "2001:db8:42::194".parse().unwrap();
        let f = unsolicited_na(MAC, src, target);
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!((f[20], f[21]), (58, 255));
        let icmp = &f[54..];
        assert_eq!((icmp[0], icmp[4]), (136, 0x20), "NA with only the override flag");
        assert_eq!(&icmp[8..24], &target.octets());
        // A correct checksum makes the sum over pseudo-header and message all ones.
        let mut pseudo = Vec::new();
        pseudo.extend(src.octets());
        pseudo.extend(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets());
        pseudo.extend(32u32.to_be_bytes());
        pseudo.extend([0, 0, 0, 58]);
        pseudo.extend(icmp);
        assert_eq!(ones_complement_sum(&pseudo), 0xffff);
    }
}
