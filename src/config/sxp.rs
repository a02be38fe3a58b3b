//! xend-config.sxp: a sequence of s-expressions, of which we read `network-script` and
//! `vif-script`. The syntax is that of xend's `sxp.py`: `( )` lists, bare atoms, atoms quoted
//! with `'` or `"` (backslash escapes, may span lines), `#` comments to the end of the line.

use std::fmt;
use std::path::Path;

use super::kv::{self, KeyValues};
use super::cursor::Cursor;
use super::ConfigError;

/// A parsed s-expression. Quoted and bare atoms are both `Atom`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sexp {
    Atom(String),
    List(Vec<Sexp>),
}

impl Sexp {
    /// `Some(text)` for an atom.
    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Sexp::Atom(s) => Some(s),
            Sexp::List(_) => None,
        }
    }

    /// The head atom of a list: `network-script` for `(network-script ...)`.
    pub fn name(&self) -> Option<&str> {
        match self {
            Sexp::List(items) => items.first().and_then(Sexp::as_atom),
            Sexp::Atom(_) => None,
        }
    }
}

impl fmt::Display for Sexp {
    /// Writes it back in sxp syntax, quoting atoms that would not read back as one atom.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sexp::Atom(s) if !s.is_empty() && s.chars().all(is_bare_char) => f.write_str(s),
            Sexp::Atom(s) => {
                f.write_str("'")?;
                for c in s.chars() {
                    match c {
                        '\'' | '\\' => write!(f, "\\{c}")?,
                        '\n' => f.write_str("\\n")?,
                        '\t' => f.write_str("\\t")?,
                        '\r' => f.write_str("\\r")?,
                        // Raw, they would break the one line of an error message.
                        c if c.is_control() => write!(f, "\\x{:02x}", u32::from(c))?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("'")
            }
            Sexp::List(items) => {
                f.write_str("(")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str(")")
            }
        }
    }
}

fn is_bare_char(c: char) -> bool {
    !(c.is_whitespace() || c.is_control() || matches!(c, '(' | ')' | '#' | '\'' | '"' | '\\'))
}

/// Parses every top-level expression of `text`. Errors are `origin:line:col: problem`.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Sexp>, ConfigError> {
    Ok(parse_nodes(text, origin)?
        .into_iter()
        .map(Node::into_sexp)
        .collect())
}

/// An expression with where it starts, so that later errors can name the line.
#[derive(Debug)]
struct Node {
    line: usize,
    kind: NodeKind,
}

#[derive(Debug)]
enum NodeKind {
    Atom(String),
    List(Vec<Node>),
}

impl Node {
    fn into_sexp(self) -> Sexp {
        match self.kind {
            NodeKind::Atom(text) => Sexp::Atom(text),
            NodeKind::List(items) => Sexp::List(items.into_iter().map(Node::into_sexp).collect()),
        }
    }

    fn to_sexp(&self) -> Sexp {
        match &self.kind {
            NodeKind::Atom(text) => Sexp::Atom(text.clone()),
            NodeKind::List(items) => Sexp::List(items.iter().map(Node::to_sexp).collect()),
        }
    }
}

/// Lists nested deeper are refused: building, printing and dropping an expression recurse
/// once per level, and a few thousand levels overflow the stack (xend's options nest three).
const MAX_NESTING: usize = 64;

