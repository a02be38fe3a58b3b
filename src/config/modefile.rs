//! Mode files: `modes/<mode>.toml` shipped in the binary, overridden key by key by
//! `$VIFNET_MODES_DIR/<mode>.toml` (default /etc/vifnet/modes). Unknown keys are errors.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::ConfigError;
use crate::names;

/// The shipped defaults of one mode.
pub fn shipped(mode: &str) -> Option<&'static str> {
    match mode {
        "bridge" => Some(include_str!("../../modes/bridge.toml")),
        "route" => Some(include_str!("../../modes/route.toml")),
        "nat" => Some(include_str!("../../modes/nat.toml")),
        _ => None,
    }
}

/// The directory of the administrator's mode files: `$VIFNET_MODES_DIR`, else
/// /etc/vifnet/modes. The default may be missing (no overrides); a directory named on
/// purpose must exist, or a typo in it would silently mean the shipped defaults.
pub fn modes_dir() -> Result<PathBuf, ConfigError> {
    match std::env::var_os("VIFNET_MODES_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            check_dir("environment VIFNET_MODES_DIR", &dir)?;
            Ok(dir)
        }
        None => Ok(PathBuf::from(names::MODES_DIR)),
    }
}

/// A mode directory named by `at` (`--modes-dir`, `environment VIFNET_MODES_DIR`) must exist.
pub fn check_dir(at: &str, dir: &Path) -> Result<(), ConfigError> {
    match dir.is_dir() {
        true => Ok(()),
        false => Err(ConfigError::bad(at, dir.display().to_string(), "is not a directory")),
    }
}

/// Where the administrator's override of `mode` lives (the default directory when
/// `$VIFNET_MODES_DIR` names none).
pub fn override_path(mode: &str) -> PathBuf {
    override_path_in(&modes_dir().unwrap_or_else(|_| PathBuf::from(names::MODES_DIR)), mode)
}

fn override_path_in(dir: &Path, mode: &str) -> PathBuf {
    dir.join(format!("{mode}.toml"))
}

/// Parses one of `mode`'s files into `T`, a struct of `Option`s with `deny_unknown_fields`.
/// A key that is unknown or of the wrong type is named with its line and its value as
/// written: `route.toml:3 uplink_proxy: "yes" is not a boolean`.
pub fn parse_partial<T: ModeFile>(text: &str, origin: &str, mode: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().replace('\n', " ");
        let Some(span) = e.span() else { return ConfigError::syntax(origin, message) };
        let line_no = 1 + text[..span.start].matches('\n').count();
        let at = format!("{origin}:{line_no}");
        let line = text.lines().nth(line_no - 1).unwrap_or("");
        let (key, written) = match line.split_once('=') {
            Some((k, v)) if super::kv::is_key(k.trim()) => (k.trim(), v.trim()),
            _ => return ConfigError::syntax(at, message),
        };
        if message.starts_with("unknown field") {
            let problem = format!("{} is not a key of {mode} mode files{}", one_line(written), super::error::did_you_mean(key, T::KEYS));
            ConfigError::syntax(format!("{at} {key}"), problem)
        } else if let (true, Some((_, expected))) = (message.starts_with("invalid type"), message.split_once(", expected ")) {
            // `expected a boolean`: the value as written is not one.
            let value = text.get(span.clone()).map(str::trim).filter(|v| !v.is_empty()).unwrap_or(written);
            ConfigError::syntax(format!("{at} {key}"), format!("{} is not {expected}", one_line(value)))
        } else {
            ConfigError::syntax(at, message)
        }
    })
}

/// A value as written, on one line: an inline table or array may span several, and an
/// error must not.
fn one_line(written: &str) -> String {
    written.split_whitespace().collect::<Vec<_>>().join(" ").chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// A mode file as read: every key optional, so that an override names only what it changes.
pub trait ModeFile: DeserializeOwned {
    /// Every key the file may hold, for the `did you mean` of a misspelt one.
    const KEYS: &'static [&'static str];
    /// `over`'s keys where it has them, else this file's.
    fn merge(self, over: Self) -> Self;
}

/// Declares a mode file's struct (`Option` of each key, unknown keys refused) and its
/// key-by-key `merge`.
macro_rules! mode_file {
    ($(#[$doc:meta])* $name:ident { $($key:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(pub $key: Option<$ty>,)*
        }

        impl $crate::config::modefile::ModeFile for $name {
            const KEYS: &'static [&'static str] = &[$(stringify!($key)),*];
            fn merge(self, over: Self) -> Self {
                $name { $($key: over.$key.or(self.$key),)* }
            }
        }
    };
}
pub(crate) use mode_file;

/// `load` with the administrator's files in `dir` (`setup --simulate --modes-dir`).
pub fn load_from<T: ModeFile>(dir: &Path, mode: &str) -> Result<T, ConfigError> {
    let text = shipped(mode).ok_or_else(|| ConfigError::bad("mode", mode, "is not a mode (bridge, route, nat)"))?;
    let base: T = parse_partial(text, &format!("modes/{mode}.toml (shipped)"), mode)?;
    let path = override_path_in(dir, mode);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(base.merge(parse_partial(&text, &path.display().to_string(), mode)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(base),
        Err(e) => Err(ConfigError::Io { path: path.display().to_string(), message: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_value_written_over_several_lines_is_named_on_one() {
        let e = super::parse_partial::<crate::config::inputs::RouteModeFile>("gateway={a=1\n}", "route.toml", "route").unwrap_err();
        assert_eq!(e.to_string(), "route.toml:1 gateway: {a=1 } is not a string");
    }

    use super::*;
    use crate::config::inputs::{NatModeFile, RouteModeFile};

    #[test]
    fn a_bad_key_is_named_with_its_line_and_its_value_as_written() {
        let cases: &[(&str, &str)] = &[
            ("gateway = \"\"\nuplink_proxi = true\n", "r.toml:2 uplink_proxi: true is not a key of route mode files (did you mean uplink_proxy?)"),
            ("gatway = \"203.0.113.193/29\"\n", "r.toml:1 gatway: \"203.0.113.193/29\" is not a key of route mode files (did you mean gateway?)"),
            ("colour = 3\n", "r.toml:1 colour: 3 is not a key of route mode files"),
            ("antispoof = \"yes\"\n", "r.toml:1 antispoof: \"yes\" is not a boolean"),
            ("uplink_proxy = 1\n", "r.toml:1 uplink_proxy: 1 is not a boolean"),
            ("gateway = [\"203.0.113.193/29\"]\n", "r.toml:1 gateway: [\"203.0.113.193/29\"] is not a string"),
            ("netdev = \"eth0\"\ngateway = \n", "r.toml:2:"),
        ];
        crate::config::assert_one_line_errors(cases, |text| parse_partial::<RouteModeFile>(text, "r.toml", "route"));
        let e = parse_partial::<NatModeFile>("run_dnsmasq = \"no\"\n", "n.toml", "nat").unwrap_err();
        assert_eq!(e.to_string(), "n.toml:1 run_dnsmasq: \"no\" is not a boolean");
    }

    #[test]
    fn a_modes_directory_named_on_purpose_must_exist() {
        let e = check_dir("--modes-dir", Path::new("/nonexistent/vifnet-modes")).unwrap_err();
        assert_eq!(e.to_string(), "--modes-dir: \"/nonexistent/vifnet-modes\" is not a directory");
        assert!(check_dir("--modes-dir", Path::new(env!("CARGO_MANIFEST_DIR"))).is_ok());
    }
}
