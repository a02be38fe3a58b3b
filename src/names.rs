//! Every name vifnet owns, in one place: teardown selects by these, never by guessing.

/// Our nftables tables' name: `bridge vifnet` (bridged guests) and `inet vifnet` (routed
/// and NATed guests).
pub const NFT_TABLE: &str = "vifnet";
/// Set of the bridge ports whose frames are checked.
pub const SET_GUARDED: &str = "guarded";
/// `ifname . ether_addr`: the MAC each guarded port may send from.
pub const SET_VIF_MAC: &str = "vif_mac";
/// `ifname . ipv4_addr`: the IPv4 addresses each guarded port may send from. A hash set,
/// so adding and deleting a guest costs the same however many there are.
pub const SET_VIF_IP4: &str = "vif_ip4";
/// `ifname . ipv6_addr`: the same for IPv6 (its EUI-64 link-local address included).
pub const SET_VIF_IP6: &str = "vif_ip6";
/// `ifname . ipv4_addr` intervals: IPv4 prefixes a port may send from (`ip=10.1.0.0/24`).
/// Interval sets of concatenations copy their whole lookup table on every change, so only
/// prefixes, which are rare, go here.
pub const SET_VIF_NET4: &str = "vif_net4";
/// `ifname . ipv6_addr` intervals: IPv6 prefixes.
pub const SET_VIF_NET6: &str = "vif_net6";

/// The protocol number on every route vifnet adds (`ip route ... proto 118`; `make install`
/// names it `vifnet` in /etc/iproute2/rt_protos.d). Teardown deletes only routes with it.
pub const ROUTE_PROTOCOL: u8 = 118;

/// A mode's sysctl drop-in, so that a `sysctl --system` keeps its settings; the directory
/// is `$VIFNET_SYSCTL_DIR`, else /run/sysctl.d (gone at reboot, as our state is).
pub fn sysctl_dropin(mode: &str) -> String {
    format!("99-vifnet-{mode}.conf")
}

/// Where a mode's drop-in is: `$VIFNET_SYSCTL_DIR` (tests), else /run/sysctl.d.
pub fn sysctl_dropin_path(mode: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("VIFNET_SYSCTL_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| std::path::PathBuf::from(SYSCTL_DIR));
    dir.join(sysctl_dropin(mode))
}

/// A mode's drop-in as written: a header naming us, then `key = value` lines.
pub fn sysctl_dropin_text(mode: &str, lines: &[(String, String)]) -> String {
    let mut text = format!("# Written by vifnet ({mode} mode) and removed by `vifnet network {mode} stop`.\n");
    for (k, v) in lines {
        text.push_str(&format!("{k} = {v}\n"));
    }
    text
}
pub const SYSCTL_DIR: &str = "/run/sysctl.d";

/// `ifname . ipv4_addr` intervals in `inet vifnet`: masquerade sources in this prefix going
/// out of this uplink (nat mode; an element, so a second start adds no second rule).
pub const SET_MASQ_OUT: &str = "masq_out";

/// The alias written on links vifnet created, so `stop` deletes only its own.
pub const LINK_ALIAS: &str = "vifnet";

/// MAC of the host side of a bridged vif, as Xen sets it: the largest non-broadcast
/// address, so it never becomes the bridge's own MAC or STP id.
pub const PORT_MAC: [u8; 6] = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff];

/// Default state directory (lock, journal); `VIFNET_STATE_DIR` overrides it.
pub const STATE_DIR: &str = "/run/vifnet";
/// In the state directory: where the children that close nf_tables sockets queue
/// (`apply/close_later.rs`).
pub const NFT_RELEASE_QUEUE: &str = "nft-release.lock";
/// In the state directory: the index of nat mode's hosts file (`observe/hosts_index.rs`).
pub const HOSTS_INDEX: &str = "nat-hosts.index";
/// Default directory of the administrator's mode files; `VIFNET_MODES_DIR` overrides it.
pub const MODES_DIR: &str = "/etc/vifnet/modes";

/// What a hotplug script is called for: xend's network scripts or the per-vif scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptRole {
    Network,
    Vif,
}

/// The role and mode a script name stands for (a path; its last part counts): Xen's own
/// names (`network-bridge`, `vif-nat`), and `vifnet-<mode>`, our vif script installed
/// beside Xen's.
pub fn script_role(path: &str) -> Option<(ScriptRole, &'static str)> {
    let base = path.rsplit('/').next().unwrap_or(path);
    let (role, mode) = if let Some(m) = base.strip_prefix("network-") {
        (ScriptRole::Network, m)
    } else if let Some(m) = base.strip_prefix("vif-").or_else(|| base.strip_prefix("vifnet-")) {
        (ScriptRole::Vif, m)
    } else {
        return None;
    };
    let mode = ["bridge", "route", "nat"].into_iter().find(|known| *known == mode)?;
    Some((role, mode))
}
