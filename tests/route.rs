//! Route mode on this machine's kernel, in namespaces (see common::route for the lab).
//! The gateway is a bridge without ports: this kernel has no dummy driver; the kernel
//! lane runs the same story with `gateway_kind = "dummy"`.

mod common;

use common::route::*;
use common::*;

#[test]
fn guests_route_both_ways_and_offline_and_stop_restore_everything() {
    if !root_or_skip() {
        return;
    }
    guests_route_both_ways_and_teardown_restores_everything("bridge", false);
}

#[test]
fn with_uplink_proxy_upstream_sees_the_block_on_link_and_learns_each_guest() {
    if !root_or_skip() {
        return;
    }
    guests_route_both_ways_and_teardown_restores_everything("bridge", true);
}

#[test]
fn spoofed_sources_are_dropped_and_counted() {
    if !root_or_skip() {
        return;
    }
    let lab = RouteLab::new(2, "bridge", false);
    lab.ok(&["network", "route", "start"]);
    lab.online(1);
    lab.online(2);
    // Honest traffic first: each guest knows its gateway's MAC, so what it forges next is
    // sent at once (not held back by neighbour discovery from a forged source).
    for i in 1..=2 {
        assert!(lab.guest(i).pings(INET_IP) && lab.guest(i).pings(INET_IP6), "guest {i} works honestly first");
    }
    // The internet host counts whatever arrives from the forged sources.
    lab.inet.ok(&["nft", "add table inet seen; add chain inet seen c { type filter hook prerouting priority 0; }; \
        add rule inet seen c ip saddr { 203.0.113.194, 192.0.2.77 } counter; \
        add rule inet seen c ip6 saddr { 2001:db8:42::194, 2001:db8:99::77 } counter"]);
    // Guest 2 takes guest 1's addresses, then foreign ones.
    let g2 = lab.guest(2);
    for (addr, dst) in [("203.0.113.194/32", INET_IP), ("192.0.2.77/32", INET_IP), ("2001:db8:42::194/128", INET_IP6), ("2001:db8:99::77/128", INET_IP6)] {
        g2.ok(&["ip", "addr", "add", addr, "dev", "eth0"]);
        let src = addr.split('/').next().unwrap();
        let fam = if dst.contains(':') { "-6" } else { "-4" };
        let out = g2.run(&["ping", fam, "-c", "2", "-i", "0.2", "-w", "1", "-q", "-I", src, dst]);
        assert!(!out.status.success(), "a ping from {src} came back");
        g2.ok(&["ip", "addr", "del", addr, "dev", "eth0"]);
    }
    let seen = lab.inet.ok(&["nft", "list", "chain", "inet", "seen", "c"]);
    assert_eq!(seen.matches("packets 0 ").count(), 2, "a forged packet reached the internet host: {seen}");
    let (v4, v6) = lab.drops();
    assert!(v4 >= 4 && v6 >= 4, "each forged packet is counted: {v4} IPv4, {v6} IPv6");
    assert!(lab.guest(1).pings(INET_IP) && lab.guest(1).pings(INET_IP6), "the honest guest still works");
    assert!(lab.guest(2).pings(INET_IP6), "and so does guest 2 from its own address");
    lab.offline(1);
    lab.offline(2);
    lab.ok(&["network", "route", "stop"]);
}

#[test]
fn verbs_are_idempotent_and_bad_input_changes_nothing() {
    if !root_or_skip() {
        return;
    }
    let lab = RouteLab::new(1, "bridge", false);
    let before = lab.snapshot();
    // Bad input: one line naming the key and value, exit 1, nothing made (the host-wide
    // part included, which an online would otherwise do first).
    for (args, expect) in [
        (vec!["vif", "route", "online", "vif=vif1.0"], "ip: missing"),
        (vec!["vif", "route", "online", "vif=vif1.0", "ip=203.0.113.300"], "argument ip: \"203.0.113.300\""),
        (vec!["network", "route", "start", "gateway=203.0.113.192/29"], "argument gateway: \"203.0.113.192/29\" is the block's network address"),
        (vec!["network", "route", "start", "gateway_kind=tun"], "argument gateway_kind: \"tun\""),
    ] {
        let out = lab.vifnet(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert_eq!(lab.snapshot(), before, "{args:?} changed the host");
    }
    assert!(!lab.dirs.state.join("route.json").exists());

    lab.ok(&["network", "route", "start"]);
    lab.ok(&["network", "route", "start"]);
    let started = lab.snapshot();
    lab.online(1);
    let once = (lab.snapshot(), lab.our_routes());
    lab.online(1);
    assert_eq!((lab.snapshot(), lab.our_routes()), once, "online twice is online once");
    assert!(lab.guest(1).pings(INET_IP));
    let status = String::from_utf8_lossy(&lab.vifnet(&["network", "route", "status"]).stdout).into_owned();
    assert!(status.contains("uplink up0") && status.contains("routed vifs: vif1.0"), "{status}");
    let refused = lab.vifnet(&["network", "route", "stop"]);
    assert_eq!(refused.status.code(), Some(1), "stop refuses while a guest is routed");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("vif1.0"));
    lab.offline(1);
    lab.offline(1);
    assert_eq!(lab.snapshot(), started);
    lab.ok(&["network", "route", "stop"]);
    lab.ok(&["network", "route", "stop"]);
    assert_eq!(lab.snapshot(), before);
}

