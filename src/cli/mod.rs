//! The command line: argv[0] dispatch (network-bridge, vif-bridge, ...), clap, exit codes.

mod changed_mode;
mod check;
mod doctor;
mod gc;
mod mend;
mod network;
mod network_status;
mod reload;
mod setup;
mod setup_summary;
mod status;
mod undo;
pub mod vif;
mod watch;
mod xen_scripts;

use clap::{Parser, Subcommand};

use crate::names::ScriptRole;

/// vifnet: the host side of Xen guest networking (bridge mode), over netlink and nftables.
#[derive(Parser, Debug)]
#[command(name = "vifnet", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Host-wide setup of a mode, as xend's network-script: start, stop or status.
    Network(network::NetworkArgs),
    /// Per-interface hotplug, as libxl's vif script: online, offline (vif), add, remove (tap).
    Vif(vif::VifArgs),
    /// Every vif vifnet manages, with mode, bridge, MAC, addresses and antispoofing.
    Status(status::StatusArgs),
    /// Compare what vifnet recorded with what the host has: one line per difference; exit 2
    /// on drift. --repair mends it.
    Check(check::CheckArgs),
    /// Re-apply everything from the journals and the current mode files (after a firewall
    /// reload, or an edited mode file).
    Reload(reload::ReloadArgs),
    /// Remove the state of vifs whose device and xenstore backend are both gone.
    Gc(gc::GcArgs),
    /// Bring a whole configuration up from xend-config.sxp, xl.conf and domain configs;
    /// with --simulate, in network namespaces with stand-in guests (no Xen needed).
    Setup(setup::SetupArgs),
    /// Inspect the host (read only): one line per thing that will break guests, with the
    /// exact command or config line that fixes it; exit 2 when there is one.
    Doctor(doctor::DoctorArgs),
    /// Point Xen's own script names (vif-bridge, network-route, ...) at vifnet, keeping
    /// Xen's files aside with dpkg-divert (or as <name>.xen), and add vifnet-bridge,
    /// vifnet-route and vifnet-nat beside them.
    InstallXenScripts(xen_scripts::XenScriptsArgs),
    /// Give Xen's scripts back: remove vifnet's links and the diversions.
    UninstallXenScripts(xen_scripts::XenScriptsArgs),
    /// Follow routed guests' carriers (a guest started, stopped or migrated): put their
    /// routes again at each change, so that BIRD announces or withdraws them at once. Runs
    /// until killed (vifnet-watch.service).
    Watch(watch::WatchArgs),
}

/// The whole command line, with every key listed under `network` and `vif` (`--help`; the
/// man page's generator, tests/man.rs).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    use crate::config::keydoc;
    Cli::command().mut_subcommands(|c| match c.get_name() {
        "network" => c.after_help(keydoc::network_help()),
        "vif" => c.after_help(keydoc::vif_help()),
        _ => c,
    })
}

/// The command line as a call parses it. The lists of keys come from the shipped mode files,
/// which a hotplug call has no reason to read: only a call asking for help gets them.
fn parse(argv: Vec<String>) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let help = argv.iter().skip(1).any(|a| a == "-h" || a == "--help" || a == "help");
    let cmd = if help { command() } else { Cli::command() };
    Cli::from_arg_matches(&cmd.try_get_matches_from(argv)?)
}

/// argv as `vifnet ...` would see it: the multi-call names map onto subcommands. Xen's
/// own names (`vif-bridge`) replace its scripts; `vifnet-bridge` is a vif script that
/// sits beside them (`script=vifnet-bridge`, or `vif.default.script` in xl.conf).
pub fn normalise_argv(argv: Vec<String>) -> Vec<String> {
    let role = argv.first().and_then(|a| crate::names::script_role(a));
    let Some((role, mode)) = role else { return argv };
    let verb = match role {
        ScriptRole::Network => "network",
        ScriptRole::Vif => "vif",
    };
    ["vifnet", verb, mode].iter().map(|s| s.to_string()).chain(argv.into_iter().skip(1)).collect()
}

pub fn main() -> i32 {
    let argv = normalise_argv(std::env::args().collect());
    let cli = match parse(argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.command {
        Command::Network(a) => network::run(a).map(|()| 0),
        Command::Vif(a) => vif::run(a).map(|()| 0),
        Command::Status(a) => status::run(a).map(|()| 0),
        Command::Check(a) => check::run(a),
        Command::Reload(a) => reload::run(a).map(|()| 0),
        Command::Gc(a) => gc::run(a).map(|()| 0),
        Command::Doctor(a) => doctor::run(a),
        Command::Setup(a) => setup::run(a).map(|()| 0),
        Command::InstallXenScripts(a) => xen_scripts::install(a).map(|()| 0),
        Command::UninstallXenScripts(a) => xen_scripts::uninstall(a).map(|()| 0),
        Command::Watch(a) => watch::run(a).map(|()| 0),
    };
    // Our exit must not wait for nf_tables to free what this call deleted.
    crate::apply::nft_netlink::release_socket();
    match result {
        Ok(code) => code,
        Err(e) => {
            crate::log::error(&one_line(&e));
            1
        }
    }
}

/// An error chain on one line, outermost context first.
pub fn one_line(e: &anyhow::Error) -> String {
    let parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    let mut out: Vec<String> = Vec::new();
    for p in parts {
        if !out.iter().any(|o| o.contains(&p)) {
            out.push(p);
        }
    }
    out.join(": ").replace('\n', " ")
}

/// A current-thread runtime: a hotplug call is a handful of netlink round trips.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_names_map_onto_verbs() {
        let argv = |v: &[&str]| normalise_argv(v.iter().map(|s| s.to_string()).collect()).join(" ");
        assert_eq!(argv(&["/etc/xen/scripts/vif-bridge", "online", "type_if=vif"]), "vifnet vif bridge online type_if=vif");
        assert_eq!(argv(&["/etc/xen/scripts/vifnet-route", "offline"]), "vifnet vif route offline");
        assert_eq!(argv(&["vif-openvswitch", "online"]), "vif-openvswitch online", "not ours: clap will say so");
        assert_eq!(argv(&["network-nat", "start"]), "vifnet network nat start");
        assert_eq!(argv(&["/usr/sbin/vifnet", "status"]), "/usr/sbin/vifnet status");
    }

    #[test]
    fn every_verb_has_help() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
