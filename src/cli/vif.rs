//! `vifnet vif <mode> online|offline|add|remove [type_if=vif|tap] [key=value...]`: what libxl
//! runs per guest interface. Success writes `hotplug-status=connected`; failure writes
//! `hotplug-error` and `hotplug-status=error` and exits 1, having changed nothing.

use anyhow::{anyhow, bail, Context, Result};

use crate::config::inputs::{self, Inputs};
use crate::config::{kv, ConfigError};
use crate::model::{DevType, IfName};
use crate::plan::{bridge as plan_bridge, device_index, nat as plan_nat, route as plan_route, Origin, Plan, VifJournal};
use super::undo;
use crate::xenstore::XenStore;
use crate::{apply, log, observe, state};

#[derive(clap::Args, Debug)]
pub struct VifArgs {
    /// The mode: bridge, route or nat.
    mode: String,
    /// The command (online, offline, add, remove) and key=value settings (listed by --help).
    #[arg(required = true, allow_hyphen_values = false)]
    words: Vec<String>,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Up,
    Down,
}

pub fn run(args: VifArgs) -> Result<()> {
    let xenbus_path = std::env::var("XENBUS_PATH").ok().filter(|p| !p.is_empty());
    let mut xs: Option<XenStore> = None;
    let result = run_inner(&args, xenbus_path.as_deref(), &mut xs);
    if let (Err(e), Some(path)) = (&result, xenbus_path.as_deref()) {
        report_failure(&mut xs, path, &crate::cli::one_line(e));
    }
    result
}

/// Tells libxl why we failed, as Xen's `fatal` does (one transaction, both keys).
fn report_failure(xs: &mut Option<XenStore>, path: &str, msg: &str) {
    if xs.is_none() {
        *xs = XenStore::connect().ok();
    }
    if let Some(x) = xs.as_mut() {
        let err_key = format!("{path}/hotplug-error");
        let status_key = format!("{path}/hotplug-status");
        if let Err(e) = x.write_all(&[(err_key.as_str(), msg), (status_key.as_str(), "error")]) {
            log::warn(&format!("could not write hotplug-error to xenstore: {e}"));
        }
    }
}

