//! Reading the host: links, addresses, routes and sysctls, into the plan's fact types.
//! Reads only; nothing here changes anything.

pub mod health;
pub mod hosts_index;

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteHeader, RouteMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::Handle;

use crate::model::{IfName, MacAddr};
use crate::names::LINK_ALIAS;
use crate::plan::nat::{NatHostFacts, NatMode, NatVif, NatVifFacts};
use crate::plan::route::{self as plan_route, HostFacts, RouteMode};
use crate::plan::takeover::UplinkFacts;
use crate::plan::{Facts, LinkFacts};

pub mod snapshot;
pub mod xen_scripts;

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("reading {what}: {err}")]
    Netlink { what: String, err: rtnetlink::Error },
}

fn is_enodev(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::ENODEV)
}

/// One link by name; None when there is no such link.
pub async fn link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, ObserveError> {
    match handle.link().get().match_name(name.to_string()).execute().try_next().await {
        Ok(m) => Ok(m),
        Err(e) if is_enodev(&e) => Ok(None),
        Err(err) => Err(ObserveError::Netlink { what: format!("link {name}"), err }),
    }
}

pub fn link_facts(msg: &LinkMessage) -> LinkFacts {
    let mut f = LinkFacts {
        index: msg.header.index,
        kind: None,
        mtu: 1500,
        master: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        mac: None,
        ours: false,
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::Mtu(m) => f.mtu = *m,
            LinkAttribute::Controller(i) => f.master = Some(*i),
            LinkAttribute::IfAlias(alias) => f.ours = alias == LINK_ALIAS,
            LinkAttribute::Address(b) if b.len() == 6 => f.mac = Some(MacAddr(b.as_slice().try_into().expect("6 bytes"))),
            LinkAttribute::LinkInfo(infos) => {
                f.kind = infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(kind) => Some(kind.to_string()),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    f
}

/// The facts a plan needs about the links `names`.
pub async fn facts(handle: &Handle, names: &[String]) -> Result<Facts, ObserveError> {
    let mut facts = Facts::default();
    for name in names {
        if let Some(msg) = link(handle, name).await? {
            facts.links.insert(name.clone(), link_facts(&msg));
        }
    }
    Ok(facts)
}

/// Names of the ports enslaved to the bridge with index `bridge`.
pub async fn ports_of(handle: &Handle, bridge: u32) -> Result<Vec<String>, ObserveError> {
    let links: Vec<LinkMessage> =
        handle.link().get().execute().try_collect().await.map_err(|err| ObserveError::Netlink { what: "links".into(), err })?;
    Ok(links
        .iter()
        .filter(|l| l.attributes.iter().any(|a| matches!(a, LinkAttribute::Controller(i) if *i == bridge)))
        .filter_map(link_message_name)
        .collect())
}

/// A link's name, as a netlink message about it gives it.
pub fn link_message_name(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

/// Everything a takeover moves: the uplink's MAC, MTU, addresses and routes of both
/// families in every table. None when there is no such link.
pub async fn uplink(handle: &Handle, name: &IfName) -> Result<Option<UplinkFacts>, ObserveError> {
    let Some(msg) = link(handle, name.as_str()).await? else { return Ok(None) };
    let lf = link_facts(&msg);
    let addrs = address_messages(handle, lf.index).await?;
    let mut routes = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        // A blank header: with strict checking every field set would filter the dump,
        // and table 0 means every table.
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        let dumped: Vec<_> = handle
            .route()
            .get(msg)
            .execute()
            .try_collect()
            .await
            .map_err(|err| ObserveError::Netlink { what: format!("routes of {name}"), err })?;
        routes.extend(dumped.into_iter().filter(|r| r.attributes.iter().any(|a| matches!(a, RouteAttribute::Oif(i) if *i == lf.index))));
    }
    Ok(Some(UplinkFacts { name: name.clone(), mac: lf.mac.unwrap_or(MacAddr([0; 6])), mtu: lf.mtu, addrs, routes }))
}

/// The address messages of the link with `index`, both families: the kernel filters the
/// dump (strict checking and the header's index), so this costs the same however many
/// guests there are.
pub async fn address_messages(handle: &Handle, index: u32) -> Result<Vec<AddressMessage>, ObserveError> {
    let mut req = handle.address().get().set_link_index_filter(index);
    // rtnetlink's filter alone works on the client side, after the kernel sent everything.
    req.message_mut().header.index = index;
    req.execute()
        .try_collect()
        .await
        .map_err(|err| ObserveError::Netlink { what: format!("addresses of link {index}"), err })
}

/// The addresses of the link with `index`, as prefixes, in the kernel's order (primary first).
pub async fn addresses(handle: &Handle, index: u32) -> Result<Vec<IpNetwork>, ObserveError> {
    let msgs = address_messages(handle, index).await?;
    Ok(msgs
        .iter()
        .filter_map(|m| {
            let ip = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })?;
            IpNetwork::new(ip, m.header.prefix_len).ok()
        })
        .collect())
}

