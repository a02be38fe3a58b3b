//! Links over rtnetlink: bridges and dummies of our own, renames, bridge ports, up and down.

use netlink_packet_route::link::BridgeStpState;
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, LinkBridge, LinkDummy, LinkMessageBuilder, LinkUnspec};

use super::{errno, find_link, link_index, ApplyError};
use crate::model::{IfName, MacAddr};
use crate::names::{LINK_ALIAS, PORT_MAC};

pub async fn create_bridge(handle: &Handle, name: &IfName, mac: Option<MacAddr>, mtu: Option<u32>) -> Result<(), ApplyError> {
    if find_link(handle, name).await?.is_some() {
        return Ok(());
    }
    // stp off and no forward delay, as Xen's create_bridge: ports forward at once.
    let mut b = LinkMessageBuilder::<LinkBridge>::new(name.as_str()).stp_state(BridgeStpState::Disabled).forward_delay(0);
    if let Some(mac) = mac {
        b = b.address(mac.0.to_vec());
    }
    if let Some(mtu) = mtu {
        b = b.mtu(mtu);
    }
    match handle.link().add(b.up().build()).execute().await {
        Err(e) if errno(&e) == Some(libc::EEXIST) => return Ok(()),
        r => r.map_err(ApplyError::netlink(format!("creating bridge {name}")))?,
    }
    // The kernel ignores an alias in RTM_NEWLINK: mark the bridge as ours separately.
    let index = link_index(handle, name).await?;
    set(handle, LinkUnspec::new_with_index(index).alias(LINK_ALIAS), name).await
}

/// A dummy link of our own. The first request for the kind makes the kernel load
/// dummy.ko, whose init creates `dummy0` itself (numdummies=1): our request for that very
/// name then fails with EEXIST. We asked for it, so the link is adopted as ours.
pub async fn create_dummy(handle: &Handle, name: &IfName, no_driver_hint: Option<&str>) -> Result<(), ApplyError> {
    if find_link(handle, name).await?.is_some() {
        return Ok(());
    }
    match handle.link().add(LinkMessageBuilder::<LinkDummy>::new(name.as_str()).build()).execute().await {
        Ok(()) => {}
        Err(e) if errno(&e) == Some(libc::EEXIST) => {
            let kind = find_link(handle, name).await?.and_then(|l| l.kind);
            if kind.as_deref() != Some("dummy") {
                return Err(ApplyError::Failed {
                    what: format!("creating dummy {name}"),
                    message: format!("a link of kind {} took the name first", kind.as_deref().unwrap_or("unknown")),
                });
            }
        }
        Err(e) if errno(&e) == Some(libc::EOPNOTSUPP) => {
            return Err(ApplyError::Failed {
                what: format!("creating dummy {name}"),
                message: match no_driver_hint {
                    Some(hint) => format!("this kernel has no dummy driver (CONFIG_DUMMY): {hint}"),
                    None => "this kernel has no dummy driver (CONFIG_DUMMY)".into(),
                },
            })
        }
        Err(e) => return Err(ApplyError::netlink(format!("creating dummy {name}"))(e)),
    }
    let index = link_index(handle, name).await?;
    set(handle, LinkUnspec::new_with_index(index).alias(LINK_ALIAS), name).await
}

/// Up, with the MTU if one is given (one message).
pub async fn up(handle: &Handle, dev: &IfName, mtu: Option<u32>) -> Result<(), ApplyError> {
    let index = link_index(handle, dev).await?;
    let mut b = LinkUnspec::new_with_index(index).up();
    if let Some(mtu) = mtu {
        b = b.mtu(mtu);
    }
    set(handle, b, dev).await
}

/// Down; a link that is gone already (the guest was destroyed) is success.
pub async fn down(handle: &Handle, dev: &IfName) -> Result<(), ApplyError> {
    let Some(facts) = find_link(handle, dev).await? else { return Ok(()) };
    match handle.link().set(LinkUnspec::new_with_index(facts.index).down().build()).execute().await {
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        r => r.map_err(ApplyError::netlink(format!("setting {dev} down"))),
    }
}

pub async fn delete(handle: &Handle, name: &IfName) -> Result<(), ApplyError> {
    let Some(facts) = find_link(handle, name).await? else { return Ok(()) };
    let index = facts.index;
    match handle.link().del(index).execute().await {
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        r => r.map_err(ApplyError::netlink(format!("deleting {name}"))),
    }
}

