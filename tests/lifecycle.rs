//! A host that lives for years: guests that vanish without their offline, devices that come
//! back under the same name, journals that go bad, `status` and `gc` over all of them.

mod common;

use common::*;
use vifnet::xenstore::{fake, XenStore};

const ROUTE_TOML: &str = "gateway = \"203.0.113.193/29\"\ngateway_kind = \"bridge\"\n";

/// dom0 with guests plugged in as vif<i>.0 (not yet online), and route mode's file.
fn dom0(n: usize) -> (Netns, Vec<Netns>, Dirs) {
    let dom0 = Netns::new("ldom0");
    let dirs = Dirs::new();
    std::fs::write(dirs.modes.join("route.toml"), ROUTE_TOML).unwrap();
    let guests = (1..=n)
        .map(|i| {
            let g = Netns::new(&format!("lg{i}"));
            veth(&dom0, &format!("vif{i}.0"), &g, "eth0");
            g
        })
        .collect();
    (dom0, guests, dirs)
}

fn status(dom0: &Netns, dirs: &Dirs) -> String {
    vifnet_ok(dom0, dirs, &[], &["status"])
}

fn routed(dom0: &Netns) -> String {
    dom0.ok(&["ip", "route", "show", "proto", "118"])
}

#[test]
fn an_online_over_a_stale_journal_of_another_mode_undoes_it_and_proceeds() {
    if !root_or_skip() {
        return;
    }
    let (dom0, guests, dirs) = dom0(1);
    vifnet_ok(&dom0, &dirs, &[], &["vif", "bridge", "online", "vif=vif1.0", "mac=00:16:3e:00:00:01", "ip=192.0.2.11"]);
    assert!(dom0.ok(&["nft", "list", "set", "bridge", "vifnet", "guarded"]).contains("vif1.0"));
    // The guest is destroyed without its offline; later another guest gets the same name.
    dom0.ok(&["ip", "link", "del", "vif1.0"]);
    assert!(status(&dom0, &dirs).contains("stale: device gone"), "{}", status(&dom0, &dirs));
    veth(&dom0, "vif1.0", &guests[0], "eth1");
    assert!(status(&dom0, &dirs).contains("stale: ifindex"), "{}", status(&dom0, &dirs));
    vifnet_ok(&dom0, &dirs, &[], &["vif", "route", "online", "vif=vif1.0", "ip=203.0.113.194"]);
    assert!(routed(&dom0).contains("203.0.113.194 dev vif1.0"));
    assert!(!dom0.ok(&["nft", "list", "set", "bridge", "vifnet", "guarded"]).contains("vif1.0"), "the bridge journal's elements went");
    assert!(status(&dom0, &dirs).contains("route"));
    assert!(status(&dom0, &dirs).contains(" live"), "{}", status(&dom0, &dirs));
    vifnet_ok(&dom0, &dirs, &[], &["vif", "route", "offline", "vif=vif1.0"]);
    assert_eq!(routed(&dom0), "");
}