fn parse_nodes(text: &str, origin: &str) -> Result<Vec<Node>, ConfigError> {
    let at = |line: usize, col: usize| format!("{origin}:{line}:{col}");
    // Lists still open, innermost last: where each `(` was, and what it holds so far.
    let mut open: Vec<(usize, usize, Vec<Node>)> = Vec::new();
    let mut top: Vec<Node> = Vec::new();
    let mut cur = Cursor::new(text);

    while let Some(c) = cur.peek() {
        let (line, col) = (cur.line, cur.col);
        let node = match c {
            c if c.is_whitespace() => {
                cur.bump();
                continue;
            }
            '#' => {
                while cur.peek().is_some_and(|c| c != '\n') {
                    cur.bump();
                }
                continue;
            }
            '(' => {
                cur.bump();
                if open.len() == MAX_NESTING {
                    return Err(ConfigError::syntax(at(line, col), format!("lists nested more than {MAX_NESTING} deep")));
                }
                open.push((line, col, Vec::new()));
                continue;
            }
            ')' => {
                cur.bump();
                let Some((line, _, items)) = open.pop() else {
                    return Err(ConfigError::syntax(
                        at(line, col),
                        "unbalanced parenthesis: ')' without a matching '('",
                    ));
                };
                Node {
                    line,
                    kind: NodeKind::List(items),
                }
            }
            '\'' | '"' => {
                cur.bump();
                let text = quoted(&mut cur, c, &at(line, col))?;
                Node {
                    line,
                    kind: NodeKind::Atom(text),
                }
            }
            c if c.is_control() => {
                return Err(ConfigError::syntax(
                    at(line, col),
                    format!("invalid character U+{:04X}", c as u32),
                ));
            }
            _ => {
                let mut text = String::new();
                while let Some(c) = cur.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '#') {
                        break;
                    }
                    text.push(c);
                    cur.bump();
                }
                Node {
                    line,
                    kind: NodeKind::Atom(text),
                }
            }
        };
        match open.last_mut() {
            Some((_, _, items)) => items.push(node),
            None => top.push(node),
        }
    }
    if let Some((line, col, _)) = open.last() {
        return Err(ConfigError::syntax(
            at(*line, *col),
            "unbalanced parenthesis: '(' is never closed",
        ));
    }
    Ok(top)
}

/// The rest of a quoted atom whose opening `delim` was just read. Escapes as in xend:
/// `\a \b \t \n \v \f \r \\ \' \"`, `\xHH`, `\OOO`; any other `\c` stays as written.
fn quoted(cur: &mut Cursor, delim: char, at: &str) -> Result<String, ConfigError> {
    let unterminated =
        || ConfigError::syntax(at, format!("unterminated quote: {delim} is never closed"));
    let mut out = String::new();
    loop {
        let c = cur.bump().ok_or_else(unterminated)?;
        if c == delim {
            return Ok(out);
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = cur.bump().ok_or_else(unterminated)?;
        match e {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            't' => out.push('\t'),
            'n' => out.push('\n'),
            'v' => out.push('\x0b'),
            'f' => out.push('\x0c'),
            'r' => out.push('\r'),
            '\\' | '\'' | '"' => out.push(e),
            'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 {
                    match cur.peek().and_then(|c| c.to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            n += 1;
                            cur.bump();
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    out.push_str("\\x");
                } else {
                    out.push(char::from(v as u8));
                }
            }
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                let mut n = 1;
                while n < 3 {
                    match cur.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) if v * 8 + d <= 0xff => {
                            v = v * 8 + d;
                            n += 1;
                            cur.bump();
                        }
                        _ => break,
                    }
                }
                out.push(char::from(v as u8));
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
}

/// What xend-config.sxp says about networking. Each is the first occurrence in the file, as
/// xend read it; `None` when absent (or, for `network-script`, empty: xend then ran none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XendConfig {
    pub network_script: Option<ScriptCall>,
    pub vif_script: Option<ScriptCall>,
}

/// `'network-bridge netdev=eth1 bridge=xenbr1'` split on whitespace as xend did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptCall {
    /// As written: a name in the scripts directory or a path.
    pub script: String,
    pub args: KeyValues,
    /// Arguments without `=` (xend passed them through; they are rarely used).
    pub words: Vec<String>,
}

impl ScriptCall {
    /// The mode the script implements, from its file name: `network-bridge`, `vif-bridge` →
    /// "bridge"; `-route` → "route"; `-nat` → "nat". Any other script → `None`.
    pub fn mode(&self) -> Option<&str> {
        crate::names::script_role(&self.script).map(|(_, mode)| mode)
    }
}

/// Reads `network-script` and `vif-script` from xend-config.sxp text; every other entry is
/// ignored. Errors name `origin:line key`.
pub fn parse_xend_config(text: &str, origin: &str) -> Result<XendConfig, ConfigError> {
    let mut config = XendConfig::default();
    let mut seen_network = false;
    for node in parse_nodes(text, origin)? {
        let NodeKind::List(items) = &node.kind else {
            continue;
        };
        let Some(Node {
            kind: NodeKind::Atom(key),
            ..
        }) = items.first()
        else {
            continue;
        };
        match key.as_str() {
            "network-script" if !seen_network => {
                seen_network = true;
                config.network_script = script_call(key, &items[1..], node.line, origin, true)?;
            }
            "vif-script" if config.vif_script.is_none() => {
                config.vif_script = script_call(key, &items[1..], node.line, origin, false)?;
            }
            _ => {}
        }
    }
    Ok(config)
}

