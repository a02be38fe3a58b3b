//! What needs a full dom0 kernel: dummy links made through netlink (with module autoload)
//! and uplinks that are bonds or VLANs. `make test` runs this file twice: on this machine's
//! kernel, and in the kernel lane (tests/lanes/kernel.sh, Debian 12's kernel under QEMU),
//! where the `#[ignore]`d tests run too: they need drivers this machine's kernel lacks, or
//! change the VM's own init namespace.

mod common;

use std::process::Command;

use common::*;

/// Whether this kernel can make dummy links (this machine's cannot; Debian's can).
fn kernel_has_dummy() -> bool {
    let ns = Netns::new("probe");
    ns.succeeds(&["ip", "link", "add", "probe0", "type", "dummy"])
}

/// The host-only network of Xen's documentation, `network-bridge netdev=dummy0`: vifnet
/// makes the dummy itself, a guest reaches the host over the bridge, and `stop` removes
/// both again. Where the kernel has no dummy driver: one line saying so, nothing changed.
#[test]
fn a_missing_dummy_uplink_is_made_or_refused_clearly() {
    if !root_or_skip() {
        return;
    }
    let dom0 = Netns::new("dum");
    let dirs = Dirs::new();
    let start = ["network", "bridge", "start", "bridge=xenbr0", "netdev=dummy0", "takeover=yes"];
    if !kernel_has_dummy() {
        let before = dom0.ok(&["ip", "-j", "link"]);
        let out = vifnet(&dom0, &dirs, &[], &start);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("dummy0") && err.contains("no dummy driver"), "{err}");
        assert_eq!(dom0.ok(&["ip", "-j", "link"]), before, "nothing made");
        return;
    }
    for round in 0..2 {
        vifnet_ok(&dom0, &dirs, &[], &start);
        vifnet_ok(&dom0, &dirs, &[], &start); // twice is once
        let link = dom0.ok(&["ip", "-j", "-d", "link", "show", "dev", "dummy0"]);
        assert!(link.contains("\"master\":\"xenbr0\"") && link.contains("\"ifalias\":\"vifnet\""), "round {round}: {link}");

        // A guest on the bridge reaches the host's address on it.
        let guest = Netns::new("dumg");
        veth(&dom0, "vif1.0", &guest, "eth0");
        dom0.ok(&["ip", "addr", "replace", "10.99.0.1/24", "dev", "xenbr0"]);
        guest.ok(&["ip", "link", "set", "eth0", "address", "00:16:3e:00:00:01"]);
        guest.ok(&["ip", "addr", "add", "10.99.0.2/24", "dev", "eth0"]);
        guest.ok(&["ip", "link", "set", "eth0", "up"]);
        vifnet_ok(&dom0, &dirs, &[], &["vif", "bridge", "online", "vif=vif1.0", "mac=00:16:3e:00:00:01", "ip=10.99.0.2"]);
        dom0.wait_up("vif1.0");
        guest.wait_up("eth0");
        assert!(guest.pings("10.99.0.1"), "round {round}: guest to host over the host-only bridge");
        vifnet_ok(&dom0, &dirs, &[], &["vif", "bridge", "offline", "vif=vif1.0"]);
        dom0.ok(&["ip", "link", "del", "vif1.0"]);

        vifnet_ok(&dom0, &dirs, &[], &["network", "bridge", "stop", "bridge=xenbr0"]);
        assert!(!dom0.succeeds(&["ip", "link", "show", "dummy0"]), "the dummy we made is gone");
        assert!(!dom0.succeeds(&["ip", "link", "show", "xenbr0"]), "and the bridge");
    }
}

