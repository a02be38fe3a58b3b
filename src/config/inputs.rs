//! Where one call's settings come from, in precedence order (design.md §2): `key=value`
//! arguments, then the environment libxl sets, then the vif's xenstore keys, then the mode
//! file. Every value keeps its origin so an error can name it.

use super::kv::KeyValues;
use super::ConfigError;
use crate::model::{self, BridgedVif, DevType, IfName, MacAddr, RoutedVif};
use crate::plan::bridge::BridgeMode;
use crate::plan::nat::{NatMode, NatVif};
use crate::plan::route::RouteMode;

/// Environment variables that carry settings (libxl's and xend's).
pub const ENV_KEYS: &[&str] = &["vif", "netdev", "bridge", "ip", "INTERFACE", "XENBUS_PATH", "type_if"];

/// Keys a vif script accepts as `key=value` arguments.
pub const VIF_ARG_KEYS: &[&str] = &["type_if", "vif", "bridge", "ip", "mac", "mtu", "vifname", "antispoof", "netdev", "gatewaydev", "INTERFACE", "name", "devid"];

/// Keys `network bridge` accepts.
pub const NETWORK_BRIDGE_KEYS: &[&str] = &["bridge", "netdev", "takeover", "antispoof", "create_bridge"];

/// Keys `network route` takes as arguments (the mode file's, which they override).
pub const NETWORK_ROUTE_KEYS: &[&str] = &["netdev", "gateway", "gateway_link", "gateway_kind", "uplink_proxy", "antispoof"];

/// Keys `network nat` takes as arguments (the mode file's, which they override).
pub const NETWORK_NAT_KEYS: &[&str] = &["netdev", "prefix", "domain", "hosts", "ethers", "run_dnsmasq", "dnsmasq_pidfile", "antispoof"];

/// The xenstore keys of a vif backend that an online in `mode` reads (`frontend`: where the
/// guest learns its MTU): only those its mode uses.
pub fn xenstore_keys(mode: &str) -> &'static [&'static str] {
    match mode {
        "route" => &["ip", "mac", "vifname", "mtu", "gatewaydev", "frontend"],
        "nat" => &["ip", "mac", "vifname", "mtu", "handle", "frontend"],
        _ => &["ip", "mac", "bridge", "vifname", "mtu", "frontend"],
    }
}

