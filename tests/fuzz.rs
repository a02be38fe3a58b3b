//! Fuzzing of every parser of outside input: no input may panic, hang or use memory out of
//! proportion to its size, and every error must be one line. `VIFNET_FUZZ_SECS` sets the
//! time per target (default 3), `VIFNET_FUZZ_SEED` replays a run; `make fuzz` runs longer.
//! Failing inputs are saved under target/fuzz-crashes/.

// Beside this file rather than in tests/, where cargo would build them as tests of their own.
#[path = "fuzz/harness.rs"]
mod harness;
#[path = "fuzz/seeds.rs"]
mod seeds;

use std::borrow::Cow;
use std::fmt::Display;
use std::io::Read;

use harness::{run, Target};
use vifnet::config::inputs::{BridgeModeFile, NatModeFile, RouteModeFile};
use vifnet::config::{domain, kv, modefile, sxp, xlconf};
use vifnet::xenstore::wire::{self, Message, WireError};

#[global_allocator]
static ALLOC: harness::alloc::Counting = harness::alloc::Counting;

const ORIGIN: &str = "/etc/xen/fuzz";

/// Parsers take text: invalid UTF-8 becomes U+FFFD, as it would after read_to_string failed
/// over to a lossy read (the bytes still vary the text).
fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// The project's rule: an error is one line, so that it fits hotplug-error and the log.
fn one_line<T>(result: &Result<T, impl Display>) -> bool {
    if let Err(e) = result {
        let message = e.to_string();
        assert!(!message.contains(['\n', '\r']), "error is not one line: {message:?}");
    }
    result.is_ok()
}

#[test]
fn sxp_parser_never_panics() {
    let target = Target { name: "sxp", seeds: seeds::sxp(), tokens: &["(", ")", "'", "\"", "#", "\\", "\\x", "\\0"] };
    run(target, |bytes| {
        let parsed = sxp::parse(&text(bytes), ORIGIN);
        // Display promises sxp that reads back as the same expression.
        for sexp in parsed.iter().flatten() {
            let again = sxp::parse(&sexp.to_string(), ORIGIN);
            assert_eq!(again.as_deref(), Ok(std::slice::from_ref(sexp)), "{sexp} does not read back");
        }
        one_line(&parsed)
    });
}

#[test]
fn xend_config_parser_never_panics() {
    let tokens = &["(network-script ", "(vif-script ", "network-bridge", "vif-route", "netdev=", "=", "''", " "];
    run(Target { name: "xend-config", seeds: seeds::sxp(), tokens }, |bytes| {
        let parsed = sxp::parse_xend_config(&text(bytes), ORIGIN);
        if let Ok(config) = &parsed {
            for call in config.network_script.iter().chain(&config.vif_script) {
                assert!(!call.script.is_empty() && !call.script.contains(char::is_whitespace), "{call:?}");
                assert!(call.args.iter().all(|(k, _)| kv::is_key(k)), "{call:?}");
            }
        }
        one_line(&parsed)
    });
}

/// The last two, repeated, build long `+=` chains.
const XL_TOKENS: &[&str] = &["[", "]", ",", "=", "+=", ";", "'", "\"", "#", "\\", "\n", "0x", "07", "a.b", "\nq += ['x']", "\ns += 'x'"];

#[test]
fn xl_syntax_parser_never_panics() {
    run(Target { name: "xl-syntax", seeds: seeds::xl_conf(), tokens: XL_TOKENS }, |bytes| {
        let parsed = xlconf::parse(&text(bytes), ORIGIN);
        // Display writes config syntax (for messages); it must read back as the same value.
        for (_, value, _) in parsed.iter().flatten() {
            let again = xlconf::parse(&format!("k = {value}"), ORIGIN);
            assert_eq!(again, Ok(vec![("k".to_string(), value.clone(), 1)]), "{value} does not read back");
        }
        one_line(&parsed)
    });
}

#[test]
fn xl_conf_parser_never_panics() {
    let tokens = &["vif.default.script", "vif.default.bridge", "run_hotplug_scripts", "vif.default.backend", " = ", "+="];
    run(Target { name: "xl-conf", seeds: seeds::xl_conf(), tokens }, |bytes| one_line(&xlconf::parse_xl_conf(&text(bytes), ORIGIN)));
}

#[test]
fn domain_config_parser_never_panics() {
    let tokens = &["name", "vif", "vif += [", "'mac=00:16:3e:00:00:01, bridge=xenbr0'", "[", "]", ",", "'", "\n", "\nvif += ['']"];
    run(Target { name: "domain-config", seeds: seeds::domain(), tokens }, |bytes| {
        let parsed = domain::parse_domain_config(&text(bytes), ORIGIN);
        if let Ok(config) = &parsed {
            assert!(!config.name.is_empty());
            assert!(config.vifs.iter().all(|vif| vif.iter().all(|(k, _)| kv::is_key(k))), "{config:?}");
        }
        one_line(&parsed)
    });
}

