//! Bridge mode on the real kernel: a dom0 namespace with the bridge, a lan host behind an
//! uplink veth, and guests in namespaces of their own on veth pairs named like netback's vifs.
//! Assertions are about what the other side sees: replies, the lan host's neighbour table.

mod common;

use common::*;

struct Lab {
    dom0: Netns,
    lan: Netns,
    guests: Vec<Netns>,
    dirs: Dirs,
}

const LAN_IP: &str = "192.0.2.1";
const LAN_IP6: &str = "2001:db8::1";

fn guest_ip(i: usize) -> String {
    format!("192.0.2.{}", 10 + i)
}
fn guest_ip6(i: usize) -> String {
    format!("2001:db8::{}", 10 + i)
}
fn guest_mac(i: usize) -> String {
    format!("00:16:3e:00:00:{:02x}", i)
}

/// dom0 with bridge xenbr0 (made by `network bridge start`) and the lan host on it; guests
/// 1..=n plugged in as vif<i>.0 but not yet online.
fn lab(n: usize) -> Lab {
    let dom0 = Netns::new("dom0");
    let lan = Netns::new("lan");
    let dirs = Dirs::new();
    veth(&dom0, "up0", &lan, "eth0");
    lan.ok(&["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"]);
    lan.ok(&["ip", "addr", "add", &format!("{LAN_IP}/24"), "dev", "eth0"]);
    lan.ok(&["ip", "addr", "add", &format!("{LAN_IP6}/64"), "dev", "eth0", "nodad"]);
    lan.ok(&["ip", "link", "set", "eth0", "up"]);
    vifnet_ok(&dom0, &dirs, &[], &["network", "bridge", "start"]);
    dom0.ok(&["ip", "link", "set", "up0", "master", "xenbr0", "up"]);
    lan.wait_up("eth0");
    let guests = (1..=n)
        .map(|i| {
            let g = Netns::new(&format!("g{i}"));
            veth(&dom0, &format!("vif{i}.0"), &g, "eth0");
            g.ok(&["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"]);
            g.ok(&["ip", "link", "set", "eth0", "address", &guest_mac(i)]);
            g.ok(&["ip", "addr", "add", &format!("{}/24", guest_ip(i)), "dev", "eth0"]);
            g.ok(&["ip", "addr", "add", &format!("{}/64", guest_ip6(i)), "dev", "eth0", "nodad"]);
            g.ok(&["ip", "link", "set", "eth0", "up"]);
            g
        })
        .collect();
    Lab { dom0, lan, guests, dirs }
}

