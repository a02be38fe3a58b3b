//! An index of nat mode's hosts file, so that an online answers its questions about machine
//! numbers ([`HostsView`]) with a few look-ups however many machines the file numbers, and
//! adds its line at the end of the file instead of writing 65,536 lines again.
//!
//! The index is a directory of symbolic links in the state directory, each a key whose
//! target is its value: one `readlink` answers a question, one `symlink` records an answer,
//! and the file system finds the name. Keys are spread over 256 subdirectories by a hash,
//! so that a file system without directory indexes (ext4 made without `dir_index`; /run is
//! a tmpfs, which hashes) still looks through a few hundred names, not 260,000.
//!
//! It is a cache of the file: its `stamp` names the file (path, inode, size, modification
//! time) and the prefix it was built for, and any other stamp (an edit by hand, a `check
//! --repair`, a reboot that emptied /run, another prefix) makes the next reader build it
//! again from the file, once. The stamp is written last and removed first, so a call killed
//! half-way leaves an index that is rebuilt, never one that is believed. Callers hold
//! vifnet's lock.

use std::ffi::OsStr;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ipnetwork::Ipv4Network;

use crate::plan::hosts::{HostsText, HostsView, LineFacts, Owner};

/// The index's directory in the state directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join(crate::names::HOSTS_INDEX)
}

/// The index of `hosts` for `prefix`, in step with the file: read as it is, or built again.
pub struct HostsIndex {
    dir: PathBuf,
    path: PathBuf,
    machines: u32,
    length: (u64, bool),
}

impl HostsIndex {
    pub fn open(state_dir: &Path, hosts: &Path, prefix: &Ipv4Network) -> io::Result<HostsIndex> {
        let dir = dir(state_dir);
        let (stamp, length) = stamp(hosts, prefix)?;
        let index = HostsIndex { dir, path: hosts.to_path_buf(), machines: crate::plan::hosts::machines(prefix), length };
        if read(&index.dir, "stamp").as_deref() != Some(stamp.as_str()) {
            index.rebuild(prefix, &stamp)?;
        }
        Ok(index)
    }

    /// Builds the index again from the whole file (its first call, or after an edit).
    fn rebuild(&self, prefix: &Ipv4Network, stamp: &str) -> io::Result<()> {
        let text = crate::observe::file_text(&self.path).map_err(io::Error::other)?;
        let view = HostsText::new(text, prefix);
        clear(&self.dir)?;
        for (domain, m) in &view.by_domain {
            write_new(&self.dir, &key_domain(domain), &m.to_string())?;
        }
        for (m, owner) in &view.owners {
            write_new(&self.dir, &key_machine(*m), &owner_text(owner))?;
        }
        for (ip, names) in &view.at {
            write_new(&self.dir, &key_at(*ip), names)?;
        }
        for (name, ip) in &view.named {
            write_new(&self.dir, &key_named(name), &ip.to_string())?;
        }
        write_new(&self.dir, "free", &view.lowest_free().unwrap_or(self.machines).to_string())?;
        write_new(&self.dir, "stamp", stamp)
    }
}

impl HostsView for HostsIndex {
    fn machine_of(&self, domain: &str) -> Option<u32> {
        read(&self.dir, &key_domain(domain))?.parse().ok()
    }
    fn owner_of(&self, m: u32) -> Option<Owner> {
        read(&self.dir, &key_machine(m)).map(|v| parse_owner(&v))
    }
    /// Kept as `free`: lines are never removed but by hand (which rebuilds the index), so
    /// the lowest free number only moves up, when an append takes it.
    fn lowest_free(&self) -> Option<u32> {
        let from: u32 = read(&self.dir, "free").and_then(|v| v.parse().ok()).unwrap_or(0);
        (from..self.machines).find(|m| read(&self.dir, &key_machine(*m)).is_none())
    }
    fn names_at(&self, ip: Ipv4Addr) -> Option<String> {
        read(&self.dir, &key_at(ip))
    }
    fn address_named(&self, name: &str) -> Option<Ipv4Addr> {
        read(&self.dir, &key_named(name))?.parse().ok()
    }
    fn length(&self) -> (u64, bool) {
        self.length
    }
    fn text(&self) -> Result<String, String> {
        crate::observe::file_text(&self.path).map_err(|e| e.to_string())
    }
}

