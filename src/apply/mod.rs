//! The only code that changes the host: netlink, nftables, files. A plan runs step by
//! step; if a step fails, the steps already done are undone in reverse (setup), or the
//! remaining steps still run and every failure is reported (teardown).

mod announce;
mod close_later;
mod dnsmasq;
mod fault;
mod files;
mod links;
pub mod nft;
pub mod nft_netlink;
mod routing;
pub mod simulate;
mod sysctl;
mod uplink;
pub mod xen_scripts;

use rtnetlink::Handle;

use crate::model::IfName;
use crate::observe;
use crate::plan::LinkFacts;

use crate::plan::{Plan, Step};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{what}: {err}")]
    Netlink { what: String, err: rtnetlink::Error },
    #[error("{what}: {message}")]
    Failed { what: String, message: String },
    #[error("nftables: {0}")]
    Nft(String),
}

impl ApplyError {
    pub fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> ApplyError {
        let what = what.into();
        move |err| ApplyError::Netlink { what, err }
    }
}

/// One link by name, as `observe` reads it; the one lookup every apply step uses.
pub(crate) async fn find_link(handle: &Handle, name: &IfName) -> Result<Option<LinkFacts>, ApplyError> {
    observe::link(handle, name.as_str())
        .await
        .map(|m| m.as_ref().map(observe::link_facts))
        .map_err(|e| ApplyError::Failed { what: name.to_string(), message: e.to_string() })
}

/// The link's index; a missing link is an error naming it.
pub(crate) async fn link_index(handle: &Handle, name: &IfName) -> Result<u32, ApplyError> {
    match find_link(handle, name).await? {
        Some(l) => Ok(l.index),
        None => Err(ApplyError::Failed { what: name.to_string(), message: "no such device".into() }),
    }
}

/// Every failure a teardown met; it kept going past each one.
#[derive(Debug)]
pub struct TeardownErrors(pub Vec<ApplyError>);

impl std::fmt::Display for TeardownErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all: Vec<String> = self.0.iter().map(|e| e.to_string()).collect();
        write!(f, "left something behind: {}", all.join("; "))
    }
}

impl std::error::Error for TeardownErrors {}

/// The errno of a netlink error answer, if it is one.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// A netlink answer where the errnos in `done` mean the change is there already (EEXIST on
/// an add) or gone already (ESRCH, ENOENT, EADDRNOTAVAIL on a delete): success.
pub(crate) fn idempotent(result: Result<(), rtnetlink::Error>, done: &[i32], what: String) -> Result<(), ApplyError> {
    match result {
        Err(e) if errno(&e).is_some_and(|c| done.contains(&c)) => Ok(()),
        r => r.map_err(ApplyError::netlink(what)),
    }
}

/// Opens a netlink route connection on the current thread's runtime. Strict checking
/// makes the kernel filter dumps (a port's addresses) itself, instead of sending every
/// address of every guest for us to sift: per-vif work stays O(1).
pub fn connect() -> std::io::Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection_with_strict_check()?;
    tokio::spawn(conn);
    Ok(handle)
}

async fn run_step(handle: &Handle, step: &Step) -> Result<(), ApplyError> {
    match step {
        Step::CreateBridge { name, mac, mtu } => links::create_bridge(handle, name, *mac, *mtu).await,
        Step::CreateDummy { name, no_driver_hint } => links::create_dummy(handle, name, *no_driver_hint).await,
        Step::DeleteLink { name } => links::delete(handle, name).await,
        Step::Rename { from, to } => links::rename(handle, from, to).await,
        Step::AttachPort { port, bridge, mtu } => links::attach_port(handle, port, bridge, *mtu).await,
        Step::DetachPort { port } => links::detach_port(handle, port).await,
        Step::LinkUp { dev, mtu } => links::up(handle, dev, *mtu).await,
        Step::LinkDown { dev } => links::down(handle, dev).await,
        Step::Sysctl { key, to, .. } => sysctl::write(key, to),
        Step::SysctlDropIn { mode, lines } => sysctl::drop_in(mode, lines.as_deref()),
        Step::WriteFile { path, to, .. } => files::replace(path, to),
        Step::AppendHostsLine { path, at, prefix, line } => files::append_hosts_line(path, *at, prefix, line),
        Step::TruncateHostsFile { path, len } => files::truncate_hosts_file(path, *len),
        Step::DropHostsIndex => files::drop_hosts_index(),
        Step::SignalDnsmasq { pidfile } => dnsmasq::reload(pidfile),
        Step::StartDnsmasq { config, text, pidfile } => dnsmasq::start(config, text, pidfile),
        Step::StopDnsmasq { pidfile, config } => dnsmasq::stop(pidfile, config),
        Step::EnsureNftNat => nft::ensure_nat(),
        Step::AddAddress { dev, addr } => routing::add_address(handle, dev, *addr).await,
        Step::DelAddress { dev, addr } => routing::del_address(handle, dev, *addr).await,
        Step::AddRoute { dest, dev, metric } => routing::add_route(handle, *dest, dev, *metric).await,
        Step::DelRoute { dest, dev, metric } => routing::del_route(handle, *dest, dev, *metric).await,
        Step::AddProxy { dev, addr } => routing::add_proxy(handle, dev, *addr).await,
        Step::DelProxy { dev, addr } => routing::del_proxy(handle, dev, *addr).await,
        Step::AddGatewayProxy { dev, addr } => routing::add_gateway_proxy(handle, dev, *addr).await,
        Step::Announce { dev, addrs } => announce::send(handle, dev, addrs).await,
        Step::EnsureNftTable(table) => nft::ensure_table(*table),
        Step::DeleteNftTableIfUnused(table) => nft::delete_table_if_unused(*table),
        Step::NftElements(table, changes) => nft::apply_elements(*table, changes),
        Step::Uplink(u) => uplink::run(handle, u).await,
    }
}