fn run_inner(args: &VifArgs, xenbus_path: Option<&str>, xs: &mut Option<XenStore>) -> Result<()> {
    if !["bridge", "route", "nat"].contains(&args.mode.as_str()) {
        bail!("mode {:?}: not a mode (bridge, route, nat)", args.mode);
    }
    let (words, kvs) = kv::parse_args(args.words.clone())?;
    let command = words.first().map(String::as_str).unwrap_or("");
    if let Some(extra) = words.get(1) {
        bail!("argument {extra:?}: unexpected; give settings as key=value");
    }
    let mut inputs = Inputs { args: kvs, env: Inputs::env_from_process(), xenstore: Vec::new(), xenbus_path: xenbus_path.map(String::from), ..Default::default() };
    inputs.check_arg_keys(inputs::VIF_ARG_KEYS, "vif scripts")?;
    let dev_type = match inputs.get_set("type_if") {
        Some(s) => DevType::parse(&s.at, &s.value)?,
        None => DevType::Vif,
    };
    // Xen's rule: online/offline concern the vif, add/remove the tap; the other pairing is a no-op.
    let action = match (command, dev_type) {
        ("online", DevType::Vif) | ("add", DevType::Tap) => Action::Up,
        ("offline", DevType::Vif) | ("remove", DevType::Tap) => Action::Down,
        ("online" | "offline", DevType::Tap) | ("add" | "remove", DevType::Vif) => return Ok(()),
        _ => bail!("command {command:?}: not a vif command (online, offline, add, remove)"),
    };
    log::set_quiet(xenbus_path.is_some() && !args.dry_run);

    // Nat mode numbers machines by the domain's name, which libxl keeps beside the domain
    // (its domid is in the backend path, backend/vif/<domid>/<devid>): read in the same
    // batch as the backend's keys, and only for an online.
    let name_path = match (args.mode.as_str(), action, xenbus_path) {
        ("nat", Action::Up, Some(path)) => path.rsplit('/').nth(1).map(|domid| format!("/local/domain/{domid}/name")),
        _ => None,
    };
    let kernel_name = inputs::device_name(&inputs, dev_type)?;
    // Offline works from the journal: with one, xenstore holds nothing it needs (and libxl
    // may have removed the backend's keys already).
    let keys = match action {
        Action::Down if state::has_vif(kernel_name.as_str()) => &[][..],
        _ => inputs::xenstore_keys(&args.mode),
    };
    let mut domain_name = None;
    if let (Some(path), false) = (xenbus_path, keys.is_empty()) {
        let x = xs.insert(XenStore::connect().context("xenstore")?);
        let mut paths: Vec<String> = keys.iter().map(|k| format!("{path}/{k}")).collect();
        paths.extend(name_path.clone());
        let mut values = x.read_many(&paths.iter().map(String::as_str).collect::<Vec<_>>()).context("xenstore")?;
        if let Some(name_path) = name_path {
            // An empty key is as good as none, as for the backend's keys.
            domain_name = values.pop().flatten().filter(|v| !v.trim().is_empty()).map(|value| inputs::Sourced { value, at: format!("xenstore {name_path}") });
        }
        for (key, value) in keys.iter().zip(values) {
            if let Some(v) = value {
                inputs.xenstore.push((key.to_string(), v));
            }
        }
    }
    let call = Call { args, inputs: &inputs, dev_type, kernel_name: &kernel_name, domain_name, xenbus_path };
    let rt = crate::cli::runtime()?;
    let _lock = if args.dry_run { None } else { Some(state::lock_for_change()?) };
    if action == Action::Down {
        return rt.block_on(down(&call));
    }
    // An unreadable journal is overwritten by this online; a stale one is undone first.
    let previous = match state::read_vif(kernel_name.as_str()) {
        Err(e @ state::StateError::Corrupt { .. }) => {
            log::warn(&format!("{e}; replacing it"));
            None
        }
        r => r?,
    };
    let previous = match previous {
        Some(j) => rt.block_on(undo::unless_stale(j, &inputs, args.dry_run))?,
        None => None,
    };
    let outcome = match args.mode.as_str() {
        "route" => rt.block_on(route_up(&call, previous))?,
        "nat" => rt.block_on(nat_up(&call, previous))?,
        _ => rt.block_on(bridge_up(&call, previous))?,
    };
    if let (Some(path), Some(x), Outcome::Online { mtu }) = (xenbus_path, xs.as_mut(), outcome) {
        report_connected(x, path, &inputs, dev_type, mtu)?;
    }
    Ok(())
}

/// One hotplug call, once its inputs are read.
struct Call<'a> {
    args: &'a VifArgs,
    inputs: &'a Inputs,
    dev_type: DevType,
    kernel_name: &'a IfName,
    /// The domain's name from xenstore (nat mode).
    domain_name: Option<inputs::Sourced>,
    xenbus_path: Option<&'a str>,
}

