//! `vifnet doctor [--json]`: what on this host will break guests, one line each with the
//! exact fix. Reads only. Exit 0: healthy (info lines maybe); 2: something breaks guests;
//! 1: the host could not be inspected.

use anyhow::{Context, Result};

use crate::config::inputs::{self, Inputs};
use crate::config::modefile;
use crate::model::GatewayKind;
use crate::observe::{self, health};
use crate::plan::doctor::{self, DummyHealth, Finding, HostHealth, ModesInUse, NatHealth, Severity, SysctlFact};
use crate::plan::nat::NatHostRecord;
use crate::plan::route::HostRecord;
use crate::state;

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// One JSON array of findings (severity, what, fix) instead of lines.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DoctorArgs) -> Result<i32> {
    let found = doctor::findings(&observe_host().context("doctor")?);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        found.iter().for_each(|f| println!("{f}"));
        if !found.iter().any(|f| f.severity == Severity::Error) {
            // On stderr: stdout stays one finding per line, for scripts.
            eprintln!("vifnet doctor: nothing found that would break guests");
        }
    }
    Ok(if found.iter().any(|f: &Finding| f.severity == Severity::Error) { 2 } else { 0 })
}

/// A mode counts when it is started, has guests online, or has an administrator's mode file
/// (the sign that this host means to use it); nothing started or configured is bridge, xl's default.
fn observe_host() -> Result<HostHealth> {
    let vifs = state::all_vifs()?;
    let route_rec = state::read_host::<HostRecord>("route")?;
    let nat_started = state::read_host::<NatHostRecord>("nat")?.is_some();
    let uses = |mode: &str, started: bool| started || modefile::override_path(mode).exists() || vifs.iter().any(|j| j.mode() == mode);
    let (route, nat) = (uses("route", route_rec.is_some()), uses("nat", nat_started));
    let modes = ModesInUse { bridge: uses("bridge", false) || !(route || nat), route, nat };

    let root = health::is_root();
    let nft_version = health::nft_version();
    let nft_ok = nft_version.as_deref().and_then(doctor::nft_version).is_some_and(|v| v >= doctor::NFT_MIN);
    let chains = if root && nft_ok { Some(health::base_chains()?) } else { None };
    let br_nf = |key: &str| observe::sysctl(&format!("net/bridge/{key}")).map(|v| v == "1");
    let sysctls = doctor::wanted_sysctls(route_rec.as_ref(), nat_started, &vifs)
        .into_iter()
        .map(|(key, want)| SysctlFact { now: observe::sysctl(&key), key, want })
        .collect();

    let nat_health = match nat {
        true => {
            let mode = inputs::nat_mode(&Inputs::default())?;
            Some(NatHealth {
                run_dnsmasq: mode.run_dnsmasq,
                dnsmasq_found: health::on_path("dnsmasq"),
                reader: health::dnsmasq_reader(),
                files: vec![health::path_modes(&mode.hosts), health::path_modes(&mode.ethers)],
            })
        }
        false => None,
    };
    // Without a gateway, route mode makes no link at all.
    let dummy = match route {
        true => {
            let mode = inputs::route_mode(&Inputs::default())?;
            (mode.gateway_kind == GatewayKind::Dummy && !mode.gateway.is_empty())
                .then(|| DummyHealth { driver: health::dummy_driver(), mode_file: modefile::override_path("route") })
        }
        false => None,
    };
    Ok(HostHealth {
        root,
        nft_version,
        chains,
        modes,
        bridge: inputs::bridge_mode(&Inputs::default())?.bridge.to_string(),
        br_nf_ip: br_nf("bridge-nf-call-iptables"),
        br_nf_ip6: br_nf("bridge-nf-call-ip6tables"),
        sysctls,
        nat: nat_health,
        dummy,
    })
}
