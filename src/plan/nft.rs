//! Our nftables objects: the `bridge vifnet` table (bridge mode) and the `inet vifnet`
//! table (route and nat modes), each built once in one transaction, and the per-vif set
//! elements (one transaction per verb). Per-vif work only adds or deletes elements, so it
//! costs the same whatever the number of guests.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use ipnetwork::IpNetwork;
use nftables::batch::Batch;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, SetItem};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Set, SetFlag, SetType, SetTypeValue, Table as NftTable};
use nftables::stmt::{Counter, JumpTarget, Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::model::{IfName, MacAddr};
use crate::names::{NFT_TABLE, SET_GUARDED, SET_MASQ_OUT, SET_VIF_IP4, SET_VIF_IP6, SET_VIF_MAC, SET_VIF_NET4, SET_VIF_NET6};

/// Which of our two tables: both are named `vifnet`, in different families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// `bridge vifnet`: frames of bridged guests (MAC, ARP and IP sources).
    Bridge,
    /// `inet vifnet`: packets of routed and NATed guests (IP sources).
    Inet,
}

impl Table {
    pub fn family(self) -> NfFamily {
        match self {
            Table::Bridge => NfFamily::Bridge,
            Table::Inet => NfFamily::INet,
        }
    }

    /// Every set of the table, for emptiness checks.
    pub fn sets(self) -> &'static [&'static str] {
        match self {
            Table::Bridge => &[SET_GUARDED, SET_VIF_MAC, SET_VIF_IP4, SET_VIF_IP6, SET_VIF_NET4, SET_VIF_NET6],
            Table::Inet => &[SET_GUARDED, SET_VIF_IP4, SET_VIF_IP6, SET_VIF_NET4, SET_VIF_NET6, SET_MASQ_OUT],
        }
    }

    /// The whole table, as one `nft -j -f` transaction.
    pub fn definition(self) -> Nftables<'static> {
        match self {
            Table::Bridge => bridge_table(),
            Table::Inet => inet_table(),
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = match self {
            Table::Bridge => "bridge",
            Table::Inet => "inet",
        };
        write!(f, "{family} {NFT_TABLE}")
    }
}

/// One element of one of our sets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Elem {
    /// `guarded`: frames from this port are checked.
    Guarded(IfName),
    /// `vif_mac`: the port may send from this MAC.
    Mac(IfName, MacAddr),
    /// `vif_ip4` / `vif_ip6`: the port may use sources in this prefix.
    Ip(IfName, IpNetwork),
    /// `masq_out`: sources in this prefix leaving by this uplink are masqueraded.
    Masq(IfName, ipnetwork::Ipv4Network),
}

impl Elem {
    pub fn set_name(&self) -> &'static str {
        match self {
            Elem::Guarded(_) => SET_GUARDED,
            Elem::Mac(..) => SET_VIF_MAC,
            Elem::Ip(_, net @ IpNetwork::V4(_)) if is_host(net) => SET_VIF_IP4,
            Elem::Ip(_, net @ IpNetwork::V6(_)) if is_host(net) => SET_VIF_IP6,
            Elem::Ip(_, IpNetwork::V4(_)) => SET_VIF_NET4,
            Elem::Ip(_, IpNetwork::V6(_)) => SET_VIF_NET6,
            Elem::Masq(..) => SET_MASQ_OUT,
        }
    }
}

impl fmt::Display for Elem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Elem::Guarded(port) => write!(f, "\"{port}\""),
            Elem::Mac(port, mac) => write!(f, "\"{port}\" . {mac}"),
            Elem::Ip(port, net) if is_host(net) => write!(f, "\"{port}\" . {}", net.ip()),
            Elem::Ip(port, net) => write!(f, "\"{port}\" . {net}"),
            Elem::Masq(uplink, net) => write!(f, "\"{uplink}\" . {net}"),
        }
    }
}

