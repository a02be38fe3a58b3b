//! The table a simulation ends with: one row per guest interface, saying how it got its
//! address, its DNS name, whether it reaches upstream and what antispoofing did. `make demo`
//! runs one simulation per mode and passes them the same `--summary` file, so the last one
//! prints the rows of all three.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

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
