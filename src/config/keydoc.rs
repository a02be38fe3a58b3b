//! What each key means, for `--help` and the man pages: a mode's keys come from its shipped
//! file (`modes/<mode>.toml`: the comment above a key is its meaning, the value its type
//! and default), so the file an administrator copies and the documentation cannot disagree.
//! A vif's own keys (from the `vif=` line, xenstore or arguments) are listed here.

use super::modefile;

/// One key of a mode file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDoc {
    pub key: String,
    /// "string", "boolean" or "integer".
    pub kind: &'static str,
    /// The shipped value, as TOML writes it (`"xenbr0"`, `true`).
    pub default: String,
    /// The comment above the key, on one line.
    pub meaning: String,
}

pub const MODES: [&str; 3] = ["bridge", "route", "nat"];

/// A vif's own keys: the `vif=` line's, as libxl passes them (xenstore, environment) or
/// as `key=value` arguments.
pub const VIF_KEYS: &[(&str, &str)] = &[
    ("type_if", "vif (a netback device) or tap (a qemu device model's); libxl passes it"),
    ("vif", "the device's kernel name (libxl's environment); vif<domid>.<devid>"),
    ("vifname", "the name the device is given (the vif= line's vifname=)"),
    ("mac", "the guest's MAC, which antispoofing enforces"),
    ("ip", "the guest's addresses, space separated (IPv4 and IPv6, with or without /prefix)"),
    ("bridge", "bridge mode: the bridge to join (default: the mode file's)"),
    ("netdev", "route mode: the uplink for this vif (libxl's gatewaydev)"),
    ("gatewaydev", "the same as netdev, under the vif= line's own name"),
    ("mtu", "the vif's MTU, also written to xenstore for the guest"),
    ("antispoof", "yes or no: this vif's filter, over the mode file's antispoof"),
    ("name", "nat mode: the domain's name, for its DNS name and machine number (from xenstore)"),
    ("devid", "the vif's index in the domain, 0 for the first (xenstore's handle)"),
    ("INTERFACE", "xend's name for vif, still accepted"),
];

/// The keys of `mode`'s file, in the file's order. Panics on a mode that is not one, or a
/// shipped file that breaks the shape (a unit test reads all three).
pub fn mode_keys(mode: &str) -> Vec<KeyDoc> {
    let text = modefile::shipped(mode).unwrap_or_else(|| panic!("no mode {mode}"));
    let mut keys = Vec::new();
    let mut comment: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(c) = line.strip_prefix('#') {
            comment.push(c.trim());
        } else if line.is_empty() {
            comment.clear();
        } else {
            let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("{mode}.toml: {line:?} is not key = value"));
            let value = value.trim();
            let kind = match toml::from_str::<toml::Table>(&format!("v = {value}")).map(|mut t| t.remove("v")) {
                Ok(Some(toml::Value::String(_))) => "string",
                Ok(Some(toml::Value::Boolean(_))) => "boolean",
                Ok(Some(toml::Value::Integer(_))) => "integer",
                other => panic!("{mode}.toml: {key}: {other:?} is not a string, boolean or integer"),
            };
            assert!(!comment.is_empty(), "{mode}.toml: {key} has no comment to say what it means");
            keys.push(KeyDoc { key: key.trim().to_string(), kind, default: value.to_string(), meaning: comment.join(" ") });
            comment.clear();
        }
    }
    keys
}

/// `vifnet network --help`'s list: every mode's keys with type and default.
pub fn network_help() -> String {
    let mut out = String::from("Keys (key=value, over /etc/vifnet/modes/<mode>.toml; see vifnet-modes(5)):\n");
    for mode in MODES {
        out += &format!("  {mode} mode:\n");
        for k in mode_keys(mode) {
            out += &format!("    {:<16} {} (default {})\n", k.key, k.kind, k.default);
        }
    }
    out
}

/// `vifnet vif --help`'s list: a vif's own keys, then the mode keys a vif may override.
pub fn vif_help() -> String {
    let mut out = String::from("A vif's keys (xenstore, environment or key=value):\n");
    for (key, meaning) in VIF_KEYS {
        out += &format!("  {key:<11} {meaning}\n");
    }
    out += "The rest comes from the mode's file and `network <mode> start`: see vifnet network --help.\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_key_has_a_type_a_default_and_a_meaning() {
        for mode in MODES {
            let keys = mode_keys(mode);
            assert!(keys.len() >= 5, "{mode}: {keys:?}");
            assert!(keys.iter().all(|k| k.meaning.len() > 20), "{mode}: {keys:?}");
        }
        let bridge = &mode_keys("bridge")[0];
        assert_eq!((bridge.key.as_str(), bridge.kind, bridge.default.as_str()), ("bridge", "string", "\"xenbr0\""));
    }

    #[test]
    fn help_names_every_key_the_parsers_accept() {
        let help = network_help();
        for k in super::super::inputs::NETWORK_BRIDGE_KEYS.iter().chain(super::super::inputs::NETWORK_ROUTE_KEYS).chain(super::super::inputs::NETWORK_NAT_KEYS) {
            assert!(help.contains(&format!("    {k} ")), "{k} missing from:\n{help}");
        }
        let vif = vif_help();
        for k in super::super::inputs::VIF_ARG_KEYS {
            assert!(vif.contains(&format!("  {k} ")), "{k} missing from:\n{vif}");
        }
    }
}
