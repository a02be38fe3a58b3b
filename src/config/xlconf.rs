//! The syntax xl uses for /etc/xen/xl.conf and for domain configs (xl.cfg(5), libxlu's
//! parser): `key = value` statements ended by a newline or `;`, where a value is a quoted
//! string, a number or a `[ ... ]` list that may span lines; `#` comments; `key += value`
//! appends to an earlier string or list. A later assignment replaces an earlier one.

use std::fmt;
use std::path::Path;

use super::cursor::Cursor;
use super::ConfigError;

/// One value as written. List elements are strings; an unquoted number inside a list keeps
/// its text, as in xl. `Nested` is a list holding at least one list (`vnuma = [ [..], [..] ]`);
/// its atoms are all `Str`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XlValue {
    Str(String),
    Num(i64),
    List(Vec<String>),
    Nested(Vec<XlValue>),
}

impl fmt::Display for XlValue {
    /// Back in config syntax, single-quoted, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn quote(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
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
        match self {
            XlValue::Str(s) => quote(f, s),
            XlValue::Num(n) => write!(f, "{n}"),
            XlValue::List(items) => {
                f.write_str("[")?;
                for (i, s) in items.iter().enumerate() {
                    f.write_str(if i == 0 { " " } else { ", " })?;
                    quote(f, s)?;
                }
                f.write_str(if items.is_empty() { "]" } else { " ]" })
            }
            XlValue::Nested(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    f.write_str(if i == 0 { " " } else { ", " })?;
                    write!(f, "{v}")?;
                }
                f.write_str(if items.is_empty() { "]" } else { " ]" })
            }
        }
    }
}

/// Every assignment in file order as `(key, value, line of the key)`. For `key += value`
/// the entry holds the combined value and replaces the one it added to. Errors: `origin:line:col: problem` for syntax,
/// `origin:line key: "value" problem` for a bad number or a bad `+=`.
pub fn parse(text: &str, origin: &str) -> Result<Vec<(String, XlValue, usize)>, ConfigError> {
    Ok(parse_entries(text, origin)?
        .into_iter()
        .map(|e| (e.key, e.value.into_value(), e.line))
        .collect())
}

/// An assignment with the lines of its value's parts, for messages about list items.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub key: String,
    pub line: usize,
    pub value: Located,
}

#[derive(Debug, Clone)]
pub(super) struct Located {
    pub line: usize,
    pub raw: Raw,
}

#[derive(Debug, Clone)]
pub(super) enum Raw {
    Str(String),
    /// A number outside a list, already checked.
    Num(i64),
    /// A number inside a list: only its text matters there.
    Word(String),
    List(Vec<Located>),
}

impl Located {
    pub(super) fn into_value(self) -> XlValue {
        match self.raw {
            Raw::Str(s) | Raw::Word(s) => XlValue::Str(s),
            Raw::Num(n) => XlValue::Num(n),
            Raw::List(items) if items.iter().all(|i| !matches!(i.raw, Raw::List(_))) => {
                XlValue::List(
                    items
                        .into_iter()
                        .map(|i| i.into_value().to_string_lossy())
                        .collect(),
                )
            }
            Raw::List(items) => {
                XlValue::Nested(items.into_iter().map(Located::into_value).collect())
            }
        }
    }
}

impl XlValue {
    /// Atoms as text (used only where they are known to be atoms).
    fn to_string_lossy(&self) -> String {
        match self {
            XlValue::Str(s) => s.clone(),
            XlValue::Num(n) => n.to_string(),
            other => other.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Number(String),
    Str(String),
    Open,
    Close,
    Comma,
    Assign,
    Append,
    Semi,
    Newline,
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Number(s) => write!(f, "`{s}`"),
            Tok::Str(s) => write!(f, "string {s:?}"),
            Tok::Open => f.write_str("'['"),
            Tok::Close => f.write_str("']'"),
            Tok::Comma => f.write_str("','"),
            Tok::Assign => f.write_str("'='"),
            Tok::Append => f.write_str("'+='"),
            Tok::Semi => f.write_str("';'"),
            Tok::Newline => f.write_str("end of line"),
            Tok::Eof => f.write_str("end of file"),
        }
    }
}

