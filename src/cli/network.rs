//! `vifnet network <mode> start|stop|status [key=value...]`: the host-wide part of a mode,
//! what xend's network-script did. libxl never calls it; `vif online` makes what it needs.

use anyhow::{bail, Context, Result};

use crate::config::inputs::{self, Inputs};
use crate::config::kv;
use crate::plan::{bridge as plan_bridge, takeover};
use crate::{apply, log, observe, state};

#[derive(clap::Args, Debug)]
pub struct NetworkArgs {
    /// The mode: bridge.
    mode: String,
    /// start, stop or status, and key=value settings (bridge, netdev, takeover, antispoof, create_bridge).
    #[arg(required = true)]
    words: Vec<String>,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: NetworkArgs) -> Result<()> {
    if args.mode != "bridge" {
        bail!("mode {:?}: not available yet (bridge is)", args.mode);
    }
    let (words, kvs) = kv::parse_args(args.words.clone())?;
    let inputs = Inputs { args: kvs, ..Default::default() };
    inputs.check_arg_keys(inputs::NETWORK_BRIDGE_KEYS)?;
    let mode = inputs::bridge_mode(&inputs)?;
    let command = words.first().map(String::as_str).unwrap_or("");
    let rt = crate::cli::runtime()?;
    let _lock = match command {
        "start" | "stop" if !args.dry_run => Some(state::lock(crate::cli::vif::LOCK_TIMEOUT)?),
        _ => None,
    };
    rt.block_on(async {
        let handle = apply::connect()?;
        let bridge_msg = observe::link(&handle, mode.bridge.as_str()).await?;
        match command {
            "start" => {
                // With a takeover, its record is journalled before the plan runs, so that
                // `stop` can undo even a start that was interrupted.
                let (plan, record) = match (&mode.netdev, mode.takeover) {
                    (Some(netdev), true) => {
                        if state::read_takeover(mode.bridge.as_str())?.is_some() {
                            log::info(&format!("{}: has taken over {netdev} already", mode.bridge));
                            return Ok(());
                        }
                        let (plan, record) = match observe::uplink(&handle, netdev).await? {
                            Some(up) => takeover::start(&mode.bridge, bridge_msg.is_some(), &up),
                            None if takeover::creatable(netdev) => takeover::start_on_new_dummy(&mode.bridge, bridge_msg.is_some(), netdev),
                            None => bail!("netdev {netdev}: no such link"),
                        };
                        (plan, Some(record))
                    }
                    _ => (plan_bridge::network_start(&mode), None),
                };
                if args.dry_run {
                    print!("{plan}");
                    return Ok(());
                }
                let Some(record) = record else { return Ok(apply::setup(&handle, &plan).await?) };
                state::write_takeover(&record)?;
                if let Err(e) = apply::setup(&handle, &plan).await {
                    state::remove_takeover(mode.bridge.as_str())?;
                    return Err(anyhow::anyhow!(e).context(format!("taking over {} (rolled back)", record.netdev)));
                }
                log::info(&format!("{}: took over {}", mode.bridge, record.netdev));
                Ok(())
            }
            "stop" => {
                let bridge = bridge_msg.as_ref().map(observe::link_facts);
                let ports = match &bridge {
                    Some(b) => observe::ports_of(&handle, b.index).await?,
                    None => Vec::new(),
                };
                let takeover = state::read_takeover(mode.bridge.as_str())?;
                let plan = plan_bridge::network_stop(&mode, bridge.as_ref(), &ports, takeover.as_ref()).map_err(anyhow::Error::msg)?;
                if args.dry_run {
                    print!("{plan}");
                    return Ok(());
                }
                apply::teardown(&handle, &plan).await?;
                state::remove_takeover(mode.bridge.as_str())?;
                Ok(())
            }
            "status" => {
                let Some(b) = bridge_msg else { bail!("bridge {}: no such bridge", mode.bridge) };
                let ports = observe::ports_of(&handle, b.header.index).await?;
                println!("bridge {} ports: {}", mode.bridge, if ports.is_empty() { "-".into() } else { ports.join(" ") });
                if let Some(rec) = state::read_takeover(mode.bridge.as_str())? {
                    println!("uplink {} taken over: {} addresses, {} routes moved", rec.netdev, rec.addrs.len(), rec.routes.len());
                }
                Ok(())
            }
            other => bail!("command {other:?}: not a network command (start, stop, status)"),
        }
    })
    .context(format!("network {} {command}", args.mode))
}
