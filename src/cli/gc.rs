//! `vifnet gc [--dry-run]`: removes the state of vifs whose device and xenstore backend are
//! both gone (a guest destroyed without its offline), and nothing else: their elements,
//! routes, proxy entries and file lines, then their journals.

use anyhow::Result;

use super::undo;
use crate::config::inputs::Inputs;
use crate::plan::check::{collectable, Backend};
use crate::plan::{liveness, Liveness, VifJournal};
use crate::xenstore::XenStore;
use crate::{apply, log, observe, state};

#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// Print what would be removed and change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: GcArgs) -> Result<()> {
    let rt = crate::cli::runtime()?;
    let _lock = if args.dry_run { None } else { Some(state::lock_for_change()?) };
    rt.block_on(async {
        let handle = apply::connect()?;
        let links = observe::snapshot::links(&handle).await?;
        // Asked only if some journal names a backend: a host without Xen has no xenstore.
        let mut xs: Option<Option<XenStore>> = None;
        let mut removed = 0;
        for f in state::journal_files()? {
            let Ok(j) = f.journal else {
                // Unreadable: its device is all there is to go by.
                if !links.contains_key(&f.kernel_name) {
                    println!("{}: unreadable journal, device gone: removed", f.kernel_name);
                    if !args.dry_run {
                        state::remove_vif(&f.kernel_name)?;
                    }
                    removed += 1;
                }
                continue;
            };
            let live = liveness(&j, links.get(j.name().as_str()).map(|l| l.index));
            // xenstore is asked only about vifs whose device is gone.
            if live != Liveness::DeviceGone {
                continue;
            }
            let backend = backend_of(&j, &mut xs);
            if backend == Backend::Unknown {
                log::warn(&format!("{}: device gone, but xenstore cannot be asked about {}: kept", j.kernel_name(), j.origin().backend.as_deref().unwrap_or("-")));
            }
            if !collectable(live, backend) {
                continue;
            }
            let plan = undo::down_plan(&j, &Inputs::default())?;
            println!("{}: device and backend gone: {} mode state removed", j.kernel_name(), j.mode());
            if args.dry_run {
                print!("{plan}");
            } else {
                undo::apply_down(&handle, j.kernel_name().as_str(), &plan).await?;
            }
            removed += 1;
        }
        if removed == 0 {
            println!("nothing to collect");
        }
        Ok(())
    })
}

/// Whether the backend libxl named for this vif is still in xenstore.
fn backend_of(j: &VifJournal, xs: &mut Option<Option<XenStore>>) -> Backend {
    let Some(path) = j.origin().backend.as_deref() else { return Backend::Unnamed };
    let Some(x) = xs.get_or_insert_with(|| XenStore::connect().ok()) else { return Backend::Unknown };
    match x.read(path) {
        Ok(Some(_)) => Backend::There,
        Ok(None) => Backend::Gone,
        Err(_) => Backend::Unknown,
    }
}