/// The global (not link-local) addresses of `name`, or none when there is no such link.
pub async fn global_addresses(handle: &Handle, name: &IfName) -> Result<Vec<IpNetwork>, ObserveError> {
    let Some(msg) = link(handle, name.as_str()).await? else { return Ok(Vec::new()) };
    let all = addresses(handle, msg.header.index).await?;
    Ok(all.into_iter().filter(|a| !matches!(a.ip(), IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)).collect())
}

/// The device of the main table's default route, IPv4 first, then IPv6.
pub async fn default_route_device(handle: &Handle) -> Result<Option<IfName>, ObserveError> {
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        let routes: Vec<RouteMessage> = handle
            .route()
            .get(msg)
            .execute()
            .try_collect()
            .await
            .map_err(|err| ObserveError::Netlink { what: "routes".into(), err })?;
        let oif = routes.iter().filter(|r| r.header.destination_prefix_length == 0 && r.header.table == RouteHeader::RT_TABLE_MAIN).find_map(route_oif);
        if let Some(index) = oif {
            return link_name(handle, index).await;
        }
    }
    Ok(None)
}

/// The destinations of our routes (protocol 118) out of the link `index`, in one family:
/// the kernel filters the dump by device and protocol (strict checking), so this reads a
/// vif's few routes, not the host's; dead ones (the vif without carrier) too.
pub async fn our_routes_via(handle: &Handle, index: u32, v6: bool) -> Result<Vec<IpNetwork>, ObserveError> {
    use netlink_packet_route::route::RouteProtocol;
    let ours = RouteProtocol::Other(crate::names::ROUTE_PROTOCOL);
    let mut msg = RouteMessage::default();
    msg.header.address_family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
    msg.header.protocol = ours;
    msg.attributes.push(RouteAttribute::Oif(index));
    let routes: Vec<RouteMessage> =
        handle.route().get(msg).execute().try_collect().await.map_err(|err| ObserveError::Netlink { what: format!("the routes via link {index}"), err })?;
    Ok(routes.iter().filter(|r| r.header.protocol == ours && route_oif(r) == Some(index)).filter_map(route_dest).collect())
}

/// Where a route goes: its destination with its prefix length.
pub fn route_dest(r: &RouteMessage) -> Option<IpNetwork> {
    use netlink_packet_route::route::RouteAddress;
    let addr = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    })?;
    IpNetwork::new(addr, r.header.destination_prefix_length).ok()
}