impl Call<'_> {
    /// Journal first, then the plan; on failure nothing is left on the host, and the
    /// journal goes back to what it was.
    async fn apply(&self, handle: &rtnetlink::Handle, plan: &Plan, journal: VifJournal, previous: Option<&VifJournal>) -> Result<()> {
        state::write_vif(&journal)?;
        if let Err(e) = apply::setup(handle, plan).await {
            match previous {
                Some(p) => state::write_vif(p)?,
                None => state::remove_vif(self.kernel_name.as_str())?,
            }
            return Err(anyhow!(e).context(format!("{}: online failed", self.kernel_name)));
        }
        Ok(())
    }

    /// `apply` for a plan that also makes the mode's host-wide part (`new_host`): its record
    /// is journalled first, and goes again if the plan fails.
    async fn apply_with_host<H: serde::Serialize>(
        &self,
        handle: &rtnetlink::Handle,
        plan: &Plan,
        journal: VifJournal,
        previous: Option<&VifJournal>,
        mode: &str,
        new_host: Option<&H>,
    ) -> Result<()> {
        if let Some(h) = new_host {
            state::write_host(mode, h)?;
        }
        let applied = self.apply(handle, plan, journal, previous).await;
        if applied.is_err() && new_host.is_some() {
            state::remove_host(mode)?;
        }
        applied
    }

    /// The journal of an earlier online of this vif, which must be in the same mode.
    fn earlier<'j, T>(&self, previous: Option<&'j VifJournal>, in_mode: fn(&VifJournal) -> Option<&T>) -> Result<Option<&'j T>> {
        match previous {
            None => Ok(None),
            Some(j) => match in_mode(j) {
                Some(r) => Ok(Some(r)),
                None => bail!("{}: is online in {} mode; take it offline first", self.kernel_name, j.mode()),
            },
        }
    }

    /// The journal of this online: the record, and where the vif came from (its device's
    /// index now, libxl's backend path), by which a later call tells it is stale.
    fn journal(&self, mut journal: VifJournal, ifindex: Option<u32>) -> VifJournal {
        journal.set_origin(Origin { ifindex, backend: self.xenbus_path.map(String::from) });
        journal
    }

    fn print(&self, plan: &Plan) -> bool {
        if self.args.dry_run {
            print!("{plan}");
        }
        self.args.dry_run
    }
}

/// How an online ended: printed only, or applied, with the MTU to tell the frontend.
enum Outcome {
    DryRun,
    Online { mtu: Option<u32> },
}

async fn bridge_up(call: &Call<'_>, previous: Option<VifJournal>) -> Result<Outcome> {
    // The mode's own bridge (the one vifnet may create) is the mode file's: a vif's
    // `bridge` names where it goes, from whatever source, and is never created.
    let mode = inputs::bridge_mode(&Inputs::default())?;
    let vif = inputs::bridged_vif(call.inputs, &mode, call.dev_type)?;
    let prev = call.earlier(previous.as_ref(), VifJournal::bridge)?;
    let handle = apply::connect()?;
    let mut facts = observe::facts(&handle, &plan_bridge::names_to_observe(&vif)).await?;
    let fallback = observe::facts(&handle, &plan_bridge::fallback_names(&vif, &facts)).await?;
    facts.links.extend(fallback.links);
    let (plan, record) = plan_bridge::vif_up(&vif, &mode, &facts, prev)?;
    if call.print(&plan) {
        return Ok(Outcome::DryRun);
    }
    let ifindex = device_index(&vif.kernel_name, &vif.name, &facts);
    call.apply(&handle, &plan, call.journal(VifJournal::Bridge(record.clone()), ifindex), previous.as_ref()).await?;
    log::info(&format!("{}: on bridge {}{}", record.name, record.bridge, antispoof_note(record.antispoof)));
    Ok(Outcome::Online { mtu: Some(record.mtu) })
}

