//! Where one call's settings come from, in precedence order (design.md §2): `key=value`
//! arguments, then the environment libxl sets, then the vif's xenstore keys, then the mode
//! file. Every value keeps its origin so an error can name it.

use super::kv::KeyValues;
use super::ConfigError;
use crate::model::{self, BridgedVif, DevType, IfName, MacAddr};
use crate::plan::bridge::BridgeMode;

/// Environment variables that carry settings (libxl's and xend's).
pub const ENV_KEYS: &[&str] = &["vif", "netdev", "bridge", "ip", "INTERFACE", "XENBUS_PATH", "type_if"];

/// Keys a vif script accepts as `key=value` arguments.
pub const VIF_ARG_KEYS: &[&str] = &["type_if", "vif", "bridge", "ip", "mac", "mtu", "vifname", "antispoof", "netdev", "gatewaydev", "INTERFACE"];

/// Keys `network bridge` accepts.
pub const NETWORK_BRIDGE_KEYS: &[&str] = &["bridge", "netdev", "takeover", "antispoof", "create_bridge"];

/// xenstore keys of a vif backend that we read.
pub const XENSTORE_KEYS: &[&str] = &["ip", "mac", "bridge", "vifname", "mtu", "gatewaydev", "frontend", "frontend-id", "handle"];

#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub args: KeyValues,
    pub env: Vec<(String, String)>,
    /// Backend keys, read from `xenbus_path`.
    pub xenstore: Vec<(String, String)>,
    pub xenbus_path: Option<String>,
}

/// A value and where it came from (`argument ip`, `environment vif`, `xenstore backend/vif/5/0/ip`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced {
    pub value: String,
    pub at: String,
}

impl Inputs {
    /// The environment as libxl passes it; only the keys we know are kept.
    pub fn env_from_process() -> Vec<(String, String)> {
        ENV_KEYS.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))).collect()
    }

    /// Refuses argument keys the verb does not know (Xen eval'd anything; we name the typo).
    pub fn check_arg_keys(&self, known: &[&str]) -> Result<(), ConfigError> {
        for (k, _) in self.args.iter() {
            if !known.contains(&k) {
                return Err(ConfigError::UnknownKey { at: "argument".into(), key: k.to_string() });
            }
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<Sourced> {
        if let Some(v) = self.args.get(key) {
            return Some(Sourced { value: v.to_string(), at: format!("argument {key}") });
        }
        if let Some((_, v)) = self.env.iter().rev().find(|(k, _)| k == key) {
            return Some(Sourced { value: v.clone(), at: format!("environment {key}") });
        }
        if let Some((_, v)) = self.xenstore.iter().find(|(k, _)| k == key) {
            let path = self.xenbus_path.as_deref().unwrap_or("backend");
            return Some(Sourced { value: v.clone(), at: format!("xenstore {path}/{key}") });
        }
        None
    }

    /// A value that is set and not empty (libxl writes empty keys, e.g. `netdev=`).
    pub fn get_set(&self, key: &str) -> Option<Sourced> {
        self.get(key).filter(|s| !s.value.trim().is_empty())
    }
}

/// A partial bridge mode file: every key optional, unknown keys refused.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeModeFile {
    pub bridge: Option<String>,
    pub create_bridge: Option<bool>,
    pub netdev: Option<String>,
    pub takeover: Option<bool>,
    pub antispoof: Option<bool>,
}

fn merge(base: BridgeModeFile, over: BridgeModeFile) -> BridgeModeFile {
    BridgeModeFile {
        bridge: over.bridge.or(base.bridge),
        create_bridge: over.create_bridge.or(base.create_bridge),
        netdev: over.netdev.or(base.netdev),
        takeover: over.takeover.or(base.takeover),
        antispoof: over.antispoof.or(base.antispoof),
    }
}

/// Bridge mode's host-wide settings: the mode files, then `key=value` arguments.
pub fn bridge_mode(inputs: &Inputs) -> Result<BridgeMode, ConfigError> {
    let file = super::modefile::load::<BridgeModeFile>("bridge", merge)?;
    let origin = super::modefile::override_path("bridge").display().to_string();
    let bridge = match inputs.args.get("bridge") {
        Some(b) => IfName::parse("argument bridge", b)?,
        None => IfName::parse(&format!("{origin} bridge"), file.bridge.as_deref().unwrap_or("xenbr0"))?,
    };
    let flag = |key: &str, file_value: Option<bool>, default: bool| -> Result<bool, ConfigError> {
        match inputs.args.get(key) {
            Some(v) => model::parse_bool(&format!("argument {key}"), v),
            None => Ok(file_value.unwrap_or(default)),
        }
    };
    let netdev = match inputs.args.get("netdev").or(file.netdev.as_deref()) {
        Some(n) if !n.is_empty() => Some(IfName::parse("netdev", n)?),
        _ => None,
    };
    Ok(BridgeMode {
        bridge,
        create_bridge: flag("create_bridge", file.create_bridge, true)?,
        netdev,
        takeover: flag("takeover", file.takeover, false)?,
        antispoof: flag("antispoof", file.antispoof, true)?,
    })
}