/// What undoes a step that succeeded, for rollback of a failed setup.
fn undo(step: &Step) -> Option<Step> {
    match step {
        Step::CreateBridge { name, .. } | Step::CreateDummy { name, .. } => Some(Step::DeleteLink { name: name.clone() }),
        Step::Rename { from, to } => Some(Step::Rename { from: to.clone(), to: from.clone() }),
        Step::AttachPort { port, .. } => Some(Step::DetachPort { port: port.clone() }),
        Step::LinkUp { dev, .. } => Some(Step::LinkDown { dev: dev.clone() }),
        Step::Sysctl { key, from, to } => Some(Step::Sysctl { key: key.clone(), from: to.clone(), to: from.clone() }),
        Step::SysctlDropIn { mode, lines: Some(_) } => Some(Step::SysctlDropIn { mode, lines: None }),
        Step::WriteFile { path, from, to } => Some(Step::WriteFile { path: path.clone(), from: to.clone(), to: from.clone() }),
        Step::AppendHostsLine { path, at, .. } => Some(Step::TruncateHostsFile { path: path.clone(), len: *at }),
        Step::StartDnsmasq { config, pidfile, .. } => Some(Step::StopDnsmasq { pidfile: pidfile.clone(), config: config.clone() }),
        Step::AddAddress { dev, addr } => Some(Step::DelAddress { dev: dev.clone(), addr: *addr }),
        Step::AddRoute { dest, dev, metric } => Some(Step::DelRoute { dest: *dest, dev: dev.clone(), metric: *metric }),
        Step::AddProxy { dev, addr } => Some(Step::DelProxy { dev: dev.clone(), addr: *addr }),
        Step::AddGatewayProxy { dev, addr } => Some(Step::DelProxy { dev: dev.clone(), addr: std::net::IpAddr::V6(*addr) }),
        Step::NftElements(table, changes) => Some(Step::NftElements(*table, changes.iter().rev().map(|c| c.inverse()).collect())),
        Step::Uplink(u) => Some(Step::Uplink(u.inverse())),
        Step::DeleteLink { .. }
        | Step::DetachPort { .. }
        | Step::LinkDown { .. }
        | Step::SysctlDropIn { lines: None, .. }
        | Step::SignalDnsmasq { .. }
        | Step::TruncateHostsFile { .. }
        | Step::DropHostsIndex
        | Step::StopDnsmasq { .. }
        | Step::EnsureNftNat
        | Step::DelAddress { .. }
        | Step::DelRoute { .. }
        | Step::DelProxy { .. }

        | Step::Announce { .. }
        | Step::EnsureNftTable(_)
        | Step::DeleteNftTableIfUnused(_) => None,
    }
}

/// Setup: all or nothing. On failure the done steps are undone, newest first, and the
/// first error is returned (with any rollback failure appended).
pub async fn setup(handle: &Handle, plan: &Plan) -> Result<(), ApplyError> {
    for (i, step) in plan.steps.iter().enumerate() {
        fault::point();
        if let Err(e) = run_step(handle, step).await {
            let mut failed_undo = Vec::new();
            for done in plan.steps[..i].iter().rev() {
                if let Some(u) = undo(done) {
                    if let Err(ue) = run_step(handle, &u).await {
                        failed_undo.push(ue.to_string());
                    }
                }
            }
            if failed_undo.is_empty() {
                return Err(e);
            }
            return Err(ApplyError::Failed {
                what: e.to_string(),
                message: format!("and rolling back failed too: {}", failed_undo.join("; ")),
            });
        }
    }
    Ok(())
}

/// Teardown: every step runs even when one fails, because a half-removed vif is worse
/// than a loud one; all failures come back.
pub async fn teardown(handle: &Handle, plan: &Plan) -> Result<(), TeardownErrors> {
    let mut errors = Vec::new();
    for step in &plan.steps {
        fault::point();
        if let Err(e) = run_step(handle, step).await {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(TeardownErrors(errors))
    }
}
