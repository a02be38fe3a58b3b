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

/// The directory of the administrator's mode files: `$VIFNET_MODES_DIR`, else /etc/vifnet/modes.
pub fn modes_dir() -> PathBuf {
    std::env::var_os("VIFNET_MODES_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(names::MODES_DIR))
}

/// Where the administrator's override of `mode` lives.
pub fn override_path(mode: &str) -> PathBuf {
    override_path_in(&modes_dir(), mode)
}

fn override_path_in(dir: &Path, mode: &str) -> PathBuf {
    dir.join(format!("{mode}.toml"))
}

/// Parses one mode file into `T`, a struct of `Option`s with `deny_unknown_fields`.
pub fn parse_partial<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let at = match e.span() {
            Some(span) => format!("{origin}:{}", 1 + text[..span.start].matches('\n').count()),
            None => origin.to_string(),
        };
        ConfigError::syntax(at, e.message().replace('\n', " "))
    })
}

/// A mode file as read: every key optional, so that an override names only what it changes.
pub trait ModeFile: DeserializeOwned {
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
            fn merge(self, over: Self) -> Self {
                $name { $($key: over.$key.or(self.$key),)* }
            }
        }
    };
}
pub(crate) use mode_file;

/// The shipped file, then the override if it exists, laid over it key by key.
pub fn load<T: ModeFile>(mode: &str) -> Result<T, ConfigError> {
    load_from(&modes_dir(), mode)
}

/// `load` with the administrator's files in `dir` (`setup --simulate --modes-dir`).
pub fn load_from<T: ModeFile>(dir: &Path, mode: &str) -> Result<T, ConfigError> {
    let text = shipped(mode).ok_or_else(|| ConfigError::bad("mode", mode, "is not a mode (bridge, route, nat)"))?;
    let base: T = parse_partial(text, &format!("modes/{mode}.toml (shipped)"))?;
    let path = override_path_in(dir, mode);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(base.merge(parse_partial(&text, &path.display().to_string())?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(base),
        Err(e) => Err(ConfigError::Io { path: path.display().to_string(), message: e.to_string() }),
    }
}
