//! `vifnet check [--json] [--repair]`: every difference between what vifnet recorded (the
//! journals, the started modes' records and their mode files) and what the kernel, nft,
//! dnsmasq and the hosts and ethers files have. Exit 0 when there is none, 2 when there is
//! drift; `--repair` mends it all (as `reload` does).

use anyhow::Result;

use super::mend;
use crate::{apply, log, state};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// One JSON array of differences (subject, object, problem) instead of lines.
    #[arg(long)]
    json: bool,
    /// Mend every difference: re-apply what is missing, undo the state of vifs whose device
    /// is gone, remove what is ours and unaccounted for, reload a changed mode file.
    #[arg(long)]
    repair: bool,
}

/// Exit status of a check that found drift.
pub const DRIFT: i32 = 2;

pub fn run(args: CheckArgs) -> Result<i32> {
    let rt = crate::cli::runtime()?;
    // A check between a concurrent online's journal and its plan would see a half-made vif.
    let _lock = state::lock_for_change()?;
    rt.block_on(async {
        let handle = apply::connect()?;
        let (_, snap, drifts) = mend::survey(&handle).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&drifts)?);
        } else {
            for d in &drifts {
                println!("{d}");
            }
        }
        if drifts.is_empty() {
            if !args.json {
                println!("all as recorded");
            }
            return Ok(0);
        }
        if !args.repair {
            return Ok(DRIFT);
        }
        mend::mend(&handle, snap, drifts).await?;
        log::info("repaired");
        Ok(0)
    })
}