#[test]
fn vif_spec_parser_never_panics() {
    let tokens = &[",", "=", " ", "mac=", "bridge=", "ip=", ", ,"];
    run(Target { name: "vif-spec", seeds: seeds::vif_spec(), tokens }, |bytes| {
        let parsed = kv::split_vif_spec(&text(bytes), "web.cfg:7 vif[0]");
        for (key, value) in parsed.iter().flat_map(kv::KeyValues::iter) {
            assert!(kv::is_key(key), "{key:?}");
            assert!(!value.contains(',') && value == value.trim_end(), "{value:?}");
        }
        one_line(&parsed)
    });
}

const TOML_TOKENS: &[&str] = &["=", "\"", "'", "\"\"\"", "'''", "[", "]", "[[", "]]", "{", "}", ".", "\\u", "\\U", "true", "1979-05-27"];

#[test]
fn bridge_mode_file_parser_never_panics() {
    run(Target { name: "bridge-mode", seeds: seeds::bridge_mode(), tokens: TOML_TOKENS }, |bytes| {
        one_line(&modefile::parse_partial::<BridgeModeFile>(&text(bytes), ORIGIN, "bridge"))
    });
}

#[test]
fn route_mode_file_parser_never_panics() {
    run(Target { name: "route-mode", seeds: seeds::route_mode(), tokens: TOML_TOKENS }, |bytes| {
        one_line(&modefile::parse_partial::<RouteModeFile>(&text(bytes), ORIGIN, "route"))
    });
}

#[test]
fn nat_mode_file_parser_never_panics() {
    run(Target { name: "nat-mode", seeds: seeds::nat_mode(), tokens: TOML_TOKENS }, |bytes| {
        one_line(&modefile::parse_partial::<NatModeFile>(&text(bytes), ORIGIN, "nat"))
    });
}

#[test]
fn xenstore_reply_decoder_never_panics() {
    let tokens = &["\u{0}\u{0}\u{0}\u{0}", "\u{10}\u{0}\u{0}\u{0}", "\u{1}\u{10}\u{0}\u{0}", "ENOENT\u{0}"];
    run(Target { name: "xenstore", seeds: seeds::xenstore(), tokens }, |bytes| {
        let decoded = decode_all(bytes);
        assert_eq!(decoded, read_all(bytes), "decode and read_from disagree");
        decoded.last().is_some_and(Result::is_ok)
    });
}

/// Every message `decode` finds, as a stream reader would: then the error, if any.
fn decode_all(mut bytes: &[u8]) -> Vec<Result<Message, String>> {
    let mut out = Vec::new();
    loop {
        match Message::decode(bytes) {
            Ok(Some((message, used))) => {
                assert_eq!(used, wire::HEADER_LEN + message.payload.len());
                assert_eq!(message.encode().ok().as_deref(), Some(&bytes[..used]), "re-encodes differently");
                out.push(Ok(message));
                bytes = &bytes[used..];
            }
            Ok(None) if bytes.is_empty() => return out,
            Ok(None) => return [out, vec![Err("torn".to_string())]].concat(),
            Err(e) => return [out, vec![Err(wire_error(e))]].concat(),
        }
    }
}

/// The same through `read_from`, fed a few bytes per read as a socket may.
fn read_all(bytes: &[u8]) -> Vec<Result<Message, String>> {
    let mut reader = Trickle { bytes, step: 1 + bytes.len() % 7 };
    let mut out = Vec::new();
    loop {
        match Message::read_from(&mut reader) {
            Ok(message) => out.push(Ok(message)),
            Err(WireError::Closed) => return out,
            Err(e) => return [out, vec![Err(wire_error(e))]].concat(),
        }
    }
}

fn wire_error(e: WireError) -> String {
    match e {
        WireError::TooLong { len } => {
            assert!(len > wire::PAYLOAD_MAX, "{len} refused");
            format!("too long: {len}")
        }
        // A stream that ends inside a message, whichever way it is noticed.
        WireError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => "torn".to_string(),
        other => panic!("unexpected {other:?}"),
    }
}

/// A reader that hands out at most `step` bytes per call.
struct Trickle<'a> {
    bytes: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// A length of 0xffffffff in front of an endless stream must be refused at once, without
/// allocating for it: xenstored (or whatever sits on the socket) is not trusted to be sane.
#[test]
fn xenstore_huge_length_is_refused_without_allocating() {
    let mut header = Message::new(wire::READ, 1, 0, Vec::new()).encode().unwrap();
    header[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    let before = harness::alloc::reset_peak();
    let decoded = Message::decode(&[header.clone(), vec![0; 64]].concat());
    let read = Message::read_from(&mut header.as_slice().chain(std::io::repeat(0)));
    let used = harness::alloc::peak() - before;
    assert!(matches!(decoded, Err(WireError::TooLong { len: 0xffff_ffff })), "{decoded:?}");
    assert!(matches!(read, Err(WireError::TooLong { len: 0xffff_ffff })), "{read:?}");
    assert!(used < 4096, "{used} bytes allocated");
}