impl XendConfig {
    /// Reads and parses a file; the path is the origin in messages.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let (text, origin) = super::read_file(path.as_ref())?;
        parse_xend_config(&text, &origin)
    }
}

fn script_call(
    key: &str,
    values: &[Node],
    line: usize,
    origin: &str,
    empty_is_none: bool,
) -> Result<Option<ScriptCall>, ConfigError> {
    let at = format!("{origin}:{line} {key}");
    let text = match values {
        [] => return Err(ConfigError::bad(at, format!("({key})"), "has no value")),
        [Node {
            kind: NodeKind::Atom(text),
            ..
        }] => text,
        [list @ Node {
            kind: NodeKind::List(_),
            ..
        }] => {
            return Err(ConfigError::bad(
                at,
                list.to_sexp().to_string(),
                "is a list, expected a script name",
            ));
        }
        many => {
            // xend took only the first value and silently dropped the rest.
            let joined: Vec<String> = many.iter().map(|n| n.to_sexp().to_string()).collect();
            let joined = joined.join(" ");
            return Err(ConfigError::bad(
                at,
                joined.clone(),
                format!(
                    "has {} values; quote the script and its arguments as one string: ({key} '{joined}')",
                    many.len()
                ),
            ));
        }
    };
    let mut parts = text.split_whitespace().map(str::to_string);
    let Some(script) = parts.next() else {
        if empty_is_none {
            return Ok(None);
        }
        return Err(ConfigError::bad(
            at,
            text.as_str(),
            "is empty, expected a script name",
        ));
    };
    if script.contains('=') {
        return Err(ConfigError::bad(
            at,
            text.as_str(),
            "does not start with a script name (key=value arguments come after it)",
        ));
    }
    let (words, args) = kv::parse_args_at(parts, &at)?;
    Ok(Some(ScriptCall {
        script,
        args,
        words,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like the xend-config.sxp shipped with Xen 4.1, with a routed setup enabled.
    const XEND_CONFIG: &str = r#"# -*- sh -*-

#
# Xend configuration file.
#

# This example configuration is appropriate for an installation that
# utilizes a bridged network configuration. Access to xend via http
# is disabled.

# Commented out entries show the default for that entry, unless otherwise
# specified.

#(logfile /var/log/xen/xend.log)
#(loglevel DEBUG)

# Uncomment the line below.  Set the value to flask, acm, or dummy to
# select a security module.

#(xsm_module_name dummy)

# The Xen-API server configuration.
#
# This value configures the ports, interfaces, and access controls for the
# Xen-API server.  Each entry in the list starts with either unix, a port
# number, or an address:port pair.
#(xen-api-server ((unix)))
#(xen-api-server ((9363 pam '^localhost$ example\\.com$')
#                 (unix none)))

(xend-http-server no)
(xend-unix-server no)
(xend-tcp-xmlrpc-server no)
(xend-unix-xmlrpc-server yes)
(xend-relocation-server no)
(xend-relocation-ssl-server no)
(xend-udev-event-server no)

#(xend-unix-path /var/lib/xend/xend-socket)

(xend-relocation-hosts-allow '^localhost$ ^localhost\\.localdomain$')

# The limit (in kilobytes) on the size of the console buffer
#(console-limit 1024)

##
# To bridge network traffic, like this:
#
# dom0: ----------------- bridge -> real eth0 -> the network
#                            |
# domU: fake eth0 -> vifN.0 -+
#
# use
#
# (network-script network-bridge)
#
# Your default ethernet device is used as the outgoing interface, by default.
# To use a different one (e.g. eth1) use
#
# (network-script 'network-bridge netdev=eth1')
#
# The bridge is named eth0, by default (yes, really!)
#

## Use the following if network traffic is routed, as an alternative to the
# settings for bridged networking given above.
(network-script 'network-route netdev=eth0 antispoof=yes')   # routed, see vif-route
(vif-script     vif-route)

## Use the following if network traffic is routed with NAT, as an alternative
# to the settings for bridged networking given above.
#(network-script network-nat)
#(vif-script     vif-nat)

# dom0-min-mem is the lowest permissible memory level (in MB) for dom0.
(dom0-min-mem 196)
(enable-dom0-ballooning yes)
(total_available_memory 0)
(dom0-cpus 0)

# Whether to enable core-dumps when domains crash.
#(enable-dump no)

# The tool used for initiating virtual TPM migration
#(external-migration-tool '')

(vnc-listen "127.0.0.1")
(vncpasswd '')
(keymap 'en-us')
(device-create-timeout 100)
(device-destroy-timeout 100)
"#;

    #[test]
    fn realistic_xend_config_selects_route_mode() {
        let cfg = parse_xend_config(XEND_CONFIG, "/etc/xen/xend-config.sxp").unwrap();
        let net = cfg.network_script.unwrap();
        assert_eq!(net.script, "network-route");
        assert_eq!(net.mode(), Some("route"));
        assert_eq!(net.args.get("netdev"), Some("eth0"));
        assert_eq!(net.args.get("antispoof"), Some("yes"));
        assert!(net.words.is_empty());
        let vif = cfg.vif_script.unwrap();
        assert_eq!(vif.script, "vif-route");
        assert!(vif.args.is_empty());
        assert_eq!(vif.mode(), Some("route"));
    }

    #[test]
    fn generic_parse_keeps_other_entries_and_unescapes() {
        let all = parse(XEND_CONFIG, "x").unwrap();
        let allow = all
            .iter()
            .find(|s| s.name() == Some("xend-relocation-hosts-allow"))
            .unwrap();
        assert_eq!(
            allow,
            &Sexp::List(vec![
                Sexp::Atom("xend-relocation-hosts-allow".into()),
                Sexp::Atom(r"^localhost$ ^localhost\.localdomain$".into()),
            ])
        );
        assert!(all
            .iter()
            .any(|s| s.name() == Some("device-destroy-timeout")));
        assert_eq!(all.len(), 19);
    }

    #[test]
    fn nested_lists_and_escapes() {
        let v = parse(
            "(xen-api-server ((9363 pam \"a\\tb\\x41\\101\\q\")\n (unix none)))  # c\n",
            "x",
        )
        .unwrap();
        let Sexp::List(items) = &v[0] else { panic!() };
        let Sexp::List(servers) = &items[1] else {
            panic!()
        };
        assert_eq!(servers.len(), 2);
        assert_eq!(
            servers[0],
            Sexp::List(vec![
                Sexp::Atom("9363".into()),
                Sexp::Atom("pam".into()),
                Sexp::Atom("a\tbAA\\q".into()),
            ])
        );
        assert_eq!(
            v[0].to_string(),
            "(xen-api-server ((9363 pam 'a\\tbAA\\\\q') (unix none)))"
        );
    }

    #[test]
    fn hash_inside_quotes_is_not_a_comment() {
        let v = parse("(a 'x # y') # gone\n(b \"it's\")", "x").unwrap();
        assert_eq!(
            v[0],
            Sexp::List(vec![Sexp::Atom("a".into()), Sexp::Atom("x # y".into())])
        );
        assert_eq!(
            v[1],
            Sexp::List(vec![Sexp::Atom("b".into()), Sexp::Atom("it's".into())])
        );
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn unquoted_and_quoted_script_forms() {
        let cfg = parse_xend_config(
            "(network-script network-bridge)\n(vif-script 'vif-bridge bridge=xenbr1')\n",
            "x",
        )
        .unwrap();
        let net = cfg.network_script.unwrap();
        assert_eq!(
            (net.script.as_str(), net.mode()),
            ("network-bridge", Some("bridge"))
        );
        let vif = cfg.vif_script.unwrap();
        assert_eq!(vif.script, "vif-bridge");
        assert_eq!(vif.args.get("bridge"), Some("xenbr1"));

        let cfg = parse_xend_config(
            "(network-script \"network-bridge  start\tnetdev=eth1 bridge=xenbr1\")",
            "x",
        )
        .unwrap();
        let net = cfg.network_script.unwrap();
        assert_eq!(net.words, vec!["start"]);
        assert_eq!(net.args.get("netdev"), Some("eth1"));
        assert_eq!(cfg.vif_script, None);
    }

    #[test]
    fn first_occurrence_wins_as_in_xend() {
        let cfg = parse_xend_config(
            "(vif-script vif-nat)\n(vif-script vif-bridge)\n(network-script network-nat)\n(network-script network-bridge)",
            "x",
        )
        .unwrap();
        assert_eq!(cfg.vif_script.unwrap().script, "vif-nat");
        assert_eq!(cfg.network_script.unwrap().mode(), Some("nat"));
    }

    #[test]
    fn empty_network_script_means_none_as_in_xend() {
        let cfg =
            parse_xend_config("(network-script '')\n(network-script network-bridge)", "x").unwrap();
        assert_eq!(cfg.network_script, None);
    }

    #[test]
    fn mode_comes_from_the_basename() {
        let call = |s: &str| ScriptCall {
            script: s.into(),
            ..Default::default()
        };
        assert_eq!(call("/etc/xen/scripts/vif-route").mode(), Some("route"));
        assert_eq!(call("vif-nat").mode(), Some("nat"));
        assert_eq!(call("network-nat").mode(), Some("nat"));
        assert_eq!(
            call("/usr/lib/xen/scripts/network-bridge").mode(),
            Some("bridge")
        );
        assert_eq!(call("vif-openvswitch").mode(), None);
        assert_eq!(call("vifnet-bridge").mode(), Some("bridge"));
        assert_eq!(call("/bin/true").mode(), None);
        assert_eq!(call("vif-bridge.sh").mode(), None);
        assert_eq!(call("my-vif-bridge").mode(), None);
    }

    #[test]
    fn bad_inputs_give_one_line_errors_naming_the_place() {
        let cases: &[(&str, &str)] = &[
            // unbalanced: the never-closed '(' is on line 2
            ("(a b)\n(network-script network-bridge\n(c d)\n", "x.sxp:2:1: unbalanced parenthesis: '(' is never closed"),
            ("(a b))\n", "x.sxp:1:6: unbalanced parenthesis: ')' without a matching '('"),
            ("# c\n(vif-script 'vif-bridge bridge=xenbr1)\n", "x.sxp:2:13: unterminated quote: ' is never closed"),
            ("(a \"b\\\"\n", "x.sxp:1:4: unterminated quote: \" is never closed"),
            ("(a \u{1}b)", "x.sxp:1:4: invalid character U+0001"),
            ("\n\n(network-script)\n", "x.sxp:3 network-script: \"(network-script)\" has no value"),
            ("(network-script network-bridge netdev=eth1)", "x.sxp:1 network-script: \"network-bridge netdev=eth1\" has 2 values; quote the script and its arguments as one string: (network-script 'network-bridge netdev=eth1')"),
            ("(vif-script (vif-bridge))", "x.sxp:1 vif-script: \"(vif-bridge)\" is a list, expected a script name"),
            ("(vif-script '')", "x.sxp:1 vif-script: \"\" is empty, expected a script name"),
            ("(network-script 'network-bridge $(reboot)=1')", "x.sxp:1 network-script: \"$(reboot)=1\" is not key=value"),
            ("(network-script 'netdev=eth1 network-bridge')", "x.sxp:1 network-script: \"netdev=eth1 network-bridge\" does not start with a script name"),
        ];
        crate::config::assert_one_line_errors(cases, |input| parse_xend_config(input, "x.sxp"));
    }

    #[test]
    fn control_characters_print_escaped_and_read_back() {
        let atom = Sexp::Atom("a\rb\u{1}\u{7f}\u{85}c\x0b".into());
        assert_eq!(atom.to_string(), r"'a\rb\x01\x7f\x85c\x0b'");
        assert_eq!(parse(&atom.to_string(), "x").unwrap(), vec![atom]);
        // Found by tests/fuzz.rs: the hint quoting the values wrote the CR raw.
        let err = parse_xend_config("(vif-script '\\r't)", "x").unwrap_err().to_string();
        assert!(err.ends_with(r"(vif-script ''\r' t')"), "{err}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = |n: usize| format!("{}x{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&deep(MAX_NESTING), "x").is_ok());
        let err = parse(&deep(MAX_NESTING + 1), "x").unwrap_err().to_string();
        assert_eq!(err, "x:1:65: lists nested more than 64 deep");
        // Found by tests/fuzz.rs: a few thousand balanced levels used to overflow the stack.
        let err = parse_xend_config(&deep(100_000), "x").unwrap_err();
        assert!(err.to_string().ends_with("lists nested more than 64 deep"), "{err}");
    }

    #[test]
    fn split_on_whitespace_of_net_dev_is_a_word_then_bad_pair() {
        // `net dev=eth1` splits into the word "net" and "dev=eth1", which is fine.
        let cfg = parse_xend_config("(network-script 'network-bridge net dev=eth1')", "x").unwrap();
        let net = cfg.network_script.unwrap();
        assert_eq!(net.words, vec!["net"]);
        assert_eq!(net.args.get("dev"), Some("eth1"));
    }
}
