//! `vifnet reload`: everything again from the journals and the current mode files, e.g.
//! after `nft flush ruleset` (a reload of nftables.service does one) or an edit of a mode
//! file: a started mode takes its changed file (`changed_mode`), then whatever else drifted
//! is mended (`check --repair`).

use anyhow::Result;

use super::{changed_mode, mend};
use crate::{apply, log, state};

#[derive(clap::Args, Debug)]
pub struct ReloadArgs {}

pub fn run(_args: ReloadArgs) -> Result<()> {
    let rt = crate::cli::runtime()?;
    let _lock = state::lock_for_change()?;
    rt.block_on(async {
        let handle = apply::connect()?;
        for m in ["route", "nat"] {
            changed_mode::take(&handle, m).await?;
        }
        let (_, snap, drifts) = mend::survey(&handle).await?;
        for d in &drifts {
            log::info(&format!("mending {d}"));
        }
        mend::mend(&handle, snap, drifts).await?;
        log::info("reloaded");
        Ok(())
    })
}
