//! Nat mode's hosts file: the record of machine numbers, one `ip name name.domain` line per
//! guest interface ever online, kept after offline. An online asks it a few questions
//! ([`HostsView`]): answered here from the file's text, and by `observe::hosts_index` from
//! an index kept beside it, so that a call reads a few entries instead of the whole file
//! and adds its line at the end instead of writing the file again. Pure.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::Ipv4Network;

use super::PlanError;

/// How many machines the prefix numbers: 256 addresses each, 65,536 at most (two bytes).
pub fn machines(prefix: &Ipv4Network) -> u32 {
    1u32 << (24 - u32::from(prefix.prefix())).min(16)
}

/// Machine number and interface of an address of the prefix's guests, if it is one.
pub fn slot(prefix: &Ipv4Network, addr: Ipv4Addr) -> Option<(u32, u8)> {
    let offset = u32::from(addr).checked_sub(u32::from(prefix.network()))?;
    let (machine, iface) = (offset >> 8, (offset & 0xff) as u8);
    (prefix.contains(addr) && machine < machines(prefix) && (1..128).contains(&iface)).then_some((machine, iface))
}

/// One line of a hosts file: an address and its names (comments and blank lines skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsLine {
    pub ip: IpAddr,
    pub names: Vec<String>,
}

pub fn parse_hosts(text: &str) -> Vec<HostsLine> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(l: &str) -> Option<HostsLine> {
    let mut fields = l.split('#').next()?.split_whitespace();
    let ip = fields.next()?.parse().ok()?;
    Some(HostsLine { ip, names: fields.map(String::from).collect() })
}

/// Who a machine number's lines belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Every line of the machine is this domain's.
    Domain(String),
    /// A line of it is named for no domain, or for another one: its first name.
    Foreign(String),
}

/// What a line of the prefix says about machine numbers, as an index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFacts {
    pub ip: Ipv4Addr,
    pub machine: u32,
    /// The domain the line is of: its first name is that domain's name for the line's
    /// interface (`web` for .1, `web-2` for .2).
    pub domain: Option<String>,
    pub first: String,
    /// The names, joined by single spaces.
    pub names: String,
}

impl LineFacts {
    pub fn of(prefix: &Ipv4Network, line: &HostsLine) -> Option<LineFacts> {
        let IpAddr::V4(ip) = line.ip else { return None };
        let (machine, y) = slot(prefix, ip)?;
        let first = line.names.first().cloned().unwrap_or_default();
        let domain = match y {
            1 => Some(first.clone()).filter(|f| !f.is_empty()),
            _ => first.strip_suffix(&format!("-{y}")).filter(|d| !d.is_empty()).map(String::from),
        };
        Some(LineFacts { ip, machine, domain, first, names: line.names.join(" ") })
    }

    /// The owner the machine has with this line added to `before` (the earlier lines').
    pub fn owner_after(&self, before: Option<&Owner>) -> Owner {
        match (before, &self.domain) {
            (Some(Owner::Foreign(f)), _) => Owner::Foreign(f.clone()),
            (Some(Owner::Domain(d)), Some(mine)) if d == mine => Owner::Domain(d.clone()),
            (Some(Owner::Domain(_)) | None, _) => match &self.domain {
                Some(d) if before.is_none() => Owner::Domain(d.clone()),
                _ => Owner::Foreign(self.first.clone()),
            },
        }
    }
}

/// The questions nat mode asks of its hosts file. Where several lines answer, the first
/// in the file does.
pub trait HostsView {
    /// The machine number the domain's lines have.
    fn machine_of(&self, domain: &str) -> Option<u32>;
    /// Whose lines use machine `m`, if any do.
    fn owner_of(&self, m: u32) -> Option<Owner>;
    /// The lowest machine number no line of the prefix uses.
    fn lowest_free(&self) -> Option<u32>;
    /// The names on the line of `ip`, joined by single spaces.
    fn names_at(&self, ip: Ipv4Addr) -> Option<String>;
    /// The address of the line of the prefix whose first name is `name`.
    fn address_named(&self, name: &str) -> Option<Ipv4Addr>;
    /// The file's length in bytes, and whether it ends a line (an empty file does).
    fn length(&self) -> (u64, bool);
    /// The whole text: only for an edit that must write the file again (rare).
    fn text(&self) -> Result<String, String>;
}

/// The view of a hosts file's text, every answer computed once.
#[derive(Debug, Clone, Default)]
pub struct HostsText {
    pub text: String,
    pub by_domain: HashMap<String, u32>,
    pub owners: HashMap<u32, Owner>,
    pub at: HashMap<Ipv4Addr, String>,
    pub named: HashMap<String, Ipv4Addr>,
    machines: u32,
}

