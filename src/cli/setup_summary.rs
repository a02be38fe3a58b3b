//! The table a simulation ends with: one row per guest interface, saying how it got its
//! address, its DNS name, whether it reaches upstream and what antispoofing did. `make demo`
//! runs one simulation per mode and passes them the same `--summary` file, so the last one
//! prints the rows of all three.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::plan::simulate::{Lab, Lease};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Row {
    pub mode: String,
    pub guest: String,
    pub vif: String,
    pub address: String,
    /// "static" or "DHCP".
    pub how: String,
    pub dns: String,
    pub upstream: String,
    pub antispoof: String,
}

/// What a simulation's checks saw, for its rows.
pub struct Seen<'a> {
    /// By vif: the lease its guest got, if it asked for one.
    pub leases: &'a HashMap<String, Option<Lease>>,
    /// By vif: the name another guest resolved it by, and whether the answer was its lease.
    pub resolved: HashMap<String, (String, bool)>,
    /// By guest: each family's ping of the lan host.
    pub upstream: HashMap<String, Vec<(&'static str, bool)>>,
    /// The vif the spoofing check ran on, and what it showed.
    pub spoof: Option<(String, &'static str)>,
}

impl Seen<'_> {
    /// A row per guest interface of the lab.
    pub fn rows(&self, lab: &Lab) -> Vec<Row> {
        let mut rows = Vec::new();
        for g in &lab.guests {
            let pings = self.upstream.get(&g.name).map(Vec::as_slice).unwrap_or_default();
            let reach = match pings.iter().filter(|(_, ok)| !ok).map(|(f, _)| *f).collect::<Vec<_>>() {
                none if none.is_empty() && !pings.is_empty() => "yes".to_string(),
                lost if lost.len() == pings.len() => "NO".to_string(),
                lost => format!("NO over {}", lost.join(", ")),
            };
            for v in &g.vifs {
                let vif = v.kernel_name();
                let address = match (v.dhcp, self.leases.get(&vif).copied().flatten()) {
                    (true, Some(l)) => l.0.to_string(),
                    (true, None) => "no lease".into(),
                    (false, _) => v.guest_addrs.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(" "),
                };
                let dns = match self.resolved.get(&vif) {
                    Some((name, true)) => name.clone(),
                    Some((name, false)) => format!("{name} (NOT resolved)"),
                    None => "-".into(),
                };
                let antispoof = match &self.spoof {
                    Some((s, result)) if *s == vif => result.to_string(),
                    _ if lab.guarded(v) => "on".into(),
                    _ => "off".into(),
                };
                let how = if v.dhcp { "DHCP" } else { "static" };
                rows.push(Row { mode: lab.mode.clone(), guest: g.name.clone(), vif, address, how: how.into(), dns, upstream: reach.clone(), antispoof });
            }
        }
        rows
    }
}

const HEADINGS: [&str; 8] = ["MODE", "GUEST", "VIF", "ADDRESS", "HOW", "DNS NAME", "UPSTREAM", "ANTISPOOF"];

/// Appends `rows` to `file` (JSON lines), if one is named, and prints the table of every
/// row it holds; without a file, the table of `rows`.
pub fn record_and_print(file: Option<&Path>, rows: &[Row]) -> Result<()> {
    let all = match file {
        Some(f) => {
            let mut out = std::fs::OpenOptions::new().create(true).append(true).open(f).with_context(|| format!("summary {}", f.display()))?;
            for r in rows {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
            let text = std::fs::read_to_string(f)?;
            text.lines().map(serde_json::from_str).collect::<Result<Vec<Row>, _>>().with_context(|| format!("summary {}", f.display()))?
        }
        None => rows.to_vec(),
    };
    print!("{}", table(&all));
    Ok(())
}

fn table(rows: &[Row]) -> String {
    let cells: Vec<[&str; 8]> = rows.iter().map(|r| [&*r.mode, &*r.guest, &*r.vif, &*r.address, &*r.how, &*r.dns, &*r.upstream, &*r.antispoof]).collect();
    let mut widths = HEADINGS.map(str::len);
    for c in &cells {
        for (w, cell) in widths.iter_mut().zip(c) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |c: &[&str; 8]| c.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string() + "\n";
    let mut out = format!("\nsummary:\n{}", line(&HEADINGS));
    for c in &cells {
        out += &line(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_its_columns() {
        let r = Row {
            mode: "nat".into(),
            guest: "node1".into(),
            vif: "vif1.0".into(),
            address: "10.10.0.1".into(),
            how: "DHCP".into(),
            dns: "node1.cluster.internal".into(),
            upstream: "yes".into(),
            antispoof: "spoof dropped".into(),
        };
        let t = table(&[r]);
        assert_eq!(t.lines().nth(2).unwrap(), "MODE  GUEST  VIF     ADDRESS    HOW   DNS NAME                UPSTREAM  ANTISPOOF");
        assert_eq!(t.lines().nth(3).unwrap(), "nat   node1  vif1.0  10.10.0.1  DHCP  node1.cluster.internal  yes       spoof dropped");
    }
}