/// A single address (/32, /128), as opposed to a prefix.
pub fn is_host(net: &IpNetwork) -> bool {
    net.prefix() == if net.is_ipv4() { 32 } else { 128 }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElemChange {
    Add(Elem),
    Delete(Elem),
}

impl ElemChange {
    /// The change in nft syntax: `add element inet vifnet vif_ip4 { "vif5.0" . 192.0.2.5 }`.
    pub fn in_table(&self, table: Table) -> String {
        let (verb, e) = match self {
            ElemChange::Add(e) => ("add", e),
            ElemChange::Delete(e) => ("delete", e),
        };
        format!("{verb} element {table} {} {{ {e} }}", e.set_name())
    }

    /// The change that takes this one back.
    pub fn inverse(&self) -> ElemChange {
        match self {
            ElemChange::Add(e) => ElemChange::Delete(e.clone()),
            ElemChange::Delete(e) => ElemChange::Add(e.clone()),
        }
    }
}

/// The elements that carry a routed guest's antispoofing: the port, and every allowed source.
pub fn routed_guest_elements(port: &IfName, ips: &[IpNetwork]) -> Vec<Elem> {
    std::iter::once(Elem::Guarded(port.clone())).chain(ips.iter().map(|net| Elem::Ip(port.clone(), *net))).collect()
}

/// The elements that carry one guest's antispoofing: port, MAC, and every allowed source.
/// The guest's EUI-64 link-local address is allowed so that neighbour discovery works.
pub fn guest_elements(port: &IfName, mac: MacAddr, ips: &[IpNetwork]) -> Vec<Elem> {
    let mut elems = vec![Elem::Guarded(port.clone()), Elem::Mac(port.clone(), mac)];
    let link_local = IpNetwork::new(mac.eui64_link_local().into(), 128).expect("a /128 is valid");
    for net in ips.iter().chain(std::iter::once(&link_local)) {
        let e = Elem::Ip(port.clone(), *net);
        if !elems.contains(&e) {
            elems.push(e);
        }
    }
    elems
}

/// What an online over an earlier journal does to its elements: the ones no longer wanted
/// go, and every wanted one is added again. Adding is idempotent, so an online that was
/// killed before its elements went in, and is run again, puts them in.
pub fn again(old: &[Elem], new: &[Elem]) -> Vec<ElemChange> {
    let new_set: HashSet<&Elem> = new.iter().collect();
    let mut out: Vec<ElemChange> = old.iter().filter(|e| !new_set.contains(e)).cloned().map(ElemChange::Delete).collect();
    out.extend(new.iter().cloned().map(ElemChange::Add));
    out
}

/// Changes that turn the elements `old` into `new`: deletes first, in one transaction anyway.
pub fn diff(old: &[Elem], new: &[Elem]) -> Vec<ElemChange> {
    let old_set: HashSet<&Elem> = old.iter().collect();
    let new_set: HashSet<&Elem> = new.iter().collect();
    let mut out: Vec<ElemChange> = old.iter().filter(|e| !new_set.contains(e)).cloned().map(ElemChange::Delete).collect();
    out.extend(new.iter().filter(|e| !old_set.contains(e)).cloned().map(ElemChange::Add));
    out
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn field(protocol: &'static str, name: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(PayloadField {
        protocol: Cow::Borrowed(protocol),
        field: Cow::Borrowed(name),
    })))
}

