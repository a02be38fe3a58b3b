//! The host side of the harness: namespaces, links made in bulk, the run's directories, and
//! the guards that check and clean up what a run may leave (our dnsmasq, the host's files).

use std::path::PathBuf;
use std::process::{Command, Stdio};

pub fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?}");
}

/// `ip -n <ns> -batch -`: one process for many links instead of one each.
pub fn ip_batch(ns: &str, batch: &str) {
    let mut c = Command::new("ip").args(["-n", ns, "-batch", "-"]).stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), batch.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "ip -n {ns} -batch");
}

/// A network namespace of this run, deleted when dropped (its links with it).
pub struct Ns(pub String);
impl Ns {
    pub fn new(name: String) -> Ns {
        ip(&["netns", "add", &name]);
        Ns(name)
    }
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The vif of domain `domid`, as libxl names it (device 0).
pub fn vif(domid: u32) -> String {
    format!("vif{domid}.0")
}

/// Veth pairs for `domids` in one `ip -batch`: `vif<d>.0` in dom0, its peer in `guests`.
pub fn add_vifs(dom0: &Ns, guests: &Ns, domids: impl IntoIterator<Item = u32>) {
    let batch: String = domids.into_iter().map(|d| format!("link add {} type veth peer name e{d} netns {}\n", vif(d), guests.0)).collect();
    if !batch.is_empty() {
        ip_batch(&dom0.0, &batch);
    }
}

/// Deletes them again (the peers go with them).
pub fn del_vifs(dom0: &Ns, domids: impl IntoIterator<Item = u32>) {
    let batch: String = domids.into_iter().map(|d| format!("link del {}\n", vif(d))).collect();
    if !batch.is_empty() {
        ip_batch(&dom0.0, &batch);
    }
}

/// A signal to the dnsmasq this run started (its pid checked by `OwnDnsmasq`), if any.
pub fn signal(pid: Option<i32>, sig: i32) {
    if let Some(pid) = pid {
        // SAFETY: kill on the pid of the dnsmasq our vifnet started, checked by its pid file.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "signal {sig} to dnsmasq {pid}");
    }
}

/// Whether the process is there and has not exited (a zombie, waiting for whoever
/// inherited the daemon to reap it, has let go of everything).
pub fn running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the parenthesised name: "pid (comm) S ...".
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|st| st != "Z" && st != "X")
}

/// The dnsmasq a run's vifnet started, known only by the pid file vifnet gave it.
pub struct OwnDnsmasq(pub PathBuf);
impl OwnDnsmasq {
    /// The pid in the file, if it is a live dnsmasq started with this very pid file.
    pub fn pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(&self.0).ok()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let ours = format!("--pid-file={}", self.0.display());
        let is_dnsmasq = args.first().is_some_and(|a| a.ends_with(b"dnsmasq"));
        (is_dnsmasq && args.contains(&ours.as_bytes())).then_some(pid)
    }
}
impl Drop for OwnDnsmasq {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // SAFETY: a signal to the dnsmasq this run started, by its own pid; SIGCONT first
            // in case a failed run left it paused.
            unsafe {
                libc::kill(pid, libc::SIGCONT);
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}

/// A host file the bench must not change (read only: its length, mtime and inode).
pub struct HostFile(&'static str, Option<(u64, i64, i64, u64)>);
impl HostFile {
    pub fn snapshot(path: &'static str) -> HostFile {
        HostFile(path, Self::stat(path))
    }
    fn stat(path: &str) -> Option<(u64, i64, i64, u64)> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.len(), m.mtime(), m.mtime_nsec(), m.ino()))
    }
    pub fn unchanged(&self) -> bool {
        Self::stat(self.0) == self.1
    }
}

/// The run's directory, removed at the end even when a mode fails.
pub struct TempDir(pub PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
