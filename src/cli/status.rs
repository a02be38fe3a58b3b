//! `vifnet status [--json]`: every vif vifnet manages, from its journal, and whether its
//! device is still the one that came online.

use anyhow::Result;
use serde::Serialize;

use crate::plan::{liveness, VifJournal};
use crate::{apply, observe, state};

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// One JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

/// One line of `status`: a journal and how its device stands, or why it cannot be read.
#[derive(Serialize)]
struct Line {
    vif: String,
    /// "live", "stale: device gone", "stale: ifindex N is now M", or "corrupt journal: ..."
    state: String,
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    journal: Option<VifJournal>,
}

pub fn run(args: StatusArgs) -> Result<()> {
    let files = state::journal_files()?;
    let rt = crate::cli::runtime()?;
    let links = rt.block_on(async { Ok::<_, anyhow::Error>(observe::snapshot::links(&apply::connect()?).await?) })?;
    let lines: Vec<Line> = files
        .into_iter()
        .map(|f| match f.journal {
            Ok(j) => Line { vif: f.kernel_name, state: liveness(&j, links.get(j.name().as_str()).map(|l| l.index)).to_string(), journal: Some(j) },
            Err(e) => Line { vif: f.kernel_name, state: format!("corrupt journal: {e}"), journal: None },
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(());
    }
    println!("{:<16} {:<7} {:<16} {:<18} {:<9} {:<30} STATE", "VIF", "MODE", "BRIDGE", "MAC", "ANTISPOOF", "ADDRESSES");
    for line in lines {
        let Some(v) = &line.journal else {
            println!("{:<16} {:<7} {:<16} {:<18} {:<9} {:<30} {}", line.vif, "-", "-", "-", "-", "-", line.state);
            continue;
        };
        // Route mode has no bridge and does not know the guest's MAC.
        let (name, bridge, mac, antispoof, ips) = match v {
            VifJournal::Bridge(r) => (&r.name, r.bridge.as_str(), r.guest_mac.map(|m| m.to_string()), r.antispoof, r.ips.clone()),
            VifJournal::Route(r) => (&r.name, "-", None, r.antispoof, r.ips.clone()),
            VifJournal::Nat(r) => (&r.name, "-", Some(r.mac.to_string()), r.antispoof, vec![ipnetwork::IpNetwork::from(std::net::IpAddr::V4(r.guest))]),
        };
        let ips: Vec<String> = ips.iter().map(|n| n.to_string()).collect();
        println!(
            "{:<16} {:<7} {:<16} {:<18} {:<9} {:<30} {}",
            name.as_str(),
            v.mode(),
            bridge,
            mac.unwrap_or_else(|| "-".into()),
            if antispoof { "on" } else { "off" },
            if ips.is_empty() { "-".into() } else { ips.join(" ") },
            line.state
        );
    }
    Ok(())
}
