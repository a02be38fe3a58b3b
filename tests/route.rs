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
    // Not started is an answer, not a failure.
    let status = lab.vifnet(&["network", "route", "status"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(String::from_utf8_lossy(&status.stdout).starts_with("route mode: stopped\n"));
    let json = String::from_utf8_lossy(&lab.vifnet(&["network", "route", "status", "--json"]).stdout).into_owned();
    assert!(json.contains(r#""state": "stopped""#), "{json}");

    lab.ok(&["network", "route", "start"]);
    lab.ok(&["network", "route", "start"]);
    let started = lab.snapshot();
    lab.online(1);
    let once = (lab.snapshot(), lab.our_routes());
    lab.online(1);
    assert_eq!((lab.snapshot(), lab.our_routes()), once, "online twice is online once");
    assert!(lab.guest(1).pings(INET_IP));
    let status = String::from_utf8_lossy(&lab.vifnet(&["network", "route", "status"]).stdout).into_owned();
    assert!(status.starts_with("route mode: started, uplink up0") && status.contains("guests online: vif1.0"), "{status}");
    let json = String::from_utf8_lossy(&lab.vifnet(&["network", "route", "status", "--json"]).stdout).into_owned();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!((json["state"].as_str(), json["uplink"].as_str(), json["guests"][0]["vif"].as_str()), (Some("started"), Some("up0"), Some("vif1.0")), "{json}");
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

/// `vifnet check` and its exit status and output.
fn check(lab: &RouteLab, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["check"];
    args.extend_from_slice(extra);
    let out = lab.vifnet(&args);
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What drifts on a host that lives for years, all at once: a firewall reload, forwarding
/// reset by another tool, a route and the gateway's address deleted by hand, a guest gone
/// without its offline, an element nothing accounts for. `check` names each on a line of
/// its own; `--repair` gives back exactly what was online, and a second check is clean.
#[test]
fn check_names_every_drift_and_repair_gives_back_exactly_what_was_online() {
    if !root_or_skip() {
        return;
    }
    let lab = RouteLab::new(2, "bridge", false);
    lab.ok(&["network", "route", "start"]);
    lab.online(1);
    lab.online(2);
    assert_eq!(check(&lab, &[]), (Some(0), "all as recorded\n".to_string()));
    let online = lab.snapshot();
    lab.dom0.ok(&["nft", "flush", "ruleset"]);
    lab.dom0.ok(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    lab.dom0.ok(&["ip", "route", "del", &guest_ip(1), "dev", "vif1.0", "proto", "118"]);
    lab.dom0.ok(&["ip", "addr", "del", GATEWAY.split(' ').next().unwrap(), "dev", "dummy0"]);
    let (code, out) = check(&lab, &[]);
    assert_eq!(code, Some(2), "{out}");
    let g1 = guest_ip(1);
    for line in [
        "route mode: sysctl net/ipv4/ip_forward = 1: is 0".to_string(),
        "route mode: address 203.0.113.193/29 on dummy0: missing".into(),
        format!("vif1.0: route {g1}/32 dev vif1.0 metric 2: missing"),
        format!("vif1.0: element inet vifnet vif_ip4 {{ \"vif1.0\" . {g1} }}: missing"),
        "vif2.0: element inet vifnet guarded { \"vif2.0\" }: missing".into(),
    ] {
        assert!(out.lines().any(|l| l == line), "no line {line:?} in:\n{out}");
    }
    let json: serde_json::Value = serde_json::from_str(&check(&lab, &["--json"]).1).unwrap();
    assert_eq!(json.as_array().unwrap().len(), out.lines().count(), "one object per line");
    assert_eq!(check(&lab, &["--repair"]).0, Some(0));
    assert_eq!(check(&lab, &[]), (Some(0), "all as recorded\n".to_string()));
    assert_eq!(lab.snapshot().sorted(), online.sorted(), "repair gives back exactly what was online");
    assert!(lab.guest(1).pings(INET_IP));

    // A guest destroyed without its offline, and an element of ours nothing accounts for.
    lab.dom0.ok(&["ip", "link", "del", "vif2.0"]);
    lab.dom0.ok(&["nft", "add", "element", "inet", "vifnet", "guarded", "{ \"vif7.0\" }"]);
    let (code, out) = check(&lab, &[]);
    assert_eq!(code, Some(2));
    assert!(out.lines().any(|l| l == "vif2.0: journal of route mode: stale: device gone"), "{out}");
    assert!(out.lines().any(|l| l == "vif7.0: element inet vifnet guarded { \"vif7.0\" }: not in any journal"), "{out}");
    assert!(!out.contains("vif2.0: element"), "a stale journal's objects are its own line's: {out}");
    assert_eq!(check(&lab, &["--repair"]).0, Some(0));
    assert_eq!(check(&lab, &[]).0, Some(0));
    let ruleset = lab.dom0.ok(&["nft", "list", "ruleset"]);
    assert!(!ruleset.contains("vif2.0") && !ruleset.contains("vif7.0") && ruleset.contains("vif1.0"), "{ruleset}");
    assert_eq!(lab.dirs.journal_count(), 1);
    lab.offline(1);
    lab.ok(&["network", "route", "stop"]);
    assert_eq!(lab.our_routes(), "");
    assert_eq!(lab.dom0.ok(&["nft", "list", "ruleset"]), "");
}

/// After a ruleset flush `reload` puts back exactly what was there. An administrator edits
/// route.toml while a guest runs: `check` names the key, `reload`
/// takes a change that can be made under a running guest (uplink_proxy) and refuses one
/// that cannot (the gateway's link) with one line and nothing changed; with no guest
/// online, reload starts the mode again with its new file.
#[test]
fn reload_takes_an_edited_mode_file_under_guests_or_refuses_it_changing_nothing() {
    if !root_or_skip() {
        return;
    }
    let lab = RouteLab::new(1, "bridge", false);
    let before = lab.snapshot();
    lab.online(1);
    // What nftables.service's reload does, and what vifnet-reload.service then runs.
    let online = lab.snapshot();
    lab.dom0.ok(&["nft", "flush", "ruleset"]);
    lab.ok(&["reload"]);
    assert_eq!(lab.snapshot(), online, "reload puts back exactly what the flush took");
    let file = lab.dirs.modes.join("route.toml");
    let original = read(&file);
    std::fs::write(&file, original.replace("uplink_proxy = false", "uplink_proxy = true")).unwrap();
    let (code, out) = check(&lab, &[]);
    assert_eq!(code, Some(2));
    assert_eq!(out, "route mode: mode file key uplink_proxy: changed since the mode started: false -> true\n");
    lab.ok(&["reload"]);
    let proxies = lab.dom0.ok(&["ip", "neigh", "show", "proxy"]);
    assert!(proxies.contains(&format!("{} dev up0", guest_ip(1))), "{proxies}");
    assert_eq!(check(&lab, &[]).0, Some(0));
    assert!(lab.guest(1).pings(INET_IP));

    let proxied = lab.snapshot();
    std::fs::write(&file, read(&file) + "gateway_link = \"gw1\"\n").unwrap();
    let out = lab.vifnet(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("gateway_link changed (dummy0 -> gw1) while guests are online (vif1.0)"), "{err}");
    assert_eq!(lab.snapshot(), proxied, "a refused reload changes nothing");

    lab.offline(1);
    lab.ok(&["reload"]);
    let gw = lab.dom0.ok(&["ip", "-br", "addr", "show", "dev", "gw1"]);
    assert!(gw.contains("203.0.113.193/29"), "{gw}");
    assert!(!lab.dom0.succeeds(&["ip", "link", "show", "dummy0"]), "the old gateway link went with the old settings");
    assert_eq!(check(&lab, &[]), (Some(0), "all as recorded\n".to_string()));
    lab.ok(&["network", "route", "stop"]);
    assert_eq!(lab.snapshot(), before);
}

/// A second online changes nothing at all: links, addresses, routes, proxy entries, the
/// ruleset and the journals, byte for byte (with `uplink_proxy`, the announcements only
/// say again what upstream knows).
#[test]
fn a_second_online_changes_nothing_at_all() {
    if !root_or_skip() {
        return;
    }
    let lab = RouteLab::new(1, "bridge", true);
    lab.online(1);
    let once = (host_dump(&lab.dom0), state_bytes(&lab.dirs), lab.dropin());
    lab.online(1);
    assert_eq!((host_dump(&lab.dom0), state_bytes(&lab.dirs), lab.dropin()), once);
    lab.offline(1);
    lab.ok(&["network", "route", "stop"]);
}
