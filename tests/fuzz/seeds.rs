//! Starting corpora: the files shipped in examples/ and modes/, plus hand-written inputs
//! near the edges of each syntax (escapes, nesting, appends, errors that must stay one line).

use vifnet::xenstore::wire::{self, Message};

fn corpus(files: &[&str], tricky: &[&str]) -> Vec<Vec<u8>> {
    files.iter().chain(tricky).map(|s| s.as_bytes().to_vec()).collect()
}

pub fn sxp() -> Vec<Vec<u8>> {
    corpus(
        &[
            include_str!("../../examples/bridge/xend-config.sxp"),
            include_str!("../../examples/route-29/xend-config.sxp"),
            include_str!("../../examples/nat-cluster/xend-config.sxp"),
        ],
        &[
            "(network-script 'network-bridge netdev=eth1 bridge=xenbr1')\n(vif-script vif-bridge)\n",
            "(network-script network-route)\r\n(vif-script     vif-route)\r\n",
            "(xen-api-server ((9363 pam '^localhost$ example\\\\.com$')\n                 (unix none)))\n",
            "(a \"\\a\\b\\t\\n\\v\\f\\r\\\\\\'\\\"\\x41\\x4\\xg\\101\\777\\8\\q\" 'it\\'s')",
            "(a 'x # y') # gone\n(b \"it's\")",
            "(network-script '')\n(network-script network-bridge)",
            "(vif-script)\n(network-script network-bridge netdev=eth1)",
            "(network-script 'network-bridge $(reboot)=1 net dev=eth1')",
            "(network-script 'netdev=eth1 network-bridge')\n(vif-script (vif-bridge))",
            "(vif-script 'vif-bridge bridge=brü')\n(network-script \"/etc/xen/scripts/network-nat\")",
            "(a b))\n",
            "(a (b (c (d (e)))))",
            "(a 'unterminated\n",
            "(a \u{1}b)",
            "",
        ],
    )
}

pub fn xl_conf() -> Vec<Vec<u8>> {
    corpus(
        &[
            include_str!("../../examples/bridge/xl.conf"),
            include_str!("../../examples/route-29/xl.conf"),
            include_str!("../../examples/nat-cluster/xl.conf"),
        ],
        &[
            "run_hotplug_scripts=1\nvif.default.gatewaydev = 'eth0'\nvif.default.script=\"vif-route\"   # routed\nvif.default.bridge = \"xenbr1\";\nmax_grant_frames = 0x40\n",
            "vif.default.bridge='a'; vif.default.bridge=\"b\"\nrun_hotplug_scripts = 0\nvif.default.backend=\"driver-dom\"",
            "run_hotplug_scripts = \"1\"\nvif.default.backend = 0",
            "a = \"q\\\"x\\\\y\\n\\x41\\101\" ; b = 'it\\'s'\nc = [ ]\nd = [ 'x', 7, \"y\", ]\ne=017\nf=[[\"1\", '2'], ['3']]\n",
            "a = 'x'\na += 'y'\nl = ['1']\nl += ['2', '3']\nn += 'new'\n",
            "disk = [\n  'phy:/dev/vg/web,xvda,w',   # root\n\n  'file:/srv/web-swap.img,xvdb,w'\n  ]\nmemory = 512\n",
            "a = \"x # y\" # comment\r\nb = 1\r\n",
            "memory = 512M\nx = 'a\\qb'\ny = '\\x4'\n",
            "name = \"web\" + \"1\"\nkernel = os.path.join('a')\nmemory = -1\n",
            "run_hotplug_scripts = 'yes'\nvif.default.bridge = [ 'a' ]\n",
            "n = 1\nn += 2\na = 'x'\na += ['y']\n",
            "big = 0xffffffffffffffff\nbig8 = 01777777777777777777777\nbig10 = 9223372036854775808\n",
            "a = 1",
            "",
        ],
    )
}

pub fn domain() -> Vec<Vec<u8>> {
    corpus(
        &[
            include_str!("../../examples/bridge/web.cfg"),
            include_str!("../../examples/bridge/db.cfg"),
            include_str!("../../examples/route-29/web.cfg"),
            include_str!("../../examples/route-29/mail.cfg"),
            include_str!("../../examples/nat-cluster/node1.cfg"),
            include_str!("../../examples/nat-cluster/node4.cfg"),
        ],
        &[
            "name = \"web\"\ntype = \"pvh\"\nmemory = 1024\nvif = [\n    'mac=00:16:3e:12:34:56, bridge=xenbr0, vifname=web-lan',   # LAN\n    \"mac=00:16:3e:12:34:57,script=vif-route,ip=192.0.2.10 2001:db8::10\",\n]\ndisk = [ 'phy:/dev/vg0/web-root,xvda,w',\n         'phy:/dev/vg0/web-swap,xvdb,w' ]\nvnuma = [ [ \"pnode=0\", \"size=512\", \"vcpus=0\", \"vdistances=10,20\" ],\n          [ \"pnode=1\", \"size=512\", \"vcpus=1\", \"vdistances=20,10\" ] ]\n",
            "name='db'\nvif = [ 'mac=00:16:3e:00:00:01, ip=10.0.0.2', '' ]\n",
            "name='a'\nvif=['bridge=x']\nvif+=['bridge=y']",
            "name = 'web'\nvif = [ ['bridge=xenbr0'] ]\n",
            "name = 'web'\nvif = 'bridge=xenbr0'\n",
            "name = 'web'\nvif = [ 7, 'bridge=xenbr0, xenbr1' ]\n",
            "name = [ 'web' ]\n",
            "\nname = ''\n",
            "memory = 512\nvif = [ 'bridge=xenbr0' ]\n",
        ],
    )
}