/// The device a route goes out of, if it names one.
pub fn route_oif(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

async fn link_name(handle: &Handle, index: u32) -> Result<Option<IfName>, ObserveError> {
    let msg = handle.link().get().match_index(index).execute().try_next().await;
    let msg = match msg {
        Ok(m) => m,
        Err(e) if is_enodev(&e) => None,
        Err(err) => return Err(ObserveError::Netlink { what: format!("link {index}"), err }),
    };
    Ok(msg.as_ref().and_then(link_message_name).and_then(|n| IfName::parse("link", &n).ok()))
}

/// The value of /proc/sys/`key` (slash form); None when the key does not exist here.
pub fn sysctl(key: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{key}")).ok().map(|s| s.trim().to_string())
}

/// The current values of the sysctls a mode's start changed (for its stop).
pub fn sysctls_now(changed: &[plan_route::SysctlChange]) -> std::collections::BTreeMap<String, String> {
    changed.iter().filter_map(|c| sysctl(&c.key).map(|v| (c.key.clone(), v))).collect()
}

/// The devices our host routes (protocol 118) to `ips` go out of, where there are any:
/// one FIB lookup per address (`ip route get fibmatch`), whatever the number of guests.
/// Prefixes are left out: a lookup finds the most specific route, not theirs.
pub async fn our_routes_to(handle: &Handle, ips: &[IpNetwork]) -> Result<Vec<(IpNetwork, IfName)>, ObserveError> {
    use netlink_packet_route::route::{RouteAddress, RouteFlags, RouteProtocol};
    let mut out = Vec::new();
    for ip in ips.iter().filter(|n| crate::plan::nft::is_host(n)) {
        let mut msg = RouteMessage::default();
        msg.header.address_family = if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
        msg.header.destination_prefix_length = ip.prefix();
        msg.header.flags = RouteFlags::FibMatch;
        msg.attributes.push(RouteAttribute::Destination(match ip.ip() {
            IpAddr::V4(a) => RouteAddress::Inet(a),
            IpAddr::V6(a) => RouteAddress::Inet6(a),
        }));
        let found = match handle.route().get(msg).execute().try_next().await {
            Ok(m) => m,
            // No route at all to it (no default route either): nobody else routes it.
            Err(rtnetlink::Error::NetlinkError(e)) if [-libc::ENETUNREACH, -libc::EHOSTUNREACH, -libc::ESRCH].contains(&e.raw_code()) => None,
            Err(err) => return Err(ObserveError::Netlink { what: format!("the route to {}", ip.ip()), err }),
        };
        let Some(r) = found else { continue };
        if r.header.protocol != RouteProtocol::from(crate::names::ROUTE_PROTOCOL) || r.header.destination_prefix_length != ip.prefix() {
            continue;
        }
        if let Some(dev) = match route_oif(&r) {
            Some(i) => link_name(handle, i).await?,
            None => None,
        } {
            out.push((*ip, dev));
        }
    }
    Ok(out)
}

/// What the host-wide part of route mode depends on: the uplink, the sysctls it may
/// change, the gateway link and its addresses.
pub async fn route_host(handle: &Handle, mode: &RouteMode) -> Result<HostFacts, ObserveError> {
    let (uplink, netdev_missing) = uplink_of(handle, mode.netdev.as_ref()).await?;
    let sysctls = plan_route::sysctl_keys(mode, uplink.as_ref()).into_iter().filter_map(|k| sysctl(&k).map(|v| (k, v))).collect();
    let gateway_link = link(handle, mode.gateway_link.as_str()).await?.as_ref().map(link_facts);
    let gateway_link_addrs = match &gateway_link {
        Some(l) => addresses(handle, l.index).await?,
        None => Vec::new(),
    };
    Ok(HostFacts { uplink, netdev_missing, sysctls, gateway_link, gateway_link_addrs })
}

/// A routed vif's sysctls route mode sets ([`plan_route::vif_sysctl_keys`]) as they are,
/// under either of its names.
pub fn route_vif_sysctls(kernel_name: &IfName, name: &IfName) -> std::collections::BTreeMap<String, String> {
    // One name when the vif keeps netback's: each key read once.
    let names = if kernel_name == name { vec![kernel_name] } else { vec![kernel_name, name] };
    names.into_iter().flat_map(plan_route::vif_sysctl_keys).filter_map(|(k, _, _)| sysctl(&k).map(|v| (k, v))).collect()
}

/// The uplink: `netdev` if that link exists (else none, and `true`: it is missing), or
/// the device of the default route.
async fn uplink_of(handle: &Handle, netdev: Option<&IfName>) -> Result<(Option<IfName>, bool), ObserveError> {
    Ok(match netdev {
        Some(n) if link(handle, n.as_str()).await?.is_some() => (Some(n.clone()), false),
        Some(_) => (None, true),
        None => (default_route_device(handle).await?, false),
    })
}

/// What nat mode's host-wide part depends on.
pub async fn nat_host(handle: &Handle, mode: &NatMode) -> Result<NatHostFacts, ObserveError> {
    let (uplink, netdev_missing) = uplink_of(handle, mode.netdev.as_ref()).await?;
    Ok(NatHostFacts { uplink, netdev_missing, ip_forward: sysctl("net/ipv4/ip_forward") })
}

#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {err}")]
pub struct FileError {
    path: String,
    err: std::io::Error,
}

/// A file's text; a file that does not exist yet is empty (nat mode's hosts and ethers).
pub fn file_text(path: &std::path::Path) -> Result<String, FileError> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        r => r.map_err(|err| FileError { path: path.display().to_string(), err }),
    }
}

/// The links of a guest's device: the name it has now and the one it must end with.
pub async fn vif_links(handle: &Handle, kernel_name: &IfName, name: &IfName) -> Result<Facts, ObserveError> {
    let mut names = vec![kernel_name.to_string(), name.to_string()];
    names.dedup();
    facts(handle, &names).await
}

/// What a nat vif's plan depends on: its links, the hosts and ethers files, proxy_arp.
pub async fn nat_vif(handle: &Handle, vif: &NatVif, mode: &NatMode) -> Result<NatVifFacts, anyhow::Error> {
    Ok(NatVifFacts {
        links: vif_links(handle, &vif.kernel_name, &vif.name).await?,
        hosts: Box::new(hosts_index::HostsIndex::open(&crate::state::dir(), &mode.hosts, &mode.prefix).map_err(|err| FileError { path: mode.hosts.display().to_string(), err })?),
        ethers: file_text(&mode.ethers)?,
        proxy_arp: sysctl(&format!("net/ipv4/conf/{}/proxy_arp", vif.kernel_name)).unwrap_or_else(|| "0".into()),
    })
}
