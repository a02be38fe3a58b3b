//! xl domain configs (xl.cfg(5)): the domain's `name` and its `vif = [ '...', ... ]`
//! entries, which `setup` needs. Every other key (memory, kernel, disk, ...) is ignored, but
//! the whole file must parse, as xl requires.

use std::path::Path;

use super::kv::{self, KeyValues};
use super::xlconf::{self, Located, Raw};
use super::ConfigError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainConfig {
    pub name: String,
    /// One per `vif=` entry, in order: the index is the devid xl gives the vif.
    pub vifs: Vec<KeyValues>,
}

/// Reads `name` (required) and `vif` from a domain config. Errors name `origin:line key`,
/// and `origin:line vif[N]` for a bad item of the N-th vif entry.
pub fn parse_domain_config(text: &str, origin: &str) -> Result<DomainConfig, ConfigError> {
    let entries = xlconf::parse_entries(text, origin)?;
    // The last assignment of a key is the one xl uses.
    let last = |key: &str| entries.iter().rev().find(|e| e.key == key);

    let Some(name_entry) = last("name") else {
        return Err(ConfigError::Missing {
            key: "name".into(),
            hint: format!("{origin} has no `name = \"...\"` line"),
        });
    };
    let at = format!("{origin}:{} name", name_entry.line);
    let name = xlconf::as_string(name_entry.value.clone().into_value(), &at)?;
    if name.is_empty() {
        return Err(ConfigError::bad(at, name, "is empty"));
    }

    let mut vifs = Vec::new();
    if let Some(vif) = last("vif") {
        let Raw::List(items) = &vif.value.raw else {
            return Err(ConfigError::bad(
                format!("{origin}:{} vif", vif.line),
                vif.value.clone().into_value().to_string(),
                "is not a list; write vif = [ 'key=value, ...', ... ]",
            ));
        };
        for (devid, Located { line, raw }) in items.iter().enumerate() {
            let at = format!("{origin}:{line} vif[{devid}]");
            match raw {
                Raw::Str(spec) | Raw::Word(spec) => vifs.push(vif_spec(spec, &at)?),
                Raw::Num(n) => vifs.push(vif_spec(&n.to_string(), &at)?),
                Raw::List(_) => {
                    let shown = Located {
                        line: *line,
                        raw: raw.clone(),
                    }
                    .into_value()
                    .to_string();
                    return Err(ConfigError::bad(
                        at,
                        shown,
                        "is a list, expected a 'key=value, ...' string",
                    ));
                }
            }
        }
    }
    Ok(DomainConfig { name, vifs })
}

/// The keys xl takes in a vif entry (xl-network-configuration(5), xl's parse_nic_config),
/// and vifnet's own `antispoof`. xl refuses any other, and so do we, by name.
pub const VIF_KEYS: &[&str] = &[
    "mac", "bridge", "gatewaydev", "netdev", "type", "model", "vifname", "script", "ip", "backend", "rate", "devid", "mtu",
    "trusted", "untrusted", "accel", "forwarddev", "antispoof",
];

/// One vif entry, its keys checked: `web.cfg:7 vif[1] brige: "xenbr0" is not a key of vif entries (did you mean bridge?)`.
fn vif_spec(spec: &str, at: &str) -> Result<KeyValues, ConfigError> {
    let kv = kv::split_vif_spec(spec, at)?;
    // COLO's many settings share a prefix; they concern QEMU, not the host network.
    if let Some((k, v)) = kv.iter().find(|(k, _)| !VIF_KEYS.contains(k) && !k.starts_with("colo_")) {
        return Err(ConfigError::unknown_key(at, k, v, "vif entries", VIF_KEYS));
    }
    Ok(kv)
}