impl Lab {
    fn online(&self, i: usize, extra: &[&str]) {
        let vif = format!("vif=vif{i}.0");
        let mac = format!("mac={}", guest_mac(i));
        let ip = format!("ip={} {}", guest_ip(i), guest_ip6(i));
        let mut args = vec!["vif", "bridge", "online", vif.as_str(), mac.as_str(), ip.as_str()];
        args.extend_from_slice(extra);
        vifnet_ok(&self.dom0, &self.dirs, &[], &args);
        self.dom0.wait_up(&format!("vif{i}.0"));
        self.guest(i).wait_up("eth0");
    }
    fn offline(&self, i: usize) {
        vifnet_ok(&self.dom0, &self.dirs, &[], &["vif", "bridge", "offline", &format!("vif=vif{i}.0")]);
    }
    fn guest(&self, i: usize) -> &Netns {
        &self.guests[i - 1]
    }
    fn nft_elements(&self) -> String {
        let out = self.dom0.run(&["nft", "list", "table", "bridge", "vifnet"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().filter(|l| l.contains("elements") || l.trim_start().starts_with('"')).collect::<Vec<_>>().join("\n")
    }
}

#[test]
fn guest_pings_lan_host_through_bridge() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(1);
    lab.online(1, &[]);
    assert!(lab.guest(1).pings(LAN_IP), "IPv4 through the bridge");
    assert!(lab.guest(1).pings(LAN_IP6), "IPv6 through the bridge");
    assert!(lab.lan.pings(&guest_ip(1)), "and back");
    // The host side of the vif looks as Xen makes it.
    assert_eq!(mac_of(&lab.dom0, "vif1.0"), "fe:ff:ff:ff:ff:ff");
    let link = lab.dom0.ok(&["ip", "-j", "link", "show", "dev", "vif1.0"]);
    assert!(link.contains("\"master\":\"xenbr0\""), "{link}");
}

#[test]
fn spoofed_ip_from_guest_is_dropped_while_honest_guest_works() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(2);
    lab.online(1, &[]);
    lab.online(2, &[]);
    // Guest 2 takes an address that is not its own.
    let g2 = lab.guest(2);
    g2.ok(&["ip", "addr", "flush", "dev", "eth0"]);
    g2.ok(&["ip", "addr", "add", "192.0.2.99/24", "dev", "eth0"]);
    g2.ok(&["ip", "addr", "add", "2001:db8::99/64", "dev", "eth0", "nodad"]);
    // The guest knows the lan host's MAC already, so its packets are sent (ARP from the
    // spoofed address would be dropped first), and the lan host counts what arrives.
    let lan_mac = mac_of(&lab.lan, "eth0");
    g2.ok(&["ip", "neigh", "replace", LAN_IP, "lladdr", &lan_mac, "dev", "eth0", "nud", "permanent"]);
    g2.ok(&["ip", "neigh", "replace", LAN_IP6, "lladdr", &lan_mac, "dev", "eth0", "nud", "permanent"]);
    lab.lan.ok(&["nft", "add table inet seen; add chain inet seen c { type filter hook prerouting priority 0; }; add rule inet seen c ip saddr 192.0.2.99 counter; add rule inet seen c ip6 saddr 2001:db8::99 counter"]);
    assert!(!g2.pings(LAN_IP), "a spoofed IPv4 source must not reach the lan host");
    assert!(!g2.pings(LAN_IP6), "a spoofed IPv6 source must not reach the lan host");
    assert!(lab.guest(1).pings(LAN_IP), "the honest guest still does");
    assert!(lab.guest(1).pings(LAN_IP6));
    let seen = lab.lan.ok(&["nft", "list", "chain", "inet", "seen", "c"]);
    assert_eq!(seen.matches("packets 0 ").count(), 2, "the lan host saw a spoofed packet: {seen}");
    let guard = lab.dom0.ok(&["nft", "list", "chain", "bridge", "vifnet", "guard"]);
    for rule in ["iifname . ip saddr != @vif_ip4", "iifname . ip6 saddr != @vif_ip6"] {
        let line = guard.lines().find(|l| l.contains(rule)).unwrap_or_else(|| panic!("no rule {rule} in {guard}"));
        assert!(!line.contains("packets 0 "), "the drops are counted: {line}");
    }
}

#[test]
fn spoofed_mac_from_guest_is_dropped() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(2);
    lab.online(1, &[]);
    lab.online(2, &[]);
    let g2 = lab.guest(2);
    g2.ok(&["ip", "link", "set", "eth0", "address", "00:16:3e:00:00:77"]);
    assert!(!g2.pings(LAN_IP), "a frame from another MAC must not pass");
    assert!(lab.guest(1).pings(LAN_IP));
}