/// After `line` was added at the end of `hosts` (by us, holding the lock): the index learns
/// it, and takes the file's new stamp. An index not in step with the file before the append
/// is left to be rebuilt.
pub fn appended(state_dir: &Path, hosts: &Path, prefix: &Ipv4Network, before: u64, line: &LineFacts) -> io::Result<()> {
    let dir = dir(state_dir);
    let old = read(&dir, "stamp");
    remove(&dir, "stamp")?;
    let in_step = old.is_some_and(|s| stamp_length(&s) == Some(before) && stamp_names(&s, hosts, prefix));
    if !in_step {
        return Ok(());
    }
    if let Some(d) = &line.domain {
        write_new(&dir, &key_domain(d), &line.machine.to_string())?;
    }
    let owner = line.owner_after(read(&dir, &key_machine(line.machine)).map(|v| parse_owner(&v)).as_ref());
    replace(&dir, &key_machine(line.machine), &owner_text(&owner))?;
    write_new(&dir, &key_at(line.ip), &line.names)?;
    if !line.first.is_empty() {
        write_new(&dir, &key_named(&line.first), &line.ip.to_string())?;
    }
    // The lowest free number was taken: the next one up is, each number walked past once.
    if read(&dir, "free").and_then(|v| v.parse::<u32>().ok()) == Some(line.machine) {
        let next = (line.machine + 1..).find(|m| read(&dir, &key_machine(*m)).is_none()).unwrap_or(u32::MAX);
        replace(&dir, "free", &next.to_string())?;
    }
    write_new(&dir, "stamp", &stamp(hosts, prefix)?.0)
}

/// The file changed some other way (a rollback): the next reader rebuilds the index.
pub fn forget(state_dir: &Path) -> io::Result<()> {
    remove(&dir(state_dir), "stamp")
}

/// Removes the index (nat mode stops): stamp first, then the rest.
pub fn drop(state_dir: &Path) -> io::Result<()> {
    clear(&dir(state_dir))
}