#[test]
fn status_survives_a_corrupt_journal_and_offline_still_clears_that_vif() {
    if !root_or_skip() {
        return;
    }
    let (dom0, _guests, dirs) = dom0(2);
    for i in 1..=2 {
        vifnet_ok(&dom0, &dirs, &[], &["vif", "bridge", "online", &format!("vif=vif{i}.0"), &format!("mac=00:16:3e:00:00:0{i}"), &format!("ip=192.0.2.1{i}")]);
    }
    let journal = dirs.state.join("vifs").join("vif1.0.json");
    std::fs::write(&journal, "{ \"mode\": \"bridge\", \"kernel_na").unwrap();
    let st = status(&dom0, &dirs);
    let line = st.lines().find(|l| l.starts_with("vif1.0")).unwrap_or_else(|| panic!("{st}"));
    assert!(line.contains("corrupt journal"), "{st}");
    assert!(st.lines().any(|l| l.starts_with("vif2.0") && l.ends_with("live")), "one bad file hides no other vif: {st}");
    let json: serde_json::Value = serde_json::from_str(&vifnet_ok(&dom0, &dirs, &[], &["status", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    // check names it; offline by hand undoes what its inputs describe, and the file goes.
    let out = vifnet(&dom0, &dirs, &[], &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("vif1.0: journal: unreadable"), "{}", String::from_utf8_lossy(&out.stdout));
    let out = vifnet(&dom0, &dirs, &[], &["vif", "bridge", "offline", "vif=vif1.0", "mac=00:16:3e:00:00:01", "ip=192.0.2.11"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreadable journal"), "warned: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!journal.exists());
    let guarded = dom0.ok(&["nft", "list", "set", "bridge", "vifnet", "guarded"]);
    assert!(!guarded.contains("vif1.0") && guarded.contains("vif2.0"), "{guarded}");
    vifnet_ok(&dom0, &dirs, &[], &["check"]);
}

/// libxl's view of a guest: a fake xenstored with the backend's keys.
struct Xenstored {
    sock: std::path::PathBuf,
    server: fake::FakeServer,
}

impl Xenstored {
    fn new() -> Xenstored {
        let sock = std::env::temp_dir().join(unique("xs.sock"));
        let server = fake::serve(&sock);
        Xenstored { sock, server }
    }
    fn backend(&self, domid: u32, ip: &str) {
        self.server.set(&format!("/local/domain/0/backend/vif/{domid}/0/ip"), ip);
    }
    fn online(&self, dom0: &Netns, dirs: &Dirs, domid: u32) {
        let (path, vif) = (format!("backend/vif/{domid}/0"), format!("vif{domid}.0"));
        let env = [("XENBUS_PATH", path.as_str()), ("XENSTORED_PATH", self.sock.to_str().unwrap()), ("vif", vif.as_str())];
        vifnet_ok(dom0, dirs, &env, &["vif", "route", "online", "type_if=vif"]);
    }
    fn destroy_backend(&self, domid: u32) {
        let mut x = XenStore::connect_path(&self.sock).unwrap();
        x.rm(&format!("/local/domain/0/backend/vif/{domid}")).unwrap();
    }
}

#[test]
fn gc_removes_only_vifs_whose_device_and_backend_are_both_gone() {
    if !root_or_skip() {
        return;
    }
    let (dom0, _guests, dirs) = dom0(3);
    let xs = Xenstored::new();
    for domid in 1..=3 {
        xs.backend(domid, &format!("203.0.113.19{}", 3 + domid));
        xs.online(&dom0, &dirs, domid);
    }
    let gc = |extra: &[&str]| {
        let mut args = vec!["gc"];
        args.extend_from_slice(extra);
        vifnet_ok(&dom0, &dirs, &[("XENSTORED_PATH", xs.sock.to_str().unwrap())], &args)
    };
    assert_eq!(gc(&[]).trim(), "nothing to collect");
    // vif1: device and backend gone (destroyed without offline). vif2: device gone, backend
    // still there (a guest being restored). vif3: untouched.
    dom0.ok(&["ip", "link", "del", "vif1.0"]);
    xs.destroy_backend(1);
    dom0.ok(&["ip", "link", "del", "vif2.0"]);
    let elements = || dom0.ok(&["nft", "list", "set", "inet", "vifnet", "guarded"]);
    assert!(elements().contains("vif1.0"));
    let dry = gc(&["--dry-run"]);
    assert!(dry.contains("vif1.0: device and backend gone") && !dry.contains("vif2.0"), "{dry}");
    assert!(elements().contains("vif1.0"), "a dry run changes nothing");
    let out = gc(&[]);
    assert!(out.contains("vif1.0: device and backend gone: route mode state removed"), "{out}");
    assert!(!out.contains("vif2.0") && !out.contains("vif3.0"), "{out}");
    assert!(!elements().contains("vif1.0") && elements().contains("vif2.0") && elements().contains("vif3.0"), "{}", elements());
    assert!(!dirs.state.join("vifs/vif1.0.json").exists() && dirs.state.join("vifs/vif2.0.json").exists());
    assert_eq!(gc(&[]).trim(), "nothing to collect");
    // Without xenstore to ask, a journal that names a backend is kept.
    xs.destroy_backend(2);
    let out = vifnet(&dom0, &dirs, &[("XENSTORED_PATH", "/nonexistent/socket")], &["gc"]);
    assert!(out.status.success());
    assert!(dirs.state.join("vifs/vif2.0.json").exists(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(gc(&[]).contains("vif2.0: device and backend gone"));
}

/// A vifnet that holds the lock too long (hung, or stopped in a debugger): the next call
/// gives up after the timeout with one line naming the lock, as libxl must hear before
/// its own 40 s run out, and changes nothing.
#[test]
fn a_lock_held_too_long_is_a_clear_error_after_the_timeout() {
    if !root_or_skip() {
        return;
    }
    let (dom0, _guests, dirs) = dom0(1);
    std::fs::create_dir_all(&dirs.state).unwrap();
    let lock = std::fs::File::create(dirs.state.join("lock")).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file this test owns.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let before = host_dump(&dom0);
    let start = std::time::Instant::now();
    let out = vifnet(&dom0, &dirs, &[("VIFNET_LOCK_TIMEOUT", "1")], &["vif", "route", "online", "vif=vif1.0", "ip=203.0.113.194"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("lock: another vifnet has held the lock for 1 s; giving up"), "{err}");
    assert!(start.elapsed() < std::time::Duration::from_secs(10), "it gave up");
    assert_eq!(host_dump(&dom0), before);
    drop(lock);
    vifnet_ok(&dom0, &dirs, &[], &["vif", "route", "online", "vif=vif1.0", "ip=203.0.113.194"]);
}

/// Offline works from the journal alone: it asks xenstore nothing (libxl may have removed
/// the backend's keys, and a round trip is time libxl waits), so it succeeds even with
/// xenstored gone.
#[test]
fn offline_with_a_journal_needs_no_xenstore() {
    if !root_or_skip() {
        return;
    }
    let (dom0, _guests, dirs) = dom0(1);
    let xs = Xenstored::new();
    xs.backend(1, "203.0.113.194");
    xs.online(&dom0, &dirs, 1);
    assert!(routed(&dom0).contains("203.0.113.194 dev vif1.0"));
    let env = [("XENBUS_PATH", "backend/vif/1/0"), ("XENSTORED_PATH", "/nonexistent/xenstored.sock"), ("vif", "vif1.0")];
    vifnet_ok(&dom0, &dirs, &env, &["vif", "route", "offline", "type_if=vif"]);
    assert_eq!(routed(&dom0), "");
    assert_eq!(dirs.journal_count(), 0);
}

/// A Linux bridge takes at most 1023 ports; the next guest is refused with a line that
/// says so (the kernel's own word is "Exchange full"), and nothing of it is left.
#[test]
fn a_full_bridge_is_said_so() {
    if !root_or_skip() {
        return;
    }
    let (dom0, _guests, dirs) = dom0(1);
    vifnet_ok(&dom0, &dirs, &[], &["network", "bridge", "start"]);
    let batch: String = (1..=1023).map(|i| format!("link add p{i} type veth peer name q{i}\nlink set p{i} master xenbr0\n")).collect();
    let mut ip = dom0.cmd(&["ip", "-batch", "-"]);
    let mut child = ip.stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), batch.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let out = vifnet(&dom0, &dirs, &[], &["vif", "bridge", "online", "vif=vif1.0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("xenbr0 has 1023 ports, as many as a Linux bridge takes"), "{err}");
    assert_eq!(dirs.journal_count(), 0);
}
