//! vifnet killed halfway (SIGKILL, as the OOM killer, a libxl timeout or a power cut would
//! end it), at every step of every verb of every mode: `VIFNET_FAULT_KILL_AT=n` kills the
//! call before its n-th step. After each kill, running the same verb again and then
//! `check --repair` must leave exactly the state an uninterrupted verb leaves, and the
//! rest of the story must still end with the host exactly as it was: nothing leaked.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use common::*;

/// One mode's story: the verbs from a bare host to a bare host again.
struct Story {
    dom0: Netns,
    _others: Vec<Netns>,
    dirs: Dirs,
    verbs: Vec<Vec<String>>,
    /// Files the verbs edit besides the state directory (nat's hosts and ethers).
    files: Vec<PathBuf>,
}

fn words(s: &str) -> Vec<String> {
    // Arguments with spaces are written with '+' for ' '.
    s.split(' ').map(|w| w.replace('+', " ")).collect()
}

impl Story {
    /// dom0 with vif1.0 and vif2.0 (peers up in a guest namespace) and an uplink `up0`.
    fn new(mode_file: Option<(&str, String)>, verbs: &[&str]) -> Story {
        let dom0 = Netns::new("fdom0");
        let guests = Netns::new("fg");
        let upstream = Netns::new("fup");
        dom0.no_dad();
        guests.no_dad();
        let dirs = Dirs::new();
        veth(&dom0, "up0", &upstream, "eth0");
        upstream.ok(&["ip", "link", "set", "eth0", "up"]);
        dom0.ok(&["ip", "addr", "add", "198.51.100.2/24", "dev", "up0"]);
        dom0.ok(&["ip", "link", "set", "up0", "up"]);
        dom0.ok(&["ip", "route", "add", "default", "via", "198.51.100.1"]);
        for i in 1..=2 {
            veth(&dom0, &format!("vif{i}.0"), &guests, &format!("eth{i}"));
            guests.ok(&["ip", "link", "set", &format!("eth{i}"), "up"]);
        }
        let mut files = Vec::new();
        if let Some((name, text)) = mode_file {
            let base = dirs.state.parent().unwrap().to_path_buf();
            let text = text.replace("@BASE@", &base.display().to_string());
            files = ["hosts", "ethers"].iter().map(|f| base.join(f)).collect();
            std::fs::write(dirs.modes.join(name), text).unwrap();
        }
        Story { dom0, _others: vec![guests, upstream], dirs, verbs: verbs.iter().map(|v| words(v)).collect(), files }
    }

