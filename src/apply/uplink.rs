//! Moving addresses and routes between the uplink and the bridge, message by message.

use rtnetlink::Handle;

use super::{errno, link_index, ApplyError};
use crate::plan::takeover::UplinkStep;

/// EEXIST on add and ESRCH/EADDRNOTAVAIL/ENOENT on delete mean the step is done already.
fn done_already(e: &rtnetlink::Error, codes: &[i32]) -> bool {
    errno(e).is_some_and(|c| codes.contains(&c))
}

pub async fn run(handle: &Handle, step: &UplinkStep) -> Result<(), ApplyError> {
    let what = step.to_string();
    match step {
        UplinkStep::AddAddr { dev, msg } => {
            let mut m = msg.clone();
            m.header.index = link_index(handle, dev).await?;
            let mut req = handle.address().add(m.header.index, std::net::Ipv4Addr::UNSPECIFIED.into(), 0);
            *req.message_mut() = m;
            match req.execute().await {
                Err(e) if done_already(&e, &[libc::EEXIST]) => Ok(()),
                r => r.map_err(ApplyError::netlink(what)),
            }
        }
        UplinkStep::DelAddr { dev, msg } => {
            let mut m = msg.clone();
            m.header.index = link_index(handle, dev).await?;
            match handle.address().del(m).execute().await {
                Err(e) if done_already(&e, &[libc::EADDRNOTAVAIL, libc::ENOENT, libc::ESRCH]) => Ok(()),
                r => r.map_err(ApplyError::netlink(what)),
            }
        }
        UplinkStep::AddRoute { dev, msg } => {
            let mut m = msg.clone();
            m.attributes.push(netlink_packet_route::route::RouteAttribute::Oif(link_index(handle, dev).await?));
            match handle.route().add(m).execute().await {
                Err(e) if done_already(&e, &[libc::EEXIST]) => Ok(()),
                r => r.map_err(ApplyError::netlink(what)),
            }
        }
        UplinkStep::DelRoute { dev, msg } => {
            let mut m = msg.clone();
            m.attributes.push(netlink_packet_route::route::RouteAttribute::Oif(link_index(handle, dev).await?));
            match handle.route().del(m).execute().await {
                Err(e) if done_already(&e, &[libc::ESRCH, libc::ENOENT]) => Ok(()),
                r => r.map_err(ApplyError::netlink(what)),
            }
        }
        UplinkStep::Enslave { port, bridge } => {
            let p = link_index(handle, port).await?;
            let b = link_index(handle, bridge).await?;
            let up = |i| rtnetlink::LinkUnspec::new_with_index(i).up();
            handle.link().set(up(b).build()).execute().await.map_err(ApplyError::netlink(what.clone()))?;
            handle.link().set(up(p).controller(b).build()).execute().await.map_err(ApplyError::netlink(what))
        }
        UplinkStep::Release { port } => {
            let p = link_index(handle, port).await?;
            handle
                .link()
                .set(rtnetlink::LinkUnspec::new_with_index(p).nocontroller().build())
                .execute()
                .await
                .map_err(ApplyError::netlink(what))
        }
    }
}
