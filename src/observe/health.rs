//! What `vifnet doctor` reads besides sysctls: the nftables ruleset (through `nft -j`, as
//! iptables-nft's rules are there too), binaries, file modes, the dummy driver.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::plan::doctor::{BaseChain, PathMode, Reader};

#[derive(Debug, thiserror::Error)]
#[error("nft -j list ruleset: {0}")]
pub struct RulesetError(String);

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `nft --version`'s line; None when there is no nft to run.
pub fn nft_version() -> Option<String> {
    let out = Command::new("nft").arg("--version").stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string())
}

/// Every base chain of the ruleset, each with its rules in order.
pub fn base_chains() -> Result<Vec<BaseChain>, RulesetError> {
    let out = Command::new("nft").args(["-j", "list", "ruleset"]).stdin(Stdio::null()).output().map_err(|e| RulesetError(e.to_string()))?;
    if !out.status.success() {
        return Err(RulesetError(String::from_utf8_lossy(&out.stderr).trim().replace('\n', " ")));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| RulesetError(e.to_string()))?;
    Ok(parse_base_chains(&v))
}

/// The base chains (those with a hook) of a `nft -j list ruleset` answer.
pub fn parse_base_chains(v: &Value) -> Vec<BaseChain> {
    let items = v["nftables"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut chains: Vec<BaseChain> = items
        .iter()
        .filter_map(|i| i.get("chain").filter(|c| c.get("hook").is_some()))
        .map(|c| BaseChain {
            family: text(&c["family"]),
            table: text(&c["table"]),
            name: text(&c["name"]),
            hook: text(&c["hook"]),
            policy_drop: c["policy"] == "drop",
            rules: Vec::new(),
        })
        .collect();
    for r in items.iter().filter_map(|i| i.get("rule")) {
        if let Some(c) = chains.iter_mut().find(|c| r["family"] == c.family.as_str() && r["table"] == c.table.as_str() && r["chain"] == c.name.as_str()) {
            c.rules.push(r["expr"].as_array().cloned().unwrap_or_default());
        }
    }
    chains
}

/// Whether `name` is an executable on PATH or in /usr/sbin, /sbin (not on a user's PATH).
pub fn on_path(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|d| std::fs::metadata(d.join(name)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The user dnsmasq drops root for: `dnsmasq` (Debian's package makes it), else `nobody`,
/// dnsmasq's compiled-in default.
pub fn dnsmasq_reader() -> Reader {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let find = |name: &str| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            match f.as_slice() {
                [n, _, uid, gid, ..] if *n == name => Some(Reader { name: name.into(), uid: uid.parse().ok()?, gid: gid.parse().ok()? }),
                _ => None,
            }
        })
    };
    find("dnsmasq").or_else(|| find("nobody")).unwrap_or(Reader { name: "nobody".into(), uid: 65534, gid: 65534 })
}

/// The file and every directory above it that exists, with owner and mode.
pub fn path_modes(path: &Path) -> Vec<PathMode> {
    path.ancestors()
        .filter_map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some(PathMode { path: p.to_path_buf(), uid: m.uid(), gid: m.gid(), mode: m.mode(), dir: m.is_dir() })
        })
        .collect()
}

/// Whether the kernel can make a dummy link: loaded, built in, or a module to load.
pub fn dummy_driver() -> bool {
    if Path::new("/sys/module/dummy").exists() {
        return true;
    }
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else { return false };
    let dir = Path::new("/lib/modules").join(release.trim());
    let module = std::fs::read_dir(dir.join("kernel/drivers/net")).is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("dummy.ko")));
    module || std::fs::read_to_string(dir.join("modules.builtin")).is_ok_and(|b| b.lines().any(|l| l.ends_with("/dummy.ko")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_chains_keep_their_rules_in_order_and_regular_chains_are_left_out() {
        let v: Value = serde_json::from_str(
            r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "ip", "name": "filter"}},
            {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
            {"chain": {"family": "ip", "table": "filter", "name": "DOCKER-USER"}},
            {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "expr": [{"jump": {"target": "DOCKER-USER"}}]}},
            {"rule": {"family": "ip", "table": "filter", "chain": "DOCKER-USER", "expr": [{"return": null}]}},
            {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "expr": [{"accept": null}]}}]}"#,
        )
        .unwrap();
        let chains = parse_base_chains(&v);
        assert_eq!(chains.len(), 1);
        let c = &chains[0];
        assert_eq!((c.family.as_str(), c.table.as_str(), c.name.as_str(), c.hook.as_str(), c.policy_drop), ("ip", "filter", "FORWARD", "forward", true));
        assert_eq!(c.rules.len(), 2);
        assert!(c.rules[1][0].get("accept").is_some());
    }
}
