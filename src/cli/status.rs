//! `vifnet status [--json]`: every vif vifnet manages, from its journal.

use anyhow::Result;

use crate::plan::VifJournal;
use crate::state;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// One JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs) -> Result<()> {
    let vifs = state::all_vifs()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&vifs)?);
        return Ok(());
    }
    println!("{:<16} {:<7} {:<16} {:<18} {:<9} ADDRESSES", "VIF", "MODE", "BRIDGE", "MAC", "ANTISPOOF");
    for v in vifs {
        // Route mode has no bridge and does not know the guest's MAC.
        let (name, bridge, mac, antispoof, ips) = match &v {
            VifJournal::Bridge(r) => (&r.name, r.bridge.as_str(), r.guest_mac.map(|m| m.to_string()), r.antispoof, r.ips.clone()),
            VifJournal::Route(r) => (&r.name, "-", None, r.antispoof, r.ips.clone()),
            VifJournal::Nat(r) => (&r.name, "-", Some(r.mac.to_string()), r.antispoof, vec![ipnetwork::IpNetwork::from(std::net::IpAddr::V4(r.guest))]),
        };
        let ips: Vec<String> = ips.iter().map(|n| n.to_string()).collect();
        println!(
            "{:<16} {:<7} {:<16} {:<18} {:<9} {}",
            name.as_str(),
            v.mode(),
            bridge,
            mac.unwrap_or_else(|| "-".into()),
            if antispoof { "on" } else { "off" },
            if ips.is_empty() { "-".into() } else { ips.join(" ") }
        );
    }
    Ok(())
}
