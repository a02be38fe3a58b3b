//! The one error type of the input layer: every message names where a value came from,
//! the key, the value and what is wrong, on one line.

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `at` says where: `argument mac`, `xenstore backend/vif/5/0/mac`, `/etc/xen/xl.conf:3 vif.default.bridge`.
    #[error("{at}: {value:?} {problem}")]
    BadValue { at: String, value: String, problem: String },
    /// A file that does not parse; `at` is `path:line` (or `path:line:col`).
    #[error("{at}: {problem}")]
    Syntax { at: String, problem: String },
    /// A key that the reader of `at` does not know.
    #[error("{at}: unknown key {key:?}")]
    UnknownKey { at: String, key: String },
    /// A key that must be given somewhere and was not.
    #[error("{key}: missing ({hint})")]
    Missing { key: String, hint: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl ConfigError {
    pub fn bad(at: impl Into<String>, value: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::BadValue { at: at.into(), value: value.into(), problem: problem.into() }
    }
    pub fn syntax(at: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Syntax { at: at.into(), problem: problem.into() }
    }
}