#[test]
fn forged_arp_from_guest_does_not_poison_lan() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(3);
    lab.online(1, &[]);
    lab.online(2, &[]);
    // Guest 3 has no antispoofing: the control that shows the forged request would work.
    lab.online(3, &["antispoof=no"]);
    // Honest traffic first: every port forwards (a fresh port may drop frames for up to a
    // second), and the lan host knows each guest's real MAC, which a forgery would replace.
    for i in 1..=3 {
        assert!(lab.guest(i).pings(LAN_IP), "guest {i}");
    }
    let lan_ip = [192, 0, 2, 1];
    let victim = [192, 0, 2, 11]; // guest 1's address
    let g2_mac = parse_mac(&guest_mac(2));
    let g3_mac = parse_mac(&guest_mac(3));

    // Guest 2, from its own MAC, claims guest 1's address.
    send_frame(lab.guest(2), "eth0", arp_request(g2_mac, g2_mac, victim, lan_ip));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_ne!(neighbour(&lab.lan, "eth0", "192.0.2.11").as_deref(), Some(guest_mac(2).as_str()), "poisoned by a guarded guest");
    // Guest 2 lies in the ARP body about its MAC.
    send_frame(lab.guest(2), "eth0", arp_request(g2_mac, g3_mac, [192, 0, 2, 12], lan_ip));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_ne!(neighbour(&lab.lan, "eth0", "192.0.2.12").as_deref(), Some(guest_mac(3).as_str()));

    // The same lie from the unguarded guest does poison: the test can see poisoning.
    send_frame(lab.guest(3), "eth0", arp_request(g3_mac, g3_mac, victim, lan_ip));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(neighbour(&lab.lan, "eth0", "192.0.2.11").as_deref(), Some(guest_mac(3).as_str()), "control: unguarded ARP is accepted");

    // And the honest guest resolves and reaches the lan host.
    lab.lan.ok(&["ip", "neigh", "flush", "dev", "eth0"]);
    assert!(lab.guest(1).pings(LAN_IP));
    assert_eq!(neighbour(&lab.lan, "eth0", "192.0.2.11").as_deref(), Some(guest_mac(1).as_str()));
}

#[test]
fn dhcp_client_traffic_passes_before_a_lease() {
    if !root_or_skip() {
        return;
    }
    // A guest with no address yet sends 0.0.0.0:68 -> 255.255.255.255:67; the lan host sees it.
    let lab = lab(1);
    lab.online(1, &[]);
    let g = lab.guest(1);
    g.ok(&["ip", "addr", "flush", "dev", "eth0"]);
    let frame = dhcp_discover(parse_mac(&guest_mac(1)));
    lab.lan.ok(&["nft", "add table inet t; add chain inet t c { type filter hook prerouting priority 0; }; add rule inet t c udp dport 67 counter"]);
    // A fresh port can lose the first frames for reasons of the kernel's own (as a DHCP
    // client's first DISCOVER may be); a client retries, and so does this test.
    let mut arrived = false;
    for _ in 0..15 {
        send_frame(g, "eth0", frame.clone());
        std::thread::sleep(std::time::Duration::from_millis(200));
        if !lab.lan.ok(&["nft", "list", "chain", "inet", "t", "c"]).contains("packets 0 ") {
            arrived = true;
            break;
        }
    }
    assert!(arrived, "the DISCOVER never reached the lan host");
    let guard = lab.dom0.ok(&["nft", "list", "chain", "bridge", "vifnet", "guard"]);
    let ip_drops = guard.lines().find(|l| l.contains("ip saddr != @vif_ip4")).unwrap();
    assert!(ip_drops.contains("packets 0 "), "no DHCP frame was dropped by antispoofing: {ip_drops}");
}

/// A minimal DHCPDISCOVER frame (the checks look only at the headers).
fn dhcp_discover(mac: [u8; 6]) -> Vec<u8> {
    let mut bootp = vec![1u8, 1, 6, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0];
    bootp.extend([0u8; 16]);
    bootp.extend(mac);
    bootp.extend([0u8; 10 + 192]);
    bootp.extend([99, 130, 83, 99, 53, 1, 1, 255]);
    let udp_len = 8 + bootp.len();
    let mut udp = vec![0, 68, 0, 67, (udp_len >> 8) as u8, udp_len as u8, 0, 0];
    udp.extend(bootp);
    let ip_len = 20 + udp.len();
    let mut ip = vec![0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255];
    let sum = checksum(&ip);
    ip[10] = (sum >> 8) as u8;
    ip[11] = sum as u8;
    ip.extend(udp);
    let mut f = vec![0xff; 6];
    f.extend(mac);
    f.extend([0x08, 0x00]);
    f.extend(ip);
    f
}

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = b.chunks(2).map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0))).sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

