//! Moving addresses and routes between the uplink and the bridge, message by message.

use rtnetlink::Handle;

use super::{idempotent, link_index, ApplyError};
use crate::plan::takeover::UplinkStep;

pub async fn run(handle: &Handle, step: &UplinkStep) -> Result<(), ApplyError> {
    let what = step.to_string();
    match step {
        UplinkStep::AddAddr { dev, msg } => {
            let mut m = msg.clone();
            m.header.index = link_index(handle, dev).await?;
            let mut req = handle.address().add(m.header.index, std::net::Ipv4Addr::UNSPECIFIED.into(), 0);
            *req.message_mut() = m;
            idempotent(req.execute().await, &[libc::EEXIST], what)
        }
        UplinkStep::DelAddr { dev, msg } => {
            let mut m = msg.clone();
            m.header.index = link_index(handle, dev).await?;
            idempotent(handle.address().del(m).execute().await, &[libc::EADDRNOTAVAIL, libc::ENOENT, libc::ESRCH], what)
        }
        UplinkStep::AddRoute { dev, msg } => {
            let mut m = msg.clone();
            m.attributes.push(netlink_packet_route::route::RouteAttribute::Oif(link_index(handle, dev).await?));
            idempotent(handle.route().add(m).execute().await, &[libc::EEXIST], what)
        }
        UplinkStep::DelRoute { dev, msg } => {
            let mut m = msg.clone();
            m.attributes.push(netlink_packet_route::route::RouteAttribute::Oif(link_index(handle, dev).await?));
            idempotent(handle.route().del(m).execute().await, &[libc::ESRCH, libc::ENOENT], what)
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
