//! `vifnet setup --simulate [--xend-config F] [--xl-conf F] DOMAIN.cfg...`: a whole Xen
//! network configuration brought up with stand-in guests in network namespaces, checked with
//! real traffic, and removed again (unless --keep). No hypervisor needed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::apply::simulate;
use crate::config::domain::DomainConfig;
use crate::config::inputs::{self, Inputs};
use crate::config::sxp::XendConfig;
use crate::config::xlconf::XlConf;
use crate::plan::simulate::{lab, network_args, selected_mode, Lab, SimMode, SPOOFED};

#[derive(clap::Args, Debug)]
pub struct SetupArgs {
    /// Build the configuration in network namespaces with stand-in guests (the only way for now).
    #[arg(long)]
    simulate: bool,
    /// xend-config.sxp: (network-script ...) and (vif-script ...) choose the mode and its arguments.
    #[arg(long, value_name = "FILE")]
    xend_config: Option<PathBuf>,
    /// xl.conf: vif.default.script / vif.default.bridge / vif.default.gatewaydev.
    #[arg(long, value_name = "FILE")]
    xl_conf: Option<PathBuf>,
    /// Mode files to use (instead of an empty directory, i.e. the shipped defaults); in
    /// route mode its route.toml's gateway says which blocks upstream routes to dom0.
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
    let empty_modes = std::env::temp_dir().join(format!("{prefix}-modes"));
    let modes_dir = args.modes_dir.clone().unwrap_or(empty_modes.clone());
    let mode = sim_mode(xend.as_ref(), xl.as_ref(), &modes_dir)?;
    let mut lab = lab(&prefix, xend.as_ref(), xl.as_ref(), &domains, &mode)?;
    if lab.gateway_on_dummy && !simulate::dummy_driver_present() {
        // Arguments of `network route start` win over the mode file, and every vif then
        // uses the settings start ran with: the example files stay as they are.
        lab.network_args.push("gateway_kind", "bridge");
        println!("note: no dummy driver is loaded or built in (loading one would add dummy0 to this host itself), so the lab holds the gateway on a bridge without ports (gateway_kind=bridge)");
    }
    if args.dry_run {
        print_lab(&lab);
        return Ok(());
    }
    let state_dir = std::env::temp_dir().join(format!("{prefix}-state"));
    std::fs::create_dir_all(&empty_modes).context("creating a mode directory")?;
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

/// The mode the configs select, with route mode's settings read as the lab's own vifnet
/// calls will read them: the mode files of `modes_dir`, network-script arguments over them.
fn sim_mode(xend: Option<&XendConfig>, xl: Option<&XlConf>, modes_dir: &Path) -> Result<SimMode> {
    match selected_mode(xend, xl)? {
        "route" => {
            let inputs = Inputs { args: network_args(xend), ..Default::default() };
            inputs.check_arg_keys(inputs::NETWORK_ROUTE_KEYS).context("xend-config.sxp network-script")?;
            Ok(SimMode::Route(inputs::route_mode_in(modes_dir, &inputs)?))
        }
        _ => Ok(SimMode::Bridge),
    }
}

struct Dirs {
    state: PathBuf,
    modes: PathBuf,
    made: PathBuf,
}

impl Dirs {
    /// vifnet in the lab's dom0, with the lab's state and mode directories.
    fn vifnet(&self, lab: &Lab, args: &[String], env: &[(&str, String)]) -> Result<String> {
        simulate::vifnet_in(&lab.dom0, &self.state, &self.modes, args, env)
    }
}

fn print_lab(lab: &Lab) {
    println!("mode {}: dom0 {} (uplink {}), lan host {}", lab.mode, lab.dom0, lab.uplink, lab.lan);
    println!("  {}", lab.network_call("start").join(" "));
    for r in &lab.lan_routes {
        println!("  lan host route {r}");
    }
    for g in &lab.guests {
        for v in &g.vifs {
            let s: Vec<String> = v.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("  guest {} ({}): vif {} online {}", g.name, g.netns, v.kernel_name(), s.join(" "));
            let mut side: Vec<String> = v.guest_addrs.iter().map(|a| a.to_string()).collect();
            side.extend(v.guest_routes.iter().map(|r| format!("route {r}")));
            if !side.is_empty() {
                println!("    {}: {}", v.guest_dev(), side.join(", "));
            }
        }
    }
}

fn bring_up_and_check(lab: &Lab, d: &Dirs) -> Result<()> {
    print_lab(lab);
    simulate::build(lab)?;
    d.vifnet(lab, &lab.network_call("start"), &[])?;
    print!("{}", d.vifnet(lab, &lab.network_call("status"), &[])?);
    for g in &lab.guests {
        for v in &g.vifs {
            d.vifnet(lab, &lab.vif_call(v, "online"), &[("vif", v.kernel_name())])?;
        }
    }
    print!("{}", d.vifnet(lab, &["status".into()], &[])?);
    let mut failed = Vec::new();
    let mut check = |what: String, ok: bool| {
        println!("check: {what}: {}", if ok { "yes" } else { "NO" });
        if !ok {
            failed.push(what);
        }
    };
    for g in &lab.guests {
        for (lan, v6) in [("192.0.2.1", false), ("2001:db8::1", true)] {
            if g.has_family(v6) {
                check(format!("guest {} pings the lan host {lan}", g.name), simulate::ping(&g.netns, lan, None));
            }
        }
    }
    // The other way: upstream reaches each guest (in route mode, through dom0's routes).
    for (g, addr) in lab.guest_addresses() {
        check(format!("the lan host pings guest {} at {addr}", g.name), simulate::ping(&lab.lan, &addr.to_string(), None));
    }
    // Antispoofing: a guarded guest sends from an address that is not its own; the lan host
    // must not see it. A /32 sends it the way the guest's own traffic goes.
    if let Some((g, v)) = lab.spoof_candidate() {
        simulate::add_guest_addr(&g.netns, &v.guest_dev(), &format!("{SPOOFED}/32"))?;
        let before = simulate::echo_requests_seen(&lab.lan)?;
        simulate::ping(&g.netns, "192.0.2.1", Some(SPOOFED));
        let arrived = simulate::echo_requests_seen(&lab.lan)? - before;
        println!("check: guest {} sending from {SPOOFED}, not its own: {}", g.name, if arrived == 0 { "dropped" } else { "REACHED the lan host" });
        if arrived != 0 {
            failed.push(format!("a spoofed source from guest {} reached the lan host", g.name));
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
    if Path::new("/run/netns").join(&lab.dom0).exists() {
            for g in &lab.guests {
            for v in &g.vifs {
                if let Err(e) = d.vifnet(lab, &lab.vif_call(v, "offline"), &[("vif", v.kernel_name())]) {
                    errors.push(e.to_string());
                }
            }
        }
        if let Err(e) = d.vifnet(lab, &lab.network_call("stop"), &[]) {
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
