//! Validated types. Everything from outside becomes one of these before the host is touched;
//! a value that does not fit is a `ConfigError` naming where it came from (no I/O here).

use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// A Linux interface name: 1-15 bytes, no '/', ':' or whitespace, not "." or ".." (dev_valid_name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(String);

impl IfName {
    pub fn parse(at: &str, value: &str) -> Result<Self, ConfigError> {
        let problem = if value.is_empty() {
            Some("is empty; an interface name is 1 to 15 bytes")
        } else if value.len() > 15 {
            Some("is longer than 15 bytes, the kernel's limit for interface names")
        } else if value == "." || value == ".." {
            Some("is not a valid interface name")
        } else if value.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control()) {
            Some("is not a valid interface name ('/', ':' and whitespace are not allowed)")
        } else if !value.is_ascii() {
            // The kernel takes any other byte, but udev, systemd and nft's tools do not.
            Some("is not a valid interface name (ASCII only)")
        } else {
            None
        };
        match problem {
            Some(p) => Err(ConfigError::bad(at, value, p)),
            None => Ok(IfName(value.to_string())),
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IfName {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, ConfigError> {
        IfName::parse("interface name", &s)
    }
}
impl From<IfName> for String {
    fn from(n: IfName) -> String {
        n.0
    }
}
impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub fn parse(at: &str, value: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::bad(at, value, "is not a MAC address (six hex bytes separated by ':')");
        let parts: Vec<&str> = value.split(':').collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut mac = [0u8; 6];
        for (byte, part) in mac.iter_mut().zip(&parts) {
            if part.is_empty() || part.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(mac))
    }

    /// A guest's own address must be unicast and not all zeros, or the checks built on it mean nothing.
    pub fn parse_unicast(at: &str, value: &str) -> Result<Self, ConfigError> {
        let mac = Self::parse(at, value)?;
        if mac.0[0] & 1 == 1 {
            return Err(ConfigError::bad(at, value, "is a multicast MAC address; a guest needs a unicast one"));
        }
        if mac.0 == [0; 6] {
            return Err(ConfigError::bad(at, value, "is the all-zero MAC address"));
        }
        Ok(mac)
    }

    /// The EUI-64 link-local IPv6 address a guest derives from this MAC (RFC 4291 appendix A).
    pub fn eui64_link_local(&self) -> std::net::Ipv6Addr {
        let m = self.0;
        std::net::Ipv6Addr::from([
            0xfe, 0x80, 0, 0, 0, 0, 0, 0,
            m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5],
        ])
    }
}

impl TryFrom<String> for MacAddr {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, ConfigError> {
        MacAddr::parse("mac", &s)
    }
}
impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}
impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

/// Parses Xen's `ip=` value: addresses or prefixes of either family, separated by spaces
/// (libxl) or commas. A prefix with host bits set means its whole network, as iptables -s did.
pub fn parse_ip_list(at: &str, value: &str) -> Result<Vec<IpNetwork>, ConfigError> {
    let mut out: Vec<IpNetwork> = Vec::new();
    for item in value.split(|c: char| c.is_whitespace() || c == ',').filter(|s| !s.is_empty()) {
        let net = parse_ip_entry(at, item)?;
        if !out.contains(&net) {
            out.push(net);
        }
    }
    Ok(out)
}

fn parse_ip_entry(at: &str, item: &str) -> Result<IpNetwork, ConfigError> {
    let bad = |p: &str| ConfigError::bad(at, item, p);
    let (addr, prefix) = match item.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (item, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad("is not an IPv4 or IPv6 address or prefix"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max && !p.starts_with('+') => n,
            _ => return Err(bad(&format!("has a bad prefix length (0 to {max})"))),
        },
    };
    if addr.is_unspecified() || addr.is_multicast() {
        return Err(bad("is not a unicast address a guest can own"));
    }
    // A route or an antispoof rule for the host's own loopback would mean nothing.
    if addr.is_loopback() {
        return Err(bad("is a loopback address, not one a guest can own"));
    }
    let net = IpNetwork::new(addr, prefix).map_err(|_| bad("is not a valid prefix"))?;
    IpNetwork::new(net.network(), prefix).map_err(|_| bad("is not a valid prefix"))
}

/// Which kind of host-side device the hotplug call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DevType {
    /// The netback vif of a PV (or HVM PV-driver) nic: `online`/`offline`.
    Vif,
    /// QEMU's tap for an HVM emulated nic: `add`/`remove`.
    Tap,
}

impl DevType {
    pub fn parse(at: &str, value: &str) -> Result<Self, ConfigError> {
        match value {
            "vif" => Ok(DevType::Vif),
            "tap" => Ok(DevType::Tap),
            _ => Err(ConfigError::bad(at, value, "is not a device type (vif or tap)")),
        }
    }
}

