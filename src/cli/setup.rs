//! `vifnet setup --simulate [--xend-config F] [--xl-conf F] DOMAIN.cfg...`: a whole Xen
//! network configuration brought up with stand-in guests in network namespaces, checked with
//! real traffic, and removed again (unless --keep). No hypervisor needed.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::apply::simulate;
use crate::config::domain::DomainConfig;
use crate::config::sxp::XendConfig;
use crate::config::xlconf::XlConf;
use crate::plan::simulate::{lab, Lab};

#[derive(clap::Args, Debug)]
pub struct SetupArgs {
    /// Build the configuration in network namespaces with stand-in guests (the only way for now).
    #[arg(long)]
    simulate: bool,
    /// xend-config.sxp: (network-script ...) and (vif-script ...) choose the mode and its arguments.
    #[arg(long, value_name = "FILE")]
    xend_config: Option<PathBuf>,
    /// xl.conf: vif.default.script / vif.default.bridge.
    #[arg(long, value_name = "FILE")]
    xl_conf: Option<PathBuf>,
    /// Mode files to use (instead of an empty directory, i.e. the shipped defaults).
    #[arg(long, value_name = "DIR")]
    modes_dir: Option<PathBuf>,
    /// Names of the namespaces start with this (default: vfsim<pid>).
    #[arg(long)]
    prefix: Option<String>,
    /// Leave the lab up; remove it later with --teardown and the same prefix and files.
    #[arg(long)]
    keep: bool,
    /// Remove a lab left up by --keep.
    #[arg(long)]
    teardown: bool,
    /// Parse everything and print the lab, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// xl domain configs: name and vif = [ ... ].
    #[arg(value_name = "DOMAIN.cfg")]
    domains: Vec<PathBuf>,
}

pub fn run(args: SetupArgs) -> Result<()> {
    let xend = args.xend_config.as_ref().map(XendConfig::from_file).transpose()?;
    let xl = args.xl_conf.as_ref().map(XlConf::from_file).transpose()?;
    let domains = args.domains.iter().map(DomainConfig::from_file).collect::<Result<Vec<_>, _>>()?;
    if !args.simulate {
        bail!("setup: only --simulate is available (on a Xen host, libxl runs vifnet as the vif script)");
    }
    let prefix = args.prefix.clone().unwrap_or_else(|| format!("vfsim{}", std::process::id()));
    let lab = lab(&prefix, xend.as_ref(), xl.as_ref(), &domains)?;
    if args.dry_run {
        print_lab(&lab);
        return Ok(());
    }
    let state_dir = std::env::temp_dir().join(format!("{prefix}-state"));
    let empty_modes = std::env::temp_dir().join(format!("{prefix}-modes"));
    std::fs::create_dir_all(&empty_modes).context("creating a mode directory")?;
    let modes_dir = args.modes_dir.clone().unwrap_or(empty_modes.clone());
    let dirs = Dirs { state: state_dir, modes: modes_dir, made: empty_modes };
    if args.teardown {
        return teardown(&lab, &dirs);
    }
    let result = bring_up_and_check(&lab, &dirs);
    if args.keep && result.is_ok() {
        println!("left up; remove with: vifnet setup --simulate --teardown --prefix {prefix} (same files)");
        return result;
    }
    let down = teardown(&lab, &dirs);
    result.and(down)
}

struct Dirs {
    state: PathBuf,
    modes: PathBuf,
    made: PathBuf,
}

fn print_lab(lab: &Lab) {
    println!("mode {}: dom0 {} (uplink {}), lan host {}", lab.mode, lab.dom0, lab.uplink, lab.lan);
    let args: Vec<String> = lab.network_args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("  network {} start {}", lab.mode, args.join(" "));
    for g in &lab.guests {
        for v in &g.vifs {
            let s: Vec<String> = v.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("  guest {} ({}): vif {} online {}", g.name, g.netns, v.kernel_name(), s.join(" "));
        }
    }
}