impl HostsText {
    pub fn new(text: String, prefix: &Ipv4Network) -> HostsText {
        let mut v = HostsText { machines: machines(prefix), ..Default::default() };
        for line in text.lines().filter_map(parse_line) {
            if let Some(f) = LineFacts::of(prefix, &line) {
                v.add(f);
            }
        }
        v.text = text;
        v
    }

    fn add(&mut self, f: LineFacts) {
        if let Some(d) = &f.domain {
            self.by_domain.entry(d.clone()).or_insert(f.machine);
        }
        let owner = f.owner_after(self.owners.get(&f.machine));
        self.owners.insert(f.machine, owner);
        self.at.entry(f.ip).or_insert(f.names);
        if !f.first.is_empty() {
            self.named.entry(f.first).or_insert(f.ip);
        }
    }
}

impl HostsView for HostsText {
    fn machine_of(&self, domain: &str) -> Option<u32> {
        self.by_domain.get(domain).copied()
    }
    fn owner_of(&self, m: u32) -> Option<Owner> {
        self.owners.get(&m).cloned()
    }
    fn lowest_free(&self) -> Option<u32> {
        let used: HashSet<&u32> = self.owners.keys().collect();
        (0..self.machines).find(|m| !used.contains(m))
    }
    fn names_at(&self, ip: Ipv4Addr) -> Option<String> {
        self.at.get(&ip).cloned()
    }
    fn address_named(&self, name: &str) -> Option<Ipv4Addr> {
        self.named.get(name).copied()
    }
    fn length(&self) -> (u64, bool) {
        (self.text.len() as u64, self.text.is_empty() || self.text.ends_with('\n'))
    }
    fn text(&self) -> Result<String, String> {
        Ok(self.text.clone())
    }
}

/// The domain's machine number: the one its lines already have, else the lowest one no line
/// of the prefix uses. A line is of machine `m` of domain `n` when its address is `m`'s
/// interface `y` and its first name is `n`'s name for `y`; so domain `web-2` never takes the
/// second nic of `web`, and `dom1` never matches `dom10`.
pub fn machine_for(hosts: &dyn HostsView, prefix: &Ipv4Network, name: &str) -> Result<u32, PlanError> {
    hosts
        .machine_of(name)
        .or_else(|| hosts.lowest_free())
        .ok_or(PlanError::NoMachineLeft { prefix: prefix.to_string(), machines: machines(prefix) })
}

/// The machine number an explicit address takes; it must be a guest address of the prefix
/// and not another domain's.
pub fn machine_of_address(hosts: &dyn HostsView, prefix: &Ipv4Network, name: &str, addr: Ipv4Addr) -> Result<(u32, u8), PlanError> {
    let (m, y) = slot(prefix, addr).ok_or_else(|| PlanError::NotInPrefix { ip: addr.to_string(), prefix: prefix.to_string() })?;
    match hosts.owner_of(m) {
        Some(Owner::Domain(d)) if d != name => Err(PlanError::AddressTaken { ip: addr.to_string(), owner: d }),
        Some(Owner::Foreign(first)) => Err(PlanError::AddressTaken { ip: addr.to_string(), owner: first }),
        _ => Ok((m, y)),
    }
}

/// How the hosts file comes to hold `ip names...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostsEdit {
    /// It does already.
    Keep,
    /// No line of the prefix has the address or the first name: the line goes at the end.
    Append,
    /// Another line has one of them (an explicit `ip=` that changed, a line edited by hand):
    /// the file is written again by [`hosts_with`].
    Rewrite,
}

pub fn hosts_edit(hosts: &dyn HostsView, ip: Ipv4Addr, names: &[String]) -> HostsEdit {
    let first = names.first().map(String::as_str).unwrap_or_default();
    match (hosts.names_at(ip), hosts.address_named(first)) {
        (Some(at), Some(named)) if at == names.join(" ") && named == ip => HostsEdit::Keep,
        (None, None) if hosts.length().1 => HostsEdit::Append,
        _ => HostsEdit::Rewrite,
    }
}

/// The hosts file with `ip name name.domain` in it: any line of the prefix with the same
/// address or the same first name goes; every other line stays as it was.
pub fn hosts_with(text: &str, prefix: &Ipv4Network, ip: Ipv4Addr, names: &[String]) -> String {
    let clashes = |l: &str| {
        parse_line(l).is_some_and(|h| match h.ip {
            IpAddr::V4(a) => prefix.contains(a) && (a == ip || h.names.first() == names.first()),
            IpAddr::V6(_) => false,
        })
    };
    replace_lines(text, clashes, &format!("{ip} {}", names.join(" ")))
}

