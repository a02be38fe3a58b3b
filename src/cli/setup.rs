//! `vifnet setup --simulate [--xend-config F] [--xl-conf F] DOMAIN.cfg...`: a whole Xen
//! network configuration brought up with stand-in guests in network namespaces, checked with
//! real traffic, and removed again (unless --keep). No hypervisor needed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::setup_summary::{self, Row, Seen};
use crate::apply::simulate;
use crate::config::domain::DomainConfig;
use crate::config::inputs::{self, Inputs};
use crate::config::modefile;
use crate::config::sxp::XendConfig;
use crate::config::xlconf::XlConf;
use crate::plan::nat::{NatHostRecord, NatMode};
use crate::plan::simulate::{lab, nat_in_lab, network_args, selected_mode, Lab, Lease, SimMode, SPOOFED};

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
    /// route mode its route.toml's gateway says which blocks upstream routes to dom0, in
    /// nat mode its nat.toml gives the prefix and the domain.
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
    /// Add the lab's rows to this file and print the table of all its rows at the end
    /// (`make demo` passes one file to its three runs).
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
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
    if let Some(dir) = &args.modes_dir {
        modefile::check_dir("--modes-dir", dir)?;
    }
    let modes_dir = args.modes_dir.clone().unwrap_or(empty_modes.clone());
    let state_dir = std::env::temp_dir().join(format!("{prefix}-state"));
    // Errors in network-script's arguments name the file they are in.
    let script_at = args.xend_config.as_ref().map(|p| format!("{} network-script", p.display()));
    let mut mode = sim_mode(xend.as_ref(), xl.as_ref(), &modes_dir, script_at)?;
    if let SimMode::Nat(m) = &mode {
        let (in_lab, notes) = nat_in_lab(m, &state_dir.join("nat-hosts"));
        for n in notes {
            println!("note: {n}");
        }
        mode = SimMode::Nat(in_lab);
    }
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
    std::fs::create_dir_all(&empty_modes).context("creating a mode directory")?;
    let dirs = Dirs { state: state_dir, modes: modes_dir, made: empty_modes };
    if args.teardown {
        return teardown(&lab, &dirs);
    }
    let result = bring_up_and_check(&lab, &dirs).and_then(|checked| {
        setup_summary::record_and_print(args.summary.as_deref(), &checked.rows)?;
        if !checked.failed.is_empty() {
            bail!("simulation checks failed: {}", checked.failed.join("; "));
        }
        println!("all checks passed");
        Ok(())
    });
    if args.keep && result.is_ok() {
        println!("left up; remove with: vifnet setup --simulate --teardown --prefix {prefix} (same files)");
        return result;
    }
    let down = teardown(&lab, &dirs);
    result.and(down)
}

/// The mode the configs select, with its settings read as the lab's own vifnet calls will
/// read them: the mode files of `modes_dir`, network-script arguments (from `script_at`)
/// over them. Bridge mode's are read only to refuse a bad file before anything is built.
fn sim_mode(xend: Option<&XendConfig>, xl: Option<&XlConf>, modes_dir: &Path, script_at: Option<String>) -> Result<SimMode> {
    let inputs = Inputs { args: network_args(xend), args_origin: script_at, ..Default::default() };
    match selected_mode(xend, xl)? {
        "route" => {
            inputs.check_arg_keys(inputs::NETWORK_ROUTE_KEYS, "network-route")?;
            Ok(SimMode::Route(inputs::route_mode_in(modes_dir, &inputs)?))
        }
        "nat" => Ok(SimMode::Nat(nat_mode_in(modes_dir, &inputs)?)),
        _ => {
            inputs.check_arg_keys(inputs::NETWORK_BRIDGE_KEYS, "network-bridge")?;
            inputs::bridge_mode_in(modes_dir, &inputs)?;
            Ok(SimMode::Bridge)
        }
    }
}

/// Nat mode from the mode files of `dir` with `inputs` (the network-script's arguments)
/// over them.
fn nat_mode_in(dir: &Path, inputs: &Inputs) -> Result<NatMode> {
    inputs.check_arg_keys(inputs::NETWORK_NAT_KEYS, "network-nat")?;
    Ok(inputs::nat_mode_in(dir, inputs)?)
}