#[test]
fn online_twice_is_online_once_and_offline_leaves_nothing() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(1);
    lab.online(1, &[]);
    let first = lab.nft_elements();
    lab.online(1, &[]);
    assert_eq!(lab.nft_elements(), first, "a second online adds nothing");
    assert!(lab.guest(1).pings(LAN_IP));
    lab.offline(1);
    lab.offline(1);
    assert_eq!(lab.nft_elements(), "", "no element of the vif is left");
    assert_eq!(lab.dirs.journal_count(), 0, "no journal is left");
    let link = lab.dom0.ok(&["ip", "-j", "link", "show", "dev", "vif1.0"]);
    assert!(!link.contains("\"master\""), "not enslaved any more: {link}");
    // network bridge stop removes the bridge we made and the table.
    lab.dom0.ok(&["ip", "link", "set", "up0", "nomaster"]);
    vifnet_ok(&lab.dom0, &lab.dirs, &[], &["network", "bridge", "stop"]);
    assert!(!lab.dom0.succeeds(&["ip", "link", "show", "xenbr0"]));
    assert_eq!(lab.dom0.ok(&["nft", "list", "ruleset"]).trim(), "");
}

/// After a firewall reload (`nft flush ruleset`) with guests on the bridge, a spoofed
/// source would pass; `network bridge start` puts the filters back and it is dropped again.
/// Offline after another flush still succeeds.
#[test]
fn start_after_a_ruleset_flush_puts_the_filters_back() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(2);
    lab.online(1, &[]);
    lab.online(2, &[]);
    let ruleset = lab.dom0.ok(&["nft", "-s", "list", "ruleset"]);
    lab.dom0.ok(&["nft", "flush", "ruleset"]);
    // Without the filters a forged source passes (the lan host answers it).
    lab.guest(2).ok(&["ip", "addr", "add", "192.0.2.98/32", "dev", "eth0"]);
    assert!(lab.guest(2).succeeds(&["ping", "-c", "1", "-w", "2", "-q", "-I", "192.0.2.98", LAN_IP]), "the flush took the filters");
    lab.guest(2).ok(&["ip", "addr", "del", "192.0.2.98/32", "dev", "eth0"]);
    vifnet_ok(&lab.dom0, &lab.dirs, &[], &["network", "bridge", "start"]);
    assert_eq!(lab.dom0.ok(&["nft", "-s", "list", "ruleset"]), ruleset, "both guests' filters, nothing more");
    // A forged source from guest 2, counted by the lan host: dropped again.
    let g2 = lab.guest(2);
    g2.ok(&["ip", "addr", "add", "192.0.2.99/32", "dev", "eth0"]);
    g2.ok(&["ip", "neigh", "replace", LAN_IP, "lladdr", &mac_of(&lab.lan, "eth0"), "dev", "eth0", "nud", "permanent"]);
    lab.lan.ok(&["nft", "add table inet seen; add chain inet seen c { type filter hook prerouting priority 0; }; add rule inet seen c ip saddr 192.0.2.99 counter"]);
    let _ = g2.run(&["ping", "-c", "2", "-i", "0.2", "-w", "1", "-q", "-I", "192.0.2.99", LAN_IP]);
    let seen = lab.lan.ok(&["nft", "list", "chain", "inet", "seen", "c"]);
    assert!(seen.contains("packets 0 "), "the lan host saw the forged packets: {seen}");
    assert!(lab.guest(1).pings(LAN_IP));
    lab.dom0.ok(&["nft", "flush", "ruleset"]);
    lab.offline(1);
    lab.offline(2);
    assert_eq!(lab.dirs.journal_count(), 0);
    assert_eq!(lab.dom0.ok(&["nft", "list", "ruleset"]).trim(), "");
}

#[test]
fn offline_after_the_vif_is_gone_cleans_up_from_the_journal() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(1);
    lab.online(1, &[]);
    // libxl runs offline after netback destroyed the device, with xenstore gone too.
    lab.dom0.ok(&["ip", "link", "del", "vif1.0"]);
    lab.offline(1);
    assert_eq!(lab.nft_elements(), "");
    assert_eq!(lab.dirs.journal_count(), 0);
}