pub async fn rename(handle: &Handle, from: &IfName, to: &IfName) -> Result<(), ApplyError> {
    let Some(facts) = find_link(handle, from).await? else {
        // Renamed already (a repeated online), or gone: the next step will tell.
        return Ok(());
    };
    let index = facts.index;
    if facts.up {
        set(handle, LinkUnspec::new_with_index(index).down(), from).await?;
    }
    match handle.link().set(LinkUnspec::new_with_index(index).name(to.to_string()).build()).execute().await {
        Err(e) if errno(&e) == Some(libc::EEXIST) => Err(ApplyError::Failed {
            what: format!("vifname {to}"),
            message: format!("cannot rename {from}: an interface named {to} already exists"),
        }),
        r => r.map_err(ApplyError::netlink(format!("renaming {from} to {to}"))),
    }
}

async fn set(handle: &Handle, b: LinkMessageBuilder<LinkUnspec>, what: &IfName) -> Result<(), ApplyError> {
    handle.link().set(b.build()).execute().await.map_err(ApplyError::netlink(format!("setting {what}")))
}

/// Xen's setup_bridge_port + set_mtu + add_to_bridge, in as few messages as the kernel
/// allows: the MAC can only change while the link is down, and enslaving comes last.
pub async fn attach_port(handle: &Handle, port: &IfName, bridge: &IfName, mtu: u32) -> Result<(), ApplyError> {
    let Some(facts) = find_link(handle, port).await? else {
        return Err(ApplyError::Failed { what: port.to_string(), message: "no such device".into() });
    };
    let index = facts.index;
    let bridge_index = link_index(handle, bridge).await?;
    let needs_mac = facts.mac != Some(MacAddr(PORT_MAC));
    // Attached already (a second online): flushing again would take the link-local
    // address and route the kernel gave the port when it came up.
    if facts.up && !needs_mac && facts.master == Some(bridge_index) && facts.mtu == mtu {
        return Ok(());
    }
    if facts.up && (needs_mac || facts.master != Some(bridge_index)) {
        set(handle, LinkUnspec::new_with_index(index).down(), port).await?;
    }
    flush_addresses(handle, index, port).await?;
    let mut b = LinkUnspec::new_with_index(index).mtu(mtu).controller(bridge_index);
    if needs_mac {
        // Old netback refused MAC changes (xen 6e22a6ba68): a refusal is not fatal.
        let with_mac = LinkUnspec::new_with_index(index).address(PORT_MAC.to_vec());
        let _ = handle.link().set(with_mac.build()).execute().await;
    }
    b = b.up();
    match handle.link().set(b.build()).execute().await {
        // The kernel's limit on a bridge's ports (BR_MAX_PORTS), said so rather than as errno 54.
        Err(e) if errno(&e) == Some(libc::EXFULL) => Err(ApplyError::Failed {
            what: format!("attaching {port} to {bridge}"),
            message: format!("{bridge} has 1023 ports, as many as a Linux bridge takes: put further guests on another bridge (bridge= in their vif lines)"),
        }),
        r => r.map_err(ApplyError::netlink(format!("setting {port}"))),
    }
}

async fn flush_addresses(handle: &Handle, index: u32, port: &IfName) -> Result<(), ApplyError> {
    let addrs = crate::observe::address_messages(handle, index)
        .await
        .map_err(|e| ApplyError::Failed { what: format!("reading addresses of {port}"), message: e.to_string() })?;
    for a in addrs.into_iter().filter(|a| a.header.family == AddressFamily::Inet || a.header.family == AddressFamily::Inet6) {
        match handle.address().del(a).execute().await {
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => {}
            r => r.map_err(ApplyError::netlink(format!("removing an address of {port}")))?,
        }
    }
    Ok(())
}

pub async fn detach_port(handle: &Handle, port: &IfName) -> Result<(), ApplyError> {
    let Some(facts) = find_link(handle, port).await? else { return Ok(()) };
    let index = facts.index;
    let mut b = LinkUnspec::new_with_index(index).down();
    if facts.master.is_some() {
        b = b.nocontroller();
    }
    match handle.link().set(b.build()).execute().await {
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        r => r.map_err(ApplyError::netlink(format!("detaching {port}"))),
    }
}


