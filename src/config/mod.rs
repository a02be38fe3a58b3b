//! Parsers for every place a setting can come from (design.md §2). They return raw
//! strings with their origin; `model` turns them into validated types.

mod cursor;
pub mod domain;
pub mod error;
pub mod inputs;
pub mod kv;
pub mod modefile;
pub mod sxp;
pub mod xlconf;

pub use error::ConfigError;

/// Reads a config file whole; its path becomes the origin named in every message.
pub fn read_file(path: &std::path::Path) -> Result<(String, String), ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io { path: origin.clone(), message: e.to_string() })?;
    Ok((text, origin))
}