fn text(s: &'static str) -> Expression<'static> {
    Expression::String(Cow::Borrowed(s))
}

fn is(left: Expression<'static>, op: Operator, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

/// `iifname . <field> != @set`: the lookup that checks one property of a guarded port's frame.
fn port_lookup_fails(protocol: &'static str, name: &'static str, set: &'static str) -> Statement<'static> {
    is(
        Expression::Named(NamedExpression::Concat(vec![meta(MetaKey::Iifname), field(protocol, name)])),
        Operator::NEQ,
        Expression::String(Cow::Owned(format!("@{set}"))),
    )
}

fn counted_drop() -> [Statement<'static>; 2] {
    [Statement::Counter(Counter::Anonymous(None)), Statement::Drop(None)]
}

/// One table being written: its family, and the batch that creates it.
struct TableBatch {
    family: NfFamily,
    batch: Batch<'static>,
}

impl TableBatch {
    fn new(family: NfFamily) -> TableBatch {
        let mut batch = Batch::new();
        batch.add(NfListObject::Table(NftTable { family, name: Cow::Borrowed(NFT_TABLE), handle: None }));
        TableBatch { family, batch }
    }

    fn set(&mut self, name: &'static str, types: &[SetType], interval: bool) {
        let set_type = match types {
            [one] => SetTypeValue::Single(*one),
            many => SetTypeValue::Concatenated(Cow::Owned(many.to_vec())),
        };
        self.batch.add(NfListObject::Set(Box::new(Set {
            family: self.family,
            table: Cow::Borrowed(NFT_TABLE),
            name: Cow::Borrowed(name),
            handle: None,
            set_type,
            policy: None,
            flags: interval.then(|| HashSet::from([SetFlag::Interval])),
            elem: None,
            timeout: None,
            gc_interval: None,
            size: None,
            comment: None,
        })));
    }

    /// The sets of guest sources both tables have (hash sets for addresses, interval sets
    /// for the rare prefixes), and `guarded`.
    fn source_sets(&mut self) {
        // set guarded { type ifname; }
        self.set(SET_GUARDED, &[SetType::Ifname], false);
        if self.family == NfFamily::Bridge {
            // set vif_mac { type ifname . ether_addr; }
            self.set(SET_VIF_MAC, &[SetType::Ifname, SetType::EtherAddr], false);
        }
        // set vif_ip4 { type ifname . ipv4_addr; }
        self.set(SET_VIF_IP4, &[SetType::Ifname, SetType::Ipv4Addr], false);
        // set vif_ip6 { type ifname . ipv6_addr; }
        self.set(SET_VIF_IP6, &[SetType::Ifname, SetType::Ipv6Addr], false);
        // set vif_net4 { type ifname . ipv4_addr; flags interval; }
        self.set(SET_VIF_NET4, &[SetType::Ifname, SetType::Ipv4Addr], true);
        // set vif_net6 { type ifname . ipv6_addr; flags interval; }
        self.set(SET_VIF_NET6, &[SetType::Ifname, SetType::Ipv6Addr], true);
    }

    /// `prerouting` (hooked first of all, before conntrack and br_netfilter) sends guarded
    /// ports' traffic to `guard`.
    fn chains(&mut self) {
        for (name, hook) in [("prerouting", Some(NfHook::Prerouting)), ("guard", None)] {
            self.batch.add(NfListObject::Chain(Chain {
                family: self.family,
                table: Cow::Borrowed(NFT_TABLE),
                name: Cow::Borrowed(name),
                newname: None,
                handle: None,
                _type: hook.map(|_| NfChainType::Filter),
                hook,
                prio: hook.map(|_| -300),
                dev: None,
                policy: hook.map(|_| NfChainPolicy::Accept),
            }));
        }
        // prerouting: iifname @guarded jump guard
        self.rule(
            "prerouting",
            vec![
                is(meta(MetaKey::Iifname), Operator::EQ, Expression::String(Cow::Owned(format!("@{SET_GUARDED}")))),
                Statement::Jump(JumpTarget { target: Cow::Borrowed("guard") }),
            ],
        );
    }

    fn rule(&mut self, chain: &'static str, expr: Vec<Statement<'static>>) {
        self.batch.add(NfListObject::Rule(Rule {
            family: self.family,
            table: Cow::Borrowed(NFT_TABLE),
            chain: Cow::Borrowed(chain),
            expr: Cow::Owned(expr),
            handle: None,
            index: None,
            comment: None,
        }));
    }

    fn guard(&mut self, mut expr: Vec<Statement<'static>>, drop: bool) {
        if drop {
            expr.extend(counted_drop());
        }
        self.rule("guard", expr);
    }

    /// The IP source checks both tables make, each family dropped and counted by its own rule.
    fn ip_source_rules(&mut self) {
        // guard: ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept  (DHCP before a lease)
        self.guard(
            vec![
                is(field("ip", "saddr"), Operator::EQ, text("0.0.0.0")),
                is(field("ip", "daddr"), Operator::EQ, text("255.255.255.255")),
                is(field("udp", "sport"), Operator::EQ, Expression::Number(68)),
                is(field("udp", "dport"), Operator::EQ, Expression::Number(67)),
                Statement::Accept(None),
            ],
            false,
        );
        // guard: iifname . ip saddr != @vif_ip4 iifname . ip saddr != @vif_net4 counter drop
        self.guard(vec![port_lookup_fails("ip", "saddr", SET_VIF_IP4), port_lookup_fails("ip", "saddr", SET_VIF_NET4)], true);
        // guard: ip6 saddr :: icmpv6 type nd-neighbor-solicit accept  (duplicate address detection)
        self.guard(
            vec![
                is(field("ip6", "saddr"), Operator::EQ, text("::")),
                is(field("icmpv6", "type"), Operator::EQ, text("nd-neighbor-solicit")),
                Statement::Accept(None),
            ],
            false,
        );
        if self.family != NfFamily::Bridge {
            // guard: ip6 saddr fe80::/10 accept  (neighbour discovery with the host; the
            // kernel never forwards a link-local source)
            self.guard(
                vec![
                    is(
                        field("ip6", "saddr"),
                        Operator::EQ,
                        Expression::Named(NamedExpression::Prefix(Prefix { addr: Box::new(text("fe80::")), len: 10 })),
                    ),
                    Statement::Accept(None),
                ],
                false,
            );
        }
        // guard: iifname . ip6 saddr != @vif_ip6 iifname . ip6 saddr != @vif_net6 counter drop
        self.guard(vec![port_lookup_fails("ip6", "saddr", SET_VIF_IP6), port_lookup_fails("ip6", "saddr", SET_VIF_NET6)], true);
    }
}

/// The whole `bridge vifnet` table, created in one transaction when it is missing.
pub fn bridge_table() -> Nftables<'static> {
    let mut t = TableBatch::new(NfFamily::Bridge);
    t.source_sets();
    t.chains();
    // guard: iifname . ether saddr != @vif_mac counter drop
    t.guard(vec![port_lookup_fails("ether", "saddr", SET_VIF_MAC)], true);
    // guard: iifname . arp saddr ether != @vif_mac counter drop
    t.guard(vec![port_lookup_fails("arp", "saddr ether", SET_VIF_MAC)], true);
    // guard: arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @vif_ip4 iifname . arp saddr ip != @vif_net4 counter drop
    // (ARP probes use 0.0.0.0)
    t.guard(
        vec![
            is(field("arp", "saddr ip"), Operator::NEQ, text("0.0.0.0")),
            port_lookup_fails("arp", "saddr ip", SET_VIF_IP4),
            port_lookup_fails("arp", "saddr ip", SET_VIF_NET4),
        ],
        true,
    );
    t.ip_source_rules();
    // guard: ether type != { ip, arp, ip6 } counter drop  (VLAN tags and other protocols would bypass the checks)
    t.guard(
        vec![is(
            field("ether", "type"),
            Operator::NEQ,
            Expression::Named(NamedExpression::Set(vec![
                SetItem::Element(text("ip")),
                SetItem::Element(text("arp")),
                SetItem::Element(text("ip6")),
            ])),
        )],
        true,
    );
    t.batch.to_nftables()
}

/// Nat mode's part of `inet vifnet`, added to the table when nat mode starts (it hooks NAT,
/// which brings conntrack, so route mode does not carry it).
pub fn nat_part() -> Nftables<'static> {
    let mut t = TableBatch::new(NfFamily::INet);
    // set masq_out { type ifname . ipv4_addr; flags interval; }
    t.set(SET_MASQ_OUT, &[SetType::Ifname, SetType::Ipv4Addr], true);
    t.batch.add(NfListObject::Chain(Chain {
        family: NfFamily::INet,
        table: Cow::Borrowed(NFT_TABLE),
        name: Cow::Borrowed("postrouting"),
        newname: None,
        handle: None,
        _type: Some(NfChainType::NAT),
        hook: Some(NfHook::Postrouting),
        prio: Some(100),
        dev: None,
        policy: Some(NfChainPolicy::Accept),
    }));
    // postrouting: oifname . ip saddr @masq_out masquerade
    t.rule(
        "postrouting",
        vec![
            is(
                Expression::Named(NamedExpression::Concat(vec![meta(MetaKey::Oifname), field("ip", "saddr")])),
                Operator::EQ,
                Expression::String(Cow::Owned(format!("@{SET_MASQ_OUT}"))),
            ),
            Statement::Masquerade(None),
        ],
    );
    t.batch.to_nftables()
}

/// The whole `inet vifnet` table: routed guests' sources, checked before conntrack.
pub fn inet_table() -> Nftables<'static> {
    let mut t = TableBatch::new(NfFamily::INet);
    t.source_sets();
    t.chains();
    t.ip_source_rules();
    t.batch.to_nftables()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port() -> IfName {
        IfName::parse("t", "vif5.0").unwrap()
    }
    fn mac() -> MacAddr {
        MacAddr::parse("t", "00:16:3e:12:34:56").unwrap()
    }

    #[test]
    fn guest_elements_cover_mac_addresses_and_link_local() {
        let ips = crate::model::parse_ip_list("t", "192.0.2.10 2001:db8::10 198.51.100.0/24").unwrap();
        let lines: Vec<String> = guest_elements(&port(), mac(), &ips).iter().map(|e| format!("{} {e}", e.set_name())).collect();
        assert_eq!(
            lines,
            [
                "guarded \"vif5.0\"",
                "vif_mac \"vif5.0\" . 00:16:3e:12:34:56",
                "vif_ip4 \"vif5.0\" . 192.0.2.10",
                "vif_ip6 \"vif5.0\" . 2001:db8::10",
                "vif_net4 \"vif5.0\" . 198.51.100.0/24",
                "vif_ip6 \"vif5.0\" . fe80::216:3eff:fe12:3456",
            ]
        );
    }

    #[test]
    fn diff_deletes_what_went_and_adds_what_came() {
        let a = guest_elements(&port(), mac(), &crate::model::parse_ip_list("t", "192.0.2.10").unwrap());
        let b = guest_elements(&port(), mac(), &crate::model::parse_ip_list("t", "192.0.2.11").unwrap());
        let d: Vec<String> = diff(&a, &b).iter().map(|c| c.in_table(Table::Bridge)).collect();
        assert_eq!(
            d,
            [
                "delete element bridge vifnet vif_ip4 { \"vif5.0\" . 192.0.2.10 }",
                "add element bridge vifnet vif_ip4 { \"vif5.0\" . 192.0.2.11 }",
            ]
        );
        assert!(diff(&a, &a).is_empty());
    }

    /// Each table as JSON is a golden file: a change on purpose shows in its diff.
    #[test]
    fn tables_match_golden_files() {
        let tables = [("bridge-table.json", Table::Bridge.definition()), ("inet-table.json", Table::Inet.definition()), ("inet-nat-part.json", nat_part())];
        for (file, table) in tables {
            let json = serde_json::to_string_pretty(&table).unwrap() + "\n";
            let path = format!("{}/tests/golden/{file}", env!("CARGO_MANIFEST_DIR"));
            if std::env::var_os("VIFNET_BLESS").is_some() {
                std::fs::write(&path, &json).unwrap();
            }
            let golden = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("tests/golden/{file} (VIFNET_BLESS=1 writes it)"));
            assert_eq!(json, golden, "{file} changed: review, then VIFNET_BLESS=1 cargo test");
        }
    }
}