    fn run(&self, verb: &[String], kill_at: Option<usize>) -> std::process::ExitStatus {
        let args: Vec<&str> = verb.iter().map(String::as_str).collect();
        let n = kill_at.map(|n| n.to_string());
        let env: Vec<(&str, &str)> = n.iter().map(|n| ("VIFNET_FAULT_KILL_AT", n.as_str())).collect();
        let out = vifnet(&self.dom0, &self.dirs, &env, &args);
        if kill_at.is_none() {
            assert!(out.status.success(), "{verb:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        out.status
    }

    /// Everything the story may change, in a fixed order (a route or an address put back
    /// lands elsewhere in the kernel's lists, the same in every other respect).
    fn state(&self) -> String {
        let mut parts = vec![canonical(&host_dump(&self.dom0))];
        parts.extend(state_bytes(&self.dirs).into_iter().map(|(p, b)| format!("{p}: {}", String::from_utf8_lossy(&b))));
        parts.extend(self.files.iter().map(|f| format!("{}: {}", f.display(), read(f))));
        if let Ok(d) = std::fs::read_dir(&self.dirs.sysctl) {
            let mut names: Vec<PathBuf> = d.flatten().map(|e| e.path()).collect();
            names.sort();
            parts.extend(names.iter().map(|f| format!("{}: {}", f.display(), read(f))));
        }
        parts.join("\n")
    }

    /// Kills each verb at each of its steps in turn; each time the verb again and `check
    /// --repair` converge on the state of an uninterrupted run, and the rest of the story
    /// gives back the bare host. Returns how many kills there were.
    fn kill_everywhere(&self) -> usize {
        // Once through first: a vif that has been up keeps its queue discipline (and in
        // bridge mode Xen's port MAC); the device is the guest's, gone with it in real life.
        for v in &self.verbs {
            self.run(v, None);
        }
        self.dom0.wait_up("up0");
        let bare = self.state();
        let mut after = Vec::new();
        for v in &self.verbs {
            self.run(v, None);
            after.push(self.state());
        }
        assert_eq!(self.state(), bare, "the uninterrupted story gives back the bare host");
        let mut kills = 0;
        for (k, verb) in self.verbs.iter().enumerate() {
            for n in 0.. {
                for v in &self.verbs[..k] {
                    self.run(v, None);
                }
                let status = self.run(verb, Some(n));
                let killed = status.signal() == Some(libc::SIGKILL);
                assert!(killed || status.success(), "{verb:?} killed at {n}: {status:?}");
                if killed {
                    kills += 1;
                    self.run(verb, None);
                    self.run(&words("check --repair"), None);
                }
                let out = vifnet(&self.dom0, &self.dirs, &[], &["check"]);
                assert_eq!(out.status.code(), Some(0), "{verb:?} killed at step {n}: {}", String::from_utf8_lossy(&out.stdout));
                same(&self.state(), &after[k], &format!("{verb:?} killed at step {n}, run again and repaired"));
                for v in &self.verbs[k + 1..] {
                    self.run(v, None);
                }
                same(&self.state(), &bare, &format!("{verb:?} killed at step {n}: the rest of the story left something behind"));
                if !killed {
                    break;
                }
            }
        }
        eprintln!("{kills} kills, each converged");
        kills
    }
}

impl Drop for Story {
    fn drop(&mut self) {
        // Only our own dnsmasq, by the pid it wrote, if a failed test left it running.
        if let Ok(pid) = std::fs::read_to_string(self.dirs.state.join("dnsmasq.pid")) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
    }
}

/// Equal states, or a failure that shows the first lines that differ.
fn same(now: &str, want: &str, what: &str) {
    if now == want {
        return;
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (now.lines().collect(), want.lines().collect());
    let mut diff: Vec<String> = a.iter().filter(|l| !b.contains(l)).map(|l| format!("now:  {}", &l[..l.len().min(700)])).collect();
    diff.extend(b.iter().filter(|l| !a.contains(l)).map(|l| format!("want: {}", &l[..l.len().min(700)])));
    panic!("{what}:\n{}", diff.join("\n"));
}

/// JSON values with every array sorted, without the kernel's numbering (ifindex, nft
/// handles: a bridge or a table made again is the same one under a new number) and
/// without carrier state; the rest of the text as it is.
fn canonical(dump: &str) -> String {
    fn sort(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Array(a) => {
                a.iter_mut().for_each(sort);
                a.sort_by_key(|x| x.to_string());
            }
            serde_json::Value::Object(o) => {
                o.remove("ifindex");
                o.remove("handle");
                // Carrier follows the ports a second later (linkwatch), not vifnet.
                o.remove("operstate");
                if let Some(serde_json::Value::Array(flags)) = o.get_mut("flags") {
                    flags.retain(|f| !matches!(f.as_str(), Some("LOWER_UP" | "NO-CARRIER" | "linkdown")));
                }
                o.values_mut().for_each(sort)
            }
            _ => {}
        }
    }
    dump.lines()
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(mut v) => {
                sort(&mut v);
                v.to_string()
            }
            Err(_) => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn bridge_mode_killed_at_every_step_converges_and_leaks_nothing() {
    if !root_or_skip() {
        return;
    }
    let story = Story::new(
        None,
        &[
            "network bridge start",
            "vif bridge online vif=vif1.0 mac=00:16:3e:00:00:01 ip=192.0.2.11+2001:db8::11",
            "vif bridge online vif=vif2.0 mac=00:16:3e:00:00:02 ip=192.0.2.12",
            "vif bridge offline vif=vif1.0",
            "vif bridge offline vif=vif2.0",
            "network bridge stop",
        ],
    );
    assert!(story.kill_everywhere() >= 6);
}

#[test]
fn route_mode_killed_at_every_step_converges_and_leaks_nothing() {
    if !root_or_skip() {
        return;
    }
    let toml = "netdev = \"up0\"\ngateway = \"203.0.113.193/29 2001:db8:42::1/64\"\ngateway_kind = \"bridge\"\nuplink_proxy = true\n".to_string();
    let story = Story::new(
        Some(("route.toml", toml)),
        &[
            // No start: the first online makes the host-wide part, as under libxl.
            "vif route online vif=vif1.0 ip=203.0.113.194+2001:db8:42::194",
            "vif route online vif=vif2.0 ip=203.0.113.195",
            "vif route offline vif=vif1.0",
            "vif route offline vif=vif2.0",
            "network route stop",
        ],
    );
    assert!(story.kill_everywhere() >= 10);
}

#[test]
fn nat_mode_killed_at_every_step_converges_and_leaks_nothing() {
    if !root_or_skip() {
        return;
    }
    let toml = "netdev = \"up0\"\nhosts = \"@BASE@/hosts\"\nethers = \"@BASE@/ethers\"\n".to_string();
    let story = Story::new(
        Some(("nat.toml", toml)),
        &[
            "network nat start",
            "vif nat online vif=vif1.0 name=web mac=00:16:3e:00:01:01",
            "vif nat online vif=vif2.0 name=db mac=00:16:3e:00:01:02",
            "vif nat offline vif=vif1.0",
            "vif nat offline vif=vif2.0",
            "network nat stop",
        ],
    );
    assert!(story.kill_everywhere() >= 10);
}