impl DomainConfig {
    /// Reads and parses a file; the path is the origin in messages.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let (text, origin) = super::read_file(path.as_ref())?;
        parse_domain_config(&text, &origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB_CFG: &str = r#"# =====================================================================
# PV guest "web": two nics, one bridged to the LAN and one routed.
# =====================================================================

name = "web"
type = "pvh"
kernel = "/boot/vmlinuz-6.1.0-web"
ramdisk = "/boot/initrd.img-6.1.0-web"
extra = "root=/dev/xvda1 console=hvc0"
memory = 1024
maxmem = 2048
vcpus = 2
on_crash = "restart"

vif = [
    'mac=00:16:3e:12:34:56, bridge=xenbr0, vifname=web-lan',   # LAN
    "mac=00:16:3e:12:34:57,script=vif-route,ip=192.0.2.10 2001:db8::10",
]

disk = [ 'phy:/dev/vg0/web-root,xvda,w',
         'phy:/dev/vg0/web-swap,xvdb,w' ]
vnuma = [ [ "pnode=0", "size=512", "vcpus=0", "vdistances=10,20" ],
          [ "pnode=1", "size=512", "vcpus=1", "vdistances=20,10" ] ]
"#;

    #[test]
    fn domain_with_two_vifs_over_several_lines() {
        let d = parse_domain_config(WEB_CFG, "/etc/xen/web.cfg").unwrap();
        assert_eq!(d.name, "web");
        assert_eq!(d.vifs.len(), 2);
        assert_eq!(d.vifs[0].get("mac"), Some("00:16:3e:12:34:56"));
        assert_eq!(d.vifs[0].get("bridge"), Some("xenbr0"));
        assert_eq!(d.vifs[0].get("vifname"), Some("web-lan"));
        assert_eq!(d.vifs[1].get("script"), Some("vif-route"));
        assert_eq!(d.vifs[1].get("ip"), Some("192.0.2.10 2001:db8::10"));
        assert_eq!(d.vifs[1].get("bridge"), None);
    }

    #[test]
    fn xm_style_single_quotes_and_default_vif() {
        let d = parse_domain_config(
            "name='db'\nvif = [ 'mac=00:16:3e:00:00:01, ip=10.0.0.2', '' ]\n",
            "db.cfg",
        )
        .unwrap();
        assert_eq!(d.name, "db");
        assert_eq!(d.vifs.len(), 2);
        assert_eq!(d.vifs[0].get("ip"), Some("10.0.0.2"));
        assert!(d.vifs[1].is_empty(), "'' is a vif with every default");
    }

    #[test]
    fn no_vif_key_means_no_vifs_and_last_assignment_wins() {
        let d = parse_domain_config("name = \"a\"\nname = \"b\"\nmemory = 256", "x").unwrap();
        assert_eq!(
            d,
            DomainConfig {
                name: "b".into(),
                vifs: vec![]
            }
        );
        let d = parse_domain_config(
            "name='a'\nvif=['bridge=x']\nvif=['bridge=y','bridge=z']",
            "x",
        )
        .unwrap();
        assert_eq!(d.vifs.len(), 2);
        assert_eq!(d.vifs[0].get("bridge"), Some("y"));
    }

    #[test]
    fn vif_append_keeps_devid_order() {
        let d = parse_domain_config("name='a'\nvif=['bridge=x']\nvif+=['bridge=y']", "x").unwrap();
        let bridges: Vec<_> = d.vifs.iter().map(|v| v.get("bridge").unwrap()).collect();
        assert_eq!(bridges, vec!["x", "y"]);
    }

    #[test]
    fn bad_inputs_give_one_line_errors_naming_the_place() {
        let cases: &[(&str, &str)] = &[
            ("memory = 512\nvif = [ 'bridge=xenbr0' ]\n", "name: missing (web.cfg has no `name = \"...\"` line)"),
            ("name = [ 'web' ]\n", "web.cfg:1 name: \"[ 'web' ]\" is a list, expected a single string"),
            ("\nname = ''\n", "web.cfg:2 name: \"\" is empty"),
            (
                "name = 'web'\nvif = [ 'mac=00:16:3e:00:00:01',\n        'bridge=xenbr0, xenbr1' ]\n",
                "web.cfg:3 vif[1]: \"xenbr1\" is not key=value",
            ),
            ("name = 'web'\nvif = 'bridge=xenbr0'\n", "web.cfg:2 vif: \"'bridge=xenbr0'\" is not a list"),
            ("name = 'web'\nvif = [ ['bridge=xenbr0'] ]\n", "web.cfg:2 vif[0]: \"[ 'bridge=xenbr0' ]\" is a list"),
            ("name = 'web'\nvif = [ 'bridge=xenbr0'\n", "web.cfg:2:7: list not closed"),
            ("name = 'web'\nvif = [ 'bridge=xenbr0 ]\n", "web.cfg:2:9: unterminated string"),
            ("name = 'web'\nmemory = 1G\n", "web.cfg:2 memory: \"1G\" is not a number"),
            (
                "name = 'web'\nvif = [ 'mac=00:16:3e:00:00:01', 'mac=00:16:3e:00:00:02, brige=xenbr0' ]\n",
                "web.cfg:2 vif[1] brige: \"xenbr0\" is not a key of vif entries (did you mean bridge?)",
            ),
            ("name = 'web'\nvif = [ 'colour=blue' ]\n", "web.cfg:2 vif[0] colour: \"blue\" is not a key of vif entries"),
        ];
        crate::config::assert_one_line_errors(cases, |input| parse_domain_config(input, "web.cfg"));
    }

    #[test]
    fn from_file_reports_io_errors_with_the_path() {
        let err = DomainConfig::from_file("/nonexistent/vifnet/web.cfg").unwrap_err();
        assert!(
            matches!(err, ConfigError::Io { ref path, .. } if path == "/nonexistent/vifnet/web.cfg")
        );
    }
}
