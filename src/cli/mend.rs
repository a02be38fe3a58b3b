//! Survey and mend, shared by `check --repair` and `reload`: what vifnet recorded against
//! what the host has, and the steps that make them one again.

use anyhow::{bail, Result};

use super::{changed_mode, undo};
use crate::config::inputs::{self, Inputs};
use crate::plan::check::{self as plan_check, Drift, Expected, Fix, JournalEntry, Snapshot};
use crate::plan::nft::Table;
use crate::plan::{nat as plan_nat, route as plan_route};
use crate::{apply, observe, state};

/// What vifnet recorded, what the host has, and every difference.
pub async fn survey(handle: &rtnetlink::Handle) -> Result<(Expected, Snapshot, Vec<Drift>)> {
    let exp = expected()?;
    let mut snap = observe::snapshot::snapshot(handle, &plan_check::needs(&exp)).await?;
    for table in [Table::Bridge, Table::Inet] {
        if let Some(elems) = apply::nft::elements(table)? {
            snap.elems.push((table, elems));
        }
    }
    let drifts = plan_check::drift(&exp, &snap);
    Ok((exp, snap, drifts))
}

/// The journals, the started modes' records, and what their mode files say now.
fn expected() -> Result<Expected> {
    let mut exp = Expected::default();
    for f in state::journal_files()? {
        exp.journals.push(match f.journal {
            Ok(j) => JournalEntry::Read(j),
            Err(e) => JournalEntry::Corrupt { kernel_name: f.kernel_name, error: e.to_string() },
        });
    }
    exp.dropins = ["route", "nat"].iter().map(|m| (*m, crate::names::sysctl_dropin_path(m))).collect();
    exp.route = state::read_host::<plan_route::HostRecord>("route")?;
    exp.nat = state::read_host::<plan_nat::NatHostRecord>("nat")?;
    if let Some(r) = &exp.route {
        match inputs::route_mode(&inputs::from_args(&r.args)) {
            Ok(now) => exp.mode_changes.extend(plan_check::mode_changes("route", &r.mode, &now)),
            Err(e) => exp.mode_errors.push(("route", e.to_string())),
        }
    }
    if let Some(n) = &exp.nat {
        match inputs::nat_mode(&inputs::from_args(&n.args)) {
            Ok(now) => exp.mode_changes.extend(plan_check::mode_changes("nat", &n.mode, &now)),
            Err(e) => exp.mode_errors.push(("nat", e.to_string())),
        }
    }
    Ok(exp)
}

/// Mends `drifts`: first what changes the records (unreadable journals forgotten, stale
/// ones undone, changed mode files reloaded), then, read again, what is missing is made
/// and what nothing accounts for is removed. Every step is idempotent.
pub async fn mend(handle: &rtnetlink::Handle, snap: Snapshot, drifts: Vec<Drift>) -> Result<()> {
    let mut modes: Vec<&'static str> = Vec::new();
    let mut records_changed = false;
    for d in &drifts {
        match &d.fix {
            Fix::Forget(name) => {
                state::remove_vif(name)?;
                records_changed = true;
            }
            Fix::Undo(j) => {
                let plan = undo::down_plan(j, &Inputs::default())?;
                undo::apply_down(handle, j.kernel_name().as_str(), &plan).await?;
                records_changed = true;
            }
            Fix::Reload(mode) if !modes.contains(mode) => modes.push(mode),
            _ => {}
        }
    }
    for mode in modes {
        changed_mode::take(handle, mode).await?;
        records_changed = true;
    }
    let (mut snap, mut drifts) = if records_changed {
        let (_, snap, drifts) = survey(handle).await?;
        (snap, drifts)
    } else {
        (snap, drifts)
    };
    // What hangs off something missing (the gateway's addresses off its link) is seen
    // only once that is back: a few rounds, while each one leaves less.
    for round in 1.. {
        if drifts.is_empty() {
            break;
        }
        apply::setup(handle, &plan_check::additions(&drifts, &snap)).await?;
        apply::teardown(handle, &plan_check::removals(&drifts)).await?;
        let (_, s, d) = survey(handle).await?;
        if !d.is_empty() && (d == drifts || round == 3) {
            let left: Vec<String> = d.iter().map(|d| d.to_string()).collect();
            bail!("could not mend: {}", left.join("; "));
        }
        (snap, drifts) = (s, d);
    }
    Ok(())
}
