//! `vifnet network <mode> start|stop|status [key=value...]`: the host-wide part of a mode,
//! what xend's network-script did. libxl never calls it; `vif online` makes what it needs.

use anyhow::{bail, Context, Result};

use crate::config::inputs::{self, Inputs};
use crate::config::kv;
use crate::plan::route::{self as plan_route, HostFacts};
use crate::plan::{bridge as plan_bridge, nat as plan_nat, takeover, Plan, VifJournal};
use crate::{apply, log, observe, state};

#[derive(clap::Args, Debug)]
pub struct NetworkArgs {
    /// The mode: bridge, route or nat.
    mode: String,
    /// start, stop or status, and key=value settings (listed by --help).
    #[arg(required = true)]
    words: Vec<String>,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// status: one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

pub fn run(args: NetworkArgs) -> Result<()> {
    let (words, kvs) = kv::parse_args(args.words.clone())?;
    let inputs = Inputs { args: kvs, ..Default::default() };
    let command = words.first().map(String::as_str).unwrap_or("");
    let keys = match args.mode.as_str() {
        "bridge" => inputs::NETWORK_BRIDGE_KEYS,
        "route" => inputs::NETWORK_ROUTE_KEYS,
        "nat" => inputs::NETWORK_NAT_KEYS,
        other => return Err(anyhow::anyhow!("mode {other:?}: not a mode (bridge, route, nat)")).context(format!("network {other} {command}")),
    };
    inputs
        .check_arg_keys(keys, &format!("network-{}", args.mode))
        .map_err(anyhow::Error::from)
        .and_then(|()| match (args.mode.as_str(), command) {
            (mode, "status") => super::network_status::run(mode, &inputs, args.json),
            ("bridge", _) => bridge(&args, &inputs, command),
            ("route", _) => route(&args, &inputs, command),
            _ => nat(&args, &inputs, command),
        })
        .context(format!("network {} {command}", args.mode))
}

/// The lock, for the verbs that change the host (status and dry runs only read).
fn lock_to_change(args: &NetworkArgs, command: &str) -> Result<Option<state::Lock>> {
    Ok(match command {
        "start" | "stop" if !args.dry_run => Some(state::lock_for_change()?),
        _ => None,
    })
}

fn bridge(args: &NetworkArgs, inputs: &Inputs, command: &str) -> Result<()> {
    let mode = inputs::bridge_mode(inputs)?;
    let rt = crate::cli::runtime()?;
    let _lock = lock_to_change(args, command)?;
    rt.block_on(async {
        let handle = apply::connect()?;
        let bridge_msg = observe::link(&handle, mode.bridge.as_str()).await?;
        match command {
            "start" => {
                // Guests already on this bridge keep (or get back) their filters.
                let on_bridge = |j: &VifJournal| j.bridge().is_some_and(|b| b.bridge == mode.bridge);
                // With a takeover, its record is journalled before the plan runs, so that
                // `stop` can undo even a start that was interrupted.
                let (mut plan, record) = match (&mode.netdev, mode.takeover) {
                    (Some(netdev), true) => {
                        if state::read_takeover(mode.bridge.as_str())?.is_some() {
                            if put_back(&handle, args, &filters_again(on_bridge)?).await? {
                                log::info(&format!("{}: has taken over {netdev} already; guests' filters in place", mode.bridge));
                            }
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
                plan.steps.extend(filters_again(on_bridge)?.steps);
                if printed(args, &plan) {
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
                let on_bridge: Vec<String> =
                    state::all_vifs()?.iter().filter(|j| j.bridge().is_some_and(|b| b.bridge == mode.bridge)).map(|j| j.kernel_name().to_string()).collect();
                refuse_while(&on_bridge, "bridge")?;
                let bridge = bridge_msg.as_ref().map(observe::link_facts);
                let ports = match &bridge {
                    Some(b) => observe::ports_of(&handle, b.index).await?,
                    None => Vec::new(),
                };
                let takeover = state::read_takeover(mode.bridge.as_str())?;
                let plan = plan_bridge::network_stop(&mode, bridge.as_ref(), &ports, takeover.as_ref()).map_err(anyhow::Error::msg)?;
                if printed(args, &plan) {
                    return Ok(());
                }
                apply::teardown(&handle, &plan).await?;
                state::remove_takeover(mode.bridge.as_str())?;
                Ok(())
            }
            other => bail!("command {other:?}: not a network command (start, stop, status)"),
        }
    })
}

/// Route mode's host-wide part: forwarding, the gateway link, the `inet vifnet` table.
/// `start` journals what it does before doing it, so that `stop` undoes exactly that.
fn route(args: &NetworkArgs, inputs: &Inputs, command: &str) -> Result<()> {
    let mode = inputs::route_mode(inputs)?;
    let rt = crate::cli::runtime()?;
    let _lock = lock_to_change(args, command)?;
    rt.block_on(async {
        let handle = apply::connect()?;
        let started = state::read_host::<plan_route::HostRecord>("route")?;
        match command {
            "start" => {
                if started.is_some() {
                    if put_back(&handle, args, &filters_again(|j| j.route().is_some())?).await? {
                        log::info("route mode: started already; guests' filters in place");
                    }
                    return Ok(());
                }
                let facts = observe::route_host(&handle, &mode).await?;
                let (plan, mut record) = plan_route::host_up(&mode, &facts).map_err(|e| e.from_source(inputs::netdev_at(inputs, "route")))?;
                record.args = inputs::mode_args(inputs, inputs::NETWORK_ROUTE_KEYS);
                if !start_host(&handle, args, "route", &plan, &record).await? {
                    return Ok(());
                }
                log::info(&format!("route mode: forwarding on{}", gateway_note(&record)));
                Ok(())
            }
            "stop" => {
                let Some(record) = started else { return Ok(()) };
                refuse_while_online("route")?;
                let facts = HostFacts { sysctls: observe::sysctls_now(&record.sysctls), ..Default::default() };
                stop_host(&handle, args, "route", &plan_route::host_down(&record, &facts)).await
            }
            other => bail!("command {other:?}: not a network command (start, stop, status)"),
        }
    })
}

/// Nat mode's host-wide part: forwarding, the masquerade element, our dnsmasq.
fn nat(args: &NetworkArgs, inputs: &Inputs, command: &str) -> Result<()> {
    let mode = inputs::nat_mode(inputs)?;
    let rt = crate::cli::runtime()?;
    let _lock = lock_to_change(args, command)?;
    rt.block_on(async {
        let handle = apply::connect()?;
        let started = state::read_host::<plan_nat::NatHostRecord>("nat")?;
        match command {
            "start" => {
                if let Some(record) = started {
                    let mut plan = plan_nat::masquerade_again(&record);
                    plan.steps.extend(filters_again(|j| j.nat().is_some())?.steps);
                    if put_back(&handle, args, &plan).await? {
                        log::info("nat mode: started already; masquerade and guests' filters in place");
                    }
                    return Ok(());
                }
                let facts = observe::nat_host(&handle, &mode).await?;
                let (plan, mut record) = plan_nat::host_up(&mode, &facts, &state::dir()).map_err(|e| e.from_source(inputs::netdev_at(inputs, "nat")))?;
                record.args = inputs::mode_args(inputs, inputs::NETWORK_NAT_KEYS);
                if !start_host(&handle, args, "nat", &plan, &record).await? {
                    return Ok(());
                }
                log::info(&format!("nat mode: {} masqueraded out of {}", record.mode.prefix, record.uplink));
                Ok(())
            }
            "stop" => {
                let Some(record) = started else { return Ok(()) };
                refuse_while_online("nat")?;
                stop_host(&handle, args, "nat", &plan_nat::host_down(&record, &observe::sysctls_now(&record.sysctls))).await
            }
            other => bail!("command {other:?}: not a network command (start, stop, status)"),
        }
    })
}

/// A dry run prints the plan instead of applying it; whether this is one.
fn printed(args: &NetworkArgs, plan: &Plan) -> bool {
    if args.dry_run {
        print!("{plan}");
    }
    args.dry_run
}

/// The filters of the online guests `which` picks, again (`plan::filters_again`).
fn filters_again(which: impl Fn(&VifJournal) -> bool) -> Result<Plan> {
    Ok(crate::plan::filters_again(state::all_vifs()?.iter().filter(|j| which(j))))
}

/// Applies a started mode's repair plan; false for a dry run, which only prints it.
async fn put_back(handle: &rtnetlink::Handle, args: &NetworkArgs, plan: &Plan) -> Result<bool> {
    if printed(args, plan) {
        return Ok(false);
    }
    apply::setup(handle, plan).await?;
    Ok(true)
}

/// Journals a mode's host-wide record, then applies its plan; a failure takes both back.
/// False for a dry run, which only prints the plan.
async fn start_host<H: serde::Serialize>(handle: &rtnetlink::Handle, args: &NetworkArgs, mode: &str, plan: &Plan, record: &H) -> Result<bool> {
    if printed(args, plan) {
        return Ok(false);
    }
    state::write_host(mode, record)?;
    if let Err(e) = apply::setup(handle, plan).await {
        state::remove_host(mode)?;
        return Err(anyhow::anyhow!(e).context("rolled back"));
    }
    Ok(true)
}

/// Stop undoes the host-wide part only once no guest of the mode depends on it.
fn refuse_while_online(mode: &str) -> Result<()> {
    let online: Vec<String> = state::all_vifs()?.iter().filter(|j| j.mode() == mode).map(|j| j.kernel_name().to_string()).collect();
    refuse_while(&online, mode)
}

fn refuse_while(online: &[String], mode: &str) -> Result<()> {
    if !online.is_empty() {
        bail!("guests are still online in {mode} mode ({}): take their vifs offline first", online.join(" "));
    }
    Ok(())
}

async fn stop_host(handle: &rtnetlink::Handle, args: &NetworkArgs, mode: &str, plan: &Plan) -> Result<()> {
    if printed(args, plan) {
        return Ok(());
    }
    apply::teardown(handle, plan).await?;
    state::remove_host(mode)?;
    log::info(&format!("{mode} mode: stopped"));
    Ok(())
}

fn gateway_note(rec: &plan_route::HostRecord) -> String {
    match &rec.gateway_link {
        Some(link) => {
            let addrs: Vec<String> = rec.gateway_addrs.iter().map(|a| a.to_string()).collect();
            format!(", gateway on {link} {}", addrs.join(" "))
        }
        None => String::new(),
    }
}
