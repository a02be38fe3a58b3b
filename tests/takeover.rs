//! `network bridge start netdev=X takeover=yes` and `stop`: every address and route of the
//! uplink moves to the bridge and comes back exactly, compared as `ip -j` prints them.

mod common;

use common::*;

const UPLINK: &str = "enp0s3";

/// dom0 with a predictably named uplink holding three IPv4 addresses (one secondary, one in
/// a second subnet), a global IPv6 address, static routes with metric and source, and
/// default routes of both families.
fn host() -> (Netns, Netns, Dirs) {
    let dom0 = Netns::new("tko");
    let lan = Netns::new("tkl");
    dom0.no_dad();
    lan.no_dad();
    veth(&dom0, UPLINK, &lan, "eth0");
    lan.ok(&["ip", "addr", "add", "198.51.100.1/24", "dev", "eth0"]);
    lan.ok(&["ip", "addr", "add", "2001:db8:1::1/64", "dev", "eth0", "nodad"]);
    lan.ok(&["ip", "link", "set", "eth0", "up"]);
    let d = |args: &[&str]| {
        dom0.ok(args);
    };
    d(&["ip", "link", "set", UPLINK, "up"]);
    d(&["ip", "addr", "add", "198.51.100.2/24", "dev", UPLINK]);
    d(&["ip", "addr", "add", "198.51.100.3/24", "dev", UPLINK]);
    d(&["ip", "addr", "add", "203.0.113.5/24", "dev", UPLINK]);
    d(&["ip", "addr", "add", "2001:db8:1::2/64", "dev", UPLINK]);
    d(&["ip", "route", "add", "default", "via", "198.51.100.1", "dev", UPLINK]);
    d(&["ip", "route", "add", "10.9.0.0/16", "via", "198.51.100.254", "dev", UPLINK, "metric", "50"]);
    d(&["ip", "route", "add", "10.8.0.0/16", "via", "198.51.100.254", "dev", UPLINK, "src", "198.51.100.3"]);
    d(&["ip", "route", "add", "10.7.0.0/16", "via", "198.51.100.254", "dev", UPLINK, "table", "100"]);
    d(&["ip", "-6", "route", "add", "default", "via", "2001:db8:1::1", "dev", UPLINK, "metric", "1024"]);
    d(&["ip", "-6", "route", "add", "2001:db8:9::/48", "via", "2001:db8:1::1", "dev", UPLINK, "metric", "7"]);
    dom0.wait_up(UPLINK);
    (dom0, lan, Dirs::new())
}

fn snapshot(ns: &Netns) -> Vec<String> {
    uplink_snapshot(ns, UPLINK)
}

#[test]
fn takeover_round_trip_restores_every_address_and_route() {
    if !root_or_skip() {
        return;
    }
    let (dom0, lan, dirs) = host();
    let before = snapshot(&dom0);
    let start = ["network", "bridge", "start", "bridge=xenbr0", &format!("netdev={UPLINK}"), "takeover=yes"];
    vifnet_ok(&dom0, &dirs, &[], &start);
    vifnet_ok(&dom0, &dirs, &[], &start); // a second start changes nothing

    // Everything now lives on the bridge, which carries the uplink's MAC.
    let br = dom0.ok(&["ip", "-j", "addr", "show", "dev", "xenbr0"]);
    for a in ["198.51.100.2", "198.51.100.3", "203.0.113.5", "2001:db8:1::2"] {
        assert!(br.contains(a), "{a} not on the bridge: {br}");
    }
    assert_eq!(mac_of(&dom0, "xenbr0"), before[3]);
    let routes = dom0.ok(&["ip", "route", "show", "table", "all"]);
    for r in ["default via 198.51.100.1 dev xenbr0", "10.9.0.0/16 via 198.51.100.254 dev xenbr0 metric 50", "10.8.0.0/16 via 198.51.100.254 dev xenbr0 src 198.51.100.3", "10.7.0.0/16 via 198.51.100.254 dev xenbr0 table 100"] {
        assert!(routes.contains(r), "{r} missing:\n{routes}");
    }
    let routes6 = dom0.ok(&["ip", "-6", "route", "show", "table", "all"]);
    assert!(routes6.contains("2001:db8:9::/48 via 2001:db8:1::1 dev xenbr0 metric 7"), "{routes6}");
    assert!(dom0.ok(&["ip", "-j", "link", "show", "dev", UPLINK]).contains("\"master\":\"xenbr0\""));
    dom0.wait_up("xenbr0");
    assert!(lan.pings("198.51.100.3"), "the host still answers on the bridge");
    assert!(lan.pings("2001:db8:1::2"));
    let status = vifnet_ok(&dom0, &dirs, &[], &["network", "bridge", "status", "bridge=xenbr0"]);
    assert!(status.contains(&format!("uplink {UPLINK} taken over")), "{status}");

    vifnet_ok(&dom0, &dirs, &[], &["network", "bridge", "stop", "bridge=xenbr0"]);
    vifnet_ok(&dom0, &dirs, &[], &["network", "bridge", "stop", "bridge=xenbr0"]);
    assert!(!dom0.succeeds(&["ip", "link", "show", "xenbr0"]), "the bridge we made is gone");
    let after = snapshot(&dom0);
    assert_eq!(after[0], before[0], "addresses");
    assert_eq!(after[1], before[1], "IPv4 routes");
    assert_eq!(after[2], before[2], "IPv6 routes");
    assert_eq!(after[3], before[3], "MAC");
}

