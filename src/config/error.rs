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

    /// `key=value` where `key` is none of `known`: `argument brdige: "xenbr1" is not a key
    /// of vif scripts (did you mean bridge?)`. `of` says whose keys `known` are.
    pub fn unknown_key(at: &str, key: &str, value: &str, of: &str, known: &[&str]) -> Self {
        ConfigError::bad(format!("{at} {key}"), value, format!("is not a key of {of}{}", did_you_mean(key, known)))
    }
}

/// ` (did you mean bridge?)` when one of `known` is a likely typo of `key`, else nothing.
pub fn did_you_mean(key: &str, known: &[&str]) -> String {
    // Up to two edits, and fewer than a third of the word: `brige` is `bridge`, `ip` is not `mtu`.
    let limit = (key.chars().count() / 3).clamp(1, 2);
    known
        .iter()
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| format!(" (did you mean {k}?)"))
        .unwrap_or_default()
}

/// Levenshtein distance, case-insensitive: `uplink_proxi` is one edit from `uplink_proxy`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_the_nearest_key_and_strangers_get_none() {
        let known = ["bridge", "netdev", "uplink_proxy", "ip", "mtu"];
        assert_eq!(did_you_mean("brige", &known), " (did you mean bridge?)");
        assert_eq!(did_you_mean("uplink_proxi", &known), " (did you mean uplink_proxy?)");
        assert_eq!(did_you_mean("NETDEV", &known), " (did you mean netdev?)");
        assert_eq!(did_you_mean("ipp", &known), " (did you mean ip?)");
        assert_eq!(did_you_mean("colour", &known), "");
        assert_eq!(did_you_mean("mac", &known), "", "one letter of three is not a typo of mtu");
        let e = ConfigError::unknown_key("argument", "brdige", "xenbr1", "vif scripts", &known);
        assert_eq!(e.to_string(), "argument brdige: \"xenbr1\" is not a key of vif scripts (did you mean bridge?)");
    }
}
