//! Addresses, routes and proxy neighbour entries over rtnetlink, each idempotent: an add
//! that finds its object there, or a delete that finds it gone, is success.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::neighbour::{NeighbourAttribute, NeighbourFlags, NeighbourMessage};
use netlink_packet_route::route::{RouteProtocol, RouteScope};
use netlink_packet_route::AddressFamily;
use rtnetlink::{AddressMessageBuilder, Handle, RouteMessageBuilder};

use super::{idempotent, link_index, ApplyError};
use crate::model::IfName;
use crate::names::ROUTE_PROTOCOL;

/// An IPv6 address goes in without duplicate address detection: ours are the host's own
/// (the gateway), and a tentative one would not answer the guest for a second or more.
/// A single address (the gateway on a vif) gets no prefix route: the kernel would add a
/// pointless route to it through every vif.
pub async fn add_address(handle: &Handle, dev: &IfName, addr: IpNetwork) -> Result<(), ApplyError> {
    let index = link_index(handle, dev).await?;
    let mut req = handle.address().add(index, addr.ip(), addr.prefix());
    let mut flags = AddressFlags::empty();
    if addr.is_ipv6() {
        flags |= AddressFlags::Nodad;
    }
    if crate::plan::nft::is_host(&addr) {
        flags |= AddressFlags::Noprefixroute;
    }
    if !flags.is_empty() {
        req.message_mut().attributes.push(AddressAttribute::Flags(flags));
    }
    idempotent(req.execute().await, &[libc::EEXIST], format!("adding {addr} to {dev}"))
}

pub async fn del_address(handle: &Handle, dev: &IfName, addr: IpNetwork) -> Result<(), ApplyError> {
    let Some(link) = super::find_link(handle, dev).await? else { return Ok(()) };
    let m = match addr.ip() {
        IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new().index(link.index).address(a, addr.prefix()).build(),
        IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new().index(link.index).address(a, addr.prefix()).build(),
    };
    idempotent(handle.address().del(m).execute().await, &[libc::EADDRNOTAVAIL, libc::ENODEV, libc::ENOENT], format!("removing {addr} from {dev}"))
}

fn route_message(dest: IpNetwork, index: u32, metric: u32) -> netlink_packet_route::route::RouteMessage {
    RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dest.network(), dest.prefix())
        .expect("the family matches the address")
        .output_interface(index)
        .priority(metric)
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
        .scope(RouteScope::Link)
        .build()
}

/// A route of ours to `dest` through `dev`. The kernel answers EEXIST for a route of that
/// prefix and metric through any link: ours already (done), or another vif's, whose guest
/// may not be running (its route dead, which the FIB lookup before the plan passed over).
pub async fn add_route(handle: &Handle, dest: IpNetwork, dev: &IfName, metric: u32) -> Result<(), ApplyError> {
    let index = link_index(handle, dev).await?;
    let what = format!("adding a route to {dest} via {dev}");
    match handle.route().add(route_message(dest, index, metric)).execute().await {
        Err(e) if super::errno(&e) == Some(libc::EEXIST) => {
            let ours = crate::observe::our_routes_via(handle, index, dest.is_ipv6()).await.map_err(|e| ApplyError::Failed { what: what.clone(), message: e.to_string() })?;
            match ours.contains(&dest) {
                true => Ok(()),
                false => Err(ApplyError::Failed { what, message: format!("{dest} is routed through another link already, with metric {metric}") }),
            }
        }
        r => r.map_err(ApplyError::netlink(what)),
    }
}

/// Deletes only our route (protocol, device and metric must match): another route to the
/// same place, the administrator's or an HVM guest's other nic's, stays.
pub async fn del_route(handle: &Handle, dest: IpNetwork, dev: &IfName, metric: u32) -> Result<(), ApplyError> {
    let Some(link) = super::find_link(handle, dev).await? else { return Ok(()) };
    idempotent(
        handle.route().del(route_message(dest, link.index, metric)).execute().await,
        &[libc::ESRCH, libc::ENOENT, libc::ENODEV],
        format!("removing the route to {dest} via {dev}"),
    )
}

fn proxy_message(index: u32, addr: IpAddr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    m.header.ifindex = index;
    m.header.flags = NeighbourFlags::Proxy;
    m.attributes.push(NeighbourAttribute::Destination(addr.into()));
    m
}

pub async fn add_proxy(handle: &Handle, dev: &IfName, addr: IpAddr) -> Result<(), ApplyError> {
    let index = link_index(handle, dev).await?;
    let mut req = handle.neighbours().add(index, addr).replace();
    *req.message_mut() = proxy_message(index, addr);
    req.message_mut().attributes.push(NeighbourAttribute::Protocol(RouteProtocol::Other(ROUTE_PROTOCOL)));
    idempotent(req.execute().await, &[libc::EEXIST], format!("adding proxy {addr} on {dev}"))
}

/// The guest's IPv6 gateway, answered on its vif: marked router, as the answer of a
/// forwarding host's own address would be (the kernel needs a device for it: the entry
/// joins the address's solicited-node group there).
pub async fn add_gateway_proxy(handle: &Handle, dev: &IfName, addr: Ipv6Addr) -> Result<(), ApplyError> {
    let index = link_index(handle, dev).await?;
    let mut req = handle.neighbours().add(index, IpAddr::V6(addr)).replace();
    let mut m = proxy_message(index, IpAddr::V6(addr));
    m.header.flags |= NeighbourFlags::Router;
    m.attributes.push(NeighbourAttribute::Protocol(RouteProtocol::Other(ROUTE_PROTOCOL)));
    *req.message_mut() = m;
    idempotent(req.execute().await, &[libc::EEXIST], format!("adding proxy {addr} on {dev}"))
}

pub async fn del_proxy(handle: &Handle, dev: &IfName, addr: IpAddr) -> Result<(), ApplyError> {
    let Some(link) = super::find_link(handle, dev).await? else { return Ok(()) };
    idempotent(
        handle.neighbours().del(proxy_message(link.index, addr)).execute().await,
        &[libc::ENOENT, libc::ENODEV],
        format!("removing proxy {addr} on {dev}"),
    )
}
