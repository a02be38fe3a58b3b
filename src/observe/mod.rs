//! Reading the host: links, an uplink's addresses and routes, into the plan's fact types.
//! Reads only; nothing here changes anything.

use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::Handle;

use crate::model::{IfName, MacAddr};
use crate::names::LINK_ALIAS;
use crate::plan::bridge::{Facts, LinkFacts};
use crate::plan::takeover::UplinkFacts;

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

/// The facts a bridge-mode plan needs about `names`.
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
        .filter_map(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
        })
        .collect())
}

/// Everything a takeover moves: the uplink's MAC, MTU, addresses and routes of both
/// families in every table. None when there is no such link.
pub async fn uplink(handle: &Handle, name: &IfName) -> Result<Option<UplinkFacts>, ObserveError> {
    let Some(msg) = link(handle, name.as_str()).await? else { return Ok(None) };
    let lf = link_facts(&msg);
    let addrs = handle
        .address()
        .get()
        .set_link_index_filter(lf.index)
        .execute()
        .try_collect()
        .await
        .map_err(|err| ObserveError::Netlink { what: format!("addresses of {name}"), err })?;
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
