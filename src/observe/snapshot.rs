//! What `check` compares: whole dumps of links, addresses, our routes and our proxy
//! entries (one round trip each, however many guests), and the sysctls, files and pid
//! files the expectations name.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteProtocol};
use netlink_packet_route::AddressFamily;
use rtnetlink::Handle;

use super::{file_text, link_facts, sysctl, ObserveError};
use crate::names::ROUTE_PROTOCOL;
use crate::plan::check::{Needs, OurRoute, Snapshot};
use crate::plan::LinkFacts;

fn failed(what: &str) -> impl FnOnce(rtnetlink::Error) -> ObserveError + '_ {
    move |err| ObserveError::Netlink { what: what.to_string(), err }
}

/// Every link, by name.
pub async fn links(handle: &Handle) -> Result<BTreeMap<String, LinkFacts>, ObserveError> {
    let msgs: Vec<_> = handle.link().get().execute().try_collect().await.map_err(failed("links"))?;
    Ok(msgs
        .iter()
        .filter_map(|m| {
            Some((super::link_message_name(m)?, link_facts(m)))
        })
        .collect())
}

/// Every address, by link index.
async fn addresses(handle: &Handle) -> Result<BTreeMap<u32, Vec<IpNetwork>>, ObserveError> {
    let msgs: Vec<_> = handle.address().get().execute().try_collect().await.map_err(failed("addresses"))?;
    let mut out: BTreeMap<u32, Vec<IpNetwork>> = BTreeMap::new();
    for m in msgs {
        let ip = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        if let Some(net) = ip.and_then(|ip| IpNetwork::new(ip, m.header.prefix_len).ok()) {
            out.entry(m.header.index).or_default().push(net);
        }
    }
    Ok(out)
}

/// Routes with our protocol number, both families, every table.
async fn our_routes(handle: &Handle) -> Result<BTreeSet<OurRoute>, ObserveError> {
    let mut out = BTreeSet::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        let routes: Vec<RouteMessage> = handle.route().get(msg).execute().try_collect().await.map_err(failed("routes"))?;
        for r in routes.iter().filter(|r| r.header.protocol == RouteProtocol::Other(ROUTE_PROTOCOL)) {
            let metric = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Priority(p) => Some(*p),
                _ => None,
            });
            if let (Some(dest), Some(oif), metric) = (super::route_dest(r), super::route_oif(r), metric.unwrap_or(0)) {
                out.insert(OurRoute { dest, oif, metric });
            }
        }
    }
    Ok(out)
}

/// Proxy ARP / NDP entries with our protocol number (an entry the kernel reports without
/// one is the administrator's).
async fn our_proxies(handle: &Handle) -> Result<BTreeSet<(u32, IpAddr)>, ObserveError> {
    let mut out = BTreeSet::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let msgs: Vec<_> = handle.neighbours().get().proxies().set_address_family(family).execute().try_collect().await.map_err(failed("proxy entries"))?;
        for m in msgs {
            let ours = m.attributes.iter().any(|a| matches!(a, NeighbourAttribute::Protocol(p) if *p == RouteProtocol::Other(ROUTE_PROTOCOL)));
            let addr = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
                _ => None,
            });
            if let (true, Some(addr)) = (ours, addr) {
                out.insert((m.header.ifindex, addr));
            }
        }
    }
    Ok(out)
}

/// The pid in a dnsmasq pid file, if it names a live dnsmasq (a stale file, a pid reused
/// by another program, or one waiting to be reaped names none).
pub fn dnsmasq_pid(pidfile: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": the name in parentheses, then the state.
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1;
    let state = rest.split_whitespace().next()?;
    (comm == "dnsmasq" && state != "Z" && state != "X").then_some(pid)
}

/// The snapshot of everything but nftables (whose elements `apply::nft` reads).
pub async fn snapshot(handle: &Handle, needs: &Needs) -> Result<Snapshot, anyhow::Error> {
    let mut files = BTreeMap::new();
    for path in &needs.files {
        files.insert(path.clone(), file_text(path)?);
    }
    Ok(Snapshot {
        links: links(handle).await?,
        addrs: addresses(handle).await?,
        routes: our_routes(handle).await?,
        proxies: our_proxies(handle).await?,
        elems: Vec::new(),
        sysctls: needs.sysctls.iter().filter_map(|k| sysctl(k).map(|v| (k.clone(), v))).collect(),
        files,
        live_pidfiles: needs.pidfiles.iter().filter(|p| dnsmasq_pid(p).is_some()).cloned().collect(),
    })
}