/// The first dummy link asked for makes the kernel load dummy.ko, which creates `dummy0`
/// in the init namespace itself: the RTM_NEWLINK for that very name then fails with EEXIST.
/// vifnet adopts it (it asked for it), and a later start, with the module loaded and no
/// `dummy0`, makes it the plain way.
#[test]
#[ignore = "kernel lane: changes the init namespace and unloads modules"]
fn dummy0_made_by_module_autoload_is_adopted() {
    let dirs = Dirs::new();
    let _ = Command::new("modprobe").args(["-r", "dummy"]).status();
    assert!(!std::path::Path::new("/sys/module/dummy").exists(), "dummy.ko must not be loaded yet");
    let start = ["network", "bridge", "start", "bridge=xenbr7", "netdev=dummy0", "takeover=yes"];
    for round in ["autoload, EEXIST", "module loaded"] {
        let out = vifnet_here(&dirs, &start);
        assert!(out.status.success(), "{round}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(std::path::Path::new("/sys/module/dummy").exists());
        let link = sh("ip -j -d link show dev dummy0");
        assert!(link.contains("\"master\":\"xenbr7\"") && link.contains("\"ifalias\":\"vifnet\""), "{round}: {link}");
        let out = vifnet_here(&dirs, &["network", "bridge", "stop", "bridge=xenbr7"]);
        assert!(out.status.success(), "{round}: {}", String::from_utf8_lossy(&out.stderr));
        let links = sh("ip -br link");
        assert!(!links.contains("dummy0") && !links.contains("xenbr7"), "{round}: left behind:\n{links}");
    }
}

/// The same for bonding, whose autoload makes `bond0`: an administrator's
/// `ip link add bond0 type bond` then fails with EEXIST and uses the autoloaded one, and
/// vifnet takes that over like any other uplink. A missing bond is not made (vifnet
/// cannot know its slaves): one line naming it.
#[test]
#[ignore = "kernel lane: changes the init namespace and unloads modules"]
fn bond0_made_by_module_autoload_is_taken_over() {
    let dirs = Dirs::new();
    let _ = Command::new("modprobe").args(["-r", "bonding"]).status();
    let start = ["network", "bridge", "start", "bridge=xenbr8", "netdev=bond0", "takeover=yes"];
    let out = vifnet_here(&dirs, &start);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("netdev bond0: no such link") && err.lines().count() == 1, "{err}");

    let add = Command::new("ip").args(["link", "add", "bond0", "type", "bond"]).output().unwrap();
    assert!(String::from_utf8_lossy(&add.stderr).contains("File exists"), "autoload made bond0 first");
    // A NIC under the bond (a veth whose far end is up), as on a real dom0.
    let lan = Netns::new("bnl");
    sh(&format!("ip link add bslave type veth peer name eth0 netns {} && ip link set bslave master bond0", lan.name));
    lan.ok(&["ip", "link", "set", "eth0", "up"]);
    sh("sysctl -qw net.ipv6.conf.bond0.accept_dad=0");
    sh("ip addr add 192.0.2.2/24 dev bond0 && ip link set bond0 up && ip route add 10.6.0.0/16 via 192.0.2.254 dev bond0");
    // The bond reports carrier (and gets its link-local address) once its slave is up.
    let settled = (0..500).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        sh("ip -j addr show dev bond0").contains("\"operstate\":\"UP\"") && sh("ip -j addr show dev bond0").contains("fe80::")
    });
    assert!(settled, "bond0 up: {}", sh("ip -j addr show dev bond0"));
    let snapshot = || (sh("ip -j addr show dev bond0"), sh("ip -j route show table all"));
    let before = snapshot();
    let out = vifnet_here(&dirs, &start);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(sh("ip -j addr show dev xenbr8").contains("192.0.2.2"));
    assert!(sh("ip route show table all").contains("10.6.0.0/16 via 192.0.2.254 dev xenbr8"));
    let out = vifnet_here(&dirs, &["network", "bridge", "stop", "bridge=xenbr8"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(snapshot(), before);
    sh("ip link del bond0");
}

/// A dom0 whose uplink `uplink` (made by `make`: a bond over a NIC, or a VLAN on one)
/// talks to a lan host's `lan0`; takeover and back must leave addresses, routes and MAC as they were.
fn takeover_round_trip(uplink: &str, make: &dyn Fn(&Netns, &Netns)) {
    let dom0 = Netns::new("kdo");
    let lan = Netns::new("kla");
    dom0.no_dad();
    lan.no_dad();
    let dirs = Dirs::new();
    veth(&dom0, "eth0", &lan, "eth0");
    make(&dom0, &lan);
    for (ns, dev, a4, a6) in [(&dom0, uplink, "198.51.100.2/24", "2001:db8:1::2/64"), (&lan, "lan0", "198.51.100.1/24", "2001:db8:1::1/64")] {
        ns.ok(&["ip", "addr", "add", a4, "dev", dev]);
        ns.ok(&["ip", "addr", "add", a6, "dev", dev, "nodad"]);
        ns.ok(&["ip", "link", "set", dev, "up"]);
    }
    dom0.ok(&["ip", "route", "add", "default", "via", "198.51.100.1", "dev", uplink]);
    dom0.ok(&["ip", "route", "add", "10.9.0.0/16", "via", "198.51.100.254", "dev", uplink, "metric", "50"]);
    dom0.ok(&["ip", "-6", "route", "add", "2001:db8:9::/48", "via", "2001:db8:1::1", "dev", uplink]);
    dom0.wait_up(uplink);
    let before = uplink_snapshot(&dom0, uplink);
    let start = ["network", "bridge", "start", "bridge=xenbr0", &format!("netdev={uplink}"), "takeover=yes"];
    vifnet_ok(&dom0, &dirs, &[], &start);
    assert!(dom0.ok(&["ip", "-j", "addr", "show", "dev", "xenbr0"]).contains("198.51.100.2"));
    assert_eq!(mac_of(&dom0, "xenbr0"), before[3], "the bridge carries the uplink's MAC");
    dom0.wait_up("xenbr0");
    assert!(lan.pings("198.51.100.2"), "the host answers on the bridge through the {uplink}");
    assert!(lan.pings("2001:db8:1::2"));
    vifnet_ok(&dom0, &dirs, &[], &["network", "bridge", "stop", "bridge=xenbr0"]);
    assert_eq!(uplink_snapshot(&dom0, uplink), before);
    assert!(lan.pings("198.51.100.2"), "and on the uplink again");
}

#[test]
#[ignore = "kernel lane: this machine's kernel has no bonding driver"]
fn takeover_of_a_bond_uplink_round_trips() {
    takeover_round_trip("bond0", &|dom0, lan| {
        dom0.ok(&["ip", "link", "add", "bond0", "type", "bond", "mode", "active-backup", "miimon", "100"]);
        dom0.ok(&["ip", "link", "set", "eth0", "master", "bond0"]);
        lan.ok(&["ip", "link", "set", "eth0", "name", "lan0"]);
    });
}

#[test]
#[ignore = "kernel lane: this machine's kernel has no 8021q driver"]
fn takeover_of_a_vlan_uplink_round_trips() {
    takeover_round_trip("eth0.100", &|dom0, lan| {
        dom0.ok(&["ip", "link", "set", "eth0", "up"]);
        dom0.ok(&["ip", "link", "add", "link", "eth0", "name", "eth0.100", "type", "vlan", "id", "100"]);
        lan.ok(&["ip", "link", "set", "eth0", "up"]);
        lan.ok(&["ip", "link", "add", "link", "eth0", "name", "lan0", "type", "vlan", "id", "100"]);
    });
}

/// Route mode's whole story (tests/route.rs) with its default gateway link, a dummy: made
/// by netlink (the kernel loads dummy.ko), holding the routed /29 and /64, deleted by stop.
#[test]
#[ignore = "kernel lane: needs the dummy driver"]
fn route_mode_with_a_dummy_gateway_routes_both_ways_and_restores_everything() {
    common::route::guests_route_both_ways_and_teardown_restores_everything("dummy", false);
    common::route::guests_route_both_ways_and_teardown_restores_everything("dummy", true);
}
