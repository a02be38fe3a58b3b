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
    /// Backend keys (an absolute path is written as is); `mac` and `bridge` get libxl's
    /// defaults unless given.
    xenstore: &'static [(&'static str, &'static str)],
    /// The environment libxl sets (`vif`, `netdev`, `bridge`, `ip`, ...).
    env: &'static [(&'static str, &'static str)],
    /// `@DIR@` stands for the test's own directory (hosts and ethers files).
    mode_file: Option<&'static str>,
    /// The one line must contain this.
    says: &'static str,
}

const VIF: &[(&str, &str)] = &[("vif", "vif5.0")];

/// nat.toml with the test's own hosts and ethers files and no dnsmasq, then `$extra`.
macro_rules! nat_toml {
    ($extra:literal) => {
        concat!("netdev = \"lo\"\nhosts = \"@DIR@/hosts\"\nethers = \"@DIR@/ethers\"\nrun_dnsmasq = false\ndnsmasq_pidfile = \"@DIR@/none.pid\"\n", $extra)
    };
}

const CASES: &[Case] = &[
    Case { mode: "bridge", name: "bad MAC", args: &["online"], xenstore: &[("mac", "zz:zz:zz:zz:zz:zz"), ("ip", "192.0.2.5")], env: VIF, mode_file: None, says: "xenstore backend/vif/5/0/mac: \"zz:zz:zz:zz:zz:zz\" is not a MAC address" },
    Case { mode: "bridge", name: "multicast MAC", args: &["online"], xenstore: &[("mac", "01:00:5e:00:00:01")], env: VIF, mode_file: None, says: "mac: \"01:00:5e:00:00:01\" is a multicast MAC address" },
    Case { mode: "bridge", name: "name over 15 bytes", args: &["online"], xenstore: &[("vifname", "averyveryverylongname")], env: VIF, mode_file: None, says: "vifname: \"averyveryverylongname\" is longer than 15 bytes" },
    Case { mode: "bridge", name: "name with a slash", args: &["online"], xenstore: &[("vifname", "web/0")], env: VIF, mode_file: None, says: "vifname: \"web/0\" is not a valid interface name" },
    Case { mode: "bridge", name: "bridge name with a space", args: &["online"], xenstore: &[("bridge", "br 0")], env: VIF, mode_file: None, says: "bridge: \"br 0\" is not a valid interface name" },
    Case { mode: "bridge", name: "missing bridge", args: &["online"], xenstore: &[("bridge", "nosuchbr0")], env: VIF, mode_file: None, says: "bridge nosuchbr0: no such bridge" },
    Case { mode: "bridge", name: "bridge that is not a bridge", args: &["online"], xenstore: &[("bridge", "lo")], env: VIF, mode_file: None, says: "bridge lo: lo exists but is not a bridge" },
    Case { mode: "bridge", name: "IPv4 prefix garbage", args: &["online"], xenstore: &[("ip", "192.0.2.5/33")], env: VIF, mode_file: None, says: "ip: \"192.0.2.5/33\" has a bad prefix length" },
    Case { mode: "bridge", name: "not an address", args: &["online"], xenstore: &[("ip", "192.0.2.5 hello")], env: VIF, mode_file: None, says: "ip: \"hello\" is not an IPv4 or IPv6 address" },
    Case { mode: "bridge", name: "MTU out of range", args: &["online"], xenstore: &[("mtu", "12")], env: VIF, mode_file: None, says: "mtu: \"12\" is not an MTU" },
    Case { mode: "bridge", name: "unknown key", args: &["online", "brdige=xenbr1"], xenstore: &[], env: VIF, mode_file: None, says: "argument brdige: \"xenbr1\" is not a key of vif scripts (did you mean bridge?)" },
    Case { mode: "bridge", name: "bad type_if", args: &["online", "type_if=floppy"], xenstore: &[], env: VIF, mode_file: None, says: "argument type_if: \"floppy\" is not a device type" },
    Case { mode: "bridge", name: "bad antispoof flag", args: &["online", "antispoof=maybe"], xenstore: &[], env: VIF, mode_file: None, says: "argument antispoof: \"maybe\" is not yes or no" },
    Case { mode: "bridge", name: "not a command", args: &["onlin"], xenstore: &[], env: VIF, mode_file: None, says: "command \"onlin\": not a vif command" },
    Case { mode: "bridge", name: "not key=value", args: &["online", "xenbr1"], xenstore: &[], env: VIF, mode_file: None, says: "argument \"xenbr1\": unexpected" },
    Case { mode: "bridge", name: "no vif in the environment", args: &["online"], xenstore: &[], env: &[], mode_file: None, says: "vif: missing" },
    Case { mode: "bridge", name: "no such device", args: &["online"], xenstore: &[], env: &[("vif", "vif9.9")], mode_file: None, says: "vif9.9: no such device" },
    Case { mode: "bridge", name: "vifname taken", args: &["online"], xenstore: &[("vifname", "lo")], env: VIF, mode_file: None, says: "vifname lo: cannot rename vif5.0: an interface named lo already exists" },
    Case { mode: "bridge", name: "antispoof without a MAC", args: &["online", "mac="], xenstore: &[("ip", "192.0.2.5")], env: VIF, mode_file: None, says: "mac: missing" },
    Case { mode: "bridge", name: "mode file with an unknown key", args: &["online"], xenstore: &[], env: VIF, mode_file: Some("bridgee = \"xenbr0\"\n"), says: "bridge.toml:1 bridgee: \"xenbr0\" is not a key of bridge mode files (did you mean bridge?)" },
    Case { mode: "bridge", name: "mode file syntax error", args: &["online"], xenstore: &[], env: VIF, mode_file: Some("antispoof = true\nbridge = \n"), says: "bridge.toml:2:" },
    Case { mode: "bridge", name: "mode file bad value", args: &["online"], xenstore: &[], env: VIF, mode_file: Some("bridge = \"a/b\"\n"), says: "bridge.toml bridge: \"a/b\" is not a valid interface name" },
    Case { mode: "bridge", name: "unicode vifname", args: &["online"], xenstore: &[("vifname", "wéb0")], env: VIF, mode_file: None, says: "xenstore backend/vif/5/0/vifname: \"wéb0\" is not a valid interface name (ASCII only" },
    Case { mode: "bridge", name: "unicode vifname over 15 bytes", args: &["online"], xenstore: &[("vifname", "wébwébwébwéb")], env: VIF, mode_file: None, says: "vifname: \"wébwébwébwéb\" is longer than 15 bytes" },
    Case { mode: "bridge", name: "vifname argument with a space", args: &["online", "vifname=web 0"], xenstore: &[], env: VIF, mode_file: None, says: "argument vifname: \"web 0\" is not a valid interface name" },
    Case { mode: "bridge", name: "environment bridge with a slash", args: &["online"], xenstore: &[], env: &[("vif", "vif5.0"), ("bridge", "xen/br0")], mode_file: None, says: "environment bridge: \"xen/br0\" is not a valid interface name" },
    Case { mode: "bridge", name: "environment bridge over 15 bytes", args: &["online"], xenstore: &[], env: &[("vif", "vif5.0"), ("bridge", "xenbridge-number0")], mode_file: None, says: "environment bridge: \"xenbridge-number0\" is longer than 15 bytes" },
    Case { mode: "bridge", name: "environment vif with a slash", args: &["online"], xenstore: &[], env: &[("vif", "vif5/0")], mode_file: None, says: "environment vif: \"vif5/0\" is not a valid interface name" },
    Case { mode: "bridge", name: "environment vif over 15 bytes", args: &["online"], xenstore: &[], env: &[("vif", "vif12345678.1234")], mode_file: None, says: "environment vif: \"vif12345678.1234\" is longer than 15 bytes" },
    Case { mode: "bridge", name: "environment ip not an address", args: &["online"], xenstore: &[], env: &[("vif", "vif5.0"), ("ip", "192.0.2.300")], mode_file: None, says: "environment ip: \"192.0.2.300\" is not an IPv4 or IPv6 address" },
    Case { mode: "bridge", name: "loopback guest address", args: &["online"], xenstore: &[("ip", "127.0.0.1")], env: VIF, mode_file: None, says: "xenstore backend/vif/5/0/ip: \"127.0.0.1\" is a loopback address" },
    Case { mode: "bridge", name: "MAC argument with five bytes", args: &["online", "mac=00:16:3e:00:05"], xenstore: &[("ip", "192.0.2.5")], env: VIF, mode_file: None, says: "argument mac: \"00:16:3e:00:05\" is not a MAC address" },
    Case { mode: "bridge", name: "broadcast MAC", args: &["online"], xenstore: &[("mac", "ff:ff:ff:ff:ff:ff"), ("ip", "192.0.2.5")], env: VIF, mode_file: None, says: "xenstore backend/vif/5/0/mac: \"ff:ff:ff:ff:ff:ff\" is a multicast MAC address" },
    Case { mode: "bridge", name: "all-zero MAC", args: &["online"], xenstore: &[("mac", "00:00:00:00:00:00"), ("ip", "192.0.2.5")], env: VIF, mode_file: None, says: "mac: \"00:00:00:00:00:00\" is the all-zero MAC address" },
    Case { mode: "bridge", name: "MTU argument not a number", args: &["online", "mtu=jumbo"], xenstore: &[], env: VIF, mode_file: None, says: "argument mtu: \"jumbo\" is not an MTU" },
    Case { mode: "bridge", name: "mode file bool given as a string", args: &["online"], xenstore: &[], env: VIF, mode_file: Some("antispoof = \"yes\"\n"), says: "bridge.toml:1 antispoof: \"yes\" is not a boolean" },
    Case { mode: "bridge", name: "mode file bool given as a number", args: &["online"], xenstore: &[], env: VIF, mode_file: Some("bridge = \"xenbr0\"\ncreate_bridge = 1\n"), says: "bridge.toml:2 create_bridge: 1 is not a boolean" },
    Case { mode: "bridge", name: "mode file unicode bridge", args: &["online"], xenstore: &[], env: VIF, mode_file: Some("bridge = \"brü0\"\n"), says: "bridge.toml bridge: \"brü0\" is not a valid interface name" },
    Case { mode: "route", name: "route without ip", args: &["online"], xenstore: &[], env: VIF, mode_file: None, says: "ip: missing (route mode routes the guest's own addresses" },
    Case { mode: "route", name: "route with a bad IPv6 address", args: &["online"], xenstore: &[("ip", "192.0.2.5 2001:db8::1::2")], env: VIF, mode_file: None, says: "ip: \"2001:db8::1::2\" is not an IPv4 or IPv6 address" },
    Case { mode: "route", name: "gateway is the network address", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env: VIF, mode_file: Some("gateway = \"203.0.113.192/29\"\n"), says: "route.toml gateway: \"203.0.113.192/29\" is the block's network address" },
    Case { mode: "route", name: "unknown gateway kind", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env: VIF, mode_file: Some("gateway_kind = \"tun\"\n"), says: "route.toml gateway_kind: \"tun\" is not a gateway kind (dummy, bridge)" },
    Case { mode: "route", name: "proxying without an uplink", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env: VIF, mode_file: Some("uplink_proxy = true\n"), says: "uplink_proxy: there is no uplink to answer on" },
    Case { mode: "route", name: "an uplink that does not exist", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env: VIF, mode_file: Some("netdev = \"nosuch0\"\n"), says: "route.toml netdev: \"nosuch0\" is not a link on this host" },
    Case { mode: "route", name: "route mode file with an unknown key", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env: VIF, mode_file: Some("gatway = \"x\"\n"), says: "route.toml:1 gatway: \"x\" is not a key of route mode files (did you mean gateway?)" },
    Case { mode: "nat", name: "nat without a domain name", args: &["online"], xenstore: &[], env: VIF, mode_file: Some("netdev = \"lo\"\n"), says: "name: missing (nat mode numbers machines by domain name" },
    Case { mode: "nat", name: "nat with a name that is no DNS label", args: &["online", "name=web_1"], xenstore: &[], env: VIF, mode_file: Some("netdev = \"lo\"\n"), says: "argument name: \"web_1\" is not a DNS name for the guest" },
    Case { mode: "nat", name: "nat with an address outside the prefix", args: &["online", "name=web"], xenstore: &[("ip", "192.0.2.5")], env: VIF, mode_file: Some("netdev = \"lo\"\n"), says: "xenstore backend/vif/5/0/ip: \"192.0.2.5\" is not a guest address of prefix 10.0.0.0/8" },
    Case { mode: "nat", name: "nat with two addresses", args: &["online", "name=web"], xenstore: &[("ip", "10.0.0.1 10.0.0.2")], env: VIF, mode_file: Some("netdev = \"lo\"\n"), says: "ip: \"10.0.0.1 10.0.0.2\" is not one IPv4 address" },
    Case { mode: "nat", name: "nat prefix too small", args: &["online", "name=web"], xenstore: &[], env: VIF, mode_file: Some("prefix = \"10.0.0.0/25\"\n"), says: "nat.toml prefix: \"10.0.0.0/25\" must be a network of at most /24" },
    Case { mode: "nat", name: "nat without an uplink", args: &["online", "name=web"], xenstore: &[], env: VIF, mode_file: None, says: "netdev: nat mode needs an uplink to masquerade out of" },
    Case { mode: "route", name: "route ip argument not an address", args: &["online", "ip=203.0.113.300"], xenstore: &[], env: VIF, mode_file: None, says: "argument ip: \"203.0.113.300\" is not an IPv4 or IPv6 address" },
    Case { mode: "route", name: "route multicast guest address", args: &["online"], xenstore: &[("ip", "224.0.0.5")], env: VIF, mode_file: None, says: "xenstore backend/vif/5/0/ip: \"224.0.0.5\" is not a unicast address" },
    Case { mode: "route", name: "route IPv6 loopback", args: &["online"], xenstore: &[("ip", "192.0.2.5 ::1")], env: VIF, mode_file: None, says: "ip: \"::1\" is a loopback address" },
    Case { mode: "route", name: "route netdev from libxl naming a missing link", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env: &[("vif", "vif5.0"), ("netdev", "nosuch0")], mode_file: None, says: "environment netdev: \"nosuch0\" is not a link on this host" },
    Case { mode: "route", name: "route gatewaydev in xenstore naming a missing link", args: &["online"], xenstore: &[("ip", "192.0.2.5"), ("gatewaydev", "nosuch1")], env: VIF, mode_file: None, says: "xenstore backend/vif/5/0/gatewaydev: \"nosuch1\" is not a link on this host" },
    Case { mode: "route", name: "route netdev argument naming a missing link", args: &["online", "netdev=nosuch2"], xenstore: &[("ip", "192.0.2.5")], env: VIF, mode_file: None, says: "argument netdev: \"nosuch2\" is not a link on this host" },
    Case { mode: "route", name: "route netdev with a slash", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env: &[("vif", "vif5.0"), ("netdev", "eth/0")], mode_file: None, says: "environment netdev: \"eth/0\" is not a valid interface name" },
    Case { mode: "route", name: "route MTU too big", args: &["online", "mtu=70000"], xenstore: &[("ip", "192.0.2.5")], env: VIF, mode_file: None, says: "argument mtu: \"70000\" is not an MTU" },
    Case { mode: "route", name: "route mode file misspelt key", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env: VIF, mode_file: Some("uplink_proxi = true\n"), says: "route.toml:1 uplink_proxi: true is not a key of route mode files (did you mean uplink_proxy?)" },
    Case { mode: "route", name: "route mode file bool as a string", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env: VIF, mode_file: Some("uplink_proxy = \"yes\"\n"), says: "route.toml:1 uplink_proxy: \"yes\" is not a boolean" },
    Case { mode: "route", name: "route mode file gateway as a list", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env: VIF, mode_file: Some("gateway = [\"203.0.113.193/29\"]\n"), says: "route.toml:1 gateway: [\"203.0.113.193/29\"] is not a string" },
    Case { mode: "route", name: "route two gateways of one family", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env: VIF, mode_file: Some("gateway = \"203.0.113.193/29 198.51.100.1/29\"\n"), says: "route.toml gateway: \"198.51.100.1/29\" is a second gateway of the same family" },
    Case { mode: "route", name: "route gateway link name with a slash", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env: VIF, mode_file: Some("gateway_link = \"dummy/0\"\n"), says: "route.toml gateway_link: \"dummy/0\" is not a valid interface name" },
    Case { mode: "nat", name: "nat IPv6 guest address", args: &["online", "name=web"], xenstore: &[("ip", "fd00::5")], env: VIF, mode_file: Some(nat_toml!("")), says: "xenstore backend/vif/5/0/ip: \"fd00::5\" is not one IPv4 address" },
    Case { mode: "nat", name: "nat IPv6 prefix", args: &["online", "name=web"], xenstore: &[], env: VIF, mode_file: Some(nat_toml!("prefix = \"fd00::/64\"\n")), says: "nat.toml prefix: \"fd00::/64\" is not an IPv4 prefix" },
    Case { mode: "nat", name: "nat prefix with host bits", args: &["online", "name=web"], xenstore: &[], env: VIF, mode_file: Some(nat_toml!("prefix = \"10.1.2.3/16\"\n")), says: "nat.toml prefix: \"10.1.2.3/16\" must be a network" },
    Case { mode: "nat", name: "nat address of the host side", args: &["online", "name=web"], xenstore: &[("ip", "10.0.0.129")], env: VIF, mode_file: Some(nat_toml!("")), says: "xenstore backend/vif/5/0/ip: \"10.0.0.129\" is not a guest address of prefix 10.0.0.0/8" },
    Case { mode: "nat", name: "nat address outside the prefix argument", args: &["online", "name=web", "ip=192.168.1.1"], xenstore: &[], env: VIF, mode_file: Some(nat_toml!("")), says: "argument ip: \"192.168.1.1\" is not a guest address of prefix 10.0.0.0/8" },
    Case { mode: "nat", name: "nat domain name from xenstore with a space", args: &["online"], xenstore: &[("frontend-id", "5"), ("/local/domain/5/name", "web server")], env: VIF, mode_file: Some(nat_toml!("")), says: "xenstore /local/domain/5/name: \"web server\" is not a DNS name" },
    Case { mode: "nat", name: "nat handle out of range", args: &["online", "name=web"], xenstore: &[("handle", "200")], env: VIF, mode_file: Some(nat_toml!("")), says: "xenstore backend/vif/5/0/handle: \"200\" is not a number below 127" },
    Case { mode: "nat", name: "nat netdev argument naming a missing link", args: &["online", "name=web", "netdev=nosuch3"], xenstore: &[], env: VIF, mode_file: Some(nat_toml!("")), says: "argument netdev: \"nosuch3\" is not a link on this host" },
    Case { mode: "nat", name: "nat mode file netdev naming a missing link", args: &["online", "name=web"], xenstore: &[], env: VIF, mode_file: Some("netdev = \"nosuch4\"\n"), says: "nat.toml netdev: \"nosuch4\" is not a link on this host" },
    Case { mode: "nat", name: "nat mode file bad DNS domain", args: &["online", "name=web"], xenstore: &[], env: VIF, mode_file: Some(nat_toml!("domain = \"xen..internal\"\n")), says: "nat.toml domain: \"xen..internal\" is not a DNS domain" },
    Case { mode: "nat", name: "nat mode file relative hosts path", args: &["online", "name=web"], xenstore: &[], env: VIF, mode_file: Some("netdev = \"lo\"\nhosts = \"nat-hosts\"\n"), says: "nat.toml hosts: \"nat-hosts\" is not an absolute path" },
    Case { mode: "nat", name: "nat mode file misspelt key", args: &["online", "name=web"], xenstore: &[], env: VIF, mode_file: Some(nat_toml!("domian = \"lab.internal\"\n")), says: "nat.toml:6 domian: \"lab.internal\" is not a key of nat mode files (did you mean domain?)" },
    Case { mode: "nat", name: "nat mode file bool as a string", args: &["online", "name=web"], xenstore: &[], env: VIF, mode_file: Some(nat_toml!("antispoof = \"no\"\n")), says: "nat.toml:6 antispoof: \"no\" is not a boolean" },
    Case { mode: "route", name: "modes directory that does not exist", args: &["online"], xenstore: &[("ip", "192.0.2.5")], env: &[("vif", "vif5.0"), ("VIFNET_MODES_DIR", "/nonexistent/vifnet-modes")], mode_file: None, says: "environment VIFNET_MODES_DIR: \"/nonexistent/vifnet-modes\" is not a directory" },
    Case { mode: "nat", name: "nat multicast MAC argument", args: &["online", "name=web", "mac=33:33:00:00:00:01"], xenstore: &[], env: VIF, mode_file: Some(nat_toml!("")), says: "argument mac: \"33:33:00:00:00:01\" is a multicast MAC address" },
];