/// With the lan side down the uplink has no carrier, and the kernel marks its routes
/// `linkdown`: they must move and come back all the same.
#[test]
fn an_uplink_without_carrier_round_trips() {
    if !root_or_skip() {
        return;
    }
    let (dom0, lan, dirs) = host();
    lan.ok(&["ip", "link", "set", "eth0", "down"]);
    // The kernel's linkwatch passes the carrier change on a moment later.
    let linkdown = (0..500).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        dom0.ok(&["ip", "route", "show", "dev", UPLINK]).contains("linkdown")
    });
    assert!(linkdown, "the uplink's routes are linkdown");
    let before = snapshot(&dom0);
    let start = ["network", "bridge", "start", "bridge=xenbr0", &format!("netdev={UPLINK}"), "takeover=yes"];
    vifnet_ok(&dom0, &dirs, &[], &start);
    assert!(dom0.ok(&["ip", "route", "show", "table", "all"]).contains("10.9.0.0/16 via 198.51.100.254 dev xenbr0 metric 50"));
    vifnet_ok(&dom0, &dirs, &[], &["network", "bridge", "stop", "bridge=xenbr0"]);
    assert_eq!(snapshot(&dom0), before);
}

#[test]
fn a_failed_takeover_rolls_back_to_the_original_state() {
    if !root_or_skip() {
        return;
    }
    let (dom0, lan, dirs) = host();
    // The bridge name is taken by something that is not a bridge: enslaving must fail
    // after addresses and routes have left the uplink.
    let other = Netns::new("tkx");
    veth(&dom0, "xenbr9", &other, "x");
    let before = snapshot(&dom0);
    let out = vifnet(&dom0, &dirs, &[], &["network", "bridge", "start", "bridge=xenbr9", &format!("netdev={UPLINK}"), "takeover=yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rolled back"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(snapshot(&dom0), before);
    assert!(lan.pings("198.51.100.2"));
}

#[test]
fn start_without_takeover_only_makes_the_bridge() {
    if !root_or_skip() {
        return;
    }
    let (dom0, _lan, dirs) = host();
    let before = snapshot(&dom0);
    vifnet_ok(&dom0, &dirs, &[], &["network", "bridge", "start", "bridge=xenbr1", &format!("netdev={UPLINK}")]);
    assert!(dom0.succeeds(&["ip", "link", "show", "xenbr1"]));
    assert_eq!(snapshot(&dom0), before);
    vifnet_ok(&dom0, &dirs, &[], &["network", "bridge", "stop", "bridge=xenbr1"]);
    assert!(!dom0.succeeds(&["ip", "link", "show", "xenbr1"]));
}
