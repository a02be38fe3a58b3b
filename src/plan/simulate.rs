//! `setup --simulate`: a whole Xen configuration stood up in network namespaces. This file
//! turns the parsed configs into a description of the lab (pure); `apply::simulate` builds it.

use crate::config::domain::DomainConfig;
use crate::config::kv::KeyValues;
use crate::config::sxp::XendConfig;
use crate::config::xlconf::XlConf;
use crate::config::ConfigError;
use crate::model::{parse_ip_list, parse_mtu, IfName, MacAddr};

/// The lan host every guest should reach, and the dom0 uplink facing it.
pub const LAN_ADDR: &str = "192.0.2.1/24";
pub const LAN_ADDR6: &str = "2001:db8::1/64";
pub const DOM0_ADDR: &str = "192.0.2.2/24";
pub const DOM0_ADDR6: &str = "2001:db8::2/64";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimVif {
    pub domid: u32,
    pub devid: u32,
    /// Settings of the `vif=` entry, passed on as key=value arguments, as xend did.
    pub settings: KeyValues,
    /// Address and MAC the stand-in guest configures on its side.
    pub guest_addrs: Vec<String>,
    pub guest_mac: Option<String>,
}

impl SimVif {
    pub fn kernel_name(&self) -> String {
        format!("vif{}.{}", self.domid, self.devid)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimGuest {
    pub name: String,
    pub netns: String,
    pub vifs: Vec<SimVif>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lab {
    pub mode: String,
    pub dom0: String,
    pub lan: String,
    /// The dom0 end of the uplink veth (the `netdev` of the network script, default eth0).
    pub uplink: IfName,
    /// `network <mode> start` arguments from xend-config.sxp's network-script.
    pub network_args: KeyValues,
    pub guests: Vec<SimGuest>,
}

/// A namespace name for `prefix` and `what`, within the 15-byte-free but tidy limits.
fn ns_name(prefix: &str, what: &str) -> String {
    format!("{prefix}-{what}")
}

pub fn lab(prefix: &str, xend: Option<&XendConfig>, xl: Option<&XlConf>, domains: &[DomainConfig]) -> Result<Lab, ConfigError> {
    let script_mode = |s: Option<&str>| s.map(|m| m.to_string());
    let mode = script_mode(xend.and_then(|x| x.vif_script.as_ref()).and_then(|s| s.mode()))
        .or_else(|| script_mode(xend.and_then(|x| x.network_script.as_ref()).and_then(|s| s.mode())))
        .or_else(|| {
            xl.and_then(|x| x.default_script.as_deref()).map(|s| s.rsplit('/').next().unwrap_or(s).trim_start_matches("vif-").to_string())
        })
        .unwrap_or_else(|| "bridge".to_string());
    if mode != "bridge" {
        return Err(ConfigError::bad("vif-script", mode, "is not a mode vifnet simulates yet (bridge)"));
    }
    let network_args = xend.and_then(|x| x.network_script.as_ref()).map(|s| s.args.clone()).unwrap_or_default();
    let uplink = IfName::parse("network-script netdev", network_args.get("netdev").unwrap_or("eth0"))?;
    let default_bridge = xl.and_then(|x| x.default_bridge.clone()).or_else(|| network_args.get("bridge").map(String::from));
    let vif_script_args = xend.and_then(|x| x.vif_script.as_ref()).map(|s| s.args.clone()).unwrap_or_default();

    let mut guests = Vec::new();
    for (i, d) in domains.iter().enumerate() {
        let domid = i as u32 + 1;
        let mut vifs = Vec::new();
        for (devid, spec) in d.vifs.iter().enumerate() {
            let mut settings = KeyValues::default();
            // xend's per-script arguments first, then the domain's own settings over them.
            for (k, v) in vif_script_args.iter() {
                settings.push(k, v);
            }
            if let (Some(b), false) = (&default_bridge, spec.contains_key("bridge")) {
                settings.push("bridge", b.clone());
            }
            for (k, v) in spec.iter() {
                match k {
                    "mac" | "ip" | "bridge" | "vifname" | "mtu" | "antispoof" => settings.push(k, v),
                    // Keys that concern the toolstack or QEMU, not the host network.
                    _ => {}
                }
            }
            // Every setting is checked here, before any namespace exists.
            let at = |key: &str| format!("{} vif[{devid}] {key}", d.name);
            let ips = parse_ip_list(&at("ip"), settings.get("ip").unwrap_or(""))?;
            for key in ["bridge", "vifname"] {
                if let Some(v) = settings.get(key) {
                    IfName::parse(&at(key), v)?;
                }
            }
            if let Some(v) = settings.get("mac") {
                MacAddr::parse_unicast(&at("mac"), v)?;
            }
            if let Some(v) = settings.get("mtu") {
                parse_mtu(&at("mtu"), v)?;
            }
            let guest_addrs = ips
                .iter()
                .map(|n| if n.is_ipv4() { format!("{}/24", n.ip()) } else { format!("{}/64", n.ip()) })
                .collect();
            vifs.push(SimVif { domid, devid: devid as u32, guest_mac: settings.get("mac").map(String::from), settings, guest_addrs });
        }
        guests.push(SimGuest { name: d.name.clone(), netns: ns_name(prefix, &d.name), vifs });
    }
    Ok(Lab { mode, dom0: ns_name(prefix, "dom0"), lan: ns_name(prefix, "lan"), uplink, network_args, guests })
}
