//! `vifnet setup`: (being written)
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct SetupArgs {}

pub fn run(_args: SetupArgs) -> Result<()> {
    anyhow::bail!("setup: not written yet")
}