/// `text` with `line` where the first line that `clashes` was (the others that clash
/// gone), or at the end: a repeated edit leaves the file as it was.
pub fn replace_lines(text: &str, clashes: impl Fn(&str) -> bool, line: &str) -> String {
    let mut out = String::with_capacity(text.len() + line.len() + 1);
    let mut placed = false;
    for l in text.lines() {
        if !clashes(l) {
            out.push_str(l);
        } else if !placed {
            out.push_str(line);
            placed = true;
        } else {
            continue;
        }
        out.push('\n');
    }
    if !placed {
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }
    fn view(text: &str, p: &str) -> HostsText {
        HostsText::new(text.into(), &prefix(p))
    }

    #[test]
    fn machine_numbers_are_found_by_whole_names_and_allocated_lowest_first() {
        let p = prefix("10.0.0.0/8");
        let hosts = view("127.0.0.1 localhost\n10.0.0.1 dom10 dom10.x\n10.0.1.1 web web.x\n10.0.1.2 web-2 web-2.x\n# 10.0.2.1 dom1\n", "10.0.0.0/8");
        assert_eq!(machine_for(&hosts, &p, "dom10").unwrap(), 0);
        assert_eq!(machine_for(&hosts, &p, "dom1").unwrap(), 2, "dom1 is not dom10, and a comment holds no number");
        assert_eq!(machine_for(&hosts, &p, "web").unwrap(), 1);
        assert_eq!(machine_for(&hosts, &p, "web-2").unwrap(), 2, "domain web-2 is not web's second nic");
        let only_second = view("10.0.4.2 db-2 db-2.x\n", "10.0.0.0/8");
        assert_eq!(machine_for(&only_second, &p, "db").unwrap(), 4, "found by another interface's line");
        let full = view("192.168.7.1 a\n", "192.168.7.0/24");
        assert!(matches!(machine_for(&full, &prefix("192.168.7.0/24"), "b"), Err(PlanError::NoMachineLeft { .. })));
    }

    #[test]
    fn an_explicit_address_must_be_a_free_guest_address_of_the_prefix() {
        let p = prefix("10.0.0.0/8");
        let hosts = view("10.0.1.1 web web.x\n10.0.2.1 web web.x\n10.0.2.3 printer\n", "10.0.0.0/8");
        assert_eq!(machine_of_address(&hosts, &p, "db", "10.0.5.3".parse().unwrap()).unwrap(), (5, 3));
        assert_eq!(machine_of_address(&hosts, &p, "web", "10.0.1.2".parse().unwrap()).unwrap(), (1, 2));
        assert!(matches!(machine_of_address(&hosts, &p, "db", "10.0.1.3".parse().unwrap()), Err(PlanError::AddressTaken { .. })));
        let taken = machine_of_address(&hosts, &p, "web", "10.0.2.2".parse().unwrap());
        assert!(matches!(taken, Err(PlanError::AddressTaken { ref owner, .. }) if owner == "printer"), "a foreign line: {taken:?}");
        assert!(matches!(machine_of_address(&hosts, &p, "db", "192.0.2.1".parse().unwrap()), Err(PlanError::NotInPrefix { .. })));
        assert!(matches!(machine_of_address(&hosts, &p, "db", "10.0.5.200".parse().unwrap()), Err(PlanError::NotInPrefix { .. })), "host-side half");
    }

    #[test]
    fn a_new_line_is_appended_and_a_clash_rewrites() {
        let names = |n: &str| vec![n.to_string(), format!("{n}.x")];
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let hosts = view("# mine\n10.0.1.1 web web.x\n", "10.0.0.0/8");
        assert_eq!(hosts_edit(&hosts, ip("10.0.1.1"), &names("web")), HostsEdit::Keep);
        assert_eq!(hosts_edit(&hosts, ip("10.0.2.1"), &names("db")), HostsEdit::Append);
        assert_eq!(hosts_edit(&hosts, ip("10.0.1.1"), &names("db")), HostsEdit::Rewrite, "the address is web's");
        assert_eq!(hosts_edit(&hosts, ip("10.0.3.1"), &names("web")), HostsEdit::Rewrite, "web is at another address");
        let unterminated = view("10.0.1.1 web web.x", "10.0.0.0/8");
        assert_eq!(hosts_edit(&unterminated, ip("10.0.2.1"), &names("db")), HostsEdit::Rewrite, "appending would join two lines");
    }

    #[test]
    fn file_edits_match_whole_fields_and_keep_other_lines() {
        let p = prefix("10.0.0.0/8");
        let hosts = "# mine\n192.0.2.1 printer\n10.0.0.10 dom10 dom10.x\n10.0.0.1 old old.x\n";
        let names = ["dom1".to_string(), "dom1.x".to_string()];
        let with = hosts_with(hosts, &p, "10.0.0.1".parse().unwrap(), &names);
        assert_eq!(with, "# mine\n192.0.2.1 printer\n10.0.0.10 dom10 dom10.x\n10.0.0.1 dom1 dom1.x\n");
        assert_eq!(hosts_with(&with, &p, "10.0.0.1".parse().unwrap(), &names), with, "twice is once");
    }
}