/// An MTU the kernel accepts for an Ethernet device.
pub fn parse_mtu(at: &str, value: &str) -> Result<u32, ConfigError> {
    match value.trim().parse::<u32>() {
        Ok(n) if (68..=65535).contains(&n) => Ok(n),
        _ => Err(ConfigError::bad(at, value, "is not an MTU (68 to 65535)")),
    }
}

/// Route mode's gateway: the host's own address on the routed block, with the block's
/// prefix (`80.68.86.193/29`), at most one per family. Unlike `ip=`, the address is kept
/// as given: it is the address the host holds, not a range.
pub fn parse_gateway(at: &str, value: &str) -> Result<Vec<IpNetwork>, ConfigError> {
    let mut out: Vec<IpNetwork> = Vec::new();
    for item in value.split(|c: char| c.is_whitespace() || c == ',').filter(|s| !s.is_empty()) {
        let bad = |p: &str| ConfigError::bad(at, item, p);
        let Some((addr, prefix)) = item.split_once('/') else {
            return Err(bad("needs the routed block's prefix, e.g. 80.68.86.193/29"));
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("is not an IPv4 or IPv6 address"))?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix.parse::<u8>() {
            Ok(n) if n < max && !prefix.starts_with('+') => n,
            _ => return Err(bad(&format!("has a bad prefix length (0 to {})", max - 1))),
        };
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
            return Err(bad("is not a unicast address the host can hold"));
        }
        let net = IpNetwork::new(addr, prefix).map_err(|_| bad("is not a valid prefix"))?;
        // RFC 3021: in a /31 (or /127) both addresses are hosts.
        if addr == net.network() && prefix < max - 1 {
            return Err(bad("is the block's network address; give the host's own address in it"));
        }
        if let (IpNetwork::V4(v4), true) = (net, prefix < 31) {
            if v4.ip() == v4.broadcast() {
                return Err(bad("is the block's broadcast address; give the host's own address in it"));
            }
        }
        if out.iter().any(|g| g.is_ipv4() == net.is_ipv4()) {
            return Err(bad("is a second gateway of the same family (one IPv4 and one IPv6 at most)"));
        }
        out.push(net);
    }
    Ok(out)
}

/// What holds route mode's gateway address: a dummy link, or a bridge without ports on
/// kernels built without the dummy driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayKind {
    Dummy,
    Bridge,
}

impl GatewayKind {
    pub fn parse(at: &str, value: &str) -> Result<GatewayKind, ConfigError> {
        match value {
            "dummy" => Ok(GatewayKind::Dummy),
            "bridge" => Ok(GatewayKind::Bridge),
            _ => Err(ConfigError::bad(at, value, "is not a gateway kind (dummy, bridge)")),
        }
    }
}

/// Xen's yes/no flags (`antispoof=yes`, `takeover=no`); 1/0 and true/false too.
pub fn parse_bool(at: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "y" | "1" | "true" | "on" => Ok(true),
        "no" | "n" | "0" | "false" | "off" => Ok(false),
        _ => Err(ConfigError::bad(at, value, "is not yes or no")),
    }
}

/// Parses `vif<domid>.<devid>` (with an optional `-emu` for taps): the names netback and libxl give.
pub fn parse_vif_name(name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix("vif")?;
    let rest = rest.strip_suffix("-emu").unwrap_or(rest);
    let (d, n) = rest.split_once('.')?;
    Some((d.parse().ok()?, n.parse().ok()?))
}

/// Parses a domain id (below DOMID_FIRST_RESERVED, 0x7FF0) or a device id.
pub fn parse_id(at: &str, value: &str, limit: u32) -> Result<u32, ConfigError> {
    match value.trim().parse::<u32>() {
        Ok(n) if n < limit => Ok(n),
        _ => Err(ConfigError::bad(at, value, format!("is not a number below {limit}"))),
    }
}
pub const DOMID_LIMIT: u32 = 0x7ff0;

/// One guest interface, as bridge mode needs it, fully validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgedVif {
    /// The name the device has when we are called (`vif5.0`, `vif5.0-emu`).
    pub kernel_name: IfName,
    /// The name it must end with: `vifname=` (with `-emu` for taps) or the kernel name.
    pub name: IfName,
    pub dev_type: DevType,
    pub bridge: IfName,
    /// The guest's MAC (xenstore `mac`), used by antispoofing.
    pub guest_mac: Option<MacAddr>,
    /// Addresses the guest may use (`ip=`).
    pub ips: Vec<IpNetwork>,
    /// From xenstore `mtu`; None means: take the bridge's.
    pub mtu: Option<u32>,
    pub antispoof: bool,
}

