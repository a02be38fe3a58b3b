//! Bad input, as libxl would hand it over: one line naming the key and value, exit 1,
//! `hotplug-error` and `hotplug-status=error` in xenstore, and the host exactly as it was.

mod common;

use common::*;
use vifnet::xenstore::fake;

const BACKEND: &str = "backend/vif/5/0";
const ABS: &str = "/local/domain/0/backend/vif/5/0";

struct Case {
    name: &'static str,
    /// The mode of the call: `vif <mode> ...`, and `<mode>.toml` for `mode_file`.
    mode: &'static str,
    args: &'static [&'static str],
    /// Backend keys; `mac` and `bridge` get libxl's defaults unless given.
    xenstore: &'static [(&'static str, &'static str)],
    env_vif: Option<&'static str>,
    mode_file: Option<&'static str>,
    /// The one line must contain this.
    says: &'static str,
}

const CASES: &[Case] = &[
    Case { mode: "bridge", name: "bad MAC", args: &["online"], xenstore: &[("mac", "zz:zz:zz:zz:zz:zz"), ("ip", "192.0.2.5")], env_vif: Some("vif5.0"), mode_file: None, says: "xenstore backend/vif/5/0/mac: \"zz:zz:zz:zz:zz:zz\" is not a MAC address" },
    Case { mode: "bridge", name: "multicast MAC", args: &["online"], xenstore: &[("mac", "01:00:5e:00:00:01")], env_vif: Some("vif5.0"), mode_file: None, says: "mac: \"01:00:5e:00:00:01\" is a multicast MAC address" },
    Case { mode: "bridge", name: "name over 15 bytes", args: &["online"], xenstore: &[("vifname", "averyveryverylongname")], env_vif: Some("vif5.0"), mode_file: None, says: "vifname: \"averyveryverylongname\" is longer than 15 bytes" },
    Case { mode: "bridge", name: "name with a slash", args: &["online"], xenstore: &[("vifname", "web/0")], env_vif: Some("vif5.0"), mode_file: None, says: "vifname: \"web/0\" is not a valid interface name" },
    Case { mode: "bridge", name: "bridge name with a space", args: &["online"], xenstore: &[("bridge", "br 0")], env_vif: Some("vif5.0"), mode_file: None, says: "bridge: \"br 0\" is not a valid interface name" },
    Case { mode: "bridge", name: "missing bridge", args: &["online"], xenstore: &[("bridge", "nosuchbr0")], env_vif: Some("vif5.0"), mode_file: None, says: "bridge nosuchbr0: no such bridge" },
    Case { mode: "bridge", name: "bridge that is not a bridge", args: &["online"], xenstore: &[("bridge", "lo")], env_vif: Some("vif5.0"), mode_file: None, says: "bridge lo: lo exists but is not a bridge" },
    Case { mode: "bridge", name: "IPv4 prefix garbage", args: &["online"], xenstore: &[("ip", "192.0.2.5/33")], env_vif: Some("vif5.0"), mode_file: None, says: "ip: \"192.0.2.5/33\" has a bad prefix length" },
    Case { mode: "bridge", name: "not an address", args: &["online"], xenstore: &[("ip", "192.0.2.5 hello")], env_vif: Some("vif5.0"), mode_file: None, says: "ip: \"hello\" is not an IPv4 or IPv6 address" },
    Case { mode: "bridge", name: "MTU out of range", args: &["online"], xenstore: &[("mtu", "12")], env_vif: Some("vif5.0"), mode_file: None, says: "mtu: \"12\" is not an MTU" },
    Case { mode: "bridge", name: "unknown key", args: &["online", "brdige=xenbr1"], xenstore: &[], env_vif: Some("vif5.0"), mode_file: None, says: "argument: unknown key \"brdige\"" },
    Case { mode: "bridge", name: "bad type_if", args: &["online", "type_if=floppy"], xenstore: &[], env_vif: Some("vif5.0"), mode_file: None, says: "argument type_if: \"floppy\" is not a device type" },
    Case { mode: "bridge", name: "bad antispoof flag", args: &["online", "antispoof=maybe"], xenstore: &[], env_vif: Some("vif5.0"), mode_file: None, says: "argument antispoof: \"maybe\" is not yes or no" },
    Case { mode: "bridge", name: "not a command", args: &["onlin"], xenstore: &[], env_vif: Some("vif5.0"), mode_file: None, says: "command \"onlin\": not a vif command" },
    Case { mode: "bridge", name: "not key=value", args: &["online", "xenbr1"], xenstore: &[], env_vif: Some("vif5.0"), mode_file: None, says: "argument \"xenbr1\": unexpected" },
    Case { mode: "bridge", name: "no vif in the environment", args: &["online"], xenstore: &[], env_vif: None, mode_file: None, says: "vif: missing" },
    Case { mode: "bridge", name: "no such device", args: &["online"], xenstore: &[], env_vif: Some("vif9.9"), mode_file: None, says: "vif9.9: no such device" },
    Case { mode: "bridge", name: "vifname taken", args: &["online"], xenstore: &[("vifname", "lo")], env_vif: Some("vif5.0"), mode_file: None, says: "vifname lo: cannot rename vif5.0: an interface named lo already exists" },
    Case { mode: "bridge", name: "antispoof without a MAC", args: &["online", "mac="], xenstore: &[("ip", "192.0.2.5")], env_vif: Some("vif5.0"), mode_file: None, says: "mac: missing" },
    Case { mode: "bridge", name: "mode file with an unknown key", args: &["online"], xenstore: &[], env_vif: Some("vif5.0"), mode_file: Some("bridgee = \"xenbr0\"\n"), says: "bridge.toml:1: unknown field `bridgee`" },
    Case { mode: "bridge", name: "mode file syntax error", args: &["online"], xenstore: &[], env_vif: Some("vif5.0"), mode_file: Some("antispoof = true\nbridge = \n"), says: "bridge.toml:2:" },
    Case { mode: "bridge", name: "mode file bad value", args: &["online"], xenstore: &[], env_vif: Some("vif5.0"), mode_file: Some("bridge = \"a/b\"\n"), says: "bridge.toml bridge: \"a/b\" is not a valid interface name" },
    Case { mode: "route", name: "route without ip", args: &["online"], xenstore: &[], env_vif: Some("vif5.0"), mode_file: None, says: "ip: missing (route mode routes the guest's own addresses" },
    Case { mode: "route", name: "route with a bad IPv6 address", args: &["online"], xenstore: &[("ip", "192.0.2.5 2001:db8::1::2")], env_vif: Some("vif5.0"), mode_file: None, says: "ip: \"2001:db8::1::2\" is not an IPv4 or IPv6 address" },
    Case { mode: "route", name: "gateway is the network address", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env_vif: Some("vif5.0"), mode_file: Some("gateway = \"203.0.113.192/29\"\n"), says: "route.toml gateway: \"203.0.113.192/29\" is the block's network address" },
    Case { mode: "route", name: "unknown gateway kind", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env_vif: Some("vif5.0"), mode_file: Some("gateway_kind = \"tun\"\n"), says: "route.toml gateway_kind: \"tun\" is not a gateway kind (dummy, bridge)" },
    Case { mode: "route", name: "proxying without an uplink", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env_vif: Some("vif5.0"), mode_file: Some("uplink_proxy = true\n"), says: "uplink_proxy: there is no uplink to answer on" },
    Case { mode: "route", name: "an uplink that does not exist", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env_vif: Some("vif5.0"), mode_file: Some("netdev = \"nosuch0\"\n"), says: "netdev nosuch0: no such link" },
    Case { mode: "route", name: "route mode file with an unknown key", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env_vif: Some("vif5.0"), mode_file: Some("gatway = \"x\"\n"), says: "route.toml:1: unknown field `gatway`" },
    Case { mode: "nat", name: "nat without a domain name", args: &["online"], xenstore: &[], env_vif: Some("vif5.0"), mode_file: Some("netdev = \"lo\"\n"), says: "name: missing (nat mode numbers machines by domain name" },
    Case { mode: "nat", name: "nat with a name that is no DNS label", args: &["online", "name=web_1"], xenstore: &[], env_vif: Some("vif5.0"), mode_file: Some("netdev = \"lo\"\n"), says: "argument name: \"web_1\" is not a DNS name for the guest" },
    Case { mode: "nat", name: "nat with an address outside the prefix", args: &["online", "name=web"], xenstore: &[("ip", "192.0.2.5")], env_vif: Some("vif5.0"), mode_file: Some("netdev = \"lo\"\n"), says: "ip 192.0.2.5: not a guest address of prefix 10.0.0.0/8" },
    Case { mode: "nat", name: "nat with two addresses", args: &["online", "name=web"], xenstore: &[("ip", "10.0.0.1 10.0.0.2")], env_vif: Some("vif5.0"), mode_file: Some("netdev = \"lo\"\n"), says: "ip: \"10.0.0.1 10.0.0.2\" is not one IPv4 address" },
    Case { mode: "nat", name: "nat prefix too small", args: &["online", "name=web"], xenstore: &[], env_vif: Some("vif5.0"), mode_file: Some("prefix = \"10.0.0.0/25\"\n"), says: "nat.toml prefix: \"10.0.0.0/25\" must be a network of at most /24" },
    Case { mode: "nat", name: "nat without an uplink", args: &["online", "name=web"], xenstore: &[], env_vif: Some("vif5.0"), mode_file: None, says: "netdev: nat mode needs an uplink to masquerade out of" },
];

