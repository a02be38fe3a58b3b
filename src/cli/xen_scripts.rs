//! `vifnet install-xen-scripts` / `uninstall-xen-scripts [--dir D] [--no-divert]`: Xen's
//! own script names pointed at vifnet, so that `script=vif-bridge` (xl's default) runs us,
//! and given back. The package never does this by itself.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::plan::xen_scripts::{self as plan, KeepAside};
use crate::{apply, observe};

#[derive(clap::Args, Debug)]
pub struct XenScriptsArgs {
    /// Xen's scripts directory, under --root.
    #[arg(long, default_value = "/etc/xen/scripts")]
    dir: PathBuf,
    /// The root the directory, the links and dpkg's database are under (default:
    /// $DPKG_ROOT, as dpkg sets it for a package's scripts, or /): a staged install.
    #[arg(long)]
    root: Option<PathBuf>,
    /// What the links point at, as seen under the root (default: this vifnet).
    #[arg(long)]
    target: Option<PathBuf>,
    /// Keep Xen's scripts aside by renaming them to <name>.xen, not by dpkg-divert (a host
    /// without dpkg needs no flag).
    #[arg(long)]
    no_divert: bool,
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
    let root = args.root.clone().or_else(|| std::env::var_os("DPKG_ROOT").filter(|r| !r.is_empty()).map(PathBuf::from)).unwrap_or_else(|| "/".into());
    let in_root = Path::new("/").join(&args.dir);
    let dir = root.join(in_root.strip_prefix("/").unwrap_or(&in_root));
    if !dir.is_dir() {
        anyhow::bail!("{verb}: --dir {}: no such directory (is Xen installed?)", dir.display());
    }
    let keep = if !args.no_divert && observe::health::on_path("dpkg-divert") { KeepAside::Dpkg { root: root.clone() } } else { KeepAside::Rename };
    let target = match args.target {
        Some(t) => t,
        // Without /proc (a chroot), where the package puts it.
        None => match std::env::current_exe() {
            Ok(exe) => exe.strip_prefix(&root).map(|t| Path::new("/").join(t)).unwrap_or(exe),
            Err(_) => PathBuf::from("/usr/sbin/vifnet"),
        },
    };
    let facts = observe::xen_scripts::names(&dir, &in_root, &keep).with_context(|| format!("{verb}: reading {}", dir.display()))?;
    let steps = if install { plan::install(&facts, &keep).context(verb)? } else { plan::uninstall(&facts, &keep) };
    for s in &steps {
        println!("{}: {s}", in_root.display());
    }
    if !args.dry_run {
        apply::xen_scripts::run(&dir, &in_root, &target, &keep, &steps).context(verb)?;
    }
    Ok(())
}