/// The administrator reloads the firewall (`nft flush ruleset`) with a guest routed:
/// `network route start` puts the guest's filter back exactly, and offline and stop still
/// give everything back.
#[test]
fn start_after_a_ruleset_flush_puts_the_filters_back() {
    if !root_or_skip() {
        return;
    }
    let lab = RouteLab::new(2, "bridge", false);
    let before = lab.snapshot();
    lab.ok(&["network", "route", "start"]);
    lab.online(1);
    lab.online(2);
    let online = lab.snapshot();
    lab.dom0.ok(&["nft", "flush", "ruleset"]);
    lab.ok(&["network", "route", "start"]);
    assert_eq!(lab.snapshot(), online, "start puts both guests' filters back, nothing more");
    lab.ok(&["network", "route", "start"]);
    assert_eq!(lab.snapshot(), online, "and a second start changes nothing");
    lab.dom0.ok(&["nft", "flush", "ruleset"]);
    lab.offline(1);
    lab.offline(2);
    lab.ok(&["network", "route", "stop"]);
    assert_eq!(lab.snapshot(), before);
}

/// An HVM guest's emulated nic (tap, `add`) and PV nic (vif, `online`) route the same
/// address with metrics 1 and 2, as Xen's vif-route does: both coexist, each goes alone.
#[test]
fn an_hvm_guests_tap_and_vif_routes_coexist() {
    if !root_or_skip() {
        return;
    }
    let lab = RouteLab::new(1, "bridge", false);
    veth(&lab.dom0, "vif1.0-emu", lab.guest(1), "eth1");
    let ip = format!("ip={}", guest_ip(1));
    lab.ok(&["vif", "route", "online", "type_if=vif", "vif=vif1.0", &ip]);
    lab.ok(&["vif", "route", "add", "type_if=tap", "INTERFACE=vif1.0-emu", &ip]);
    let ours = lab.our_routes();
    assert!(ours.contains(&format!("{} dev vif1.0-emu scope link metric 1", guest_ip(1))), "{ours}");
    assert!(ours.contains(&format!("{} dev vif1.0 scope link metric 2", guest_ip(1))), "{ours}");
    lab.ok(&["vif", "route", "remove", "type_if=tap", "INTERFACE=vif1.0-emu"]);
    let ours = lab.our_routes();
    assert!(!ours.contains("vif1.0-emu") && ours.contains("dev vif1.0 "), "{ours}");
    lab.offline(1);
    lab.ok(&["network", "route", "stop"]);
}

/// On a kernel without the dummy driver (this machine's), the default gateway_kind fails
/// with one line that says what to set instead, and nothing is changed.
#[test]
fn a_kernel_without_the_dummy_driver_is_told_about_gateway_kind() {
    if !root_or_skip() {
        return;
    }
    let probe = Netns::new("probe");
    if probe.succeeds(&["ip", "link", "add", "probe0", "type", "dummy"]) {
        eprintln!("skipped: this kernel has the dummy driver (the kernel lane tests that path)");
        return;
    }
    let lab = RouteLab::new(1, "dummy", false);
    let before = lab.snapshot();
    for args in [vec!["network", "route", "start"], vec!["vif", "route", "online", "vif=vif1.0", "ip=203.0.113.194"]] {
        let out = lab.vifnet(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("no dummy driver") && err.contains("gateway_kind = \"bridge\""), "{err}");
        assert_eq!(lab.snapshot(), before, "{args:?}: rolled back");
        assert!(!lab.dirs.state.join("route.json").exists());
        assert_eq!(lab.dropin(), "");
    }
}

/// libxl brings up many vifs at once, and none has run `network route start`: every
/// online waits for the lock, the first does the host-wide part, none is lost.
#[test]
fn concurrent_onlines_and_offlines_lose_nothing() {
    if !root_or_skip() {
        return;
    }
    let n = 5; // .194 to .198: the whole /29
    let lab = RouteLab::new(n, "bridge", false);
    let before = lab.snapshot();
    let run_all = |verb: &'static str| {
        std::thread::scope(|s| {
            let lab = &lab;
            let calls: Vec<_> = (1..=n)
                .map(|i| {
                    s.spawn(move || {
                        let (vif, ip) = (format!("vif=vif{i}.0"), format!("ip={} {}", guest_ip(i), guest_ip6(i)));
                        lab.vifnet(&["vif", "route", verb, "type_if=vif", &vif, &ip])
                    })
                })
                .collect();
            for c in calls {
                let out = c.join().unwrap();
                assert!(out.status.success(), "{verb}: {}", String::from_utf8_lossy(&out.stderr));
            }
        })
    };
    run_all("online");
    assert_eq!(lab.our_routes().lines().count(), 2 * n, "{}", lab.our_routes());
    let guarded = lab.dom0.ok(&["nft", "list", "set", "inet", "vifnet", "guarded"]);
    assert_eq!((1..=n).filter(|i| guarded.contains(&format!("\"vif{i}.0\""))).count(), n, "{guarded}");
    for i in 1..=n {
        lab.guest(i).wait_up("eth0");
        assert!(lab.guest(i).pings(INET_IP), "guest {i}");
    }
    run_all("offline");
    assert!(lab.our_routes().is_empty());
    lab.ok(&["network", "route", "stop"]);
    assert_eq!(lab.snapshot(), before);
}
