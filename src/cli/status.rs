//! `vifnet status [--json]`: every vif vifnet manages, from its journal.

use anyhow::Result;

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
        let ips: Vec<String> = v.ips.iter().map(|n| n.to_string()).collect();
        println!(
            "{:<16} {:<7} {:<16} {:<18} {:<9} {}",
            v.name.as_str(),
            v.mode,
            v.bridge.as_str(),
            v.guest_mac.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
            if v.antispoof { "on" } else { "off" },
            if ips.is_empty() { "-".into() } else { ips.join(" ") }
        );
    }
    Ok(())
}
