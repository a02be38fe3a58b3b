//! `vifnet network <mode> status [--json]`: whether a mode's host-wide part is started,
//! what it holds, and its guests online. A mode that is not started is an answer, not a
//! failure: it prints "stopped" and exits 0, as `systemctl is-active` would not.

use anyhow::Result;
use serde::Serialize;

use crate::config::inputs::{self, Inputs};
use crate::plan::{nat as plan_nat, route as plan_route, VifJournal};
use crate::{apply, observe, state};

/// One mode's host-wide part; fields a mode does not have are left out of the JSON.
#[derive(Serialize, Default)]
pub struct ModeStatus {
    mode: &'static str,
    /// "started" or "stopped".
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    bridge: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ports: Option<Vec<String>>,
    /// Bridge mode: the uplink taken over, and how many of its addresses and routes moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    takeover: Option<Takeover>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uplink: Option<String>,
    /// Route mode: the link holding the guests' gateway, and its addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway_link: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    gateway: Vec<String>,
    /// Nat mode: the guests' prefix, their DNS domain, and whose dnsmasq serves them.
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dnsmasq: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sysctls: Vec<Sysctl>,
    /// The mode's vifs online, from their journals.
    guests: Vec<Guest>,
}

#[derive(Serialize)]
struct Takeover {
    netdev: String,
    addresses: usize,
    routes: usize,
}

#[derive(Serialize)]
struct Sysctl {
    key: String,
    value: String,
    was: String,
}

#[derive(Serialize)]
struct Guest {
    vif: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<String>,
    addresses: Vec<String>,
}

pub fn run(mode: &str, inputs: &Inputs, json: bool) -> Result<()> {
    let status = match mode {
        "bridge" => bridge(inputs)?,
        "route" => route()?,
        _ => nat()?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", text(&status));
    }
    Ok(())
}

fn bridge(inputs: &Inputs) -> Result<ModeStatus> {
    let mode = inputs::bridge_mode(inputs)?;
    let rt = crate::cli::runtime()?;
    let ports = rt.block_on(async {
        let handle = apply::connect()?;
        Ok::<_, anyhow::Error>(match observe::link(&handle, mode.bridge.as_str()).await? {
            Some(b) => Some(observe::ports_of(&handle, b.header.index).await?),
            None => None,
        })
    })?;
    let takeover = state::read_takeover(mode.bridge.as_str())?
        .map(|t| Takeover { netdev: t.netdev.to_string(), addresses: t.addrs.len(), routes: t.routes.len() });
    let guests = guests(|j| j.bridge().filter(|r| r.bridge == mode.bridge).map(|r| (None, r.ips.iter().map(|n| n.to_string()).collect())))?;
    Ok(ModeStatus { mode: "bridge", state: started(ports.is_some()), bridge: Some(mode.bridge.to_string()), ports, takeover, guests, ..Default::default() })
}

fn route() -> Result<ModeStatus> {
    let guests = guests(|j| j.route().map(|r| (None, r.ips.iter().map(|n| n.to_string()).collect())))?;
    let Some(rec) = state::read_host::<plan_route::HostRecord>("route")? else {
        return Ok(ModeStatus { mode: "route", state: started(false), guests, ..Default::default() });
    };
    Ok(ModeStatus {
        mode: "route",
        state: started(true),
        uplink: rec.uplink.map(|u| u.to_string()),
        gateway_link: rec.gateway_link.map(|l| l.to_string()),
        gateway: rec.gateway_addrs.iter().map(|a| a.to_string()).collect(),
        sysctls: sysctls(&rec.sysctls),
        guests,
        ..Default::default()
    })
}

fn nat() -> Result<ModeStatus> {
    let guests = guests(|j| j.nat().map(|r| (Some(r.hostname.clone()), vec![r.guest.to_string()])))?;
    let Some(rec) = state::read_host::<plan_nat::NatHostRecord>("nat")? else {
        return Ok(ModeStatus { mode: "nat", state: started(false), guests, ..Default::default() });
    };
    let dnsmasq = match &rec.dnsmasq {
        Some(d) => format!("ours ({})", d.pidfile.display()),
        None => format!("the system's ({})", rec.mode.dnsmasq_pidfile.display()),
    };
    Ok(ModeStatus {
        mode: "nat",
        state: started(true),
        uplink: Some(rec.uplink.to_string()),
        prefix: Some(rec.mode.prefix.to_string()),
        domain: Some(rec.mode.domain.clone()),
        dnsmasq: Some(dnsmasq),
        sysctls: sysctls(&rec.sysctls),
        guests,
        ..Default::default()
    })
}

fn started(yes: bool) -> &'static str {
    if yes {
        "started"
    } else {
        "stopped"
    }
}

fn sysctls(changes: &[plan_route::SysctlChange]) -> Vec<Sysctl> {
    changes.iter().map(|c| Sysctl { key: c.key.clone(), value: c.new.clone(), was: c.old.clone() }).collect()
}

/// The vifs online whose journals `pick` claims, with their hostname and addresses.
fn guests(pick: impl Fn(&VifJournal) -> Option<(Option<String>, Vec<String>)>) -> Result<Vec<Guest>> {
    Ok(state::all_vifs()?
        .iter()
        .filter_map(|j| pick(j).map(|(hostname, addresses)| Guest { vif: j.name().to_string(), hostname, addresses }))
        .collect())
}

/// The status as lines for a person.
fn text(s: &ModeStatus) -> String {
    let mut out = format!("{} mode: {}", s.mode, s.state);
    if let Some(b) = &s.bridge {
        out += &format!(", bridge {b}");
        if let Some(ports) = &s.ports {
            out += &format!(", ports: {}", if ports.is_empty() { "-".into() } else { ports.join(" ") });
        }
    }
    if let Some(u) = &s.uplink {
        out += &format!(", uplink {u}");
    }
    if let Some(l) = &s.gateway_link {
        out += &format!(", gateway on {l} {}", s.gateway.join(" "));
    }
    if let (Some(p), Some(d), Some(m)) = (&s.prefix, &s.domain, &s.dnsmasq) {
        out += &format!(", {p} masqueraded, domain {d}, dnsmasq {m}");
    }
    out.push('\n');
    if let Some(t) = &s.takeover {
        out += &format!("  uplink {} taken over: {} addresses, {} routes moved\n", t.netdev, t.addresses, t.routes);
    }
    for c in &s.sysctls {
        out += &format!("  sysctl {} = {} (was {})\n", c.key, c.value, c.was);
    }
    let guests: Vec<String> = s
        .guests
        .iter()
        .map(|g| [Some(g.vif.clone()), g.hostname.clone(), Some(g.addresses.join(" "))].into_iter().flatten().filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" "))
        .collect();
    out += &format!("  guests online: {}\n", if guests.is_empty() { "-".into() } else { guests.join(", ") });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_mode_says_so_in_one_line_and_in_json() {
        let s = ModeStatus { mode: "route", state: started(false), ..Default::default() };
        assert_eq!(text(&s), "route mode: stopped\n  guests online: -\n");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"mode":"route","state":"stopped","guests":[]}"#);
    }
}
