//! The man pages are generated: `make man` writes man/vifnet.8 and man/vifnet-modes.5 from
//! man/*.in (the prose), the clap definitions (clap_mangen: every verb's synopsis and
//! options), config/keydoc (a vif's keys) and the shipped mode files (each key's type and
//! default). This test fails when a committed page is not what would be generated, and
//! when mandoc -T lint or groff -ww has anything to say about either page.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap_mangen::Man;
use vifnet::config::keydoc;

/// The pages' date: the day their text last changed in substance.
const DATE: &str = "2026-12-05";

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man")
}

/// A roff fragment clap_mangen rendered, without its section heading and string definitions.
fn fragment(render: impl Fn(&Man, &mut Vec<u8>) -> std::io::Result<()>, man: &Man) -> String {
    let mut buf = Vec::new();
    render(man, &mut buf).unwrap();
    String::from_utf8(buf).unwrap().lines().filter(|l| !l.starts_with(".SH") && !l.starts_with(".ie ") && !l.starts_with(".el ")).map(|l| format!("{}\n", l.trim_end())).collect()
}

/// Every verb, as `vifnet <verb>`: clap's own `help` is no verb of ours.
fn verbs() -> Vec<(String, Man)> {
    let cmd = vifnet::cli::command();
    cmd.get_subcommands()
        .filter(|s| s.get_name() != "help")
        .map(|s| {
            let name = format!("vifnet {}", s.get_name());
            (name.clone(), Man::new(s.clone().bin_name(name)))
        })
        .collect()
}

fn synopsis() -> String {
    verbs().iter().map(|(_, m)| fragment(|m, w| m.render_synopsis_section(w), m)).collect::<Vec<_>>().join(".br\n")
}

fn options() -> String {
    verbs().iter().map(|(name, m)| format!(".SS {name}\n{}", fragment(|m, w| m.render_options_section(w), m))).collect()
}

fn vif_keys() -> String {
    keydoc::VIF_KEYS.iter().map(|(k, meaning)| format!(".TP\n.B {k}\n{}\n", roff_text(meaning))).collect()
}

/// Plain text as roff: a backslash or a line-leading dot or quote must not be read as roff.
fn roff_text(s: &str) -> String {
    s.replace('\\', "\\e").replace('-', "\\-").replace('\'', "\\(aq")
}

fn key_entry(mode: &str, key: &str) -> String {
    let k = keydoc::mode_keys(mode).into_iter().find(|k| k.key == key).unwrap_or_else(|| panic!("{mode}.{key}: no such key in modes/{mode}.toml"));
    let value = roff_text(&k.default).replace('"', "\\(dq");
    format!(".TP\n.BR \"{} = {value}\" \" ({})\"\n", roff_text(&k.key), k.kind)
}

fn fill(template: &str) -> String {
    let mut out = String::new();
    for line in template.lines() {
        let marker = line.strip_prefix(".\\\" @").and_then(|l| l.strip_suffix('@'));
        match marker {
            Some("SYNOPSIS") => out += &synopsis(),
            Some("OPTIONS") => out += &options(),
            Some("VIF_KEYS") => out += &vif_keys(),
            Some(m) if m.starts_with("KEY ") => {
                let (mode, key) = m["KEY ".len()..].split_once('.').unwrap();
                out += &key_entry(mode, key);
            }
            _ if line.starts_with(".TH ") => {
                out += &line.replace("@DATE@", DATE).replace("@VERSION@", env!("CARGO_PKG_VERSION"));
                out.push('\n');
            }
            _ => {
                out += line;
                out.push('\n');
            }
        }
    }
    out
}

/// Text lines folded at 80 bytes (mandoc's style), outside `.nf` blocks; a piece never
/// starts with a dot or a quote, which roff would read as a request.
fn fold(page: &str) -> String {
    let mut out = String::new();
    let mut fill = true;
    for line in page.lines() {
        match line {
            ".nf" => fill = false,
            ".fi" => fill = true,
            _ => {}
        }
        if !fill || line.starts_with('.') || line.len() <= 80 {
            out += line;
            out.push('\n');
            continue;
        }
        let mut current = String::new();
        for word in line.split(' ') {
            let fits = current.len() + 1 + word.len() <= 80;
            if !current.is_empty() && !fits && !word.starts_with(['.', '\'']) {
                out += &current;
                out.push('\n');
                current.clear();
            } else if !current.is_empty() {
                current.push(' ');
            }
            current += word;
        }
        out += &current;
        out.push('\n');
    }
    out
}

/// Each page as it should be, with its path.
fn pages() -> Vec<(PathBuf, String)> {
    ["vifnet.8", "vifnet-modes.5"]
        .iter()
        .map(|p| {
            let template = std::fs::read_to_string(man_dir().join(format!("{p}.in"))).unwrap();
            (man_dir().join(p), fold(&fill(&template)))
        })
        .collect()
}

#[test]
fn the_committed_pages_are_what_make_man_generates() {
    let write = std::env::var_os("VIFNET_WRITE_MAN").is_some();
    for (path, want) in pages() {
        if write {
            std::fs::write(&path, &want).unwrap();
            println!("wrote {}", path.display());
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, "{} is out of date: run `make man` and commit it", path.display());
    }
}

#[test]
fn every_key_of_every_mode_is_in_vifnet_modes_5() {
    let template = std::fs::read_to_string(man_dir().join("vifnet-modes.5.in")).unwrap();
    for mode in keydoc::MODES {
        for k in keydoc::mode_keys(mode) {
            assert!(template.contains(&format!("@KEY {mode}.{}@", k.key)), "{mode}.{} is not documented in man/vifnet-modes.5.in", k.key);
        }
    }
    let page = &pages()[0].1;
    for verb in verbs() {
        assert!(page.contains(&format!(".SS {}\n", verb.0)), "{} has no options in vifnet(8)", verb.0);
    }
    for section in ["SYNOPSIS", "DESCRIPTION", "OPTIONS", "ENVIRONMENT", "FILES", "EXIT STATUS", "EXAMPLES", "SEE ALSO"] {
        assert!(page.contains(&format!("\n.SH {section}\n")), "vifnet(8) has no {section}");
    }
}

#[test]
fn mandoc_and_groff_have_nothing_to_say() {
    for (path, text) in pages() {
        let groff = Command::new("groff").args(["-ww", "-man", "-z", "-Tutf8"]).arg(&path).output();
        match groff {
            Ok(out) => assert!(out.stderr.is_empty(), "groff -ww {}: {}", path.display(), String::from_utf8_lossy(&out.stderr)),
            Err(_) => eprintln!("skipped: no groff"),
        }
        // mandoc reads what we generate, so that an out-of-date page is linted as it will be.
        let scratch = std::env::temp_dir().join(format!("vifnet-man-{}-{}", std::process::id(), path.file_name().unwrap().to_string_lossy()));
        std::fs::write(&scratch, text).unwrap();
        let mandoc = Command::new("mandoc").args(["-T", "lint", "-W", "all"]).arg(&scratch).output();
        let _ = std::fs::remove_file(&scratch);
        match mandoc {
            Ok(out) => {
                let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
                assert!(said.trim().is_empty(), "mandoc -T lint {}:\n{said}", path.display());
            }
            Err(_) => eprintln!("skipped: no mandoc (make test installs it)"),
        }
    }
}