#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub args: KeyValues,
    pub env: Vec<(String, String)>,
    /// Backend keys, read from `xenbus_path`.
    pub xenstore: Vec<(String, String)>,
    pub xenbus_path: Option<String>,
    /// Where `args` came from when not the command line, e.g. `/etc/xen/xend-config.sxp:12
    /// network-script`: errors name it instead of `argument`.
    pub args_origin: Option<String>,
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
    /// `of` says whose keys `known` are (`vif scripts`, `network-route`).
    pub fn check_arg_keys(&self, known: &[&str], of: &str) -> Result<(), ConfigError> {
        match self.args.iter().find(|(k, _)| !known.contains(k)) {
            Some((k, v)) => Err(ConfigError::unknown_key(self.args_at(), k, v, of, known)),
            None => Ok(()),
        }
    }

    /// Where the `key=value` arguments came from: the command line, or a file's script call.
    fn args_at(&self) -> &str {
        self.args_origin.as_deref().unwrap_or("argument")
    }

    pub fn get(&self, key: &str) -> Option<Sourced> {
        if let Some(v) = self.args.get(key) {
            return Some(Sourced { value: v.to_string(), at: format!("{} {key}", self.args_at()) });
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

/// The `key=value` arguments among `keys` (a mode's): what a started mode records, so that
/// its mode file can be read again under the same arguments.
pub fn mode_args(inputs: &Inputs, keys: &[&str]) -> Vec<(String, String)> {
    inputs.args.iter().filter(|(k, _)| keys.contains(k)).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Arguments recorded by `mode_args`, as inputs.
pub fn from_args(args: &[(String, String)]) -> Inputs {
    Inputs { args: args.iter().cloned().collect(), ..Default::default() }
}

super::modefile::mode_file! {
    /// modes/bridge.toml as read.
    BridgeModeFile { bridge: String, create_bridge: bool, netdev: String, takeover: bool, antispoof: bool }
}

/// Bridge mode's host-wide settings: the mode files, then `key=value` arguments.
pub fn bridge_mode(inputs: &Inputs) -> Result<BridgeMode, ConfigError> {
    bridge_mode_in(&super::modefile::modes_dir()?, inputs)
}

/// `bridge_mode` with the administrator's mode files in `dir`.
pub fn bridge_mode_in(dir: &std::path::Path, inputs: &Inputs) -> Result<BridgeMode, ConfigError> {
    let file = super::modefile::load_from::<BridgeModeFile>(dir, "bridge")?;
    let origin = dir.join("bridge.toml").display().to_string();
    let bridge = setting(inputs, &origin, "bridge", file.bridge, "xenbr0");
    let bridge = IfName::parse(&bridge.at, &bridge.value)?;
    let flag = |key, file_value, default| flag(inputs, key, file_value, default);
    Ok(BridgeMode {
        bridge,
        create_bridge: flag("create_bridge", file.create_bridge, true)?,
        netdev: uplink(inputs, &origin, file.netdev)?,
        takeover: flag("takeover", file.takeover, false)?,
        antispoof: flag("antispoof", file.antispoof, true)?,
    })
}

/// A mode setting and where it came from: the argument, else the mode file (`origin`,
/// the administrator's override, named even when the shipped default applies), else `default`.
fn setting(inputs: &Inputs, origin: &str, key: &str, file_value: Option<String>, default: &str) -> Sourced {
    match inputs.args.get(key) {
        Some(v) => Sourced { value: v.to_string(), at: format!("{} {key}", inputs.args_at()) },
        None => Sourced { value: file_value.unwrap_or_else(|| default.into()), at: format!("{origin} {key}") },
    }
}

/// The `netdev` setting of every mode: empty means none (route and nat mode: the default
/// route's device).
fn uplink(inputs: &Inputs, origin: &str, file_value: Option<String>) -> Result<Option<IfName>, ConfigError> {
    let netdev = setting(inputs, origin, "netdev", file_value, "");
    match netdev.value.trim() {
        "" => Ok(None),
        name => Ok(Some(IfName::parse(&netdev.at, name)?)),
    }
}

/// Where route or nat `mode`'s `netdev` setting comes from, for a message about the link
/// it names: the argument, else the administrator's mode file.
pub fn netdev_at(inputs: &Inputs, mode: &str) -> String {
    match inputs.args.contains_key("netdev") {
        true => format!("{} netdev", inputs.args_at()),
        false => format!("{} netdev", super::modefile::override_path(mode).display()),
    }
}

/// A yes/no setting: the argument, else the mode file, else the default.
fn flag(inputs: &Inputs, key: &str, file_value: Option<bool>, default: bool) -> Result<bool, ConfigError> {
    match inputs.args.get(key) {
        Some(v) => model::parse_bool(&format!("{} {key}", inputs.args_at()), v),
        None => Ok(file_value.unwrap_or(default)),
    }
}

super::modefile::mode_file! {
    /// modes/route.toml as read.
    RouteModeFile {
        netdev: String,
        gateway: String,
        gateway_link: String,
        gateway_kind: String,
        uplink_proxy: bool,
        antispoof: bool,
    }
}

/// Route mode's host-wide settings: the mode files, then `key=value` arguments. Each
/// error names where the value came from.
pub fn route_mode(inputs: &Inputs) -> Result<RouteMode, ConfigError> {
    route_mode_in(&super::modefile::modes_dir()?, inputs)
}

/// `route_mode` with the administrator's mode files in `dir`.
pub fn route_mode_in(dir: &std::path::Path, inputs: &Inputs) -> Result<RouteMode, ConfigError> {
    let file = super::modefile::load_from::<RouteModeFile>(dir, "route")?;
    route_mode_from(inputs, file, &dir.join("route.toml").display().to_string())
}

/// `route_mode` once the mode files are read (`origin` names the administrator's file).
fn route_mode_from(inputs: &Inputs, file: RouteModeFile, origin: &str) -> Result<RouteMode, ConfigError> {
    let netdev = uplink(inputs, origin, file.netdev)?;
    let gateway = setting(inputs, origin, "gateway", file.gateway, "");
    let gateway = model::parse_gateway(&gateway.at, &gateway.value)?;
    let link = setting(inputs, origin, "gateway_link", file.gateway_link, "dummy0");
    let gateway_link = IfName::parse(&link.at, &link.value)?;
    let kind = setting(inputs, origin, "gateway_kind", file.gateway_kind, "dummy");
    let gateway_kind = model::GatewayKind::parse(&kind.at, &kind.value)?;
    Ok(RouteMode {
        netdev,
        gateway,
        gateway_link,
        gateway_kind,
        uplink_proxy: flag(inputs, "uplink_proxy", file.uplink_proxy, false)?,
        antispoof: flag(inputs, "antispoof", file.antispoof, true)?,
    })
}

super::modefile::mode_file! {
    /// modes/nat.toml as read.
    NatModeFile {
        netdev: String,
        prefix: String,
        domain: String,
        hosts: String,
        ethers: String,
        run_dnsmasq: bool,
        dnsmasq_pidfile: String,
        antispoof: bool,
    }
}

/// Nat mode's host-wide settings: the mode files, then `key=value` arguments.
pub fn nat_mode(inputs: &Inputs) -> Result<NatMode, ConfigError> {
    nat_mode_in(&super::modefile::modes_dir()?, inputs)
}

/// `nat_mode` with the administrator's mode files in `dir`.
pub fn nat_mode_in(dir: &std::path::Path, inputs: &Inputs) -> Result<NatMode, ConfigError> {
    let file = super::modefile::load_from::<NatModeFile>(dir, "nat")?;
    let origin = dir.join("nat.toml").display().to_string();
    let netdev = uplink(inputs, &origin, file.netdev)?;
    let prefix = setting(inputs, &origin, "prefix", file.prefix, "10.0.0.0/8");
    let parsed: ipnetwork::Ipv4Network =
        prefix.value.trim().parse().map_err(|_| ConfigError::bad(&prefix.at, &prefix.value, "is not an IPv4 prefix (e.g. 10.0.0.0/8)"))?;
    if parsed.prefix() > 24 || parsed.ip() != parsed.network() {
        return Err(ConfigError::bad(&prefix.at, &prefix.value, "must be a network of at most /24 (a machine takes 256 addresses)"));
    }
    let domain = setting(inputs, &origin, "domain", file.domain, "xen.internal");
    if !is_dns_name(&domain.value) {
        return Err(ConfigError::bad(&domain.at, &domain.value, "is not a DNS domain (labels of letters, digits and '-', separated by dots)"));
    }
    let path = |key: &str, value: Option<String>, default: &str| -> Result<std::path::PathBuf, ConfigError> {
        let s = setting(inputs, &origin, key, value, default);
        if !s.value.starts_with('/') {
            return Err(ConfigError::bad(&s.at, &s.value, "is not an absolute path"));
        }
        Ok(s.value.into())
    };
    Ok(NatMode {
        netdev,
        prefix: parsed,
        domain: domain.value,
        hosts: path("hosts", file.hosts, "/var/lib/vifnet/nat-hosts")?,
        ethers: path("ethers", file.ethers, "/etc/ethers")?,
        run_dnsmasq: flag(inputs, "run_dnsmasq", file.run_dnsmasq, true)?,
        dnsmasq_pidfile: path("dnsmasq_pidfile", file.dnsmasq_pidfile, "/run/dnsmasq/dnsmasq.pid")?,
        antispoof: flag(inputs, "antispoof", file.antispoof, true)?,
    })
}

/// A DNS name: labels of 1 to 63 letters, digits and '-', not starting or ending with '-'.
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Every nat-mode setting of one vif, validated. `domain_name` is the domain's name from
/// xenstore (/local/domain/<domid>/name), if it was read; `name=` overrides it.
pub fn nat_vif(inputs: &Inputs, mode: &NatMode, dev_type: DevType, domain_name: Option<Sourced>) -> Result<NatVif, ConfigError> {
    let kernel_name = device_name(inputs, dev_type)?;
    let name = wanted_name(inputs, &kernel_name, dev_type)?;
    let domain = inputs.get_set("name").or(domain_name).ok_or_else(|| ConfigError::Missing {
        key: "name".into(),
        hint: "nat mode numbers machines by domain name: libxl's /local/domain/<domid>/name, or name= by hand".into(),
    })?;
    let domain_name = domain.value.trim().to_string();
    if !is_dns_name(&domain_name) || domain_name.contains('.') {
        return Err(ConfigError::bad(&domain.at, &domain.value, "is not a DNS name for the guest (letters, digits and '-')"));
    }
    let devid = match inputs.get_set("devid").or_else(|| inputs.get_set("handle")) {
        Some(s) => model::parse_id(&s.at, &s.value, 127)?,
        None => match model::parse_vif_name(kernel_name.as_str()) {
            Some((_, devid)) if devid < 127 => devid,
            _ => return Err(ConfigError::Missing { key: "devid".into(), hint: "the vif's number: libxl's handle, or devid= by hand".into() }),
        },
    };
    let mac = match inputs.get_set("mac") {
        Some(s) => MacAddr::parse_unicast(&s.at, s.value.trim())?,
        None => return Err(ConfigError::Missing { key: "mac".into(), hint: "nat mode leases the guest its address by MAC".into() }),
    };
    let ip = match inputs.get_set("ip") {
        Some(s) => match model::parse_ip_list(&s.at, &s.value)?.as_slice() {
            [ipnetwork::IpNetwork::V4(n)] if n.prefix() == 32 => match crate::plan::nat::slot(&mode.prefix, n.ip()) {
                Some(_) => Some(n.ip()),
                None => {
                    let problem = format!("is not a guest address of prefix {} (the last byte must be 1 to 127; the host side takes +128)", mode.prefix);
                    return Err(ConfigError::bad(&s.at, &s.value, problem));
                }
            },
            _ => return Err(ConfigError::bad(&s.at, &s.value, "is not one IPv4 address (nat mode gives each interface one)")),
        },
        None => None,
    };
    Ok(NatVif {
        kernel_name,
        name,
        dev_type,
        domain_name,
        iface: devid as u8 + 1,
        mac,
        ip,
        mtu: mtu(inputs)?,
        antispoof: antispoof(inputs, mode.antispoof)?,
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

/// The name a vif must end with: `vifname=` (a tap carries it with -emu, as Xen's
/// scripts do), else the kernel's.
fn wanted_name(inputs: &Inputs, kernel_name: &IfName, dev_type: DevType) -> Result<IfName, ConfigError> {
    match inputs.get_set("vifname") {
        Some(s) => {
            let wanted = match dev_type {
                DevType::Vif => s.value.trim().to_string(),
                DevType::Tap => format!("{}-emu", s.value.trim()),
            };
            IfName::parse(&s.at, &wanted)
        }
        None => Ok(kernel_name.clone()),
    }
}

fn ips(inputs: &Inputs) -> Result<Vec<ipnetwork::IpNetwork>, ConfigError> {
    match inputs.get_set("ip") {
        Some(s) => model::parse_ip_list(&s.at, &s.value),
        None => Ok(Vec::new()),
    }
}

fn mtu(inputs: &Inputs) -> Result<Option<u32>, ConfigError> {
    inputs.get_set("mtu").map(|s| model::parse_mtu(&s.at, &s.value)).transpose()
}

fn antispoof(inputs: &Inputs, mode_default: bool) -> Result<bool, ConfigError> {
    match inputs.get_set("antispoof") {
        Some(s) => model::parse_bool(&s.at, &s.value),
        None => Ok(mode_default),
    }
}

/// Every bridge-mode setting of one vif, validated.
pub fn bridged_vif(inputs: &Inputs, mode: &BridgeMode, dev_type: DevType) -> Result<BridgedVif, ConfigError> {
    let kernel_name = device_name(inputs, dev_type)?;
    let name = wanted_name(inputs, &kernel_name, dev_type)?;
    let bridge = match inputs.get_set("bridge") {
        Some(s) => IfName::parse(&s.at, s.value.trim())?,
        None => mode.bridge.clone(),
    };
    let guest_mac = match inputs.get_set("mac") {
        Some(s) => Some(MacAddr::parse_unicast(&s.at, s.value.trim())?),
        None => None,
    };
    let ips = ips(inputs)?;
    let mtu = mtu(inputs)?;
    // Antispoofing applies where the guest's addresses are known, as Xen's did.
    let antispoof = antispoof(inputs, mode.antispoof)? && !ips.is_empty();
    if antispoof && guest_mac.is_none() {
        return Err(ConfigError::Missing {
            key: "mac".into(),
            hint: "antispoofing checks the guest's MAC: give mac=, or antispoof=no".into(),
        });
    }
    Ok(BridgedVif { kernel_name, name, dev_type, bridge, guest_mac, ips, mtu, antispoof })
}

/// Every route-mode setting of one vif, validated. A routed guest needs its addresses:
/// Xen's vif-route quietly made a vif nothing could reach; we say so.
pub fn routed_vif(inputs: &Inputs, mode: &RouteMode, dev_type: DevType) -> Result<RoutedVif, ConfigError> {
    let kernel_name = device_name(inputs, dev_type)?;
    let name = wanted_name(inputs, &kernel_name, dev_type)?;
    let ips = ips(inputs)?;
    if ips.is_empty() {
        return Err(ConfigError::Missing {
            key: "ip".into(),
            hint: "route mode routes the guest's own addresses: give ip= in the domain's vif line".into(),
        });
    }
    // mac= and bridge= are the guest's or bridge mode's business; they are accepted and unused.
    if let Some(s) = inputs.get_set("mac") {
        MacAddr::parse_unicast(&s.at, s.value.trim())?;
    }
    Ok(RoutedVif { kernel_name, name, dev_type, ips, mtu: mtu(inputs)?, antispoof: antispoof(inputs, mode.antispoof)? })
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
            args_origin: None,
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

    fn shipped_route() -> RouteModeFile {
        super::super::modefile::parse_partial(super::super::modefile::shipped("route").unwrap(), "shipped", "route").unwrap()
    }

    #[test]
    fn route_mode_defaults_and_arguments() {
        let m = route_mode_from(&inputs(&[], &[], &[]), shipped_route(), "/etc/vifnet/modes/route.toml").unwrap();
        assert_eq!((m.netdev, m.gateway.len(), m.gateway_link.as_str()), (None, 0, "dummy0"));
        assert_eq!((m.gateway_kind, m.uplink_proxy, m.antispoof), (model::GatewayKind::Dummy, false, true));
        let args = [("gateway", "80.68.86.193/29"), ("gateway_kind", "bridge"), ("uplink_proxy", "yes"), ("netdev", "eth0")];
        let m = route_mode_from(&inputs(&args, &[], &[]), shipped_route(), "f").unwrap();
        assert_eq!(m.gateway[0].to_string(), "80.68.86.193/29");
        assert_eq!((m.gateway_kind, m.uplink_proxy, m.netdev.unwrap().as_str()), (model::GatewayKind::Bridge, true, "eth0"));
    }

    #[test]
    fn a_bad_route_setting_names_its_origin() {
        let file = RouteModeFile { gateway_kind: Some("tun".into()), ..shipped_route() };
        let e = route_mode_from(&inputs(&[], &[], &[]), file, "/etc/vifnet/modes/route.toml").unwrap_err().to_string();
        assert_eq!(e, "/etc/vifnet/modes/route.toml gateway_kind: \"tun\" is not a gateway kind (dummy, bridge)");
        let e = route_mode_from(&inputs(&[("gateway", "80.68.86.192/29")], &[], &[]), shipped_route(), "f").unwrap_err().to_string();
        assert!(e.starts_with("argument gateway: \"80.68.86.192/29\" is the block's network address"), "{e}");
        let e = route_mode_from(&inputs(&[("gateway_link", "a/b")], &[], &[]), shipped_route(), "f").unwrap_err().to_string();
        assert!(e.starts_with("argument gateway_link: "), "{e}");
    }

    #[test]
    fn a_nat_address_is_one_ipv4_guest_address_of_the_prefix_named_by_its_source() {
        let mode = nat_mode_in(std::path::Path::new("/nonexistent"), &inputs(&[], &[], &[])).unwrap();
        let e = |ip: &str| {
            let i = inputs(&[("name", "web"), ("mac", "00:16:3e:00:00:05")], &[("vif", "vif5.0")], &[("ip", ip)]);
            nat_vif(&i, &mode, DevType::Vif, None).unwrap_err().to_string()
        };
        assert_eq!(e("fd00::5"), "xenstore backend/vif/5/0/ip: \"fd00::5\" is not one IPv4 address (nat mode gives each interface one)");
        for outside in ["192.0.2.5", "10.0.0.129", "10.0.0.0"] {
            assert!(e(outside).starts_with(&format!("xenstore backend/vif/5/0/ip: \"{outside}\" is not a guest address of prefix 10.0.0.0/8")), "{outside}");
        }
        let e = nat_mode_in(std::path::Path::new("/nonexistent"), &inputs(&[("prefix", "fd00::/64")], &[], &[])).unwrap_err();
        assert!(e.to_string().starts_with("argument prefix: \"fd00::/64\" is not an IPv4 prefix"), "{e}");
    }

    #[test]
    fn a_loopback_or_unicode_value_is_refused_with_its_source() {
        let i = inputs(&[], &[("vif", "vif5.0")], &[("ip", "127.0.0.1"), ("mac", "00:16:3e:00:00:05")]);
        let e = bridged_vif(&i, &mode(), DevType::Vif).unwrap_err().to_string();
        assert!(e.starts_with("xenstore backend/vif/5/0/ip: \"127.0.0.1\" is a loopback address"), "{e}");
        let i = inputs(&[], &[("vif", "vif5.0"), ("bridge", "brü0")], &[]);
        let e = bridged_vif(&i, &mode(), DevType::Vif).unwrap_err().to_string();
        assert_eq!(e, "environment bridge: \"brü0\" is not a valid interface name (ASCII only)");
    }
}
