//! `vifnet install-xen-scripts` / `uninstall-xen-scripts [--dir D] [--no-divert]`: Xen's
//! own script names pointed at vifnet, so that `script=vif-bridge` (xl's default) runs us,
//! and given back. The package never does this by itself.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::plan::xen_scripts::{self as plan, KeepAside};
use crate::{apply, observe};

#[derive(clap::Args, Debug)]
pub struct XenScriptsArgs {
    /// Xen's scripts directory.
    #[arg(long, default_value = "/etc/xen/scripts")]
    dir: PathBuf,
    /// What the links point at (default: this vifnet).
    #[arg(long)]
    target: Option<PathBuf>,
    /// Keep Xen's scripts aside by renaming them to <name>.xen, not by dpkg-divert (a staged
    /// install; a host without dpkg needs no flag).
    #[arg(long)]
    no_divert: bool,
    /// dpkg's database directory for dpkg-divert (tests).
    #[arg(long, hide = true)]
    dpkg_admindir: Option<PathBuf>,
    /// Print what would change and change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn install(args: XenScriptsArgs) -> Result<()> {
    run(args, true)
}

pub fn uninstall(args: XenScriptsArgs) -> Result<()> {
    run(args, false)
}

fn run(args: XenScriptsArgs, install: bool) -> Result<()> {
    let verb = if install { "install-xen-scripts" } else { "uninstall-xen-scripts" };
    if !args.dir.is_dir() {
        anyhow::bail!("{verb}: --dir {}: no such directory (is Xen installed?)", args.dir.display());
    }
    let dpkg = !args.no_divert && which("dpkg-divert");
    let keep = if dpkg { KeepAside::Dpkg { admindir: args.dpkg_admindir.clone() } } else { KeepAside::Rename };
    let target = match args.target {
        Some(t) => t,
        None => std::env::current_exe().context("where this vifnet is")?,
    };
    let facts = observe::xen_scripts::names(&args.dir, &keep).with_context(|| format!("{verb}: reading {}", args.dir.display()))?;
    let steps = if install { plan::install(&facts, &keep).context(verb)? } else { plan::uninstall(&facts, &keep) };
    for s in &steps {
        println!("{}: {s}", args.dir.display());
    }
    if !args.dry_run {
        apply::xen_scripts::run(&args.dir, &target, &keep, &steps).context(verb)?;
    }
    Ok(())
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}