/// Everything a failed call could have touched, to compare before and after: the host as
/// `ip -j` and `nft -j` see it, the forwarding sysctls, the state directory's files, and the
/// test's own hosts and ethers files.
fn host_state(ns: &Netns, dirs: &Dirs) -> String {
    let base = dirs.state.parent().unwrap();
    let files: Vec<String> = ["hosts", "ethers"].iter().map(|f| format!("{f}: {:?}", read(&base.join(f)))).collect();
    [
        host_dump(ns),
        ns.ok(&["sysctl", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]),
        format!("{:?}", state_bytes(dirs)),
        files.join("\n"),
    ]
    .join("\n")
}

/// What every refused call must show; each problem found is one entry.
fn refusal_problems(out: &std::process::Output, says: &str, hotplug: Option<(&str, &str)>, changed: bool) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let mut problems: Vec<String> = [
        (out.status.code() != Some(1)).then(|| format!("exit {:?}", out.status.code())),
        (lines.len() != 1).then(|| format!("{} lines on stderr", lines.len())),
        (!stderr.contains(says)).then(|| "stderr does not say it".to_string()),
        changed.then(|| "the host changed".to_string()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some((error, status)) = hotplug {
        if lines.first().map(|l| l.strip_prefix("vifnet: ").unwrap_or(l)) != Some(error) {
            problems.push(format!("hotplug-error is {error:?}"));
        }
        if status != "error" {
            problems.push(format!("hotplug-status is {status:?}"));
        }
    }
    problems
}

/// Backend keys a case may set, cleared before each.
const BACKEND_KEYS: &[&str] = &["mac", "bridge", "ip", "vifname", "mtu", "gatewaydev", "frontend-id", "handle", "hotplug-error", "hotplug-status"];

#[test]
fn every_bad_input_gets_one_line_exit_1_hotplug_error_and_no_change() {
    if !root_or_skip() {
        return;
    }
    // The catalogue: this table, the setup table below and the cases with tests of their own.
    assert!(CASES.len() + SETUP_CASES.len() + OTHER_CASES >= 40);
    let dom0 = Netns::new("bad");
    let guest = Netns::new("badg");
    veth(&dom0, "vif5.0", &guest, "eth0");
    let dirs = Dirs::new();
    let base = dirs.state.parent().unwrap().to_path_buf();
    // Someone else's machine in the hosts file: a nat refusal must leave it as it is.
    std::fs::write(base.join("hosts"), "10.0.0.1 other other.xen.internal\n").unwrap();
    std::fs::write(base.join("ethers"), "00:16:3e:00:00:99 10.0.0.1\n").unwrap();
    let sock = std::env::temp_dir().join(unique("xs.sock"));
    let xs = fake::serve(&sock);
    let mut failures = Vec::new();
    for case in CASES {
        // A fresh backend directory as libxl writes it.
        for key in BACKEND_KEYS {
            xs.set(&format!("{ABS}/{key}"), "");
        }
        xs.set("/local/domain/5/name", "");
        xs.set(&format!("{ABS}/mac"), "00:16:3e:00:00:05");
        xs.set(&format!("{ABS}/bridge"), "xenbr0");
        for (k, v) in case.xenstore {
            let path = if k.starts_with('/') { k.to_string() } else { format!("{ABS}/{k}") };
            xs.set(&path, v);
        }
        let mode_path = dirs.modes.join(format!("{}.toml", case.mode));
        match case.mode_file {
            Some(text) => std::fs::write(&mode_path, text.replace("@DIR@", base.to_str().unwrap())).unwrap(),
            None => {
                let _ = std::fs::remove_file(&mode_path);
            }
        }
        let before = host_state(&dom0, &dirs);
        let sock_s = sock.to_str().unwrap();
        let mut env = vec![("XENBUS_PATH", BACKEND), ("XENSTORED_PATH", sock_s)];
        env.extend_from_slice(case.env);
        let mut args = vec!["vif", case.mode];
        args.extend_from_slice(case.args);
        let out = vifnet(&dom0, &dirs, &env, &args);
        let hotplug_error = xs.get(&format!("{ABS}/hotplug-error")).unwrap_or_default();
        let status = xs.get(&format!("{ABS}/hotplug-status")).unwrap_or_default();
        let changed = host_state(&dom0, &dirs) != before || dirs.journal_count() != 0;
        let problems = refusal_problems(&out, case.says, Some((&hotplug_error, &status)), changed);
        if !problems.is_empty() {
            failures.push(format!("{} ({}): {} (stderr: {:?})", case.name, case.mode, problems.join(", "), String::from_utf8_lossy(&out.stderr)));
        }
        let _ = std::fs::remove_file(&mode_path);
    }
    assert!(failures.is_empty(), "\n{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
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

/// A bad configuration for `vifnet setup`: the files it reads, each optional.
struct SetupCase {
    name: &'static str,
    xend: Option<&'static str>,
    xl: Option<&'static str>,
    /// Domain configs; a good bridged one when none is given.
    doms: &'static [&'static str],
    /// `(mode, text)`: a mode file in the directory given with --modes-dir.
    mode_file: Option<(&'static str, &'static str)>,
    /// --modes-dir names a directory that does not exist.
    no_modes_dir: bool,
    says: &'static str,
}

const GOOD_DOM: &str = "name = \"web\"\nvif = [ 'mac=00:16:3e:00:00:01, ip=192.0.2.10' ]\n";
const XEND_ROUTE: &str = "(network-script network-route)\n(vif-script vif-route)\n";
const XEND_NAT: &str = "(network-script network-nat)\n(vif-script vif-nat)\n";

const SETUP_CASES: &[SetupCase] = &[
    SetupCase { name: "sxp syntax error", xend: Some("(network-script 'network-bridge netdev=eth0'\n(vif-script vif-bridge)\n"), xl: None, doms: &[], mode_file: None, no_modes_dir: false, says: "bad.sxp:" },
    SetupCase { name: "empty network-script", xend: Some("(network-script)\n"), xl: None, doms: &[], mode_file: None, no_modes_dir: false, says: "bad.sxp:1" },
    SetupCase { name: "bad bridge name from sxp", xend: Some("(vif-script 'vif-bridge bridge=br/0')\n"), xl: None, doms: &[], mode_file: None, no_modes_dir: false, says: "web vif[0] bridge: \"br/0\"" },
    SetupCase { name: "misspelt network-script argument", xend: Some("(network-script 'network-route netdevv=eth0')\n"), xl: None, doms: &[], mode_file: None, no_modes_dir: false, says: "bad.sxp network-script netdevv: \"eth0\" is not a key of network-route (did you mean netdev?)" },
    SetupCase { name: "IPv6 nat prefix from sxp", xend: Some("(network-script 'network-nat prefix=fd00::/64')\n"), xl: None, doms: &[], mode_file: None, no_modes_dir: false, says: "bad.sxp network-script prefix: \"fd00::/64\" is not an IPv4 prefix" },
    SetupCase { name: "multicast MAC in a domain config", xend: None, xl: None, doms: &["name = \"db\"\nvif = [ 'mac=01:00:5e:00:00:01' ]\n"], mode_file: None, no_modes_dir: false, says: "db vif[0] mac: \"01:00:5e:00:00:01\" is a multicast" },
    SetupCase { name: "vif entry without =", xend: None, xl: None, doms: &["name = \"db\"\nvif = [ 'mac=00:16:3e:00:00:02, xenbr1' ]\n"], mode_file: None, no_modes_dir: false, says: "bad.cfg:2" },
    SetupCase { name: "misspelt vif key", xend: None, xl: None, doms: &["name = \"db\"\nvif = [ 'mac=00:16:3e:00:00:02, brige=xenbr0' ]\n"], mode_file: None, no_modes_dir: false, says: "bad.cfg:2 vif[0] brige: \"xenbr0\" is not a key of vif entries (did you mean bridge?)" },
    SetupCase { name: "domain without a name", xend: None, xl: None, doms: &["memory = 512\n"], mode_file: None, no_modes_dir: false, says: "name: missing" },
    SetupCase { name: "bad ip in a domain config", xend: None, xl: None, doms: &["name = \"db\"\nvif = [ 'ip=192.0.2.300' ]\n"], mode_file: None, no_modes_dir: false, says: "db vif[0] ip: \"192.0.2.300\"" },
    SetupCase { name: "unicode vifname in a domain config", xend: None, xl: None, doms: &["name = \"db\"\nvif = [ 'vifname=dbé' ]\n"], mode_file: None, no_modes_dir: false, says: "db vif[0] vifname: \"dbé\" is not a valid interface name" },
    SetupCase { name: "long vifname in a domain config", xend: None, xl: None, doms: &["name = \"db\"\nvif = [ 'vifname=db-frontend-lan0' ]\n"], mode_file: None, no_modes_dir: false, says: "db vif[0] vifname: \"db-frontend-lan0\" is longer than 15 bytes" },
    SetupCase { name: "IPv6 nat address in a domain config", xend: Some(XEND_NAT), xl: None, doms: &["name = \"db\"\nvif = [ 'mac=00:16:3e:00:00:02, ip=fd00::5' ]\n"], mode_file: None, no_modes_dir: false, says: "db vif[0] ip: \"fd00::5\" is not one IPv4 address" },
    SetupCase { name: "two routed domains claiming one address", xend: Some(XEND_ROUTE), xl: None, doms: &[GOOD_DOM, "name = \"db\"\nvif = [ 'ip=192.0.2.10' ]\n"], mode_file: None, no_modes_dir: false, says: "db vif[0] ip: \"192.0.2.10\" is already web vif[0]'s address" },
    SetupCase { name: "xl.conf unterminated string", xend: None, xl: Some("vif.default.bridge = \"xenbr0\n"), doms: &[], mode_file: None, no_modes_dir: false, says: "bad.conf:1" },
    SetupCase { name: "xl.conf default bridge with a slash", xend: None, xl: Some("vif.default.bridge = \"br/0\"\n"), doms: &[], mode_file: None, no_modes_dir: false, says: "bad.conf:1 vif.default.bridge: \"br/0\" is not a valid interface name" },
    SetupCase { name: "xl.conf script of another kind", xend: None, xl: Some("vif.default.script = \"vif-openvswitch\"\n"), doms: &[], mode_file: None, no_modes_dir: false, says: "vif.default.script: \"vif-openvswitch\" is not a mode vifnet simulates" },
    SetupCase { name: "route mode file misspelt key", xend: Some(XEND_ROUTE), xl: None, doms: &[], mode_file: Some(("route", "uplink_proxi = true\n")), no_modes_dir: false, says: "route.toml:1 uplink_proxi: true is not a key of route mode files (did you mean uplink_proxy?)" },
    SetupCase { name: "bridge mode file bool as a string", xend: None, xl: None, doms: &[], mode_file: Some(("bridge", "antispoof = \"yes\"\n")), no_modes_dir: false, says: "bridge.toml:1 antispoof: \"yes\" is not a boolean" },
    SetupCase { name: "nat mode file IPv6 prefix", xend: Some(XEND_NAT), xl: None, doms: &[], mode_file: Some(("nat", "prefix = \"fd00::/64\"\n")), no_modes_dir: false, says: "nat.toml prefix: \"fd00::/64\" is not an IPv4 prefix" },
    SetupCase { name: "modes directory that does not exist", xend: Some(XEND_ROUTE), xl: None, doms: &[], mode_file: None, no_modes_dir: true, says: "--modes-dir: \"/nonexistent/vifnet-modes\" is not a directory" },
];

/// Catalogue cases with a test of their own: an unreachable xenstored, a routed address
/// claimed by a second vif.
const OTHER_CASES: usize = 2;

/// Each case twice, with and without --dry-run: both read everything first.
#[test]
fn bad_config_files_for_setup_are_one_line_errors_and_build_nothing() {
    if !root_or_skip() {
        return;
    }
    let dir = std::env::temp_dir().join(unique("cfg"));
    let modes = dir.join("modes");
    std::fs::create_dir_all(&modes).unwrap();
    let mut failures = Vec::new();
    for (case, dry_run) in SETUP_CASES.iter().flat_map(|c| [(c, false), (c, true)]) {
        let path = |name: &str, text: Option<&str>| -> Option<String> {
            let file = dir.join(name);
            std::fs::write(&file, text?).unwrap();
            Some(file.to_str().unwrap().to_string())
        };
        let xend = path("bad.sxp", case.xend);
        let xl = path("bad.conf", case.xl);
        let mut args: Vec<String> = ["setup", "--simulate", "--prefix", "vfbad"].map(String::from).to_vec();
        if dry_run {
            args.push("--dry-run".into());
        }
        for (flag, file) in [("--xend-config", xend), ("--xl-conf", xl)] {
            if let Some(f) = file {
                args.extend([flag.to_string(), f]);
            }
        }
        for f in std::fs::read_dir(&modes).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        if let Some((mode, text)) = case.mode_file {
            std::fs::write(modes.join(format!("{mode}.toml")), text).unwrap();
        }
        let modes_arg = if case.no_modes_dir { "/nonexistent/vifnet-modes".to_string() } else { modes.to_str().unwrap().to_string() };
        args.extend(["--modes-dir".to_string(), modes_arg]);
        let doms = if case.doms.is_empty() { &[GOOD_DOM][..] } else { case.doms };
        for (i, text) in doms.iter().enumerate() {
            // The last one is the bad one, named in messages.
            let name = if i + 1 == doms.len() { "bad.cfg".to_string() } else { format!("good{i}.cfg") };
            args.extend(path(&name, Some(text)));
        }
        let out = std::process::Command::new(vifnet_bin()).args(&args).output().unwrap();
        // Other tests make namespaces meanwhile; none of ours may exist.
        let problems = refusal_problems(&out, case.says, None, netns_list().contains("vfbad-"));
        if !problems.is_empty() {
            let how = if dry_run { " (--dry-run)" } else { "" };
            failures.push(format!("{}{how}: {} ({:?})", case.name, problems.join(", "), String::from_utf8_lossy(&out.stderr)));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// libxl's backend directory is set but xenstored is not there: one line naming the
/// socket, exit 1, nothing changed. There is nowhere to write `hotplug-error`.
#[test]
fn an_unreachable_xenstore_is_one_line_and_no_change() {
    if !root_or_skip() {
        return;
    }
    let dom0 = Netns::new("noxs");
    let guest = Netns::new("noxsg");
    veth(&dom0, "vif5.0", &guest, "eth0");
    let dirs = Dirs::new();
    let missing = std::env::temp_dir().join(unique("no-xenstored.sock"));
    let before = host_state(&dom0, &dirs);
    let env = [("XENBUS_PATH", BACKEND), ("XENSTORED_PATH", missing.to_str().unwrap()), ("vif", "vif5.0")];
    let out = vifnet(&dom0, &dirs, &env, &["vif", "bridge", "online", "type_if=vif"]);
    let says = format!("{}", missing.display());
    let problems = refusal_problems(&out, &says, None, host_state(&dom0, &dirs) != before || dirs.journal_count() != 0);
    assert!(problems.is_empty(), "{} ({:?})", problems.join(", "), String::from_utf8_lossy(&out.stderr));
}

/// A second routed guest claiming an address already routed to another guest's vif is
/// refused, naming that vif, with nothing changed; the first keeps its route.
#[test]
fn a_routed_address_claimed_by_a_second_vif_is_refused_naming_the_first() {
    claimed_twice(true, "xenstore backend/vif/6/0/ip: \"203.0.113.194\" is routed to vif5.0 already");
}

/// The same while the first guest does not run (its vif without carrier, its route dead,
/// which the kernel's lookup passes over): the route's own add finds it, and the online is
/// rolled back.
#[test]
fn a_routed_address_of_a_guest_not_running_is_refused_too() {
    claimed_twice(false, "203.0.113.194/32 is routed through another link already, with metric 2");
}

fn claimed_twice(first_runs: bool, says: &str) {
    if !root_or_skip() {
        return;
    }
    let lab = Libxl::new(if first_runs { "dup" } else { "dupdead" }, &[("mac", "00:16:3e:00:00:05"), ("ip", "203.0.113.194")]);
    if first_runs {
        lab._guest.ok(&["ip", "link", "set", "eth0", "up"]);
    }
    let guest6 = Netns::new("dupg6");
    veth(&lab.dom0, "vif6.0", &guest6, "eth0");
    std::fs::write(lab.dirs.modes.join("route.toml"), "gateway = \"203.0.113.193/29\"\ngateway_kind = \"bridge\"\n").unwrap();
    lab.run("route", "online");
    let abs6 = "/local/domain/0/backend/vif/6/0";
    for (k, v) in [("mac", "00:16:3e:00:00:06"), ("ip", "203.0.113.195 203.0.113.194")] {
        lab.xs.set(&format!("{abs6}/{k}"), v);
    }
    let before = host_state(&lab.dom0, &lab.dirs);
    let env = [("XENBUS_PATH", "backend/vif/6/0"), ("XENSTORED_PATH", lab.sock.to_str().unwrap()), ("vif", "vif6.0")];
    let out = vifnet(&lab.dom0, &lab.dirs, &env, &["vif", "route", "online", "type_if=vif"]);
    let error = lab.xs.get(&format!("{abs6}/hotplug-error")).unwrap_or_default();
    let status = lab.xs.get(&format!("{abs6}/hotplug-status")).unwrap_or_default();
    // Found only by the route's own add, after the vif was brought up and rolled back: a
    // link that has been up keeps the default qdisc where it had none; nothing else stays.
    let qdisc = |s: String| s.replace("\"qdisc\":\"noop\"", "\"qdisc\":\"noqueue\"");
    let (before, after) = (qdisc(before), qdisc(host_state(&lab.dom0, &lab.dirs)));
    let problems = refusal_problems(&out, says, Some((&error, &status)), after != before);
    let diff: Vec<String> = after.lines().filter(|l| !before.lines().any(|b| b == *l)).map(String::from).collect();
    assert!(problems.is_empty(), "{} ({:?}); now: {diff:?}", problems.join(", "), String::from_utf8_lossy(&out.stderr));
    assert!(lab.dom0.ok(&["ip", "route", "show", "proto", "118"]).contains("203.0.113.194 dev vif5.0"));
    lab.run("route", "offline");
}
