//! `make demo`'s simulations leave the host as they found it: /etc/ethers (made empty for
//! the lab's bind mount when the host has none) and /etc/netns are taken away only if the
//! lab made them, and an /etc/netns that was there stays. Their summary table has a row
//! per guest interface.

mod common;

use std::path::Path;
use std::process::Command;

use common::{root_or_skip, unique, vifnet_bin};

/// What the host has at a path: nothing, a directory's entries, or a file's bytes.
fn host_state(path: &str) -> String {
    let p = Path::new(path);
    if p.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        format!("dir {names:?}")
    } else {
        std::fs::read(p).map(|b| format!("file {b:?}")).unwrap_or_else(|_| "absent".into())
    }
}

fn nat_cluster(summary: &Path) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/nat-cluster");
    let out = Command::new(vifnet_bin())
        .args(["setup", "--simulate", "--prefix", &unique("demo"), "--summary"])
        .arg(summary)
        .arg("--modes-dir")
        .arg(&dir)
        .arg("--xend-config")
        .arg(dir.join("xend-config.sxp"))
        .args(["node1.cfg", "node2.cfg"].map(|c| dir.join(c)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_nat_demo_leaves_etc_as_it_was_and_sums_up_its_guests() {
    if !root_or_skip() {
        return;
    }
    let summary = std::env::temp_dir().join(unique("summary"));
    let _gone = Removed(summary.clone());
    let before = (host_state("/etc/ethers"), host_state("/etc/netns"));
    let said = nat_cluster(&summary);
    assert_eq!((host_state("/etc/ethers"), host_state("/etc/netns")), before);
    let table: Vec<&str> = said.lines().skip_while(|l| *l != "summary:").collect();
    assert!(table[1].starts_with("MODE") && table[1].contains("ANTISPOOF"), "{said}");
    assert!(table[2].starts_with("nat") && table[2].contains("DHCP") && table[2].contains("node1.cluster.internal") && table[2].contains("spoof dropped"), "{said}");

    // An /etc/netns of the administrator's (empty, say) is theirs: it stays.
    if !Path::new("/etc/netns").exists() {
        std::fs::create_dir("/etc/netns").unwrap();
        let said = nat_cluster(&summary);
        let kept = Path::new("/etc/netns").is_dir();
        let _ = std::fs::remove_dir("/etc/netns");
        assert!(kept, "an /etc/netns the lab did not make was removed");
        // The same file collects both runs' rows: the second table has the first's too.
        let rows = said.lines().skip_while(|l| *l != "summary:").filter(|l| l.starts_with("nat ")).count();
        assert_eq!(rows, 2 * 2, "{said}");
    }
}

/// A file removed when the test ends, passed or not.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
