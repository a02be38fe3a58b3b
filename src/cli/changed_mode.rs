//! A started route or nat mode whose mode file changed: with no guest online it is stopped
//! and started again with the file; under online guests only the keys that can change under
//! them (route: uplink_proxy, antispoof; nat: antispoof) are taken, for the mode and every
//! guest, and anything else is refused with one line and nothing changed.

use anyhow::{bail, Context, Result};

use crate::config::inputs;
use crate::model::RoutedVif;
use crate::plan::check::{mode_changes, ModeChange};
use crate::plan::nft::{diff, Table};
use crate::plan::route::{HostFacts, HostRecord, RouteVifRecord};
use crate::plan::{nat as plan_nat, route as plan_route, Plan, Step, VifJournal};
use crate::{apply, log, observe, state};

/// A started mode again under its current mode file (and the arguments it started with).
pub async fn take(handle: &rtnetlink::Handle, mode: &str) -> Result<()> {
    match mode {
        "route" => route(handle).await,
        "nat" => nat(handle).await,
        _ => Ok(()),
    }
}

/// Refuses changes of keys other than `live` while `online` guests run on the mode.
fn refuse_unless_live(mode: &str, changes: &[ModeChange], live: &[&str], online: &[String]) -> Result<()> {
    if let Some(c) = changes.iter().find(|c| !live.contains(&c.key.as_str())) {
        bail!(
            "{mode} mode file: {} changed ({} -> {}) while guests are online ({}); under running guests reload takes only {}: take them offline, then `vifnet network {mode} stop` and `start`",
            c.key,
            c.was,
            c.now,
            online.join(" "),
            live.join(" and ")
        );
    }
    Ok(())
}

async fn route(handle: &rtnetlink::Handle) -> Result<()> {
    let Some(rec) = state::read_host::<HostRecord>("route")? else { return Ok(()) };
    let now = inputs::route_mode(&inputs::from_args(&rec.args))?;
    let changes = mode_changes("route", &rec.mode, &now);
    if changes.is_empty() {
        return Ok(());
    }
    let online: Vec<RouteVifRecord> = state::all_vifs()?.into_iter().filter_map(|j| j.route().cloned()).collect();
    let facts = observe::route_host(handle, &now).await?;
    // Planned before anything changes: a mode file that cannot start is refused here.
    let (plan, fresh) = plan_route::host_up(&now, &facts).context("route mode file")?;
    if online.is_empty() {
        let down = plan_route::host_down(&rec, &HostFacts { sysctls: observe::sysctls_now(&rec.sysctls), ..Default::default() });
        apply::teardown(handle, &down).await?;
        state::remove_host("route")?;
        let facts = observe::route_host(handle, &now).await?;
        let (plan, fresh) = plan_route::host_up(&now, &facts)?;
        return restart(handle, "route", &plan, &HostRecord { args: rec.args.clone(), ..fresh }).await;
    }
    let names: Vec<String> = online.iter().map(|r| r.kernel_name.to_string()).collect();
    refuse_unless_live("route", &changes, &["uplink_proxy", "antispoof"], &names)?;
    // The sysctls the new settings need are added to those start changed, with the value
    // they had before start where start changed them first.
    let mut host = HostRecord { mode: now.clone(), uplink: rec.uplink.clone().or(fresh.uplink), dropin: fresh.dropin, ..rec.clone() };
    host.sysctls.extend(fresh.sysctls.into_iter().filter(|c| !rec.sysctls.iter().any(|o| o.key == c.key)));
    state::write_host("route", &host)?;
    apply::setup(handle, &plan).await?;
    let antispoof_changed = changes.iter().any(|c| c.key == "antispoof");
    for r in online {
        let vif = RoutedVif {
            kernel_name: r.kernel_name.clone(),
            name: r.name.clone(),
            dev_type: r.dev_type,
            ips: r.ips.clone(),
            mtu: r.mtu,
            antispoof: if antispoof_changed { now.antispoof } else { r.antispoof },
        };
        let facts = observe::vif_links(handle, &vif.kernel_name, &vif.name).await?;
        // A journal from before `gateway` had the gateway's addresses on the vif: answered the
        // new way from now on, its addresses go.
        let gateway = if r.answered.is_empty() { r.gateway.clone() } else { r.answered.clone() };
        let sysctls = observe::route_vif_sysctls(&vif.kernel_name, &vif.name);
        let (plan, mut new) = plan_route::vif_up(&vif, &host, &facts, gateway, &sysctls, Some(&r))?;
        new.origin = r.origin.clone();
        state::write_vif(&VifJournal::Route(new))?;
        apply::setup(handle, &plan).await?;
    }
    log::info(&format!("route mode: {} taken for {}", keys(&changes), names.join(" ")));
    Ok(())
}

async fn nat(handle: &rtnetlink::Handle) -> Result<()> {
    let Some(rec) = state::read_host::<plan_nat::NatHostRecord>("nat")? else { return Ok(()) };
    let now = inputs::nat_mode(&inputs::from_args(&rec.args))?;
    let changes = mode_changes("nat", &rec.mode, &now);
    if changes.is_empty() {
        return Ok(());
    }
    let online: Vec<plan_nat::NatVifRecord> = state::all_vifs()?.into_iter().filter_map(|j| j.nat().cloned()).collect();
    let facts = observe::nat_host(handle, &now).await?;
    plan_nat::host_up(&now, &facts, &state::dir()).context("nat mode file")?;
    if online.is_empty() {
        apply::teardown(handle, &plan_nat::host_down(&rec, &observe::sysctls_now(&rec.sysctls))).await?;
        state::remove_host("nat")?;
        let facts = observe::nat_host(handle, &now).await?;
        let (plan, fresh) = plan_nat::host_up(&now, &facts, &state::dir())?;
        return restart(handle, "nat", &plan, &plan_nat::NatHostRecord { args: rec.args.clone(), ..fresh }).await;
    }
    let names: Vec<String> = online.iter().map(|r| r.kernel_name.to_string()).collect();
    refuse_unless_live("nat", &changes, &["antispoof"], &names)?;
    state::write_host("nat", &plan_nat::NatHostRecord { mode: now.clone(), ..rec.clone() })?;
    for r in online {
        let new = plan_nat::NatVifRecord { antispoof: now.antispoof, ..r.clone() };
        let mut plan = Plan::default();
        if new.antispoof {
            plan.push(Step::EnsureNftTable(Table::Inet));
        }
        plan.push(Step::NftElements(Table::Inet, diff(&plan_nat::record_elements(&r), &plan_nat::record_elements(&new))));
        state::write_vif(&VifJournal::Nat(new))?;
        apply::setup(handle, &plan).await?;
    }
    log::info(&format!("nat mode: {} taken for {}", keys(&changes), names.join(" ")));
    Ok(())
}

/// Starts a mode again with its new record, journalled first; a failure takes it back.
async fn restart<H: serde::Serialize>(handle: &rtnetlink::Handle, mode: &str, plan: &Plan, record: &H) -> Result<()> {
    state::write_host(mode, record)?;
    if let Err(e) = apply::setup(handle, plan).await {
        state::remove_host(mode)?;
        return Err(anyhow::anyhow!(e).context(format!("{mode} mode: starting again with its new mode file (it is stopped)")));
    }
    log::info(&format!("{mode} mode: started again with its new mode file"));
    Ok(())
}

fn keys(changes: &[ModeChange]) -> String {
    changes.iter().map(|c| format!("{} {} -> {}", c.key, c.was, c.now)).collect::<Vec<_>>().join(", ")
}