/// The device a hotplug call is about: `vif` for a netback vif, `INTERFACE` for a tap.
pub fn device_name(inputs: &Inputs, dev_type: DevType) -> Result<IfName, ConfigError> {
    let key = match dev_type {
        DevType::Vif => "vif",
        DevType::Tap => "INTERFACE",
    };
    let s = inputs
        .get_set(key)
        .ok_or_else(|| ConfigError::Missing { key: key.into(), hint: "libxl sets it in the environment; by hand, give it as key=value".into() })?;
    IfName::parse(&s.at, s.value.trim())
}

/// Every bridge-mode setting of one vif, validated.
pub fn bridged_vif(inputs: &Inputs, mode: &BridgeMode, dev_type: DevType) -> Result<BridgedVif, ConfigError> {
    let kernel_name = device_name(inputs, dev_type)?;
    let name = match inputs.get_set("vifname") {
        // A tap carries the vif's chosen name with -emu, as Xen's scripts do.
        Some(s) => {
            let wanted = match dev_type {
                DevType::Vif => s.value.trim().to_string(),
                DevType::Tap => format!("{}-emu", s.value.trim()),
            };
            IfName::parse(&s.at, &wanted)?
        }
        None => kernel_name.clone(),
    };
    let bridge = match inputs.get_set("bridge") {
        Some(s) => IfName::parse(&s.at, s.value.trim())?,
        None => mode.bridge.clone(),
    };
    let guest_mac = match inputs.get_set("mac") {
        Some(s) => Some(MacAddr::parse_unicast(&s.at, s.value.trim())?),
        None => None,
    };
    let ips = match inputs.get_set("ip") {
        Some(s) => model::parse_ip_list(&s.at, &s.value)?,
        None => Vec::new(),
    };
    let mtu = match inputs.get_set("mtu") {
        Some(s) => Some(model::parse_mtu(&s.at, &s.value)?),
        None => None,
    };
    let antispoof_wanted = match inputs.get_set("antispoof") {
        Some(s) => model::parse_bool(&s.at, &s.value)?,
        None => mode.antispoof,
    };
    // Antispoofing applies where the guest's addresses are known, as Xen's did.
    let antispoof = antispoof_wanted && !ips.is_empty();
    if antispoof && guest_mac.is_none() {
        return Err(ConfigError::Missing {
            key: "mac".into(),
            hint: "antispoofing checks the guest's MAC: give mac=, or antispoof=no".into(),
        });
    }
    Ok(BridgedVif { kernel_name, name, dev_type, bridge, guest_mac, ips, mtu, antispoof })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(args: &[(&str, &str)], env: &[(&str, &str)], xs: &[(&str, &str)]) -> Inputs {
        let args: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Inputs {
            args: super::super::kv::parse_args(args).unwrap().1,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            xenstore: xs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            xenbus_path: Some("backend/vif/5/0".into()),
        }
    }
    fn mode() -> BridgeMode {
        BridgeMode { bridge: IfName::parse("t", "xenbr0").unwrap(), create_bridge: true, netdev: None, takeover: false, antispoof: true }
    }

    #[test]
    fn arguments_beat_environment_beats_xenstore() {
        let i = inputs(&[("bridge", "br-arg")], &[("bridge", "br-env"), ("vif", "vif5.0")], &[("bridge", "br-xs"), ("ip", "192.0.2.5")]);
        assert_eq!(i.get("bridge").unwrap().value, "br-arg");
        assert_eq!(i.get("ip").unwrap().at, "xenstore backend/vif/5/0/ip");
        let i = inputs(&[], &[("bridge", "br-env")], &[("bridge", "br-xs")]);
        assert_eq!(i.get("bridge").unwrap().at, "environment bridge");
    }

    #[test]
    fn a_bad_xenstore_mac_names_its_path() {
        let i = inputs(&[], &[("vif", "vif5.0")], &[("mac", "zz:zz:zz:zz:zz:zz"), ("ip", "192.0.2.5")]);
        let e = bridged_vif(&i, &mode(), DevType::Vif).unwrap_err();
        assert_eq!(e.to_string(), "xenstore backend/vif/5/0/mac: \"zz:zz:zz:zz:zz:zz\" is not a MAC address (six hex bytes separated by ':')");
    }

    #[test]
    fn tap_names_get_emu_and_antispoof_needs_addresses() {
        let i = inputs(&[("vifname", "web0")], &[("INTERFACE", "vif5.0-emu")], &[("mac", "00:16:3e:00:00:01")]);
        let v = bridged_vif(&i, &mode(), DevType::Tap).unwrap();
        assert_eq!(v.name.as_str(), "web0-emu");
        assert!(!v.antispoof, "no ip= means no antispoofing, as in Xen");
        assert_eq!(v.bridge.as_str(), "xenbr0");
    }
}
