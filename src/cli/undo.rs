//! Taking a vif's state away by its journal. `offline`, an `online` that finds a stale
//! journal, `gc` and `check --repair` all undo the same way.

use anyhow::Result;

use crate::config::inputs::{self, Inputs};
use crate::model::DevType;
use crate::plan::{bridge as plan_bridge, nat as plan_nat, route as plan_route, Liveness, Plan, VifJournal};
use crate::{apply, log, observe, state};

/// The plan that removes what `journal` says its vif got. Nat mode needs its host-wide
/// settings (the files, dnsmasq): the started mode's, else the mode file's.
pub fn down_plan(journal: &VifJournal, inputs: &Inputs) -> Result<Plan> {
    Ok(match journal {
        VifJournal::Bridge(r) => plan_bridge::vif_down(r),
        VifJournal::Route(r) => plan_route::vif_down(r),
        VifJournal::Nat(r) => {
            let (mode, pidfile) = match state::read_host::<plan_nat::NatHostRecord>("nat")? {
                Some(h) => (h.mode.clone(), h.pidfile().to_path_buf()),
                None => {
                    let m = inputs::nat_mode(inputs)?;
                    let pidfile = m.dnsmasq_pidfile.clone();
                    (m, pidfile)
                }
            };
            plan_nat::vif_down(r, &mode, &pidfile, &observe::file_text(&mode.ethers)?)
        }
    })
}

/// Without a journal (state lost, never online, or unreadable): what the inputs describe,
/// where that is certain. A NATed vif's address cannot be known for sure, so none.
pub fn guessed(mode: &str, inputs: &Inputs, dev_type: DevType) -> Result<Option<VifJournal>> {
    let guess = match mode {
        "nat" => return Ok(None),
        "route" => {
            let mode = inputs::route_mode(inputs)?;
            let host = state::read_host::<plan_route::HostRecord>("route")?.unwrap_or_else(|| plan_route::HostRecord::not_started(&mode));
            inputs::routed_vif(inputs, &host.mode, dev_type).map(|v| VifJournal::Route(plan_route::record(&v, &host, plan_route::answered(&host.mode, &[]), &Default::default())))
        }
        _ => {
            let mode = inputs::bridge_mode(inputs)?;
            inputs::bridged_vif(inputs, &mode, dev_type).map(|v| VifJournal::Bridge(plan_bridge::record(&v, v.bridge.clone(), 0)))
        }
    };
    Ok(guess.ok())
}

/// Applies a down plan and forgets the journal: teardown keeps going past each failure,
/// and the journal stays when one happened, so that a retry knows what is left.
pub async fn apply_down(handle: &rtnetlink::Handle, kernel_name: &str, plan: &Plan) -> Result<()> {
    apply::teardown(handle, plan).await?;
    state::remove_vif(kernel_name)?;
    Ok(())
}

/// How the journal's device stands now: one link lookup.
pub async fn liveness(handle: &rtnetlink::Handle, journal: &VifJournal) -> Result<Liveness> {
    let index = observe::link(handle, journal.name().as_str()).await?.map(|m| m.header.index);
    Ok(crate::plan::liveness(journal, index))
}

/// An online's earlier journal, unless it is stale: then what it recorded is undone
/// first (its elements would guard a device that is not the guest's), and the online
/// proceeds as a first one. A dry run prints that undo.
pub async fn unless_stale(journal: VifJournal, inputs: &Inputs, dry_run: bool) -> Result<Option<VifJournal>> {
    let handle = apply::connect()?;
    let live = liveness(&handle, &journal).await?;
    if live == Liveness::Live {
        return Ok(Some(journal));
    }
    let plan = down_plan(&journal, inputs)?;
    if dry_run {
        print!("{plan}");
        return Ok(None);
    }
    log::info(&format!("{}: journal of {} mode is {live}; undoing it first", journal.kernel_name(), journal.mode()));
    apply_down(&handle, journal.kernel_name().as_str(), &plan).await?;
    Ok(None)
}