/// What the index must say to be in step with the file: its length, and whether it ends a
/// line, come with it. A missing file is empty.
fn stamp(hosts: &Path, prefix: &Ipv4Network) -> io::Result<(String, (u64, bool))> {
    let (ino, len, mtime, ends) = match std::fs::metadata(hosts) {
        Ok(m) => (m.ino(), m.len(), (m.mtime(), m.mtime_nsec()), last_byte_is_newline(hosts, m.len())?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (0, 0, (0, 0), true),
        Err(e) => return Err(e),
    };
    Ok((format!("{ino} {len} {}.{:09} {} {prefix} {}", mtime.0, mtime.1, u8::from(ends), hosts.display()), (len, ends)))
}

fn stamp_length(stamp: &str) -> Option<u64> {
    stamp.split(' ').nth(1)?.parse().ok()
}

fn stamp_names(stamp: &str, hosts: &Path, prefix: &Ipv4Network) -> bool {
    let mut f = stamp.splitn(6, ' ').skip(4);
    f.next() == Some(&prefix.to_string()) && f.next() == Some(&hosts.display().to_string())
}

fn last_byte_is_newline(path: &Path, len: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    if len == 0 {
        return Ok(true);
    }
    let mut b = [0u8];
    std::fs::File::open(path)?.read_exact_at(&mut b, len - 1)?;
    Ok(b[0] == b'\n')
}

// Keys: names in one directory. Domain names are DNS labels and addresses have no '/';
// a first name from a line edited by hand might, and is then left out ([`usable`]): no
// question of ours asks about it.
fn key_domain(d: &str) -> String {
    format!("d:{d}")
}
fn key_machine(m: u32) -> String {
    format!("m:{m}")
}
fn key_at(ip: Ipv4Addr) -> String {
    format!("a:{ip}")
}
fn key_named(n: &str) -> String {
    format!("n:{n}")
}

fn owner_text(o: &Owner) -> String {
    match o {
        Owner::Domain(d) => format!("={d}"),
        Owner::Foreign(f) => format!("!{f}"),
    }
}

fn parse_owner(v: &str) -> Owner {
    match v.strip_prefix('=') {
        Some(d) => Owner::Domain(d.into()),
        None => Owner::Foreign(v.strip_prefix('!').unwrap_or(v).into()),
    }
}

fn usable(key: &str) -> bool {
    !key.contains('/') && key.len() <= 255
}

/// Where `key` lives: `stamp` and `free` at the top, the rest in their hash's subdirectory.
fn at(dir: &Path, key: &str) -> PathBuf {
    if !key.contains(':') {
        return dir.join(key);
    }
    // FNV-1a: stable, and enough to spread names.
    let h = key.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
    dir.join(format!("{:02x}", (h ^ (h >> 32)) as u8)).join(key)
}

fn read(dir: &Path, key: &str) -> Option<String> {
    if !usable(key) {
        return None;
    }
    let target = std::fs::read_link(at(dir, key)).ok()?;
    Some(String::from_utf8_lossy(target.as_os_str().as_bytes()).into_owned())
}

/// Records `key`; one that exists already keeps its value (the first line answers).
fn write_new(dir: &Path, key: &str, value: &str) -> io::Result<()> {
    if !usable(key) || value.is_empty() {
        return Ok(());
    }
    let path = at(dir, key);
    let link = |p: &Path| std::os::unix::fs::symlink(OsStr::from_bytes(value.as_bytes()), p);
    let made = match link(&path) {
        // The first key of its subdirectory (or of the index).
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
            link(&path)
        }
        r => r,
    };
    match made {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

fn replace(dir: &Path, key: &str, value: &str) -> io::Result<()> {
    remove(dir, key)?;
    write_new(dir, key, value)
}

fn remove(dir: &Path, key: &str) -> io::Result<()> {
    match std::fs::remove_file(at(dir, key)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Removes the directory, stamp first.
fn clear(dir: &Path) -> io::Result<()> {
    remove(dir, "stamp")?;
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::hosts::{hosts_edit, machine_for, parse_hosts, HostsEdit};

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vifnet-hosts-index-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The index answers as the text does, before and after appends, and is rebuilt after an
    /// edit by hand.
    #[test]
    fn the_index_answers_as_the_text_does() {
        let d = temp("answers");
        let hosts = d.join("hosts");
        let prefix: Ipv4Network = "10.0.0.0/8".parse().unwrap();
        std::fs::write(&hosts, "# mine\n10.0.0.1 dom10 dom10.x\n10.0.1.1 web web.x\n10.0.2.3 printer\n10.0.1.2 web-2 web-2.x\n").unwrap();
        let check = |ix: &HostsIndex| {
            let text = HostsText::new(std::fs::read_to_string(&hosts).unwrap(), &prefix);
            for name in ["dom10", "web", "web-2", "db", "printer"] {
                assert_eq!(ix.machine_of(name), text.machine_of(name), "{name}");
                assert_eq!(ix.address_named(name), text.address_named(name), "{name}");
                assert_eq!(machine_for(ix, &prefix, name).unwrap(), machine_for(&text, &prefix, name).unwrap(), "{name}");
            }
            for m in 0..6 {
                assert_eq!(ix.owner_of(m), text.owner_of(m), "machine {m}");
            }
            for ip in ["10.0.0.1", "10.0.1.1", "10.0.1.2", "10.0.2.3", "10.0.3.1"] {
                let ip = ip.parse().unwrap();
                assert_eq!(ix.names_at(ip), text.names_at(ip), "{ip}");
            }
            assert_eq!(ix.lowest_free(), text.lowest_free());
            assert_eq!(ix.length(), text.length());
        };
        let ix = HostsIndex::open(&d, &hosts, &prefix).unwrap();
        check(&ix);
        // Three appends, as online makes them.
        for name in ["db", "mail", "web"] {
            let ix = HostsIndex::open(&d, &hosts, &prefix).unwrap();
            let y = if name == "web" { 3 } else { 1 };
            let m = machine_for(&ix, &prefix, name).unwrap();
            let ip = crate::plan::nat::guest_address(&prefix, m, y);
            let names = vec![crate::plan::nat::hostname(name, y)];
            assert_eq!(hosts_edit(&ix, ip, &names), HostsEdit::Append);
            let line = format!("{ip} {}\n", names.join(" "));
            let before = ix.length().0;
            let mut f = std::fs::OpenOptions::new().append(true).open(&hosts).unwrap();
            std::io::Write::write_all(&mut f, line.as_bytes()).unwrap();
            let facts = LineFacts::of(&prefix, &parse_hosts(&line)[0]).unwrap();
            appended(&d, &hosts, &prefix, before, &facts).unwrap();
            let stamp_before = read(&dir(&d), "stamp");
            let again = HostsIndex::open(&d, &hosts, &prefix).unwrap();
            assert_eq!(read(&dir(&d), "stamp"), stamp_before, "in step: not rebuilt");
            check(&again);
        }
        assert_eq!(HostsIndex::open(&d, &hosts, &prefix).unwrap().machine_of("web"), Some(1));
        // By hand: web's lines go. The stamp differs, and the index follows the file.
        let text = std::fs::read_to_string(&hosts).unwrap();
        std::fs::write(&hosts, text.lines().filter(|l| !l.contains("web")).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        let ix = HostsIndex::open(&d, &hosts, &prefix).unwrap();
        assert_eq!(ix.machine_of("web"), None);
        check(&ix);
        drop(&d).unwrap();
        assert!(!dir(&d).exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
