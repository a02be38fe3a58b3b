//! The modes measured: what each needs beyond the shared harness, and its floor (the same
//! kernel changes as one online or offline, made the cheapest way a shell can).

use std::path::Path;

use crate::host::{ip, ip_batch, vif, Ns};

/// What one mode's run needs beyond the shared harness.
pub struct Mode {
    pub name: &'static str,
    /// Names this run (namespaces, directories, rows, the word that runs it alone).
    pub run: &'static str,
    /// Printed above the figures.
    pub title: &'static str,
    /// `$VIFNET_MODES_DIR/<name>.toml`, given this run's temporary directory (for any
    /// file the mode edits); None: the shipped defaults.
    pub mode_file: fn(&Path) -> Option<String>,
    /// The backend keys that differ per mode (mac and frontend are common).
    pub keys: fn(u32) -> Vec<(&'static str, String)>,
    /// Keys outside the backend directory, as whole paths (the domain's name).
    pub domain_keys: fn(u32) -> Vec<(String, String)>,
    /// Host state the mode file refers to, made in dom0 before the first vif; the namespaces
    /// it returns are deleted at the end.
    pub setup: fn(dom0: &str, tag: &str) -> Vec<Ns>,
    /// `vifnet network <name> stop` after the last offline, undoing the host-wide part.
    pub stop: bool,
    /// The first online starts vifnet's dnsmasq (`<state>/dnsmasq.pid`); stop must end it.
    pub dnsmasq: bool,
    /// dnsmasq is stopped (SIGSTOP) while the calls are timed and continued after, so its
    /// own work (rereading the files on SIGHUP, going over the interfaces on each new
    /// address) stays out of the figures, as the target has it.
    pub pause_dnsmasq: bool,
    /// What must hold in this run's directory once every vif is offline again, given how
    /// many domains were ever online.
    pub check: fn(&Path, usize),
    /// Xen's script on the reference machine (xen-contract.md §7): online, offline ms.
    pub xen: (f64, f64),
    /// The numbers of guests online beside the measured one.
    pub levels: &'static [u32],
    /// Concurrent bursts (at 100 bystanders) and cold start/stop cycles.
    pub bursts: bool,
    pub cycles: bool,
    /// The floor of one online (true) or offline of domain `d`'s vif.
    pub floor: fn(d: u32, online: bool) -> Floor,
}

/// The cheapest shell version of one call: one `nft -f -`, one `ip -batch -`, and writes a
/// shell makes with its builtins (`echo 1 > /proc/sys/...`). nft first, as vifnet does it
/// (the filter is in place before the link is up, and gone first on the way down).
pub struct Floor {
    pub nft: String,
    pub ip: String,
    pub writes: Vec<(String, String)>,
}

pub const ALL: [Mode; 6] = [BRIDGE, ROUTE, ROUTE_PROXIED, NAT, NAT_LIVE, NAT_65K];

/// Guests online beside the measured one.
const LEVELS: &[u32] = &[0, 100, 1000, 4000];

const BRIDGE: Mode = Mode {
    name: "bridge",
    run: "bridge",
    title: "vif bridge: antispoof (MAC, ARP, IPv4, IPv6 link-local), port of one of 5 bridges",
    mode_file: |_| None,
    keys: |d| vec![("ip", bridge_ip(d)), ("bridge", bridge_of(d))],
    domain_keys: |_| Vec::new(),
    setup: more_bridges,
    stop: false,
    dnsmasq: false,
    pause_dnsmasq: false,
    check: |_, _| (),
    xen: (22.6, 68.5),
    levels: LEVELS,
    bursts: true,
    cycles: true,
    floor: bridge_floor,
};

/// The routed block of the issue: upstream routes it to the host, the gateway is answered
/// on each vif, one IPv4 and one IPv6 address per guest. The gateway link is a bridge
/// because this kernel has no dummy driver.
const ROUTE: Mode = Mode {
    name: "route",
    run: "route",
    title: "vif route: antispoof, gateway on each vif, 2 addresses per guest (IPv4 + IPv6)",
    mode_file: |_| Some("netdev = \"up0\"\ngateway = \"10.200.0.1/16 2001:db8:42::1/64\"\ngateway_kind = \"bridge\"\n".into()),
    keys: |d| vec![("ip", format!("{} {}", route_ip4(d), route_ip6(d)))],
    domain_keys: |_| Vec::new(),
    setup: uplink,
    stop: true,
    dnsmasq: false,
    pause_dnsmasq: false,
    check: |_, _| (),
    xen: (15.7, 74.2),
    levels: LEVELS,
    bursts: true,
    cycles: true,
    floor: |d, online| route_floor(d, online, false),
};

/// The heaviest per-vif path: the same, with upstream treating the block as on-link, so
/// each address is also proxied on the uplink and announced there.
const ROUTE_PROXIED: Mode = Mode {
    run: "route-proxied",
    title: "vif route with uplink_proxy: as above, plus proxy ARP/NDP entries on the uplink and announcements",
    mode_file: |_| Some("netdev = \"up0\"\ngateway = \"10.200.0.1/16 2001:db8:42::1/64\"\ngateway_kind = \"bridge\"\nuplink_proxy = true\n".into()),
    floor: |d, online| route_floor(d, online, true),
    ..ROUTE
};

/// Nat mode with our own dnsmasq: each guest's machine number from its domain's name in
/// the hosts file, its lease line in the ethers file, one SIGHUP to dnsmasq per call that
/// changed a file (dnsmasq, paused, rereads them after the timed calls). Both files are
/// this run's: vifnet runs here with only its network namespace changed, so the default
/// /etc/ethers would be the host's own. (dnsmasq's `read-ethers` still reads /etc/ethers,
/// only reads it; the run checks that the host's file is left as it was.)
const NAT: Mode = Mode {
    name: "nat",
    run: "nat",
    title: "vif nat: antispoof, masquerade, our dnsmasq paused (hosts and ethers edits, SIGHUP)",
    mode_file: |dir| {
        let (hosts, ethers) = (dir.join("hosts"), dir.join("ethers"));
        Some(format!("netdev = \"up0\"\nhosts = \"{}\"\nethers = \"{}\"\nrun_dnsmasq = true\n", hosts.display(), ethers.display()))
    },
    // As libxl writes them: the domid, and the vif's devid.
    keys: |d| vec![("frontend-id", d.to_string()), ("handle", "0".into())],
    domain_keys: |d| vec![(format!("/local/domain/{d}/name"), format!("guest{d}"))],
    setup: uplink,
    stop: true,
    dnsmasq: true,
    pause_dnsmasq: true,
    // Every domain keeps its numbered line; no lease line outlives its vif.
    check: |dir, domains| {
        let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap();
        assert_eq!(hosts.lines().count(), domains, "nat: one hosts line per domain ever online");
        let ethers = std::fs::read_to_string(dir.join("ethers")).unwrap();
        assert_eq!(ethers, "", "nat: ethers lines left after every offline");
    },
    xen: (27.9, 73.4),
    levels: LEVELS,
    bursts: true,
    cycles: true,
    floor: nat_floor,
};

/// The same with dnsmasq running throughout: on 2 cores, its reload and its rescans
/// compete with the next call. Only beside 0 and 100 guests, to keep the run short.
const NAT_LIVE: Mode = Mode {
    run: "nat-live",
    title: "vif nat, dnsmasq running during the timed calls (its work competing for the CPUs)",
    pause_dnsmasq: false,
    levels: &[0, 100],
    bursts: false,
    cycles: false,
    ..NAT
};

/// Machines the hosts file numbers before the run in `nat-65k`: nearly all of a /8's 65,536.
const NUMBERED: u32 = 65_000;

/// Nat mode with a hosts file that already numbers 65,000 machines (a host that has seen
/// that many domain names): each online finds its number and adds its line through the
/// file's index, not by reading and writing the whole file. The numbers above 65,000 are
/// the run's, so only 0 and 100 guests beside the measured one.
const NAT_65K: Mode = Mode {
    run: "nat-65k",
    title: "vif nat, the hosts file numbering 65,000 machines already (dnsmasq paused)",
    mode_file: |dir| {
        let mut hosts = String::with_capacity(40 * NUMBERED as usize);
        for m in 0..NUMBERED {
            hosts.push_str(&format!("10.{}.{}.1 old{m} old{m}.xen.internal\n", m >> 8, m & 0xff));
        }
        std::fs::write(dir.join("hosts"), hosts).unwrap();
        (NAT.mode_file)(dir)
    },
    check: |dir, domains| {
        let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap();
        assert_eq!(hosts.lines().count(), NUMBERED as usize + domains, "nat-65k: one line more per domain ever online");
        assert_eq!(std::fs::read_to_string(dir.join("ethers")).unwrap(), "", "nat-65k: ethers lines left after every offline");
    },
    levels: &[0, 100],
    bursts: false,
    cycles: false,
    ..NAT
};

fn mac(d: u32) -> String {
    format!("00:16:3e:00:{:02x}:{:02x}", d >> 8, d & 0xff)
}

pub fn common_keys(d: u32) -> Vec<(&'static str, String)> {
    vec![("mac", mac(d)), ("frontend", format!("/local/domain/{d}/device/vif/0"))]
}

/// A Linux bridge takes at most 1023 ports (BR_MAX_PORTS, EXFULL beyond), so 4000 guests
/// need several: domain d's vif joins xenbr(d mod 5). xenbr0 is the mode's own, which
/// vifnet makes; the others are made here, as an administrator would.
const BRIDGES: u32 = 5;
fn bridge_of(d: u32) -> String {
    format!("xenbr{}", d % BRIDGES)
}
fn more_bridges(dom0: &str, _tag: &str) -> Vec<Ns> {
    let batch: String = (1..BRIDGES).map(|b| format!("link add xenbr{b} type bridge stp_state 0 forward_delay 0\nlink set xenbr{b} up\n")).collect();
    ip_batch(dom0, &batch);
    Vec::new()
}

fn bridge_ip(d: u32) -> String {
    format!("10.{}.{}.2", d >> 8, d & 0xff)
}

/// Inside the gateway's prefixes, clear of the gateway itself (10.200.0.1, ::1).
fn route_ip4(d: u32) -> String {
    format!("10.200.{}.{}", (d >> 8) + 1, d & 0xff)
}
fn route_ip6(d: u32) -> String {
    format!("2001:db8:42::1:{d:x}")
}

/// The uplink: a veth to an upstream namespace, so announcements leave on a real link.
fn uplink(dom0: &str, tag: &str) -> Vec<Ns> {
    let up = Ns::new(format!("{tag}-up"));
    ip(&["-n", dom0, "link", "add", "up0", "type", "veth", "peer", "name", "lan0", "netns", &up.0]);
    ip_batch(dom0, "addr add 198.51.100.2/24 dev up0\naddr add 2001:db8:1::2/64 dev up0 nodad\nlink set up0 up\n");
    ip_batch(&up.0, "addr add 198.51.100.1/24 dev lan0\nlink set lan0 up\n");
    vec![up]
}

/// `nft -f -` input adding or deleting elements, as `vifnet --dry-run` prints them.
fn elements(online: bool, family: &str, elems: &[(&str, String)]) -> String {
    let verb = if online { "add" } else { "delete" };
    elems.iter().map(|(set, e)| format!("{verb} element {family} vifnet {set} {{ {e} }}\n")).collect()
}

/// What `vifnet vif bridge online --dry-run` prints for a new port, and offline's reverse.
fn bridge_floor(d: u32, online: bool) -> Floor {
    let v = vif(d);
    // The guest's link-local address, from its MAC (EUI-64).
    let ll = format!("fe80::216:3eff:fe00:{:x}", d & 0xffff);
    let nft = elements(
        online,
        "bridge",
        &[
            ("guarded", format!("\"{v}\"")),
            ("vif_mac", format!("\"{v}\" . {}", mac(d))),
            ("vif_ip4", format!("\"{v}\" . {}", bridge_ip(d))),
            ("vif_ip6", format!("\"{v}\" . {ll}")),
        ],
    );
    let ip = if online {
        format!("link set {v} down address fe:ff:ff:ff:ff:ff\naddr flush dev {v}\nlink set {v} mtu 1500 master {} up\n", bridge_of(d))
    } else {
        format!("link set {v} down nomaster\n")
    };
    Floor { nft, ip, writes: Vec::new() }
}

/// Route mode's online: elements, link up, the gateway's addresses on the vif, a host route
/// per guest address, and with `proxied` a proxy entry per address on the uplink. (The
/// announcements vifnet sends on the uplink have no cheap shell equivalent and Xen's
/// scripts send none: the floor leaves them out.)
fn route_floor(d: u32, online: bool, proxied: bool) -> Floor {
    let (v, a4, a6) = (vif(d), route_ip4(d), route_ip6(d));
    let nft = elements(
        online,
        "inet",
        &[("guarded", format!("\"{v}\"")), ("vif_ip4", format!("\"{v}\" . {a4}")), ("vif_ip6", format!("\"{v}\" . {a6}"))],
    );
    let proxies = if proxied { format!("neigh {{}} proxy {a4} dev up0 proto 118\nneigh {{}} proxy {a6} dev up0 proto 118\n") } else { String::new() };
    let ip = if online {
        format!(
            "link set {v} up\naddr add 10.200.0.1/32 dev {v}\naddr add 2001:db8:42::1/128 dev {v} nodad\n\
             route add {a4}/32 dev {v} proto 118 metric 2\nroute add {a6}/128 dev {v} proto 118 metric 2\n{}",
            proxies.replace("{}", "add")
        )
    } else {
        format!(
            "{}route del {a6}/128 dev {v} proto 118 metric 2\nroute del {a4}/32 dev {v} proto 118 metric 2\n\
             addr del 2001:db8:42::1/128 dev {v}\naddr del 10.200.0.1/32 dev {v}\nlink set {v} down\n",
            proxies.replace("{}", "del").replace(" proto 118", "")
        )
    };
    Floor { nft, ip, writes: Vec::new() }
}

/// Nat mode's online: elements, link up, the host side's address, the route to the guest,
/// proxy ARP on the vif. The addresses are the scheme's (guest `.1`, host side `.129`) in
/// a block vifnet does not number from. The hosts and ethers edits and the SIGHUP are
/// files and a signal, not kernel changes: the floor leaves them out.
fn nat_floor(d: u32, online: bool) -> Floor {
    let v = vif(d);
    let (guest, host) = (format!("10.250.{}.1", d % 250), format!("10.250.{}.129", d % 250));
    let nft = elements(online, "inet", &[("guarded", format!("\"{v}\"")), ("vif_ip4", format!("\"{v}\" . {guest}"))]);
    let ip = if online {
        format!("link set {v} up\naddr add {host}/32 dev {v}\nroute add {guest}/32 dev {v} proto 118 metric 2\n")
    } else {
        format!("route del {guest}/32 dev {v} proto 118 metric 2\naddr del {host}/32 dev {v}\nlink set {v} down\n")
    };
    let writes = vec![(format!("/proc/sys/net/ipv4/conf/{v}/proxy_arp"), if online { "1" } else { "0" }.to_string())];
    Floor { nft, ip, writes }
}
