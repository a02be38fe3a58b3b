//! `vifnet vif <mode> online|offline|add|remove [type_if=vif|tap] [key=value...]`: what libxl
//! runs per guest interface. Success writes `hotplug-status=connected`; failure writes
//! `hotplug-error` and `hotplug-status=error` and exits 1, having changed nothing.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::config::inputs::{self, Inputs};
use crate::config::kv;
use crate::model::DevType;
use crate::plan::{bridge as plan_bridge, VifRecord};
use crate::xenstore::XenStore;
use crate::{apply, log, observe, state};

#[derive(clap::Args, Debug)]
pub struct VifArgs {
    /// The mode: bridge.
    mode: String,
    /// The command (online, offline, add, remove) and key=value settings
    /// (type_if, vif, bridge, ip, mac, mtu, vifname, antispoof).
    #[arg(required = true, allow_hyphen_values = false)]
    words: Vec<String>,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Libxl gives a script 40 s; waiting for the lock must end well before.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

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
    if args.mode != "bridge" {
        bail!("mode {:?}: not available yet (bridge is)", args.mode);
    }
    let (words, kvs) = kv::parse_args(args.words.clone())?;
    let command = words.first().map(String::as_str).unwrap_or("");
    if let Some(extra) = words.get(1) {
        bail!("argument {extra:?}: unexpected; give settings as key=value");
    }
    let mut inputs = Inputs { args: kvs, env: Inputs::env_from_process(), xenstore: Vec::new(), xenbus_path: xenbus_path.map(String::from) };
    inputs.check_arg_keys(inputs::VIF_ARG_KEYS)?;
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

    if let Some(path) = xenbus_path {
        let x = xs.insert(XenStore::connect().context("xenstore")?);
        let paths: Vec<String> = inputs::XENSTORE_KEYS.iter().map(|k| format!("{path}/{k}")).collect();
        let values = x.read_many(&paths.iter().map(String::as_str).collect::<Vec<_>>()).context("xenstore")?;
        for (key, value) in inputs::XENSTORE_KEYS.iter().zip(values) {
            if let Some(v) = value {
                inputs.xenstore.push((key.to_string(), v));
            }
        }
    }
    let mode = inputs::bridge_mode(&inputs)?;
    let kernel_name = inputs::device_name(&inputs, dev_type)?;

    let rt = crate::cli::runtime()?;
    match action {
        Action::Up => {
            let vif = inputs::bridged_vif(&inputs, &mode, dev_type)?;
            let _lock = if args.dry_run { None } else { Some(state::lock(LOCK_TIMEOUT)?) };
            let previous = state::read_vif(kernel_name.as_str())?;
            rt.block_on(async {
                let handle = apply::connect()?;
                let mut facts = observe::facts(&handle, &plan_bridge::names_to_observe(&vif)).await?;
                let fallback = observe::facts(&handle, &plan_bridge::fallback_names(&vif, &facts)).await?;
                facts.links.extend(fallback.links);
                let (plan, record) = plan_bridge::vif_up(&vif, &mode, &facts, previous.as_ref())?;
                if args.dry_run {
                    print!("{plan}");
                    return Ok(());
                }
                state::write_vif(&record)?;
                if let Err(e) = apply::setup(&handle, &plan).await {
                    // Nothing was left on the host: the journal goes too, unless an earlier online stands.
                    match &previous {
                        Some(p) => state::write_vif(p)?,
                        None => state::remove_vif(kernel_name.as_str())?,
                    }
                    return Err(anyhow!(e).context(format!("{kernel_name}: online failed")));
                }
                log::info(&format!("{}: on bridge {}{}", record.name, record.bridge, antispoof_note(&record)));
                if let (Some(path), Some(x)) = (xenbus_path, xs.as_mut()) {
                    report_connected(x, path, &inputs, &record)?;
                }
                Ok::<(), anyhow::Error>(())
            })
        }
        Action::Down => {
            let _lock = if args.dry_run { None } else { Some(state::lock(LOCK_TIMEOUT)?) };
            let record = match state::read_vif(kernel_name.as_str())? {
                Some(r) => r,
                // No journal (state lost, or never online): undo what the inputs describe.
                None => match inputs::bridged_vif(&inputs, &mode, dev_type) {
                    Ok(vif) => plan_bridge::record(&vif, vif.bridge.clone(), 0),
                    Err(_) => return Ok(()),
                },
            };
            let plan = plan_bridge::vif_down(&record);
            if args.dry_run {
                print!("{plan}");
                return Ok(());
            }
            rt.block_on(async {
                let handle = apply::connect()?;
                apply::teardown(&handle, &plan).await.with_context(|| format!("{kernel_name}: offline"))?;
                state::remove_vif(kernel_name.as_str())?;
                log::info(&format!("{}: off bridge {}", record.name, record.bridge));
                Ok(())
            })
        }
    }
}

fn antispoof_note(r: &VifRecord) -> &'static str {
    if r.antispoof {
        " (antispoof on)"
    } else {
        ""
    }
}

/// `hotplug-status=connected` (what netback waits for), and the MTU we chose for the
/// frontend when it came from the bridge, as Xen's set_mtu does (at the right path).
fn report_connected(x: &mut XenStore, path: &str, inputs: &Inputs, rec: &VifRecord) -> Result<()> {
    let status_key = format!("{path}/hotplug-status");
    let mtu = rec.mtu.to_string();
    let mut writes: Vec<(String, &str)> = Vec::new();
    if let (DevType::Vif, Some(fe)) = (rec.dev_type, inputs.xenstore.iter().find(|(k, _)| k == "frontend").map(|(_, v)| v)) {
        writes.push((format!("{fe}/mtu"), mtu.as_str()));
    }
    if rec.dev_type == DevType::Vif {
        writes.push((status_key, "connected"));
    }
    let pairs: Vec<(&str, &str)> = writes.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    // In order: the frontend's MTU is in place before netback sees `connected`.
    x.write_many(&pairs).context("xenstore: writing hotplug-status")?;
    Ok(())
}