fn bring_up_and_check(lab: &Lab, d: &Dirs) -> Result<()> {
    print_lab(lab);
    simulate::build(lab)?;
    let mut start = vec!["network".to_string(), lab.mode.clone(), "start".into()];
    start.extend(lab.network_args.iter().map(|(k, v)| format!("{k}={v}")));
    simulate::vifnet_in(&lab.dom0, &d.state, &d.modes, &start, &[])?;
    let mut status = vec!["network".to_string(), lab.mode.clone(), "status".into()];
    status.extend(lab.network_args.iter().filter(|(k, _)| *k == "bridge").map(|(k, v)| format!("{k}={v}")));
    print!("{}", simulate::vifnet_in(&lab.dom0, &d.state, &d.modes, &status, &[])?);
    for g in &lab.guests {
        for v in &g.vifs {
            let mut online = vec!["vif".to_string(), lab.mode.clone(), "online".into(), "type_if=vif".into()];
            online.extend(v.settings.iter().map(|(k, v)| format!("{k}={v}")));
            simulate::vifnet_in(&lab.dom0, &d.state, &d.modes, &online, &[("vif", v.kernel_name())])?;
        }
    }
    print!("{}", simulate::vifnet_in(&lab.dom0, &d.state, &d.modes, &["status".into()], &[])?);
    let mut failed = Vec::new();
    for g in &lab.guests {
        for (dst, what) in [("192.0.2.1", "lan host 192.0.2.1"), ("2001:db8::1", "lan host 2001:db8::1")] {
            let wants_v6 = dst.contains(':');
            if g.vifs.iter().any(|v| v.guest_addrs.iter().any(|a| a.contains(':') == wants_v6)) {
                let ok = simulate::ping(&g.netns, dst, None);
                println!("check: guest {} pings the {what}: {}", g.name, if ok { "yes" } else { "NO" });
                if !ok {
                    failed.push(format!("guest {} cannot reach the {what}", g.name));
                }
            }
        }
    }
    // Antispoofing: the first guarded guest tries an address that is not its own.
    if let Some(g) = lab.guests.iter().find(|g| g.vifs.first().is_some_and(|v| !v.guest_addrs.is_empty() && v.settings.get("antispoof") != Some("no"))) {
        let spoofed = "192.0.2.99";
        simulate::add_guest_addr(&g.netns, "eth0", &format!("{spoofed}/24"))?;
        let passed = simulate::ping(&g.netns, "192.0.2.1", Some(spoofed));
        println!("check: guest {} sending from {spoofed}, not its own: {}", g.name, if passed { "PASSED (bad)" } else { "dropped" });
        if passed {
            failed.push(format!("a spoofed source from guest {} was not dropped", g.name));
        }
    }
    if !failed.is_empty() {
        bail!("simulation checks failed: {}", failed.join("; "));
    }
    println!("all checks passed");
    Ok(())
}

fn teardown(lab: &Lab, d: &Dirs) -> Result<()> {
    let mut errors = Vec::new();
    if std::path::Path::new("/run/netns").join(&lab.dom0).exists() {
        for g in &lab.guests {
            for v in &g.vifs {
                let off = vec!["vif".to_string(), lab.mode.clone(), "offline".into(), "type_if=vif".into()];
                if let Err(e) = simulate::vifnet_in(&lab.dom0, &d.state, &d.modes, &off, &[("vif", v.kernel_name())]) {
                    errors.push(e.to_string());
                }
            }
        }
        let mut stop = vec!["network".to_string(), lab.mode.clone(), "stop".into()];
        stop.extend(lab.network_args.iter().filter(|(k, _)| *k == "bridge").map(|(k, v)| format!("{k}={v}")));
        if let Err(e) = simulate::vifnet_in(&lab.dom0, &d.state, &d.modes, &stop, &[]) {
            errors.push(e.to_string());
        }
    }
    errors.extend(simulate::remove(lab));
    let _ = std::fs::remove_dir_all(&d.state);
    let _ = std::fs::remove_dir(&d.made);
    println!("removed the lab ({} namespaces)", lab.guests.len() + 2);
    if !errors.is_empty() {
        bail!("teardown: {}", errors.join("; "));
    }
    Ok(())
}