/// Route mode's online. The host-wide part comes first when it has not run (libxl never
/// calls `network route start`), in the same all-or-nothing plan.
async fn route_up(call: &Call<'_>, previous: Option<VifJournal>) -> Result<Outcome> {
    // Once the host-wide part has run, its settings hold (they may have come as
    // `network route start` arguments); the mode file is still checked.
    let file_mode = inputs::route_mode(call.inputs)?;
    let started = state::read_host::<plan_route::HostRecord>("route")?;
    let mode = started.as_ref().map(|h| h.mode.clone()).unwrap_or(file_mode);
    let vif = inputs::routed_vif(call.inputs, &mode, call.dev_type)?;
    let prev = call.earlier(previous.as_ref(), VifJournal::route)?;
    let handle = apply::connect()?;
    let (mut plan, host, host_is_new) = match started {
        Some(h) => (Plan::default(), h, false),
        None => {
            let facts = observe::route_host(&handle, &mode).await?;
            let (p, mut h) = plan_route::host_up(&mode, &facts).map_err(|e| e.from_source(inputs::netdev_at(call.inputs, "route")))?;
            h.args = inputs::mode_args(call.inputs, inputs::NETWORK_ROUTE_KEYS);
            (p, h, true)
        }
    };
    let facts = observe::vif_links(&handle, &vif.kernel_name, &vif.name).await?;
    // Two guests routed one address would each get half its traffic: the second is refused.
    if let Some((ip, dev)) = plan_route::routed_elsewhere(&vif, &observe::our_routes_to(&handle, &vif.ips).await?) {
        let at = call.inputs.get_set("ip").map(|s| s.at).unwrap_or_else(|| "ip".into());
        bail!(ConfigError::bad(at, ip.ip().to_string(), format!("is routed to {dev} already, another guest's vif: take that one offline first")));
    }
    // Without a gateway the vif answers for the uplink's own addresses, as Xen's vif-route
    // did: libxl's `gatewaydev` (the `netdev` it passes) names the device, else the uplink.
    let uplink_addrs = match (host.mode.gateway.is_empty(), call.inputs.get_set("netdev").or_else(|| call.inputs.get_set("gatewaydev"))) {
        (false, _) => Vec::new(),
        (true, Some(dev)) => {
            // libxl passes the vif's gatewaydev; a link that is not there is a typo to
            // name, not a guest left without a gateway.
            let name = IfName::parse(&dev.at, dev.value.trim())?;
            if observe::link(&handle, name.as_str()).await?.is_none() {
                bail!(ConfigError::bad(&dev.at, &dev.value, "is not a link on this host"));
            }
            observe::global_addresses(&handle, &name).await?
        }
        (true, None) => match &host.uplink {
            Some(up) => observe::global_addresses(&handle, up).await?,
            None => Vec::new(),
        },
    };
    let sysctls = observe::route_vif_sysctls(&vif.kernel_name, &vif.name);
    let (vif_plan, record) = plan_route::vif_up(&vif, &host, &facts, plan_route::answered(&host.mode, &uplink_addrs), &sysctls, prev)?;
    plan.steps.extend(vif_plan.steps);
    if call.print(&plan) {
        return Ok(Outcome::DryRun);
    }
    let ifindex = device_index(&vif.kernel_name, &vif.name, &facts);
    let journal = call.journal(VifJournal::Route(record.clone()), ifindex);
    call.apply_with_host(&handle, &plan, journal, previous.as_ref(), "route", host_is_new.then_some(&host)).await?;
    let ips: Vec<String> = record.ips.iter().map(|n| n.to_string()).collect();
    log::info(&format!("{}: routes {}{}", record.name, ips.join(" "), antispoof_note(record.antispoof)));
    Ok(Outcome::Online { mtu: record.mtu })
}

/// `offline` / `remove`: from the journal, whatever the mode was; without one (state lost,
/// or never online) or with an unreadable one, what the inputs describe.
async fn down(call: &Call<'_>) -> Result<()> {
    let name = call.kernel_name.as_str();
    let journal = match state::read_vif(name) {
        Ok(Some(j)) => Some(j),
        Ok(None) => None,
        Err(e @ state::StateError::Corrupt { .. }) => {
            log::warn(&format!("{e}; undoing what the inputs describe"));
            None
        }
        Err(e) => return Err(e.into()),
    };
    let Some(journal) = journal.map_or_else(|| undo::guessed(&call.args.mode, call.inputs, call.dev_type), |j| Ok(Some(j)))? else {
        // Nothing certain to undo; an unreadable journal goes all the same.
        return if call.args.dry_run { Ok(()) } else { Ok(state::remove_vif(name)?) };
    };
    let plan = undo::down_plan(&journal, call.inputs)?;
    if call.print(&plan) {
        return Ok(());
    }
    let handle = apply::connect()?;
    undo::apply_down(&handle, name, &plan).await.with_context(|| format!("{}: offline", call.kernel_name))?;
    match &journal {
        VifJournal::Bridge(r) => log::info(&format!("{}: off bridge {}", r.name, r.bridge)),
        VifJournal::Route(r) => log::info(&format!("{}: no longer routed", r.name)),
        VifJournal::Nat(r) => log::info(&format!("{}: {} ({}) offline, its name and address kept", r.name, r.hostname, r.guest)),
    }
    Ok(())
}

