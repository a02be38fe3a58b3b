//! `key=value` words: the arguments Xen's scripts take (`network-bridge start netdev=eth1`)
//! and the items of one xl `vif=` entry (`'mac=00:16:3e:00:00:01, bridge=xenbr0'`).
//!
//! Xen's scripts `eval`ed every argument whose first `=` was past position 0; we only accept
//! a key that is a plain identifier, so nothing here can smuggle in shell.

use super::ConfigError;

/// Key/value pairs in the order written. Duplicates are kept; [`KeyValues::get`] returns the
/// last one, as a later `key=value` overrode an earlier one in the scripts and in xl.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValues(pub Vec<(String, String)>);

impl KeyValues {
    pub fn new() -> Self {
        KeyValues(Vec::new())
    }

    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.push((key.into(), value.into()));
    }

    /// The value of the last `key=...`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// All pairs in the order written, duplicates included.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, String)> for KeyValues {
    fn from_iter<T: IntoIterator<Item = (String, String)>>(iter: T) -> Self {
        KeyValues(iter.into_iter().collect())
    }
}

impl IntoIterator for KeyValues {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// `[A-Za-z_][A-Za-z0-9_-]*`
pub fn is_key(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Splits command-line arguments into plain words (`start`, `online`, and anything whose
/// first `=` is at position 0, which the scripts ignored too) and `key=value` pairs.
/// A `key=value` whose key is not an identifier is an error naming `argument`.
pub fn parse_args<I: IntoIterator<Item = String>>(
    args: I,
) -> Result<(Vec<String>, KeyValues), ConfigError> {
    parse_args_at(args, "argument")
}

/// [`parse_args`] for arguments that come from a file: errors name `at`
/// (e.g. `xend-config.sxp:12 network-script`) instead of `argument`.
pub fn parse_args_at<I: IntoIterator<Item = String>>(
    args: I,
    at: &str,
) -> Result<(Vec<String>, KeyValues), ConfigError> {
    let mut words = Vec::new();
    let mut kv = KeyValues::new();
    for arg in args {
        match arg.find('=') {
            None | Some(0) => words.push(arg),
            Some(i) => {
                if !is_key(&arg[..i]) {
                    return Err(ConfigError::bad(at, arg, "is not key=value"));
                }
                let value = arg[i + 1..].to_string();
                let mut key = arg;
                key.truncate(i);
                kv.push(key, value);
            }
        }
    }
    Ok((words, kv))
}

/// One xl `vif=` entry: comma-separated `key=value` items (xl-network-configuration(5)).
/// Whitespace around items is dropped and empty items are skipped, so `''` is a vif with
/// every default; a value keeps its inner spaces (`ip=10.0.0.2 10.0.0.3`). An item that is
/// not `key=value` is an error naming `origin` (e.g. `web.cfg:7 vif[1]`) and the item.
pub fn split_vif_spec(spec: &str, origin: &str) -> Result<KeyValues, ConfigError> {
    let mut kv = KeyValues::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.split_once('=') {
            Some((key, value)) if is_key(key) => kv.push(key, value),
            _ => return Err(ConfigError::bad(origin, item, "is not key=value")),
        }
    }
    Ok(kv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn script_arguments_split_into_words_and_pairs() {
        let (words, kv) = parse_args(args(&[
            "start",
            "netdev=eth1",
            "bridge=xenbr1",
            "antispoof=no",
        ]))
        .unwrap();
        assert_eq!(words, vec!["start"]);
        assert_eq!(kv.get("netdev"), Some("eth1"));
        assert_eq!(kv.get("bridge"), Some("xenbr1"));
        assert_eq!(kv.len(), 3);
    }

    #[test]
    fn later_argument_overrides_earlier_one() {
        let (_, kv) = parse_args(args(&["bridge=xenbr0", "bridge=xenbr1"])).unwrap();
        assert_eq!(kv.get("bridge"), Some("xenbr1"));
        assert_eq!(kv.iter().count(), 2, "both are kept in order");
    }

    #[test]
    fn value_may_be_empty_or_hold_equals_signs() {
        let (_, kv) = parse_args(args(&["bridge=", "opt=a=b", "dhcp-range_x=1"])).unwrap();
        assert_eq!(kv.get("bridge"), Some(""));
        assert_eq!(kv.get("opt"), Some("a=b"));
        assert_eq!(kv.get("dhcp-range_x"), Some("1"));
    }

    #[test]
    fn leading_equals_is_a_word_as_in_the_scripts() {
        let (words, kv) = parse_args(args(&["=foo", "online"])).unwrap();
        assert_eq!(words, vec!["=foo", "online"]);
        assert!(kv.is_empty());
    }

    #[test]
    fn argument_with_bad_key_is_rejected() {
        for bad in ["foo bar=1", "1x=2", "a.b=c", "$(reboot)=1", "-x=1"] {
            let err = parse_args(args(&["start", bad])).unwrap_err();
            assert_eq!(err, ConfigError::bad("argument", bad, "is not key=value"));
            let text = err.to_string();
            assert!(text.starts_with("argument: "), "{text}");
            assert!(text.contains(&format!("{bad:?}")), "{text}");
            assert!(!text.contains('\n'));
        }
    }

    #[test]
    fn parse_args_at_names_the_file() {
        let err = parse_args_at(args(&["x y=1"]), "xend-config.sxp:3 network-script").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"xend-config.sxp:3 network-script: "x y=1" is not key=value"#
        );
    }

    #[test]
    fn vif_spec_from_the_manual() {
        let kv = split_vif_spec(
            "mac=00:16:3e:00:00:01, bridge=xenbr0, ip=10.0.0.2 10.0.0.3",
            "t",
        )
        .unwrap();
        assert_eq!(kv.get("mac"), Some("00:16:3e:00:00:01"));
        assert_eq!(kv.get("bridge"), Some("xenbr0"));
        assert_eq!(kv.get("ip"), Some("10.0.0.2 10.0.0.3"));
        assert_eq!(kv.len(), 3);
    }

    #[test]
    fn vif_spec_trims_items_and_skips_empty_ones() {
        let kv = split_vif_spec("  ,mac=00:16:3e:00:00:02 ,, script=vif-route,  ", "t").unwrap();
        let pairs: Vec<_> = kv.iter().collect();
        assert_eq!(
            pairs,
            vec![("mac", "00:16:3e:00:00:02"), ("script", "vif-route")]
        );
        assert!(split_vif_spec("", "t").unwrap().is_empty());
    }

    #[test]
    fn vif_spec_item_without_equals_is_named() {
        let err = split_vif_spec("mac=00:16:3e:00:00:01, xenbr0", "web.cfg:7 vif[1]").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"web.cfg:7 vif[1]: "xenbr0" is not key=value"#
        );
        let err = split_vif_spec("=x", "web.cfg:7 vif[0]").unwrap_err();
        assert!(err.to_string().contains(r#""=x""#));
        let err = split_vif_spec("bridge = xenbr0", "web.cfg:7 vif[0]").unwrap_err();
        assert!(err
            .to_string()
            .contains(r#""bridge = xenbr0" is not key=value"#));
    }
}