#[test]
fn changed_addresses_on_a_second_online_replace_the_old_ones() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(1);
    lab.online(1, &[]);
    vifnet_ok(&lab.dom0, &lab.dirs, &[], &["vif", "bridge", "online", "vif=vif1.0", &format!("mac={}", guest_mac(1)), "ip=192.0.2.50"]);
    let e = lab.nft_elements();
    assert!(e.contains("192.0.2.50") && !e.contains("192.0.2.11"), "{e}");
}

#[test]
fn vifname_renames_the_vif_and_a_taken_name_is_refused() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(2);
    vifnet_ok(&lab.dom0, &lab.dirs, &[], &["vif", "bridge", "online", "vif=vif1.0", "vifname=web0"]);
    lab.dom0.wait_up("web0");
    lab.guest(1).wait_up("eth0");
    assert!(lab.dom0.succeeds(&["ip", "link", "show", "web0"]));
    assert!(lab.guest(1).pings(LAN_IP));
    let status = vifnet_ok(&lab.dom0, &lab.dirs, &[], &["status", "--json"]);
    assert!(status.contains("\"name\": \"web0\""), "{status}");
    // A second guest asking for the same name.
    let out = vifnet(&lab.dom0, &lab.dirs, &[], &["vif", "bridge", "online", "vif=vif2.0", "vifname=web0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vifname web0: cannot rename vif2.0: an interface named web0 already exists"), "{err}");
    assert!(lab.dom0.succeeds(&["ip", "link", "show", "vif2.0"]), "the second vif is untouched");
    // offline with the kernel name still finds the renamed device through the journal.
    lab.offline(1);
    let link = lab.dom0.ok(&["ip", "-j", "link", "show", "dev", "web0"]);
    assert!(!link.contains("\"master\""));
}

#[test]
fn tap_devices_are_added_and_removed() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(0);
    lab.dom0.ok(&["ip", "tuntap", "add", "vif3.0-emu", "mode", "tap"]);
    let env = [("INTERFACE", "vif3.0-emu")];
    // online of a tap is a no-op (Xen's rule), add does the work.
    vifnet_ok(&lab.dom0, &lab.dirs, &env, &["vif", "bridge", "online", "type_if=tap"]);
    assert!(!lab.dom0.ok(&["ip", "-j", "link", "show", "dev", "vif3.0-emu"]).contains("master"));
    vifnet_ok(&lab.dom0, &lab.dirs, &env, &["vif", "bridge", "add", "type_if=tap", "mac=00:16:3e:00:00:03", "ip=192.0.2.13"]);
    assert!(lab.dom0.ok(&["ip", "-j", "link", "show", "dev", "vif3.0-emu"]).contains("\"master\":\"xenbr0\""));
    assert!(lab.nft_elements().contains("vif3.0-emu"));
    vifnet_ok(&lab.dom0, &lab.dirs, &env, &["vif", "bridge", "remove", "type_if=tap"]);
    assert_eq!(lab.nft_elements(), "");
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(1);
    let before = lab.dom0.ok(&["ip", "-j", "link"]);
    let plan = vifnet_ok(&lab.dom0, &lab.dirs, &[], &["vif", "bridge", "online", "vif=vif1.0", "mac=00:16:3e:00:00:01", "ip=192.0.2.11", "--dry-run"]);
    assert!(plan.contains("add element bridge vifnet vif_ip4 { \"vif1.0\" . 192.0.2.11 }"), "{plan}");
    assert!(plan.contains("master xenbr0 up"), "{plan}");
    assert_eq!(lab.dom0.ok(&["ip", "-j", "link"]), before);
    assert_eq!(lab.dirs.journal_count(), 0);
}

