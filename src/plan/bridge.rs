//! Bridge mode (design.md §3): guest vifs join a Linux bridge, with antispoofing in
//! `bridge vifnet` for guests whose addresses are known. Pure: facts in, plan out.

use serde::{Deserialize, Serialize};

use super::nft::{again, guest_elements, Elem, ElemChange, Table};
use super::{create_own_bridge, device_steps, BridgeVifRecord, Facts, LinkFacts, Plan, PlanError, Step};
use crate::model::{BridgedVif, IfName};

/// Host-wide settings of bridge mode (modes/bridge.toml, then arguments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeMode {
    pub bridge: IfName,
    pub create_bridge: bool,
    pub netdev: Option<IfName>,
    pub takeover: bool,
    pub antispoof: bool,
}

/// Xen's fallback: a vif naming `xenbrN` that does not exist joins `ethN` when that is a
/// bridge (what network-bridge once named its bridge).
fn legacy_bridge_name(bridge: &IfName) -> Option<String> {
    let n = bridge.as_str().strip_prefix("xenbr")?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then(|| format!("eth{n}"))
}

/// The names `observe` must look up for `vif_up`.
pub fn names_to_observe(vif: &BridgedVif) -> Vec<String> {
    let mut names = vec![vif.kernel_name.to_string(), vif.name.to_string(), vif.bridge.to_string()];
    names.dedup();
    names
}

/// Xen's `ethN` fallback, looked up only when the named bridge is missing, so that the
/// common case costs no extra round trip.
pub fn fallback_names(vif: &BridgedVif, facts: &Facts) -> Vec<String> {
    match facts.link(vif.bridge.as_str()) {
        Some(_) => Vec::new(),
        None => legacy_bridge_name(&vif.bridge).into_iter().collect(),
    }
}

/// Elements a vif's record stands for (none without antispoofing).
pub fn record_elements(rec: &BridgeVifRecord) -> Vec<Elem> {
    match (rec.antispoof, rec.guest_mac) {
        (true, Some(mac)) => guest_elements(&rec.name, mac, &rec.ips),
        _ => Vec::new(),
    }
}

/// What a vif gets in bridge mode, as its journal records it.
pub fn record(vif: &BridgedVif, bridge: IfName, mtu: u32) -> BridgeVifRecord {
    BridgeVifRecord {
        kernel_name: vif.kernel_name.clone(),
        name: vif.name.clone(),
        dev_type: vif.dev_type,
        bridge,
        guest_mac: vif.guest_mac,
        ips: vif.ips.clone(),
        antispoof: vif.antispoof,
        mtu,
        origin: Default::default(),
    }
}

/// `network bridge start` without takeover: just the mode's bridge.
pub fn network_start(mode: &BridgeMode) -> Plan {
    Plan { steps: vec![create_own_bridge(&mode.bridge)] }
}

/// `network bridge stop`: undo a takeover if there was one, else delete the bridge if it
/// is ours and no port is left on it; then the table, if no guest uses it any more.
pub fn network_stop(
    mode: &BridgeMode,
    bridge: Option<&LinkFacts>,
    ports: &[String],
    takeover: Option<&super::takeover::TakeoverRecord>,
) -> Result<Plan, String> {
    let mut plan = match takeover {
        Some(rec) => {
            let others: Vec<String> = ports.iter().filter(|p| **p != rec.netdev.as_str()).cloned().collect();
            super::takeover::stop(rec, &others)?
        }
        None => {
            let mut p = Plan::default();
            if bridge.is_some_and(|b| b.ours) && ports.is_empty() {
                p.push(Step::DeleteLink { name: mode.bridge.clone() });
            }
            p
        }
    };
    plan.push(Step::DeleteNftTableIfUnused(Table::Bridge));
    Ok(plan)
}

