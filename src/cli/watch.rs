//! `vifnet watch`: follows routed guests' carriers. A vif's carrier comes up when its
//! guest's netfront connects (the guest runs here) and goes down when it goes (the guest
//! stopped, or moved away by `xl migrate`). The kernel marks the vif's routes dead then
//! (route mode sets ignore_routes_with_linkdown on each vif), but tells no listener for
//! IPv4; this puts the routes again at each change, so that BIRD learns at once whether
//! to announce them instead of at its next scan. Runs until killed (vifnet-watch.service);
//! without it BIRD's scan (one second in examples/route-bgp/bird.conf) does the same, later.

use std::collections::HashMap;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::sys::AsyncSocket;
use netlink_packet_route::link::LinkFlags;
use netlink_packet_route::RouteNetlinkMessage;

use crate::plan::{route as plan_route, VifJournal};
use crate::{apply, log, observe, state};

#[derive(clap::Args, Debug)]
pub struct WatchArgs {}

pub fn run(_args: WatchArgs) -> Result<()> {
    let rt = crate::cli::runtime()?;
    rt.block_on(async {
        let (mut conn, _, mut events) = rtnetlink::new_connection().context("netlink")?;
        let groups = rtnetlink::sys::SocketAddr::new(0, rtnetlink::constants::RTMGRP_LINK);
        conn.socket_mut().socket_mut().bind(&groups).context("listening to link changes")?;
        tokio::spawn(conn);
        let handle = apply::connect()?;
        // The carrier last seen, by interface index, from a dump taken once subscribed: a
        // change is what counts, not another of the link's news (an MTU, a rename).
        let mut links = handle.link().get().execute();
        let mut carrier: HashMap<u32, bool> = HashMap::new();
        while let Some(link) = links.try_next().await.context("links")? {
            carrier.insert(link.header.index, link.header.flags.contains(LinkFlags::LowerUp));
        }
        log::info("watching routed vifs' carriers");
        while let Some((msg, _)) = events.next().await {
            let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) = msg.payload else { continue };
            let up = link.header.flags.contains(LinkFlags::LowerUp);
            // A link new since the dump starts with its state: nothing changed yet.
            if carrier.insert(link.header.index, up).is_none_or(|was| was == up) {
                continue;
            }
            let Some(name) = observe::link_message_name(&link) else { continue };
            let Some(rec) = routed_vif(&name) else { continue };
            // A vif gone meanwhile, or a route an offline just took: the next event says.
            let ignoring = [false, true].map(|v6| observe::sysctl(&plan_route::linkdown_key(&rec.name, v6)).as_deref() == Some("1"));
            match apply::setup(&handle, &plan_route::carrier_changed(&rec, up, ignoring)).await {
                Ok(()) => log::info(&format!("{name}: carrier {}: routes given again", if up { "up" } else { "down" })),
                Err(e) => log::info(&format!("{name}: carrier {}: {e}", if up { "up" } else { "down" })),
            }
        }
        Ok(())
    })
}

/// The route mode journal of the vif now named `name` (after any vifname rename).
fn routed_vif(name: &str) -> Option<plan_route::RouteVifRecord> {
    let direct = state::read_vif(name).ok().flatten().and_then(|j| j.route().cloned());
    direct.or_else(|| {
        state::all_vifs().ok()?.into_iter().find_map(|j| match j {
            VifJournal::Route(r) if r.name.as_str() == name => Some(r),
            _ => None,
        })
    })
}