/// Nat mode's online: the host-wide part first when it has not run (masquerade, dnsmasq),
/// in the same all-or-nothing plan; then the guest's machine number, address and files.
async fn nat_up(call: &Call<'_>, previous: Option<VifJournal>) -> Result<Outcome> {
    let file_mode = inputs::nat_mode(call.inputs)?;
    let started = state::read_host::<plan_nat::NatHostRecord>("nat")?;
    let mode = started.as_ref().map(|h| h.mode.clone()).unwrap_or(file_mode);
    let vif = inputs::nat_vif(call.inputs, &mode, call.dev_type, call.domain_name.clone())?;
    let prev = call.earlier(previous.as_ref(), VifJournal::nat)?;
    let handle = apply::connect()?;
    let (mut plan, host, host_is_new) = match started {
        Some(h) => (Plan::default(), h, false),
        None => {
            let facts = observe::nat_host(&handle, &mode).await?;
            let (p, mut h) = plan_nat::host_up(&mode, &facts, &state::dir()).map_err(|e| e.from_source(inputs::netdev_at(call.inputs, "nat")))?;
            h.args = inputs::mode_args(call.inputs, inputs::NETWORK_NAT_KEYS);
            (p, h, true)
        }
    };
    let facts = observe::nat_vif(&handle, &vif, &mode).await?;
    let (vif_plan, record) = plan_nat::vif_up(&vif, &host, &facts, prev)?;
    plan.steps.extend(vif_plan.steps);
    if call.print(&plan) {
        return Ok(Outcome::DryRun);
    }
    let ifindex = device_index(&vif.kernel_name, &vif.name, &facts.links);
    let journal = call.journal(VifJournal::Nat(record.clone()), ifindex);
    call.apply_with_host(&handle, &plan, journal, previous.as_ref(), "nat", host_is_new.then_some(&host)).await?;
    log::info(&format!("{}: {} is {} (host side {}){}", record.name, record.hostname, record.guest, record.host_side, antispoof_note(record.antispoof)));
    Ok(Outcome::Online { mtu: record.mtu })
}

fn antispoof_note(on: bool) -> &'static str {
    if on {
        " (antispoof on)"
    } else {
        ""
    }
}

/// `hotplug-status=connected` (what netback waits for), and the MTU we chose for the
/// frontend, as Xen's set_mtu does (at the right path).
fn report_connected(x: &mut XenStore, path: &str, inputs: &Inputs, dev_type: DevType, mtu: Option<u32>) -> Result<()> {
    if dev_type != DevType::Vif {
        return Ok(());
    }
    let mtu = mtu.map(|m| m.to_string());
    let mut writes: Vec<(String, &str)> = Vec::new();
    if let (Some(mtu), Some(fe)) = (mtu.as_deref(), inputs.xenstore.iter().find(|(k, _)| k == "frontend").map(|(_, v)| v)) {
        writes.push((format!("{fe}/mtu"), mtu));
    }
    writes.push((format!("{path}/hotplug-status"), "connected"));
    let pairs: Vec<(&str, &str)> = writes.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    // In order: the frontend's MTU is in place before netback sees `connected`.
    x.write_many(&pairs).context("xenstore: writing hotplug-status")?;
    Ok(())
}