pub fn vif_spec() -> Vec<Vec<u8>> {
    corpus(
        &[],
        &[
            "mac=00:16:3e:12:34:56, bridge=xenbr0, vifname=web-lan",
            "mac=00:16:3e:12:34:57,script=vif-route,ip=192.0.2.10 2001:db8::10",
            "rate=10Mb/s@20ms,type=vif,backend=0,model=e1000,gatewaydev=eth0,mtu=9000,devid=3,trusted=1",
            "  ,mac=00:16:3e:00:00:02 ,, script=vif-route,  ",
            "",
            "=x",
            "bridge = xenbr0",
            "mac=00:16:3e:00:00:01, xenbr0",
            "ip=a=b,bridge=",
        ],
    )
}

pub fn bridge_mode() -> Vec<Vec<u8>> {
    corpus(
        &[include_str!("../../modes/bridge.toml"), include_str!("../../examples/bridge/bridge.toml")],
        &[
            "bridge = 'xenbr1' # c\ntakeover = true\nnetdev = \"eth\\u00e9\"\n",
            "takeover = 1\n",
            "bridge = \"\"\"multi\nline\"\"\"\n",
            "[bridge]\nx = 1\n",
            "bridge = 'a'\nbridge = 'b'\n",
            "antispoof = \"yes\"\nwho = 1\n",
        ],
    )
}

pub fn route_mode() -> Vec<Vec<u8>> {
    corpus(
        &[include_str!("../../modes/route.toml"), include_str!("../../examples/route-29/route.toml")],
        &[
            "gateway = \"80.68.86.193/29 2001:db8:42::1/64\"\ngateway_kind = 'bridge'\nuplink_proxy = true\n",
            "gateway = { a = 1 }\n",
            "gateway_link = [\"dummy0\"]\n",
            "netdev = \"\\U0010FFFF\"\ndate = 1979-05-27T07:32:00Z\n",
            "a.b.c = 1\n",
        ],
    )
}

pub fn nat_mode() -> Vec<Vec<u8>> {
    corpus(
        &[include_str!("../../modes/nat.toml"), include_str!("../../examples/nat-cluster/nat.toml")],
        &[
            "prefix = \"10.10.0.0/16\"\ndomain = 'cluster.internal'\nrun_dnsmasq = false\n",
            "hosts = '''C:\\path'''\nethers = \"/etc/ethers\"\n",
            "run_dnsmasq = 0x1\n",
            "[[x]]\n[[x]]\n",
            "prefix = 10.0.0.0\n",
        ],
    )
}

/// Replies as xenstored sends them, back to back and torn, and headers whose length field
/// is over the limit (up to 0xffffffff), which must be refused before any allocation.
pub fn xenstore() -> Vec<Vec<u8>> {
    let msg = |kind, req, tx, payload: &[u8]| Message::new(kind, req, tx, payload).encode().expect("small payload");
    let header = |len: u32| {
        let mut h = msg(wire::READ, 1, 0, b"");
        h[12..16].copy_from_slice(&len.to_le_bytes());
        h
    };
    let read = msg(wire::READ, 7, 0, b"00:16:3e:00:00:05");
    let dir = msg(wire::DIRECTORY, 8, 0, b"0\x001\x00handle\x00");
    let error = msg(wire::ERROR, 9, 3, b"ENOENT\0");
    let watch = msg(wire::WATCH_EVENT, 0, 0, b"backend/vif\0token\0");
    let tx = msg(wire::TRANSACTION_START, 10, 0, b"17\0");
    let full = msg(wire::WRITE, 11, 0, &[b'x'; wire::PAYLOAD_MAX]);
    vec![
        read.clone(),
        [watch.clone(), read.clone(), dir.clone()].concat(),
        [error, tx, watch].concat(),
        read[..read.len() - 1].to_vec(),
        read[..5].to_vec(),
        full,
        header(wire::PAYLOAD_MAX as u32),
        header(wire::PAYLOAD_MAX as u32 + 1),
        header(0x8000_0000),
        header(0xffff_ffff),
        [header(0xffff_ffff), vec![0; 64]].concat(),
        [dir, header(0xffff_ffff)].concat(),
        Vec::new(),
    ]
}