/// Everything a failed call could have touched, to compare before and after.
fn host_state(ns: &Netns) -> String {
    [
        ns.ok(&["ip", "-j", "link"]),
        ns.ok(&["ip", "-j", "addr"]),
        ns.ok(&["ip", "-j", "route", "show", "table", "all"]),
        ns.ok(&["nft", "list", "ruleset"]),
        ns.ok(&["sysctl", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]),
    ]
    .join("\n")
}

#[test]
fn every_bad_input_gets_one_line_exit_1_hotplug_error_and_no_change() {
    if !root_or_skip() {
        return;
    }
    assert!(CASES.len() >= 15);
    let dom0 = Netns::new("bad");
    let guest = Netns::new("badg");
    veth(&dom0, "vif5.0", &guest, "eth0");
    let dirs = Dirs::new();
    let sock = std::env::temp_dir().join(unique("xs.sock"));
    let xs = fake::serve(&sock);
    let mut failures = Vec::new();
    for case in CASES {
        // A fresh backend directory as libxl writes it.
        for key in ["mac", "bridge", "ip", "vifname", "mtu", "hotplug-error", "hotplug-status"] {
            xs.set(&format!("{ABS}/{key}"), "");
        }
        xs.set(&format!("{ABS}/mac"), "00:16:3e:00:00:05");
        xs.set(&format!("{ABS}/bridge"), "xenbr0");
        for (k, v) in case.xenstore {
            xs.set(&format!("{ABS}/{k}"), v);
        }
        let mode_path = dirs.modes.join(format!("{}.toml", case.mode));
        match case.mode_file {
            Some(text) => std::fs::write(&mode_path, text).unwrap(),
            None => {
                let _ = std::fs::remove_file(&mode_path);
            }
        }
        let before = host_state(&dom0);
        let sock_s = sock.to_str().unwrap();
        let mut env = vec![("XENBUS_PATH", BACKEND), ("XENSTORED_PATH", sock_s)];
        if let Some(v) = case.env_vif {
            env.push(("vif", v));
        }
        let mut args = vec!["vif", case.mode];
        args.extend_from_slice(case.args);
        let out = vifnet(&dom0, &dirs, &env, &args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines: Vec<&str> = stderr.lines().collect();
        let hotplug_error = xs.get(&format!("{ABS}/hotplug-error")).unwrap_or_default();
        let status = xs.get(&format!("{ABS}/hotplug-status")).unwrap_or_default();
        let problems: Vec<String> = [
            (out.status.code() != Some(1)).then(|| format!("exit {:?}", out.status.code())),
            (lines.len() != 1).then(|| format!("{} lines on stderr", lines.len())),
            (!stderr.contains(case.says)).then(|| "stderr does not say it".to_string()),
            (lines.first().map(|l| l.strip_prefix("vifnet: ").unwrap_or(l)) != Some(hotplug_error.as_str()))
                .then(|| format!("hotplug-error is {hotplug_error:?}")),
            (status != "error").then(|| format!("hotplug-status is {status:?}")),
            (host_state(&dom0) != before).then(|| "the host changed".to_string()),
            (dirs.journal_count() != 0).then(|| "a journal was left".to_string()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !problems.is_empty() {
            failures.push(format!("{}: {} (stderr: {stderr:?})", case.name, problems.join(", ")));
        }
        let _ = std::fs::remove_file(&mode_path);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// One vif as libxl hands it over: dom0 with vif5.0 to a guest, a fake xenstored holding
/// the backend's keys, and the environment libxl sets for the script.
struct Libxl {
    dom0: Netns,
    _guest: Netns,
    dirs: Dirs,
    sock: std::path::PathBuf,
    xs: fake::FakeServer,
}

impl Libxl {
    fn new(tag: &str, keys: &[(&str, &str)]) -> Libxl {
        let dom0 = Netns::new(tag);
        let guest = Netns::new(&format!("{tag}g"));
        veth(&dom0, "vif5.0", &guest, "eth0");
        let sock = std::env::temp_dir().join(unique("xs.sock"));
        let xs = fake::serve(&sock);
        for (k, v) in keys {
            let path = if k.starts_with('/') { k.to_string() } else { format!("{ABS}/{k}") };
            xs.set(&path, v);
        }
        Libxl { dom0, _guest: guest, dirs: Dirs::new(), sock, xs }
    }

    /// `vifnet vif <mode> <cmd> type_if=vif` as libxl runs it; it must succeed.
    fn run(&self, mode: &str, cmd: &str) {
        let env = [("XENBUS_PATH", BACKEND), ("XENSTORED_PATH", self.sock.to_str().unwrap()), ("vif", "vif5.0"), ("netdev", "")];
        let out = vifnet(&self.dom0, &self.dirs, &env, &["vif", mode, cmd, "type_if=vif"]);
        assert!(out.status.success(), "{mode} {cmd}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn hotplug_status(&self) -> Option<String> {
        self.xs.get(&format!("{ABS}/hotplug-status"))
    }
}

#[test]
fn good_input_through_xenstore_reports_connected() {
    if !root_or_skip() {
        return;
    }
    let lab = Libxl::new(
        "good",
        &[("mac", "00:16:3e:00:00:05"), ("bridge", "xenbr0"), ("ip", "192.0.2.5"), ("frontend", "/local/domain/5/device/vif/0"), ("hotplug-status", "")],
    );
    lab.run("bridge", "online");
    assert_eq!(lab.hotplug_status().as_deref(), Some("connected"));
    assert_eq!(lab.xs.get("/local/domain/5/device/vif/0/mtu").as_deref(), Some("1500"), "the frontend learns the MTU");
    let rules = lab.dom0.ok(&["nft", "list", "set", "bridge", "vifnet", "vif_ip4"]);
    assert!(rules.contains("\"vif5.0\" . 192.0.2.5"), "{rules}");
    // offline: libxl has removed hotplug-status; we write nothing and clean up.
    lab.run("bridge", "offline");
    assert!(!lab.dom0.ok(&["nft", "list", "set", "bridge", "vifnet", "vif_ip4"]).contains("vif5.0"));
    assert_eq!(lab.dirs.journal_count(), 0);
}

/// Route mode under libxl: no network script ran, so the first online does the host-wide
/// part; the vif is routed and `connected`, and offline takes its part away again.
#[test]
fn route_mode_through_xenstore_reports_connected() {
    if !root_or_skip() {
        return;
    }
    let lab = Libxl::new("rgood", &[("mac", "00:16:3e:00:00:05"), ("ip", "203.0.113.194"), ("frontend", "/local/domain/5/device/vif/0")]);
    std::fs::write(lab.dirs.modes.join("route.toml"), "gateway = \"203.0.113.193/29\"\ngateway_kind = \"bridge\"\n").unwrap();
    lab.run("route", "online");
    assert_eq!(lab.hotplug_status().as_deref(), Some("connected"));
    assert_eq!(lab.xs.get("/local/domain/5/device/vif/0/mtu"), None, "no mtu= given: the frontend keeps its own");
    assert!(lab.dom0.ok(&["ip", "route", "show", "proto", "118"]).contains("203.0.113.194 dev vif5.0"));
    lab.run("route", "offline");
    assert_eq!(lab.dom0.ok(&["ip", "route", "show", "proto", "118"]), "");
    assert_eq!(lab.dirs.journal_count(), 0);
}

/// Nat mode under libxl: the machine is numbered by the domain's name, read from beside
/// the domain in xenstore; `connected` is reported, and offline keeps the name reserved.
#[test]
fn nat_mode_through_xenstore_names_the_machine_by_its_domain() {
    if !root_or_skip() {
        return;
    }
    let lab = Libxl::new("ngood", &[("mac", "00:16:3e:00:00:05"), ("frontend-id", "5"), ("handle", "0"), ("/local/domain/5/name", "webfront")]);
    let base = lab.dirs.state.parent().unwrap().to_path_buf();
    // No dnsmasq and no /etc/ethers here: the files are the test's own.
    std::fs::write(
        lab.dirs.modes.join("nat.toml"),
        format!(
            "netdev = \"lo\"\nhosts = \"{0}/hosts\"\nethers = \"{0}/ethers\"\nrun_dnsmasq = false\ndnsmasq_pidfile = \"{0}/none.pid\"\n",
            base.display()
        ),
    )
    .unwrap();
    lab.run("nat", "online");
    assert_eq!(lab.hotplug_status().as_deref(), Some("connected"));
    assert_eq!(read(&base.join("hosts")), "10.0.0.1 webfront webfront.xen.internal\n");
    assert_eq!(read(&base.join("ethers")), "00:16:3e:00:00:05 10.0.0.1\n");
    assert!(lab.dom0.ok(&["ip", "-4", "addr", "show", "dev", "vif5.0"]).contains("10.0.0.129/32"));
    lab.run("nat", "offline");
    assert_eq!(read(&base.join("ethers")), "");
    assert_eq!(read(&base.join("hosts")), "10.0.0.1 webfront webfront.xen.internal\n", "kept for the machine");
    let out = vifnet(&lab.dom0, &lab.dirs, &[], &["network", "nat", "stop"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lab.dom0.ok(&["nft", "list", "ruleset"]), "");
}

fn netns_list() -> String {
    run_ok(std::process::Command::new("ip").args(["netns", "list"]))
}

#[test]
fn bad_config_files_for_setup_are_one_line_errors_and_build_nothing() {
    if !root_or_skip() {
        return;
    }
    let dir = std::env::temp_dir().join(unique("cfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let good_dom = dir.join("good.cfg");
    std::fs::write(&good_dom, "name = \"web\"\nvif = [ 'mac=00:16:3e:00:00:01, ip=192.0.2.10' ]\n").unwrap();
    let cases: &[(&str, &str, &str, &str)] = &[
        ("xend", "(network-script 'network-bridge netdev=eth0'\n(vif-script vif-bridge)\n", "bad.sxp:", "sxp syntax error"),
        ("xend", "(network-script)\n", "bad.sxp:1", "empty network-script"),
        ("xend", "(vif-script 'vif-bridge bridge=br/0')\n", "web vif[0] bridge: \"br/0\"", "bad bridge name from sxp"),
        ("dom", "name = \"db\"\nvif = [ 'mac=01:00:5e:00:00:01' ]\n", "db vif[0] mac: \"01:00:5e:00:00:01\" is a multicast", "multicast MAC in a domain config"),
        ("dom", "name = \"db\"\nvif = [ 'mac=00:16:3e:00:00:02, xenbr1' ]\n", "bad.cfg:2", "vif entry without ="),
        ("dom", "memory = 512\n", "name: missing", "domain without a name"),
        ("dom", "name = \"db\"\nvif = [ 'ip=192.0.2.300' ]\n", "\"192.0.2.300\"", "bad ip in a domain config"),
        ("xl", "vif.default.bridge = \"xenbr0\n", "bad.conf:1", "xl.conf unterminated string"),
    ];
    let mut failures = Vec::new();
    for (kind, text, says, name) in cases {
        let file = dir.join(match *kind {
            "xend" => "bad.sxp",
            "dom" => "bad.cfg",
            _ => "bad.conf",
        });
        std::fs::write(&file, text).unwrap();
        let f = file.to_str().unwrap();
        let mut args = vec!["setup", "--simulate", "--prefix", "vfbad"];
        match *kind {
            "xend" => args.extend(["--xend-config", f, good_dom.to_str().unwrap()]),
            "dom" => args.push(f),
            _ => args.extend(["--xl-conf", f, good_dom.to_str().unwrap()]),
        }
        let out = std::process::Command::new(vifnet_bin()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let problems: Vec<String> = [
            (out.status.code() != Some(1)).then(|| format!("exit {:?}", out.status.code())),
            (err.lines().count() != 1).then(|| "not one line".to_string()),
            (!err.contains(says)).then(|| format!("does not say {says:?}")),
            // Other tests make namespaces meanwhile; none of ours may exist.
            netns_list().contains("vfbad-").then(|| "a namespace was made".to_string()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !problems.is_empty() {
            failures.push(format!("{name}: {} ({err:?})", problems.join(", ")));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
