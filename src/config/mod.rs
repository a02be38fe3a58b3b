//! Parsers for every place a setting can come from (design.md §2). They return raw
//! strings with their origin; `model` turns them into validated types.

mod cursor;
pub mod domain;
pub mod error;
pub mod inputs;
pub mod keydoc;
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

/// Test helper: each input fails to parse with exactly one line that starts with its
/// expected text (origin, place, key and value first).
#[cfg(test)]
pub(crate) fn assert_one_line_errors<T: std::fmt::Debug>(cases: &[(&str, &str)], parse: impl Fn(&str) -> Result<T, ConfigError>) {
    for (input, want) in cases {
        let text = parse(input).expect_err(input).to_string();
        assert!(text.starts_with(want), "input {input:?}\n got {text}\nwant {want}");
        assert!(!text.contains('\n'), "{text}");
    }
}