struct Dirs {
    state: PathBuf,
    modes: PathBuf,
    made: PathBuf,
}

impl Dirs {
    /// vifnet in the lab's dom0, with the lab's state and mode directories, and never
    /// without dom0's own /etc files.
    fn vifnet(&self, lab: &Lab, args: &[String], env: &[(&str, String)]) -> Result<String> {
        simulate::etc_ready(lab, &lab.dom0)?;
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
            if v.dhcp {
                let known = v.dns_name.as_ref().map(|n| format!(", known as {n}")).unwrap_or_default();
                side.push(format!("address by DHCP (udhcpc){known}"));
            }
            if !side.is_empty() {
                println!("    {}: {}", v.guest_dev(), side.join(", "));
            }
        }
    }
}

/// What the checks found, and the failed ones.
struct Checked {
    rows: Vec<Row>,
    failed: Vec<String>,
}

fn bring_up_and_check(lab: &Lab, d: &Dirs) -> Result<Checked> {
    print_lab(lab);
    simulate::build(lab)?;
    d.vifnet(lab, &lab.network_call("start"), &[])?;
    for g in &lab.guests {
        for v in &g.vifs {
            d.vifnet(lab, &lab.vif_call(v, "online"), &[("vif", v.kernel_name())])?;
        }
    }
    // With its guests up, as an administrator would look.
    print!("{}", d.vifnet(lab, &lab.network_call("status"), &[])?);
    print!("{}", d.vifnet(lab, &["status".into()], &[])?);
    // Guests without a static address ask for one, now that their vifs are online.
    let leases = if lab.dhcp_vifs().next().is_some() { simulate::leases(lab, &d.state)? } else { HashMap::new() };
    let mut failed = Vec::new();
    let mut check = |what: String, ok: bool| {
        println!("check: {what}: {}", if ok { "yes" } else { "NO" });
        if !ok {
            failed.push(what);
        }
        ok
    };
    let lease_of = |vif: &str| -> Option<Lease> { leases.get(vif).copied().flatten() };
    // By vif: the name another guest resolved it by, and whether the answer was its lease.
    let mut resolved: HashMap<String, (String, bool)> = HashMap::new();
    if let Some(dhcp) = &lab.dhcp {
        for (g, v) in lab.dhcp_vifs() {
            match lease_of(&v.kernel_name()) {
                Some(l) => check(
                    format!("guest {} leased {} (in {}) with router {} (the host side of {}) on {}", g.name, l.0, dhcp.prefix, l.1, v.kernel_name(), v.guest_dev()),
                    lab.lease_ok(&l),
                ),
                None => check(format!("guest {} got a DHCP lease on {}", g.name, v.guest_dev()), false),
            };
        }
        for n in lab.name_checks() {
            let want = lease_of(&n.vif.kernel_name()).map(|l| l.0);
            let answer = simulate::resolve(&n.asker.netns, &n.query);
            let got = answer.as_deref().and_then(|a| a.split_whitespace().next()).and_then(|a| a.parse().ok());
            let shown = answer.unwrap_or_else(|| "no answer".into());
            let ok = check(format!("guest {} resolves {}: {shown} ({}'s lease)", n.asker.name, n.query, n.owner.name), want.is_some() && got == want);
            let entry = resolved.entry(n.vif.kernel_name()).or_insert((n.query.clone(), true));
            entry.1 &= ok;
            if n.query.len() > entry.0.len() {
                entry.0 = n.query.clone();
            }
        }
    }
    // By guest: each family's ping of the lan host.
    let mut upstream: HashMap<String, Vec<(&str, bool)>> = HashMap::new();
    for g in &lab.guests {
        for (lan, v6) in [("192.0.2.1", false), ("2001:db8::1", true)] {
            if g.has_family(v6) {
                // A NATed guest's reply can only come back masqueraded: the lan host has no route to it.
                let how = match &lab.dhcp {
                    Some(d) if !v6 => format!(" (masqueraded: the lan host has no route to {})", d.prefix),
                    _ => String::new(),
                };
                let ok = check(format!("guest {} pings the lan host {lan}{how}", g.name), simulate::ping(&g.netns, lan, None));
                upstream.entry(g.name.clone()).or_default().push((if v6 { "IPv6" } else { "IPv4" }, ok));
            }
        }
    }
    // The other way: upstream reaches each guest (in route mode, through dom0's routes).
    for (g, addr) in lab.guest_addresses() {
        check(format!("the lan host pings guest {} at {addr}", g.name), simulate::ping(&lab.lan, &addr.to_string(), None));
    }
    // Antispoofing: a guarded guest sends from an address that is not its own; the lan host
    // must not see it. A /32 sends it the way the guest's own traffic goes. It proves
    // something only if the guest's own traffic gets there.
    let mut spoof: Option<(String, &str)> = None;
    if let Some((g, v)) = lab.spoof_candidate() {
        let reached = upstream.get(&g.name).is_some_and(|p| p.iter().any(|(f, ok)| *f == "IPv4" && *ok));
        if !reached {
            println!("check: guest {} sending from {SPOOFED}, not its own: NOT SHOWN (its own traffic does not reach the lan host)", g.name);
            failed.push(format!("the spoofing check of guest {} showed nothing", g.name));
            spoof = Some((v.kernel_name(), "NOT SHOWN"));
        } else {
            simulate::add_guest_addr(&g.netns, &v.guest_dev(), &format!("{SPOOFED}/32"))?;
            let before = simulate::echo_requests_seen(&lab.lan)?;
            simulate::ping(&g.netns, "192.0.2.1", Some(SPOOFED));
            let arrived = simulate::echo_requests_seen(&lab.lan)? - before;
            println!("check: guest {} sending from {SPOOFED}, not its own: {}", g.name, if arrived == 0 { "dropped" } else { "REACHED the lan host" });
            if arrived != 0 {
                failed.push(format!("a spoofed source from guest {} reached the lan host", g.name));
            }
            spoof = Some((v.kernel_name(), if arrived == 0 { "spoof dropped" } else { "SPOOF PASSED" }));
        }
    }
    let seen = Seen { leases: &leases, resolved, upstream, spoof };
    Ok(Checked { rows: seen.rows(lab), failed })
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
    // `network nat stop` stops nat mode's dnsmasq and removes its record; if it could not,
    // the dnsmasq that record names goes by its pid all the same.
    if let Some(pidfile) = own_dnsmasq(&d.state) {
        if simulate::stop_dnsmasq(&pidfile) {
            errors.push(format!("the lab's dnsmasq ({}) was still running after network nat stop: stopped by its pid", pidfile.display()));
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

/// The pid file of the dnsmasq nat mode started in the lab, while its record is there.
fn own_dnsmasq(state: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(state.join("nat.json")).ok()?;
    let rec: NatHostRecord = serde_json::from_str(&text).ok()?;
    rec.dnsmasq.map(|o| o.pidfile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_nat_toml_is_read_with_the_network_scripts_arguments_over_it() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/nat-cluster");
        let mut inputs = Inputs { args_origin: Some("xend-config.sxp network-script".into()), ..Default::default() };
        inputs.args.push("domain", "lab.internal");
        let m = nat_mode_in(&dir, &inputs).unwrap();
        assert_eq!((m.prefix.to_string().as_str(), m.domain.as_str()), ("10.10.0.0/16", "lab.internal"));
        assert_eq!(m.hosts, Path::new("/var/lib/vifnet/cluster-hosts"));
        inputs.args.push("prefix", "10.10.0.0/25");
        let e = format!("{:#}", nat_mode_in(&dir, &inputs).unwrap_err());
        assert!(e.starts_with("xend-config.sxp network-script prefix: ") && e.contains("must be a network of at most /24"), "{e}");
        inputs.args.push("domian", "1");
        let e = format!("{:#}", nat_mode_in(&dir, &inputs).unwrap_err());
        assert!(e.starts_with("xend-config.sxp network-script domian: \"1\" is not a key of network-nat (did you mean domain?)"), "{e}");
    }
}