/// `online` / `add`: bring one vif onto its bridge. `previous` is its journal, if any,
/// so that a repeated online changes only what differs.
pub fn vif_up(vif: &BridgedVif, mode: &BridgeMode, facts: &Facts, previous: Option<&BridgeVifRecord>) -> Result<(Plan, BridgeVifRecord), PlanError> {
    let mut plan = Plan::default();

    // The bridge: as named, Xen's xenbrN -> ethN fallback, or ours to create.
    let (bridge, bridge_mtu) = match facts.link(vif.bridge.as_str()) {
        Some(l) if l.is_bridge() => (vif.bridge.clone(), l.mtu),
        Some(_) => return Err(PlanError::NotABridge { bridge: vif.bridge.to_string() }),
        None => match legacy_bridge_name(&vif.bridge).and_then(|n| facts.link(&n).filter(|l| l.is_bridge()).map(|l| (n, l.mtu))) {
            Some((n, mtu)) => (IfName::parse("bridge", &n).expect("ethN is a valid name"), mtu),
            None if vif.bridge == mode.bridge && mode.create_bridge => {
                plan.push(create_own_bridge(&vif.bridge));
                (vif.bridge.clone(), 1500)
            }
            None => return Err(PlanError::NoBridge { bridge: vif.bridge.to_string() }),
        },
    };

    // The device, renamed to `vifname` if asked; a second online finds it renamed already.
    plan.steps.extend(device_steps(&vif.kernel_name, &vif.name, facts)?);

    let record = record(vif, bridge.clone(), vif.mtu.unwrap_or(bridge_mtu));

    // Firewall before the port is attached, so that no frame of the guest passes unchecked.
    let old = previous.map(record_elements).unwrap_or_default();
    let changes = again(&old, &record_elements(&record));
    if record.antispoof {
        plan.push(Step::EnsureNftTable(Table::Bridge));
    }
    if !changes.is_empty() {
        plan.push(Step::NftElements(Table::Bridge, changes));
    }
    plan.push(Step::AttachPort { port: record.name.clone(), bridge, mtu: record.mtu });
    Ok((plan, record))
}