struct Token {
    tok: Tok,
    line: usize,
    col: usize,
}

struct Lexer<'a> {
    cur: Cursor<'a>,
    origin: &'a str,
}

impl<'a> Lexer<'a> {
    fn err(&self, line: usize, col: usize, problem: impl Into<String>) -> ConfigError {
        ConfigError::syntax(format!("{}:{line}:{col}", self.origin), problem)
    }

    fn next_token(&mut self) -> Result<Token, ConfigError> {
        // `\r` is skipped so that files edited on Windows still read.
        while matches!(self.cur.peek(), Some(' ' | '\t' | '\r')) {
            self.cur.bump();
        }
        if self.cur.peek() == Some('#') {
            while self.cur.peek().is_some_and(|c| c != '\n') {
                self.cur.bump();
            }
        }
        let (line, col) = (self.cur.line, self.cur.col);
        let Some(c) = self.cur.bump() else {
            return Ok(Token {
                tok: Tok::Eof,
                line,
                col,
            });
        };
        let tok = match c {
            '\n' => Tok::Newline,
            '[' => Tok::Open,
            ']' => Tok::Close,
            ',' => Tok::Comma,
            '=' => Tok::Assign,
            ';' => Tok::Semi,
            '+' if self.cur.peek() == Some('=') => {
                self.cur.bump();
                Tok::Append
            }
            '"' | '\'' => Tok::Str(self.string(c, line, col)?),
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut s = String::from(c);
                while let Some(c) = self
                    .cur
                    .peek()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
                {
                    s.push(c);
                    self.cur.bump();
                }
                Tok::Ident(s)
            }
            c if c.is_ascii_digit() => {
                // Read the whole word so that `512M` is reported as one bad number.
                let mut s = String::from(c);
                while let Some(c) = self
                    .cur
                    .peek()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    s.push(c);
                    self.cur.bump();
                }
                Tok::Number(s)
            }
            c => {
                let hint = if "+-.():".contains(c) {
                    " (xl configs are not Python: quote strings, no expressions)"
                } else {
                    ""
                };
                return Err(self.err(line, col, format!("unexpected character {c:?}{hint}")));
            }
        };
        Ok(Token { tok, line, col })
    }

    /// The rest of a string opened by `delim`. Strings end on their line, as in xl.
    fn string(&mut self, delim: char, line: usize, col: usize) -> Result<String, ConfigError> {
        let mut out = String::new();
        loop {
            let (l, c0) = (self.cur.line, self.cur.col);
            match self.cur.bump() {
                None | Some('\n') => {
                    return Err(self.err(
                        line,
                        col,
                        format!("unterminated string: {delim} is never closed on its line"),
                    ));
                }
                Some(c) if c == delim => return Ok(out),
                Some('\\') => {
                    let Some(e) = self.cur.bump().filter(|&e| e != '\n') else {
                        return Err(self.err(
                            line,
                            col,
                            format!("unterminated string: {delim} is never closed on its line"),
                        ));
                    };
                    match e {
                        '"' | '\'' | '\\' => out.push(e),
                        'a' => out.push('\x07'),
                        'b' => out.push('\x08'),
                        'f' => out.push('\x0c'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'v' => out.push('\x0b'),
                        'x' => {
                            let mut v = 0u32;
                            for _ in 0..2 {
                                match self.cur.peek().and_then(|c| c.to_digit(16)) {
                                    Some(d) => {
                                        v = v * 16 + d;
                                        self.cur.bump();
                                    }
                                    None => {
                                        return Err(self.err(l, c0, "\\x needs two hex digits"));
                                    }
                                }
                            }
                            out.push(char::from(v as u8));
                        }
                        '0'..='7' => {
                            let mut v = e.to_digit(8).unwrap_or(0);
                            for _ in 0..2 {
                                match self.cur.peek().and_then(|c| c.to_digit(8)) {
                                    Some(d) if v * 8 + d <= 0xff => {
                                        v = v * 8 + d;
                                        self.cur.bump();
                                    }
                                    _ => break,
                                }
                            }
                            out.push(char::from(v as u8));
                        }
                        // A control character is named, not written: it would break the line.
                        other if other.is_control() => {
                            let problem = format!("invalid escape: '\\' before U+{:04X} in string", u32::from(other));
                            return Err(self.err(l, c0, problem));
                        }
                        other => {
                            return Err(self.err(
                                l,
                                c0,
                                format!("invalid escape \\{other} in string"),
                            ));
                        }
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }
}

/// Lists nested deeper are refused: the parser recurses once per level, and a few thousand
/// levels overflow the stack (xl's own settings nest two deep at most).
const MAX_NESTING: usize = 64;

struct Parser<'a> {
    lexer: Lexer<'a>,
    /// One token of look-ahead.
    ahead: Option<Token>,
    /// Lists open around the current token.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Result<Token, ConfigError> {
        match self.ahead.take() {
            Some(t) => Ok(t),
            None => self.lexer.next_token(),
        }
    }

    fn peek(&mut self) -> Result<&Token, ConfigError> {
        if self.ahead.is_none() {
            self.ahead = Some(self.lexer.next_token()?);
        }
        Ok(self.ahead.as_ref().expect("just filled"))
    }

    fn skip_newlines(&mut self) -> Result<(), ConfigError> {
        while self.peek()?.tok == Tok::Newline {
            self.next()?;
        }
        Ok(())
    }

    /// A value right after `=` of `key`: no line break allowed before it.
    fn value(&mut self, key: &str) -> Result<Located, ConfigError> {
        let t = self.next()?;
        let line = t.line;
        let raw = match t.tok {
            Tok::Str(s) => Raw::Str(s),
            Tok::Number(s) => match parse_number(&s) {
                Some(n) => Raw::Num(n),
                None => {
                    return Err(ConfigError::bad(
                        format!("{}:{line} {key}", self.lexer.origin),
                        s,
                        "is not a number (quote it if it is a string)",
                    ));
                }
            },
            Tok::Open => self.list(&t)?,
            Tok::Ident(s) => {
                return Err(self.lexer.err(
                    t.line,
                    t.col,
                    format!("unquoted value `{s}`: write it as \"{s}\""),
                ));
            }
            Tok::Newline | Tok::Eof | Tok::Semi => {
                return Err(self.lexer.err(
                    t.line,
                    t.col,
                    format!("missing value after `{key} =`"),
                ));
            }
            other => {
                return Err(self.lexer.err(
                    t.line,
                    t.col,
                    format!("expected a value for `{key}`, found {other}"),
                ))
            }
        };
        Ok(Located { line, raw })
    }

    /// The rest of a list after its `[`, at most [`MAX_NESTING`] lists deep.
    fn list(&mut self, open: &Token) -> Result<Raw, ConfigError> {
        if self.depth == MAX_NESTING {
            return Err(self.lexer.err(open.line, open.col, format!("lists nested more than {MAX_NESTING} deep")));
        }
        self.depth += 1;
        let list = self.list_items(open);
        self.depth -= 1;
        list
    }

    /// Items separated by `,`, a trailing `,` allowed, line breaks anywhere between items.
    fn list_items(&mut self, open: &Token) -> Result<Raw, ConfigError> {
        let opened = format!("the list opened at line {}", open.line);
        let mut items = Vec::new();
        loop {
            self.skip_newlines()?;
            let t = self.next()?;
            let line = t.line;
            let raw = match t.tok {
                Tok::Close => return Ok(Raw::List(items)),
                Tok::Str(s) => Raw::Str(s),
                Tok::Number(s) => Raw::Word(s),
                Tok::Open => self.list(&t)?,
                Tok::Eof => {
                    return Err(self.lexer.err(
                        open.line,
                        open.col,
                        "list not closed: '[' has no matching ']'",
                    ));
                }
                Tok::Ident(s) => {
                    return Err(self.lexer.err(
                        t.line,
                        t.col,
                        format!(
                            "unquoted `{s}` in {opened}: quote items, and close the list with ']'"
                        ),
                    ));
                }
                other => {
                    return Err(self.lexer.err(
                        t.line,
                        t.col,
                        format!("expected an item in {opened}, found {other}"),
                    ))
                }
            };
            items.push(Located { line, raw });
            self.skip_newlines()?;
            let t = self.next()?;
            match t.tok {
                Tok::Comma => {}
                Tok::Close => return Ok(Raw::List(items)),
                Tok::Eof => {
                    return Err(self.lexer.err(
                        open.line,
                        open.col,
                        "list not closed: '[' has no matching ']'",
                    ));
                }
                other => {
                    return Err(self.lexer.err(
                        t.line,
                        t.col,
                        format!("expected ',' or ']' in {opened}, found {other}"),
                    ));
                }
            }
        }
    }
}

/// strtol(3) with base 0, as xl reads numbers: `0x1f`, `017` (octal), `42`.
fn parse_number(s: &str) -> Option<i64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        i64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// Statements with `+=` already applied (the entry then holds the combined value, and the
/// entry it added to is gone: keeping both would keep every prefix of a long `+=` chain,
/// memory quadratic in the file).
pub(super) fn parse_entries(text: &str, origin: &str) -> Result<Vec<Entry>, ConfigError> {
    let mut p = Parser {
        lexer: Lexer {
            cur: Cursor::new(text),
            origin,
        },
        ahead: None,
        depth: 0,
    };
    // A slot is emptied when `+=` takes its value over.
    let mut entries: Vec<Option<Entry>> = Vec::new();
    loop {
        let t = p.next()?;
        let key = match t.tok {
            Tok::Eof => return Ok(entries.into_iter().flatten().collect()),
            Tok::Newline | Tok::Semi => continue,
            Tok::Ident(key) => key,
            other => {
                return Err(p.lexer.err(
                    t.line,
                    t.col,
                    format!("expected `key = value`, found {other}"),
                ))
            }
        };
        let line = t.line;
        let op = p.next()?;
        let append = match op.tok {
            Tok::Assign => false,
            Tok::Append => true,
            other => {
                return Err(p.lexer.err(
                    op.line,
                    op.col,
                    format!("expected '=' after `{key}`, found {other}"),
                ))
            }
        };
        let mut value = p.value(&key)?;
        let end = p.next()?;
        match end.tok {
            Tok::Newline | Tok::Semi | Tok::Eof => {}
            other => {
                return Err(p.lexer.err(end.line, end.col, format!("expected end of line after the value of `{key}`, found {other} (separate statements with a newline or ';')")));
            }
        }
        if append {
            value = append_to(&mut entries, &key, value, &format!("{origin}:{line} {key}"))?;
        }
        let done = end.tok == Tok::Eof;
        entries.push(Some(Entry { key, line, value }));
        if done {
            return Ok(entries.into_iter().flatten().collect());
        }
    }
}

/// `add` appended to the last assignment of `key`, which it takes over; alone if none.
fn append_to(entries: &mut [Option<Entry>], key: &str, add: Located, at: &str) -> Result<Located, ConfigError> {
    let last = entries.iter_mut().rev().find(|e| e.as_ref().is_some_and(|e| e.key == key));
    match last.and_then(Option::take) {
        Some(prev) => combine(prev.value, add, at),
        None => Ok(add),
    }
}

fn combine(prev: Located, add: Located, at: &str) -> Result<Located, ConfigError> {
    let Located { line, raw: prev } = prev;
    let raw = match (prev, add.raw) {
        (Raw::Str(mut a), Raw::Str(b)) => {
            a.push_str(&b);
            Raw::Str(a)
        }
        (Raw::List(mut a), Raw::List(b)) => {
            a.extend(b);
            Raw::List(a)
        }
        (prev, b) => {
            let shown = Located {
                line: add.line,
                raw: b,
            }
            .into_value()
            .to_string();
            let problem = match prev {
                Raw::List(_) => "cannot be added with += to a list (use [ ... ])",
                Raw::Num(_) | Raw::Word(_) => "cannot be added with += to a number",
                Raw::Str(_) => "cannot be added with += to a string",
            };
            return Err(ConfigError::bad(at, shown, problem));
        }
    };
    Ok(Located { line, raw })
}

/// What /etc/xen/xl.conf says about vifs. The last assignment of each key wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XlConf {
    pub default_script: Option<String>,
    pub default_bridge: Option<String>,
    pub default_gatewaydev: Option<String>,
    pub default_backend: Option<String>,
    pub run_hotplug_scripts: Option<bool>,
}

/// Reads `vif.default.{script,bridge,gatewaydev,backend}` and `run_hotplug_scripts`; every
/// other key is ignored. Errors name `origin:line key`.
pub fn parse_xl_conf(text: &str, origin: &str) -> Result<XlConf, ConfigError> {
    let mut conf = XlConf::default();
    for (key, value, line) in parse(text, origin)? {
        let at = || format!("{origin}:{line} {key}");
        let slot = match key.as_str() {
            "vif.default.script" => &mut conf.default_script,
            "vif.default.bridge" => &mut conf.default_bridge,
            "vif.default.gatewaydev" => &mut conf.default_gatewaydev,
            "vif.default.backend" => &mut conf.default_backend,
            "run_hotplug_scripts" => {
                conf.run_hotplug_scripts = Some(as_bool(&value, &at())?);
                continue;
            }
            _ => continue,
        };
        let value = as_string(value, &at())?;
        // Interface names are checked here, where the line that gave them is known.
        if matches!(key.as_str(), "vif.default.bridge" | "vif.default.gatewaydev") {
            crate::model::IfName::parse(&at(), &value)?;
        }
        *slot = Some(value);
    }
    Ok(conf)
}

impl XlConf {
    /// Reads and parses a file; the path is the origin in messages.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let (text, origin) = super::read_file(path.as_ref())?;
        parse_xl_conf(&text, &origin)
    }
}