/// One guest interface, as route mode needs it, fully validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedVif {
    pub kernel_name: IfName,
    /// `vifname=` (with `-emu` for taps) or the kernel name.
    pub name: IfName,
    pub dev_type: DevType,
    /// The guest's addresses (`ip=`): never empty, there is nothing to route otherwise.
    pub ips: Vec<IpNetwork>,
    /// From `mtu=`; None leaves the device's own.
    pub mtu: Option<u32>,
    pub antispoof: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel_rules() {
        assert!(IfName::parse("a", "vif5.0").is_ok());
        assert!(IfName::parse("a", "vif12345.0-emu").is_ok());
        for bad in ["", "sixteen-bytes-xx", "a/b", "a b", "a:1", ".", "..", "wéb0", "eth0\u{7f}"] {
            assert!(IfName::parse("argument vifname", bad).is_err(), "{bad}");
        }
        let e = IfName::parse("argument vifname", "a-very-long-name0").unwrap_err();
        assert_eq!(e.to_string(), "argument vifname: \"a-very-long-name0\" is longer than 15 bytes, the kernel's limit for interface names");
        // Eight two-byte characters are 16 bytes.
        assert!(IfName::parse("a", "éééééééé").unwrap_err().to_string().contains("longer than 15 bytes"));
        assert!(IfName::parse("a", "wéb0").unwrap_err().to_string().ends_with("is not a valid interface name (ASCII only)"));
    }

    #[test]
    fn mac_addresses_parse_and_print_lower_case() {
        let m = MacAddr::parse("a", "00:16:3E:0a:0B:0c").unwrap();
        assert_eq!(m.to_string(), "00:16:3e:0a:0b:0c");
        assert!(MacAddr::parse("a", "00:16:3e:0a:0b").is_err());
        assert!(MacAddr::parse("a", "zz:zz:zz:zz:zz:zz").is_err());
        assert!(MacAddr::parse("a", "00:16:3e:0a:0b:0c:0d").is_err());
        assert!(MacAddr::parse("a", "000:16:3e:0a:0b:0c").is_err());
        assert!(MacAddr::parse_unicast("a", "01:00:5e:00:00:01").is_err());
        assert!(MacAddr::parse_unicast("a", "00:00:00:00:00:00").is_err());
    }

    #[test]
    fn eui64_link_local_flips_the_universal_bit() {
        let m = MacAddr::parse("a", "00:16:3e:12:34:56").unwrap();
        assert_eq!(m.eui64_link_local().to_string(), "fe80::216:3eff:fe12:3456");
    }

    #[test]
    fn ip_lists_take_both_families_and_prefixes() {
        let l = parse_ip_list("a", "192.0.2.10 198.51.100.7/24,2001:db8::5 2001:db8:1::/64").unwrap();
        let s: Vec<String> = l.iter().map(|n| n.to_string()).collect();
        assert_eq!(s, ["192.0.2.10/32", "198.51.100.0/24", "2001:db8::5/128", "2001:db8:1::/64"]);
        assert_eq!(parse_ip_list("a", "  ").unwrap(), vec![]);
        for bad in ["192.0.2.300", "192.0.2.1/33", "10.0.0.1/x", "0.0.0.0", "224.0.0.1", "2001:db8::/129", "1.2.3.4/+8", "127.0.0.1", "::1"] {
            assert!(parse_ip_list("a", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vif_names_give_domid_and_devid() {
        assert_eq!(parse_vif_name("vif5.0"), Some((5, 0)));
        assert_eq!(parse_vif_name("vif12.3-emu"), Some((12, 3)));
        assert_eq!(parse_vif_name("web0"), None);
    }

    #[test]
    fn gateways_are_host_addresses_with_the_blocks_prefix() {
        let gw = parse_gateway("g", "80.68.86.193/29 2001:db8:42::1/64").unwrap();
        assert_eq!(gw.iter().map(|g| g.to_string()).collect::<Vec<_>>(), ["80.68.86.193/29", "2001:db8:42::1/64"]);
        assert!(parse_gateway("g", "").unwrap().is_empty());
        for (bad, why) in [
            ("80.68.86.193", "needs the routed block's prefix"),
            ("80.68.86.192/29", "network address"),
            ("80.68.86.199/29", "broadcast address"),
            ("80.68.86.193/32", "bad prefix length"),
            ("80.68.86.193/29,80.68.86.194/29", "second gateway"),
            ("2001:db8:42::/64", "network address"),
            ("224.0.0.1/24", "unicast"),
            ("gw/24", "not an IPv4 or IPv6 address"),
        ] {
            let e = parse_gateway("modes/route.toml gateway", bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.starts_with("modes/route.toml gateway: "), "{bad}: {e}");
        }
        // RFC 3021: a /31 has no network or broadcast address to refuse.
        assert!(parse_gateway("g", "192.0.2.0/31").is_ok() && parse_gateway("g", "192.0.2.1/31").is_ok());
        assert_eq!(GatewayKind::parse("k", "bridge").unwrap(), GatewayKind::Bridge);
        assert!(GatewayKind::parse("k", "tun").unwrap_err().to_string().contains("dummy, bridge"));
    }
}