/// `offline` / `remove`: the reverse of what `rec` says the vif got, firewall first, as
/// online made it first. The guest is being destroyed, so its port being unguarded for the
/// instant before it leaves the bridge is harmless.
pub fn vif_down(rec: &BridgeVifRecord) -> Plan {
    let mut plan = Plan::default();
    let deletes: Vec<ElemChange> = record_elements(rec).into_iter().map(ElemChange::Delete).collect();
    if !deletes.is_empty() {
        plan.push(Step::NftElements(Table::Bridge, deletes));
    }
    plan.push(Step::DetachPort { port: rec.name.clone() });
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_ip_list, DevType, MacAddr};

    fn name(s: &str) -> IfName {
        IfName::parse("t", s).unwrap()
    }
    fn mode() -> BridgeMode {
        BridgeMode { bridge: name("xenbr0"), create_bridge: true, netdev: None, takeover: false, antispoof: true }
    }
    fn vif(vifname: &str, ip: &str) -> BridgedVif {
        BridgedVif {
            kernel_name: name("vif5.0"),
            name: name(vifname),
            dev_type: DevType::Vif,
            bridge: name("xenbr0"),
            guest_mac: Some(MacAddr::parse("t", "00:16:3e:00:00:05").unwrap()),
            ips: parse_ip_list("t", ip).unwrap(),
            antispoof: !ip.is_empty(),
            mtu: None,
        }
    }
    fn link(index: u32, is_bridge: bool) -> LinkFacts {
        LinkFacts { index, kind: is_bridge.then(|| "bridge".into()), mtu: 9000, master: None, up: false, mac: None, ours: false }
    }
    fn facts(links: &[(&str, LinkFacts)]) -> Facts {
        Facts { links: links.iter().map(|(n, l)| (n.to_string(), l.clone())).collect() }
    }
    fn lines(p: &Plan) -> Vec<String> {
        p.steps.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn online_with_ip_guards_before_attaching() {
        let f = facts(&[("vif5.0", link(7, false)), ("xenbr0", link(3, true))]);
        let (plan, rec) = vif_up(&vif("vif5.0", "192.0.2.5"), &mode(), &f, None).unwrap();
        assert_eq!(rec.mtu, 9000, "the bridge's MTU when xenstore has none");
        assert_eq!(
            lines(&plan),
            [
                "nft -f <table bridge vifnet> (if missing)".to_string(),
                "nft -f - <<< 'add element bridge vifnet guarded { \"vif5.0\" }; add element bridge vifnet vif_mac { \"vif5.0\" . 00:16:3e:00:00:05 }; add element bridge vifnet vif_ip4 { \"vif5.0\" . 192.0.2.5 }; add element bridge vifnet vif_ip6 { \"vif5.0\" . fe80::216:3eff:fe00:5 }'".into(),
                "ip link set vif5.0 down address fe:ff:ff:ff:ff:ff; ip addr flush dev vif5.0; ip link set vif5.0 mtu 9000 master xenbr0 up".into(),
            ]
        );
    }

    #[test]
    fn repeated_online_only_adds_again_what_it_has() {
        let f = facts(&[("vif5.0", link(7, false)), ("xenbr0", link(3, true))]);
        let (_, rec) = vif_up(&vif("vif5.0", "192.0.2.5"), &mode(), &f, None).unwrap();
        let (plan, rec2) = vif_up(&vif("vif5.0", "192.0.2.5"), &mode(), &f, Some(&rec)).unwrap();
        assert_eq!(rec, rec2);
        // Adds of what is there change nothing; they put back what a killed online missed.
        let changes: Vec<&ElemChange> = plan.steps.iter().filter_map(|s| if let Step::NftElements(_, c) = s { Some(c) } else { None }).flatten().collect();
        assert!(!changes.is_empty() && changes.iter().all(|c| matches!(c, ElemChange::Add(_))), "{plan}");
    }

    #[test]
    fn missing_bridge_is_created_only_when_it_is_ours() {
        let f = facts(&[("vif5.0", link(7, false))]);
        let (plan, _) = vif_up(&vif("vif5.0", ""), &mode(), &f, None).unwrap();
        assert!(matches!(plan.steps[0], Step::CreateBridge { .. }));
        let mut v = vif("vif5.0", "");
        v.bridge = name("xenbr7");
        assert_eq!(vif_up(&v, &mode(), &f, None).unwrap_err(), PlanError::NoBridge { bridge: "xenbr7".into() });
    }

    #[test]
    fn xenbr_falls_back_to_eth_bridge_like_xen() {
        let mut v = vif("vif5.0", "");
        v.bridge = name("xenbr1");
        let f = facts(&[("vif5.0", link(7, false)), ("eth1", link(2, true))]);
        let (plan, rec) = vif_up(&v, &mode(), &f, None).unwrap();
        assert_eq!(rec.bridge.as_str(), "eth1");
        assert!(lines(&plan)[0].contains("master eth1"));
    }

    #[test]
    fn vifname_renames_and_a_clash_is_refused() {
        let f = facts(&[("vif5.0", link(7, false)), ("xenbr0", link(3, true))]);
        let (plan, _) = vif_up(&vif("web0", ""), &mode(), &f, None).unwrap();
        assert_eq!(lines(&plan)[0], "ip link set vif5.0 down name web0");
        let f = facts(&[("vif5.0", link(7, false)), ("web0", link(8, false)), ("xenbr0", link(3, true))]);
        let e = vif_up(&vif("web0", ""), &mode(), &f, None).unwrap_err();
        assert_eq!(e.to_string(), "vifname web0: cannot rename vif5.0: an interface named web0 already exists");
        // Renamed by an earlier online: nothing to rename.
        let f = facts(&[("web0", link(7, false)), ("xenbr0", link(3, true))]);
        let (plan, _) = vif_up(&vif("web0", ""), &mode(), &f, None).unwrap();
        assert!(!lines(&plan)[0].contains("name web0"));
    }

    #[test]
    fn offline_deletes_the_elements_then_detaches() {
        let f = facts(&[("vif5.0", link(7, false)), ("xenbr0", link(3, true))]);
        let (_, rec) = vif_up(&vif("vif5.0", "192.0.2.5"), &mode(), &f, None).unwrap();
        let plan = vif_down(&rec);
        assert!(lines(&plan)[0].starts_with("nft -f - <<< 'delete element bridge vifnet guarded"));
        assert_eq!(lines(&plan)[1], "ip link set vif5.0 down nomaster (if present)");
    }

    #[test]
    fn stop_deletes_only_our_own_empty_bridge() {
        let mut ours = link(3, true);
        ours.ours = true;
        let steps = |b: Option<&LinkFacts>, ports: &[String]| network_stop(&mode(), b, ports, None).unwrap().steps;
        assert!(matches!(steps(Some(&ours), &[])[0], Step::DeleteLink { .. }));
        assert_eq!(steps(Some(&ours), &["vif1.0".into()]), vec![Step::DeleteNftTableIfUnused(Table::Bridge)], "a guest is still on it");
        assert_eq!(steps(Some(&link(3, true)), &[]), vec![Step::DeleteNftTableIfUnused(Table::Bridge)], "the administrator's bridge stays");
    }
}