/// A single value as a string; xl reads an unquoted number as its text too.
pub fn as_string(value: XlValue, at: &str) -> Result<String, ConfigError> {
    match value {
        XlValue::Str(s) => Ok(s),
        XlValue::Num(n) => Ok(n.to_string()),
        list => Err(ConfigError::bad(
            at,
            list.to_string(),
            "is a list, expected a single string",
        )),
    }
}

/// A number used as a flag (0 = false), quoted or not, as xl reads it.
pub fn as_bool(value: &XlValue, at: &str) -> Result<bool, ConfigError> {
    match value {
        XlValue::Num(n) => Ok(*n != 0),
        XlValue::Str(s) => match parse_number(s.trim()) {
            Some(n) => Ok(n != 0),
            None => Err(ConfigError::bad(
                at,
                s.as_str(),
                "is not a number (use 0 or 1)",
            )),
        },
        list => Err(ConfigError::bad(
            at,
            list.to_string(),
            "is a list, expected 0 or 1",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like tools/examples/xl.conf, with the vif defaults set.
    const XL_CONF: &str = r#"## Global XL config file ##

# Set domain-id policy. "xen" means that the hypervisor will choose the
# id of a new domain. "random" means that a random value will be chosen.
#domid_policy="xen"

# Control whether dom0 is ballooned down when xen doesn't have enough
# free memory to create a domain.  "auto" means only balloon if dom0
# starts with all the host's memory.
#autoballoon="auto"

# full path of the lockfile used by xl during domain creation
#lockfile="/var/lock/xl"

# default output format used by "xl list -l"
#output_format="json"

# first block device to be used for temporary VM disk mounts
#blkdev_start="xvda"

# default option to run hotplug scripts from xl
# if disabled the old behaviour will be used, and hotplug scripts will be
# launched by udev.
run_hotplug_scripts=1

# default backend domain to connect guest vifs to.  This can be any
# valid domain identifier.
#vif.default.backend="0"

# default gateway device to use with vif-route hotplug script
vif.default.gatewaydev = 'eth0'

# default vif script to use if none is specified in the guest config
vif.default.script="vif-route"   # routed, see /etc/vifnet/route.toml

# default bridge device to use with vif-bridge hotplug scripts
#vif.default.bridge="xenbr0"
vif.default.bridge = "xenbr1";

# Reserve a claim of memory when launching a guest.
claim_mode=1

# Specify global vcpu hard affinity masks. See xl.conf(5) for details.
#vm.cpumask="0-7"
vm.pv.cpumask = "0-3"
max_grant_frames = 0x40
"#;

    #[test]
    fn realistic_xl_conf() {
        let conf = parse_xl_conf(XL_CONF, "/etc/xen/xl.conf").unwrap();
        assert_eq!(
            conf,
            XlConf {
                default_script: Some("vif-route".into()),
                default_bridge: Some("xenbr1".into()),
                default_gatewaydev: Some("eth0".into()),
                default_backend: None,
                run_hotplug_scripts: Some(true),
            }
        );
        let all = parse(XL_CONF, "/etc/xen/xl.conf").unwrap();
        let keys: Vec<_> = all.iter().map(|(k, _, l)| (k.as_str(), *l)).collect();
        assert_eq!(
            keys,
            vec![
                ("run_hotplug_scripts", 24),
                ("vif.default.gatewaydev", 31),
                ("vif.default.script", 34),
                ("vif.default.bridge", 38),
                ("claim_mode", 41),
                ("vm.pv.cpumask", 45),
                ("max_grant_frames", 46),
            ]
        );
        assert_eq!(all[6].1, XlValue::Num(64));
    }

    #[test]
    fn empty_file_and_comments_only() {
        assert_eq!(parse_xl_conf("", "x").unwrap(), XlConf::default());
        assert_eq!(
            parse_xl_conf("# nothing\n\n   \n#x=1", "x").unwrap(),
            XlConf::default()
        );
    }

    #[test]
    fn last_assignment_wins_and_hotplug_off() {
        let conf = parse_xl_conf(
            "vif.default.bridge='a'; vif.default.bridge=\"b\"\nrun_hotplug_scripts = 0\nvif.default.backend=\"driver-dom\"",
            "x",
        )
        .unwrap();
        assert_eq!(conf.default_bridge.as_deref(), Some("b"));
        assert_eq!(conf.run_hotplug_scripts, Some(false));
        assert_eq!(conf.default_backend.as_deref(), Some("driver-dom"));
        let conf =
            parse_xl_conf("run_hotplug_scripts = \"1\"\nvif.default.backend = 0", "x").unwrap();
        assert_eq!(conf.run_hotplug_scripts, Some(true));
        assert_eq!(conf.default_backend.as_deref(), Some("0"));
    }

    #[test]
    fn values_strings_numbers_lists() {
        let v = parse(
            "a = \"q\\\"x\\\\y\\n\\x41\\101\" ; b = 'it\\'s'\nc = [ ]\nd = [ 'x', 7, \"y\", ]\ne=017\nf=[[\"1\", '2'], ['3']]\n",
            "x",
        )
        .unwrap();
        assert_eq!(v[0].1, XlValue::Str("q\"x\\y\nAA".into()));
        assert_eq!(v[1].1, XlValue::Str("it's".into()));
        assert_eq!(v[2].1, XlValue::List(vec![]));
        assert_eq!(
            v[3].1,
            XlValue::List(vec!["x".into(), "7".into(), "y".into()])
        );
        assert_eq!(v[4].1, XlValue::Num(15));
        assert_eq!(
            v[5].1,
            XlValue::Nested(vec![
                XlValue::List(vec!["1".into(), "2".into()]),
                XlValue::List(vec!["3".into()]),
            ])
        );
        assert_eq!(v[5].2, 5);
        assert_eq!(v[3].1.to_string(), "[ 'x', '7', 'y' ]");
    }

    #[test]
    fn hash_in_string_is_not_a_comment_and_crlf_reads() {
        let v = parse("a = \"x # y\" # comment\r\nb = 1\r\n", "x").unwrap();
        assert_eq!(v[0].1, XlValue::Str("x # y".into()));
        assert_eq!(v[1], ("b".to_string(), XlValue::Num(1), 2));
    }

    #[test]
    fn multi_line_list_with_comments() {
        let v = parse(
            "disk = [\n  'phy:/dev/vg/web,xvda,w',   # root\n\n  'file:/srv/web-swap.img,xvdb,w'\n  ]\nmemory = 512\n",
            "x",
        )
        .unwrap();
        assert_eq!(
            v[0],
            (
                "disk".to_string(),
                XlValue::List(vec![
                    "phy:/dev/vg/web,xvda,w".into(),
                    "file:/srv/web-swap.img,xvdb,w".into()
                ]),
                1
            )
        );
        assert_eq!(v[1], ("memory".to_string(), XlValue::Num(512), 6));
    }

    #[test]
    fn append_concatenates_strings_and_lists() {
        let v = parse(
            "a = 'x'\na += 'y'\nl = ['1']\nl += ['2', '3']\nn += 'new'\n",
            "x",
        )
        .unwrap();
        let last = |k: &str| {
            v.iter()
                .rev()
                .find(|(key, _, _)| key == k)
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(last("a"), XlValue::Str("xy".into()));
        assert_eq!(
            last("l"),
            XlValue::List(vec!["1".into(), "2".into(), "3".into()])
        );
        assert_eq!(last("n"), XlValue::Str("new".into()));
    }

    #[test]
    fn control_characters_print_escaped_and_read_back() {
        // Found by tests/fuzz.rs: a CR in a string was shown raw.
        let v = XlValue::List(vec!["a\rb\tc\u{1}\u{9f}".into()]);
        assert_eq!(v.to_string(), r"[ 'a\rb\tc\x01\x9f' ]");
        assert_eq!(parse(&format!("k = {v}"), "x").unwrap(), vec![("k".to_string(), v, 1)]);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = |n: usize| format!("a = {}'x'{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(&deep(MAX_NESTING), "x").is_ok());
        let err = parse(&deep(MAX_NESTING + 1), "x").unwrap_err().to_string();
        assert_eq!(err, "x:1:69: lists nested more than 64 deep");
        // Found by tests/fuzz.rs: thousands of levels, unclosed, used to overflow the stack.
        let err = parse(&format!("disk = [ '', {}", "[ '', ".repeat(100_000)), "x").unwrap_err();
        assert!(err.to_string().ends_with("lists nested more than 64 deep"), "{err}");
    }

    #[test]
    fn append_takes_over_the_entry_it_adds_to() {
        let v = parse("a = 'x'\nb = 1\na += 'y'\na += 'z'\n", "x").unwrap();
        assert_eq!(v, vec![("b".to_string(), XlValue::Num(1), 2), ("a".to_string(), XlValue::Str("xyz".into()), 4)]);
        // Found by tests/fuzz.rs: every entry of a `+=` chain held the whole list so far, so
        // 64 KiB of `q += ['x']` lines took 1.7 GB.
        let chain = "q += ['x']\n".repeat(6000);
        let v = parse(&chain, "x").unwrap();
        assert_eq!(v.len(), 1);
        assert!(matches!(&v[0], (_, XlValue::List(items), 6000) if items.len() == 6000));
    }

    #[test]
    fn last_statement_needs_no_newline() {
        let v = parse("a = 1", "x").unwrap();
        assert_eq!(v, vec![("a".to_string(), XlValue::Num(1), 1)]);
    }

    #[test]
    fn bad_inputs_give_one_line_errors_naming_the_place() {
        let cases: &[(&str, &str)] = &[
            (
                "a = 1\nvif = [ 'mac=00:16:3e:00:00:01',\n",
                "xl.conf:2:7: list not closed: '[' has no matching ']'",
            ),
            (
                "vif = [ 'a', 'b'\nmemory = 512\n",
                "xl.conf:2:1: expected ',' or ']' in the list opened at line 1, found `memory`",
            ),
            (
                "vif = [ 'a',\nmemory = 512\n",
                "xl.conf:2:1: unquoted `memory` in the list opened at line 1",
            ),
            (
                "\nvif.default.bridge = \"xenbr0\n",
                "xl.conf:2:22: unterminated string",
            ),
            ("a = 'x\ny'\n", "xl.conf:1:5: unterminated string"),
            (
                "vif.default.bridge = xenbr0\n",
                "xl.conf:1:22: unquoted value `xenbr0`: write it as \"xenbr0\"",
            ),
            (
                "a = 'x' b = 'y'\n",
                "xl.conf:1:9: expected end of line after the value of `a`, found `b`",
            ),
            (
                "a 'x'\n",
                "xl.conf:1:3: expected '=' after `a`, found string \"x\"",
            ),
            ("a =\n", "xl.conf:1:4: missing value after `a =`"),
            ("a = \n  'x'\n", "xl.conf:1:5: missing value after `a =`"),
            (
                "memory = 512M\n",
                "xl.conf:1 memory: \"512M\" is not a number",
            ),
            ("x = 'a\\qb'\n", "xl.conf:1:7: invalid escape \\q in string"),
            // Found by tests/fuzz.rs: the CR was written into the message raw.
            ("x = \"\\\r\"\n", "xl.conf:1:6: invalid escape: '\\' before U+000D in string"),
            ("x = '\\x4'\n", "xl.conf:1:6: \\x needs two hex digits"),
            (
                "\n\nname = \"web\" + \"1\"\n",
                "xl.conf:3:14: unexpected character '+'",
            ),
            (
                "kernel = os.path.join('a')\n",
                "xl.conf:1:10: unquoted value `os.path.join`",
            ),
            (
                "memory = -1\n",
                "xl.conf:1:10: unexpected character '-' (xl configs are not Python",
            ),
            ("= 1\n", "xl.conf:1:1: expected `key = value`, found '='"),
            (
                "l = [ 'a', , 'b' ]\n",
                "xl.conf:1:12: expected an item in the list opened at line 1, found ','",
            ),
            (
                "a = 'x'\na += ['y']\n",
                "xl.conf:2 a: \"[ 'y' ]\" cannot be added with += to a string",
            ),
            (
                "n = 1\nn += 2\n",
                "xl.conf:2 n: \"2\" cannot be added with += to a number",
            ),
            (
                "vif.default.bridge = [ 'a' ]\n",
                "xl.conf:1 vif.default.bridge: \"[ 'a' ]\" is a list, expected a single string",
            ),
            (
                "run_hotplug_scripts = 'yes'\n",
                "xl.conf:1 run_hotplug_scripts: \"yes\" is not a number (use 0 or 1)",
            ),
        ];
        crate::config::assert_one_line_errors(cases, |input| parse_xl_conf(input, "xl.conf"));
    }

    #[test]
    fn from_file_names_the_path_in_errors() {
        let path =
            std::env::temp_dir().join(format!("vifnet-xlconf-test-{}.conf", std::process::id()));
        std::fs::write(&path, "# x\nvif.default.bridge = [ 'a' ]\n").unwrap();
        let err = XlConf::from_file(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(
            err.starts_with(&format!("{}:2 vif.default.bridge: ", path.display())),
            "{err}"
        );
        let err = XlConf::from_file("/nonexistent/xl.conf").unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/xl.conf: "),
            "{err}"
        );
    }

    #[test]
    fn default_interface_names_are_checked_on_their_line() {
        let e = parse_xl_conf("autoballoon = 0\nvif.default.bridge = \"br/0\"\n", "xl.conf").unwrap_err();
        assert!(e.to_string().starts_with("xl.conf:2 vif.default.bridge: \"br/0\" is not a valid interface name"), "{e}");
        let e = parse_xl_conf("vif.default.gatewaydev = \"an-uplink-too-long\"\n", "xl.conf").unwrap_err();
        assert!(e.to_string().starts_with("xl.conf:1 vif.default.gatewaydev: \"an-uplink-too-long\" is longer than 15 bytes"), "{e}");
    }
}