#[test]
fn concurrent_onlines_lose_nothing() {
    if !root_or_skip() {
        return;
    }
    let n = 12;
    let lab = lab(0);
    let g = Netns::new("many");
    for i in 1..=n {
        veth(&lab.dom0, &format!("vif{i}.0"), &g, &format!("e{i}"));
    }
    let children: Vec<_> = (1..=n)
        .map(|i| {
            let mut c = lab.dom0.cmd(&[vifnet_bin()]);
            c.args(["vif", "bridge", "online", &format!("vif=vif{i}.0"), &format!("mac={}", guest_mac(i)), &format!("ip={}", guest_ip(i))]);
            c.env("VIFNET_STATE_DIR", &lab.dirs.state).env("VIFNET_MODES_DIR", &lab.dirs.modes);
            c.spawn().unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let e = lab.nft_elements();
    for i in 1..=n {
        assert!(e.contains(&format!("\"vif{i}.0\" . {}", guest_ip(i))), "vif{i}.0 missing in {e}");
    }
    let status = vifnet_ok(&lab.dom0, &lab.dirs, &[], &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v.as_array().unwrap().len(), n);
}

#[test]
fn a_prefix_in_ip_allows_every_address_in_it_and_no_other() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(1);
    vifnet_ok(&lab.dom0, &lab.dirs, &[], &["vif", "bridge", "online", "vif=vif1.0", &format!("mac={}", guest_mac(1)), "ip=192.0.2.0/28"]);
    lab.dom0.wait_up("vif1.0");
    lab.guest(1).wait_up("eth0");
    assert!(lab.nft_elements().contains("\"vif1.0\" . 192.0.2.0/28"), "{}", lab.nft_elements());
    assert!(lab.guest(1).pings(LAN_IP), "192.0.2.11 is inside 192.0.2.0/28");
    let g = lab.guest(1);
    g.ok(&["ip", "addr", "add", "192.0.2.77/24", "dev", "eth0"]);
    assert!(!g.succeeds(&["ping", "-4", "-c", "1", "-w", "2", "-q", "-I", "192.0.2.77", LAN_IP]), "192.0.2.77 is outside it");
    lab.offline(1);
    assert_eq!(lab.nft_elements(), "");
}

/// Kills the daemon we started, by its PID, when the test ends.
struct Daemon(std::process::Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_guarded_guest_gets_its_lease_from_a_real_dhcp_server() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(1);
    lab.online(1, &[]);
    let g = lab.guest(1);
    g.ok(&["ip", "-4", "addr", "flush", "dev", "eth0"]);
    // dnsmasq on the lan host, DHCP only, with a reservation for the guest's MAC.
    let dnsmasq = lab
        .lan
        .cmd(&[
            "dnsmasq", "--keep-in-foreground", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=eth0", "--bind-interfaces",
            "--dhcp-range=192.0.2.100,192.0.2.200,255.255.255.0", &format!("--dhcp-host={},{}", guest_mac(1), guest_ip(1)),
            "--no-ping", "--dhcp-authoritative", "--leasefile-ro", "--pid-file=",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dnsmasq");
    let _dnsmasq = Daemon(dnsmasq);
    // udhcpc reports the lease through a script of ours, which only writes the address down.
    let dir = std::env::temp_dir().join(unique("dhcp"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("lease");
    let script = dir.join("script");
    std::fs::write(&script, format!("#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip $router\" > {}\nexit 0\n", out.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let got = g.run(&["udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "10", "-T", "1", "-s", script.to_str().unwrap()]);
    let lease = read(&out);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(got.status.success(), "udhcpc: {}", String::from_utf8_lossy(&got.stderr));
    assert_eq!(lease.split_whitespace().next(), Some(guest_ip(1).as_str()), "the guest leased its reserved address");
}

#[test]
fn started_as_vif_bridge_and_network_bridge_it_acts_as_those_scripts() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(1);
    let dir = std::env::temp_dir().join(unique("bin"));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["vif-bridge", "network-bridge"] {
        std::os::unix::fs::symlink(vifnet_bin(), dir.join(name)).unwrap();
    }
    let run = |script: &str, args: &[&str]| {
        let mut c = lab.dom0.cmd(&[dir.join(script).to_str().unwrap()]);
        c.args(args).env("VIFNET_STATE_DIR", &lab.dirs.state).env("VIFNET_MODES_DIR", &lab.dirs.modes).env("vif", "vif1.0");
        let out = c.output().unwrap();
        assert!(out.status.success(), "{script} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run("vif-bridge", &["online", "type_if=vif", &format!("mac={}", guest_mac(1)), &format!("ip={}", guest_ip(1))]);
    assert!(lab.nft_elements().contains("\"vif1.0\""));
    assert!(run("network-bridge", &["status"]).contains("vif1.0"));
    run("vif-bridge", &["offline", "type_if=vif"]);
    assert_eq!(lab.nft_elements(), "");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A second online of a vif that is up changes nothing at all: links, addresses (the
/// port's link-local one too), routes, the ruleset and the journal, byte for byte.
#[test]
fn a_second_online_changes_nothing_at_all() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(1);
    lab.online(1, &[]);
    let once = (host_dump(&lab.dom0), state_bytes(&lab.dirs));
    assert!(lab.dom0.ok(&["ip", "-6", "addr", "show", "dev", "vif1.0"]).contains("fe80::"), "the port has its link-local address");
    lab.online(1, &[]);
    assert_eq!((host_dump(&lab.dom0), state_bytes(&lab.dirs)), once);
    assert!(lab.guest(1).pings(LAN_IP));
}

/// `network bridge stop` with a guest on the bridge refuses and names it, as route and
/// nat mode do; a vif naming a bridge that does not exist is refused alike whether the
/// name came as an argument, from the environment or from xenstore, and nothing is made.
#[test]
fn bridge_stop_refuses_with_guests_and_a_missing_bridge_is_refused_from_every_source() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(1);
    lab.online(1, &[]);
    let out = vifnet(&lab.dom0, &lab.dirs, &[], &["network", "bridge", "stop"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("guests are still online in bridge mode (vif1.0)"), "{err}");
    assert!(lab.dom0.succeeds(&["ip", "link", "show", "xenbr0"]));
    lab.offline(1);
    let before = host_dump(&lab.dom0);
    let sock = std::env::temp_dir().join(unique("xs.sock"));
    let xs = vifnet::xenstore::fake::serve(&sock);
    xs.set("/local/domain/0/backend/vif/1/0/bridge", "xenbr7");
    let xenstore = [("XENBUS_PATH", "backend/vif/1/0"), ("XENSTORED_PATH", sock.to_str().unwrap()), ("vif", "vif1.0")];
    for (source, env, args) in [
        ("argument", vec![], vec!["vif", "bridge", "online", "vif=vif1.0", "bridge=xenbr7"]),
        ("environment", vec![("bridge", "xenbr7")], vec!["vif", "bridge", "online", "vif=vif1.0"]),
        ("xenstore", xenstore.to_vec(), vec!["vif", "bridge", "online", "type_if=vif"]),
    ] {
        let out = vifnet(&lab.dom0, &lab.dirs, &env, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{source}: {err}");
        assert_eq!(err.lines().count(), 1, "{source}: {err}");
        assert!(err.contains("bridge xenbr7: no such bridge"), "{source}: {err}");
        assert_eq!(host_dump(&lab.dom0), before, "{source}: nothing made");
    }
    assert!(xs.get("/local/domain/0/backend/vif/1/0/hotplug-error").unwrap().contains("bridge xenbr7: no such bridge"));
}

/// A port taken off its bridge by hand (or by another tool) is found by `check` and put
/// back by `check --repair`; the guest reaches the lan host again.
#[test]
fn check_finds_a_port_off_its_bridge_and_repair_puts_it_back() {
    if !root_or_skip() {
        return;
    }
    let lab = lab(1);
    lab.online(1, &[]);
    lab.dom0.ok(&["ip", "link", "set", "vif1.0", "nomaster"]);
    let out = vifnet(&lab.dom0, &lab.dirs, &[], &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "vif1.0: port vif1.0 of bridge xenbr0: not on bridge xenbr0\n");
    vifnet_ok(&lab.dom0, &lab.dirs, &[], &["check", "--repair"]);
    assert_eq!(vifnet_ok(&lab.dom0, &lab.dirs, &[], &["check"]), "all as recorded\n");
    lab.guest(1).wait_up("eth0");
    assert!(lab.guest(1).pings(LAN_IP));
}
