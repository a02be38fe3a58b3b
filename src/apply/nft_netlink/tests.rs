//! Against the real kernel, each in a network namespace of its own.
use super::*;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicUsize;
use std::os::fd::{AsFd, AsRawFd};

/// The real table (created by the one-time setup with `nft`).
const TABLE: &str = r#"
table bridge vifnet {
  set guarded { type ifname; }
  set vif_mac { type ifname . ether_addr; }
  set vif_ip4 { type ifname . ipv4_addr; flags interval; }
  set vif_ip6 { type ifname . ipv6_addr; flags interval; }
  chain prerouting { type filter hook prerouting priority -300; policy accept; iifname @guarded jump guard; }
  chain guard { iifname . ether saddr != @vif_mac counter drop; }
}
"#;
const T: &str = "vifnet";
const F: u8 = NFPROTO_BRIDGE;
const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x01];

static NS_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace of our own, deleted on drop (even on panic).
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        let name = format!(
            "vfnl-{}-{}",
            std::process::id(),
            NS_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("cannot run `ip` (iproute2)");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns { name }
    }

    fn with_table() -> Netns {
        let ns = Netns::new();
        ns.nft_stdin(TABLE);
        ns
    }

    fn nft_stdin(&self, script: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run ip netns exec nft (apt-get install nftables)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft -f - failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn nft(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft"])
            .args(args)
            .output()
            .expect("cannot run nft");
        assert!(
            out.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `f` in a fresh thread that has joined the namespace, so the
    /// test runner's other threads stay where they are.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(move || {
                let file =
                    std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: setns on a valid namespace fd, for this thread only.
                let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns {path}: {}", io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// Elements of a set as nft prints them (`"vif1.0" . 198.51.100.0/24`),
    /// from `nft -j list set`, sorted.
    fn elements(&self, set: &str) -> Vec<String> {
        let out = self.nft(&["-j", "list", "set", "bridge", T, set]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("nft -j output is JSON");
        let mut elems: Vec<String> = v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o.get("set"))
            .flat_map(|s| {
                s.get("elem")
                    .and_then(|e| e.as_array())
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|e| render(&e))
            .collect();
        elems.sort();
        elems
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Renders an nft JSON element the way `nft list` prints it.
fn render(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            let is_mac = s.len() == 17 && s.split(':').count() == 6;
            if s.parse::<std::net::IpAddr>().is_ok() || is_mac {
                s.clone()
            } else {
                format!("\"{s}\"")
            }
        }
        Value::Number(n) => n.to_string(),
        Value::Object(o) => {
            if let Some(c) = o.get("concat") {
                c.as_array()
                    .unwrap()
                    .iter()
                    .map(render)
                    .collect::<Vec<_>>()
                    .join(" . ")
            } else if let Some(p) = o.get("prefix") {
                format!("{}/{}", render(&p["addr"]), p["len"])
            } else if let Some(r) = o.get("range") {
                format!("{}-{}", render(&r[0]), render(&r[1]))
            } else if let Some(e) = o.get("elem") {
                render(&e["val"])
            } else {
                v.to_string()
            }
        }
        _ => v.to_string(),
    }
}

fn elem(set: &str, key: Vec<u8>, key_end: Option<Vec<u8>>) -> SetElem {
    SetElem {
        set: set.into(),
        key,
        key_end,
    }
}

fn ip4_range(ifname: &str, a: &str, b: &str) -> SetElem {
    let k = |s: &str| concat(&[key_ifname(ifname), key_ipv4(s.parse().unwrap())]);
    elem("vif_ip4", k(a), Some(k(b)))
}

fn ip6_range(ifname: &str, a: &str, b: &str) -> SetElem {
    let k = |s: &str| concat(&[key_ifname(ifname), key_ipv6(s.parse().unwrap())]);
    elem("vif_ip6", k(a), Some(k(b)))
}

/// The elements of one guest vif, in all four sets.
fn guest_elems(ifname: &str) -> Vec<SetElem> {
    vec![
        elem("guarded", key_ifname(ifname), None),
        elem(
            "vif_mac",
            concat(&[key_ifname(ifname), key_ether(MAC)]),
            None,
        ),
        ip4_range(ifname, "192.0.2.10", "192.0.2.10"),
        ip4_range(ifname, "198.51.100.0", "198.51.100.255"),
        ip6_range(ifname, "2001:db8::10", "2001:db8::10"),
        ip6_range(ifname, "2001:db8:1::", "2001:db8:1::ffff:ffff:ffff:ffff"),
    ]
}

fn adds(e: &[SetElem]) -> Vec<ElemOp> {
    e.iter().cloned().map(ElemOp::Add).collect()
}

fn dels(e: &[SetElem]) -> Vec<ElemOp> {
    e.iter().cloned().map(ElemOp::Delete).collect()
}

fn assert_all_empty(ns: &Netns) {
    for s in ["guarded", "vif_mac", "vif_ip4", "vif_ip6"] {
        assert_eq!(
            ns.elements(s),
            Vec::<String>::new(),
            "set {s} should be empty"
        );
    }
}

fn assert_guest_present(ns: &Netns) {
    assert_eq!(ns.elements("guarded"), vec![r#""vif1.0""#]);
    assert_eq!(
        ns.elements("vif_mac"),
        vec![r#""vif1.0" . 00:16:3e:00:00:01"#]
    );
    assert_eq!(
        ns.elements("vif_ip4"),
        vec![r#""vif1.0" . 192.0.2.10"#, r#""vif1.0" . 198.51.100.0/24"#]
    );
    assert_eq!(
        ns.elements("vif_ip6"),
        vec![
            r#""vif1.0" . 2001:db8:1::/64"#,
            r#""vif1.0" . 2001:db8::10"#
        ]
    );
    // And the plain text listing, exactly as an operator would see it.
    let text = ns.nft(&["list", "set", "bridge", T, "vif_ip4"]);
    assert!(text.contains(r#""vif1.0" . 192.0.2.10"#), "{text}");
    assert!(text.contains(r#""vif1.0" . 198.51.100.0/24"#), "{text}");
}

#[test]
fn key_encoders() {
    assert_eq!(key_ifname("vif1.0"), b"vif1.0\0\0\0\0\0\0\0\0\0\0".to_vec());
    assert_eq!(key_ifname("a-very-long-interface-name").len(), 16);
    assert_eq!(key_ifname("a-very-long-interface-name")[15], 0);
    assert_eq!(key_ether(MAC), vec![0x00, 0x16, 0x3e, 0, 0, 1, 0, 0]);
    assert_eq!(key_ipv4("192.0.2.10".parse().unwrap()), vec![192, 0, 2, 10]);
    assert_eq!(key_ipv6("2001:db8::1".parse().unwrap()).len(), 16);
    assert_eq!(concat(&[key_ifname("x"), key_ether(MAC)]).len(), 24);
    assert_eq!(
        concat(&[vec![1, 2, 3], vec![4]]),
        vec![1, 2, 3, 0, 4, 0, 0, 0]
    );
}

#[test]
fn encoding_layout() {
    let mut b = Builder::new(0);
    b.elem_msg(
        NFT_MSG_NEWSETELEM,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
        7,
        F,
        "t",
        &elem("s", vec![1, 2, 3, 4], Some(vec![5, 6, 7, 8])),
    );
    let m = split_msgs(&b.buf).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(u32_at(&b.buf, 0) as usize, b.buf.len());
    assert_eq!(m[0].ty, 0x0a0c);
    assert_eq!(m[0].flags, 0x405);
    assert_eq!(m[0].seq, 7);
    assert_eq!(&m[0].payload[..4], &[F, 0, 0, 0]);
    let attrs: Vec<_> = Attrs(&m[0].payload[4..]).collect();
    assert_eq!(attrs[0], (NFTA_SET_ELEM_LIST_TABLE, &b"t\0"[..]));
    assert_eq!(attrs[1], (NFTA_SET_ELEM_LIST_SET, &b"s\0"[..]));
    assert_eq!(attrs[2].0, NFTA_SET_ELEM_LIST_ELEMENTS);
    let mut out = Vec::new();
    parse_elements(attrs[2].1, &mut out);
    assert_eq!(out, vec![(vec![1, 2, 3, 4], Some(vec![5, 6, 7, 8]))]);
    // Total: 16 hdr + 4 nfgen + 8 + 8 + (4 + 4 + (4+8) + (4+8)) = 68.
    assert_eq!(b.buf.len(), 68);
}

#[test]
fn describe_elements() {
    assert_eq!(
        describe_elem(&ip4_range("vif1.0", "192.0.2.10", "192.0.2.10")),
        r#""vif1.0" . 192.0.2.10"#
    );
    assert_eq!(
        describe_elem(&ip4_range("vif1.0", "198.51.100.0", "198.51.100.255")),
        r#""vif1.0" . 198.51.100.0-198.51.100.255"#
    );
    assert_eq!(
        describe_elem(&elem(
            "vif_mac",
            concat(&[key_ifname("vif1.0"), key_ether(MAC)]),
            None
        )),
        r#""vif1.0" . 00:16:3e:00:00:01"#
    );
    assert_eq!(describe_elem(&elem("x", vec![1, 2], None)), "0x0102");
    assert_eq!(family_name(NFPROTO_BRIDGE), "bridge");
}

#[test]
fn add_list_delete_roundtrip() {
    let ns = Netns::with_table();
    let g = guest_elems("vif1.0");
    ns.run(|| {
        assert!(table_exists(F, T).unwrap());
        apply(F, T, &adds(&g)).expect("add all in one batch");
    });
    assert_guest_present(&ns);

    // Adding again is fine and changes nothing.
    ns.run(|| apply(F, T, &adds(&g)).expect("add twice"));
    assert_guest_present(&ns);

    // list_elements gives the encoded keys back.
    ns.run(|| {
        assert_eq!(
            list_elements(F, T, "guarded").unwrap(),
            vec![(key_ifname("vif1.0"), None)]
        );
        assert_eq!(
            list_elements(F, T, "vif_mac").unwrap(),
            vec![(g[1].key.clone(), None)]
        );
        let mut ip4 = list_elements(F, T, "vif_ip4").unwrap();
        ip4.sort();
        assert_eq!(
            ip4,
            vec![
                (g[2].key.clone(), g[2].key_end.clone()),
                (g[3].key.clone(), g[3].key_end.clone())
            ]
        );
        let ip6 = list_elements(F, T, "vif_ip6").unwrap();
        assert_eq!(ip6.len(), 2);
        assert!(ip6.contains(&(g[5].key.clone(), g[5].key_end.clone())));
    });

    // Deleting them all in one batch leaves the sets empty; deleting
    // again (absent) succeeds.
    ns.run(|| apply(F, T, &dels(&g)).expect("delete all"));
    assert_all_empty(&ns);
    ns.run(|| {
        apply(F, T, &dels(&g)).expect("delete absent");
        assert_eq!(list_elements(F, T, "vif_ip4").unwrap(), vec![]);
        // An empty op list is a no-op.
        apply(F, T, &[]).unwrap();
    });
    assert_all_empty(&ns);
}

#[test]
fn mixed_batch_keeps_order() {
    let ns = Netns::with_table();
    let a = guest_elems("vif1.0");
    let b = guest_elems("vif2.0");
    ns.run(|| apply(F, T, &adds(&a)).unwrap());
    // Move vif1.0's elements out and vif2.0's in, one transaction.
    let mut ops = dels(&a);
    ops.extend(adds(&b));
    ns.run(|| apply(F, T, &ops).unwrap());
    assert_eq!(ns.elements("guarded"), vec![r#""vif2.0""#]);
    assert_eq!(
        ns.elements("vif_ip4"),
        vec![r#""vif2.0" . 192.0.2.10"#, r#""vif2.0" . 198.51.100.0/24"#]
    );
}

#[test]
fn missing_set_or_table_is_an_error() {
    let ns = Netns::with_table();
    ns.run(|| {
        let e = apply(
            F,
            T,
            &[ElemOp::Add(elem("nosuch", key_ifname("vif1.0"), None))],
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("nosuch")
                && s.contains("vifnet")
                && s.contains("bridge")
                && s.contains("add element"),
            "{s}"
        );
        assert_eq!(e.errno(), Some(libc::ENOENT), "{s}");
        eprintln!("missing set (add): {s}");

        let e = apply(
            F,
            T,
            &[ElemOp::Delete(elem("nosuch", key_ifname("vif1.0"), None))],
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("nosuch") && s.contains("delete element"), "{s}");
        eprintln!("missing set (delete): {s}");

        // Same through the pre-6.3 path.
        let e = apply_inner(
            F,
            T,
            &[ElemOp::Delete(elem("nosuch", key_ifname("vif1.0"), None))],
            None,
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("nosuch") && s.contains("vifnet"), "{s}");
        eprintln!("missing set (fallback delete): {s}");

        let e = apply(
            F,
            "nosuchtable",
            &[ElemOp::Add(elem("guarded", key_ifname("vif1.0"), None))],
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("nosuchtable") && s.contains("guarded"), "{s}");
        eprintln!("missing table: {s}");

        // Wrong key length for the set's type.
        let e = apply(
            F,
            T,
            &[ElemOp::Add(elem("vif_mac", key_ifname("vif1.0"), None))],
        )
        .unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
        eprintln!("bad key: {e}");

        let e = list_elements(F, T, "nosuch").unwrap_err();
        assert!(e.to_string().contains("nosuch"), "{e}");
        assert!(list_elements(F, "nosuchtable", "guarded").is_err());
    });
}

#[test]
fn table_exists_true_false() {
    let ns = Netns::new();
    ns.run(|| {
        assert!(!table_exists(F, T).unwrap());
    });
    ns.nft_stdin(TABLE);
    ns.run(|| {
        assert!(table_exists(F, T).unwrap());
        assert!(!table_exists(NFPROTO_INET, T).unwrap(), "other family");
        assert!(!table_exists(F, "other").unwrap());
    });
}

/// The generation the closing child watches advances with every commit, and only then;
/// the child closes the socket and exits by itself, leaving the elements committed.
#[test]
fn release_hands_the_socket_to_a_child_that_waits_for_a_quiet_generation() {
    let ns = Netns::with_table();
    let g = guest_elems("vif1.0");
    let dir = std::env::temp_dir().join(format!("vfnl-queue-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let children = ns.run(|| {
        let sock = Sock::open().unwrap();
        let before = generation(sock.fd.as_fd()).expect("the kernel's generation id");
        assert_eq!(generation(sock.fd.as_fd()), Some(before), "no commit, same generation");
        apply(F, T, &adds(&g)).unwrap();
        let added = generation(sock.fd.as_fd()).unwrap();
        assert_ne!(added, before, "a commit advances the generation");
        apply(F, T, &dels(&g)).unwrap();
        assert_ne!(generation(sock.fd.as_fd()), Some(added));
        // Two in a row: the second finds the first's quiet generation in the queue file.
        let first = release_socket_queued_in(&dir).expect("a child holding the socket");
        assert!(release_socket_queued_in(&dir).is_none(), "nothing cached any more");
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(first, &mut status, 0) }, first);
        apply(F, T, &adds(&g)).unwrap();
        assert!(release_socket_queued_in(&dir).is_none(), "adds only, nothing pending: closed here, no child");
        // A child in the queue (held here, as a waiting child holds it): an online's close
        // might wait for that call's deletes, so it goes to a child too.
        let queue = std::fs::File::open(dir.join(crate::names::NFT_RELEASE_QUEUE)).unwrap();
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(queue.as_raw_fd(), libc::LOCK_EX) }, 0);
        apply(F, T, &adds(&g)).unwrap();
        let busy = release_socket_queued_in(&dir).expect("adds only, a call's deletes pending: a child");
        drop(queue);
        assert_eq!(unsafe { libc::waitpid(busy, &mut status, 0) }, busy);
        apply(F, T, &dels(&g)).unwrap();
        apply(F, T, &adds(&g)).unwrap();
        let second = release_socket_queued_in(&dir).expect("a second child");
        [second]
    });
    for child in children {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
    }
    let queued = std::fs::read(dir.join(crate::names::NFT_RELEASE_QUEUE)).unwrap();
    assert_eq!(queued.len(), 12, "netns and the quiet generation");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(ns.elements("guarded"), vec![r#""vif1.0""#], "the commits stand");
}

/// Kernel behaviour: when one message of a batch fails, the kernel
/// still processes (and ACKs) the others, then aborts the transaction:
/// nothing of the batch is applied.
#[test]
fn failed_batch_applies_nothing() {
    let ns = Netns::with_table();
    let g = guest_elems("vif1.0");
    // Valid adds, then one op on a missing set.
    let mut ops = adds(&g);
    ops.push(ElemOp::Add(elem("nosuch", key_ifname("vif1.0"), None)));
    let e = ns.run(|| apply(F, T, &ops).unwrap_err());
    assert!(
        e.to_string().contains("nosuch") && e.to_string().contains("rolled back"),
        "{e}"
    );
    assert_all_empty(&ns);

    // An overlapping range fails (EEXIST even without NLM_F_EXCL) and
    // takes the rest of its batch with it.
    ns.run(|| {
        apply(
            F,
            T,
            &[ElemOp::Add(ip4_range(
                "vif1.0",
                "198.51.100.0",
                "198.51.100.255",
            ))],
        )
        .unwrap()
    });
    let ops = vec![
        ElemOp::Add(g[0].clone()),
        ElemOp::Add(ip4_range("vif1.0", "198.51.100.0", "198.51.100.127")),
        ElemOp::Delete(ip4_range("vif1.0", "198.51.100.0", "198.51.100.255")),
    ];
    let e = ns.run(|| apply(F, T, &ops).unwrap_err());
    eprintln!("overlap: {e}");
    assert_eq!(e.errno(), Some(libc::EEXIST), "{e}");
    assert!(e.to_string().contains("vif_ip4"), "{e}");
    assert_eq!(ns.elements("guarded"), Vec::<String>::new());
    assert_eq!(
        ns.elements("vif_ip4"),
        vec![r#""vif1.0" . 198.51.100.0/24"#]
    );
}

/// The pre-6.3 path: GETSETELEM to find the present elements, then
/// DELSETELEM for those only.
#[test]
fn delete_fallback_without_destroy() {
    let ns = Netns::with_table();
    let g = guest_elems("vif1.0");
    ns.run(|| {
        // Only half present: the fallback must delete those and skip the rest.
        apply(F, T, &adds(&g[..3])).unwrap();
        apply_inner(F, T, &dels(&g), None).expect("fallback delete");
    });
    assert_all_empty(&ns);
    ns.run(|| {
        apply_inner(F, T, &dels(&g), None).expect("fallback delete of absent elements");
        // Add then delete in the same batch; and delete a range that is
        // only contained in (not equal to) a present one: absent.
        apply(
            F,
            T,
            &[ElemOp::Add(ip4_range(
                "vif1.0",
                "198.51.100.0",
                "198.51.100.255",
            ))],
        )
        .unwrap();
        let ops = vec![
            ElemOp::Add(g[0].clone()),
            ElemOp::Delete(g[0].clone()),
            ElemOp::Delete(g[0].clone()),
            ElemOp::Delete(ip4_range("vif1.0", "198.51.100.1", "198.51.100.1")),
        ];
        apply_inner(F, T, &ops, None).unwrap();
    });
    assert_eq!(ns.elements("guarded"), Vec::<String>::new());
    assert_eq!(
        ns.elements("vif_ip4"),
        vec![r#""vif1.0" . 198.51.100.0/24"#]
    );

    // A kernel that does not know the message type answers EINVAL or
    // EOPNOTSUPP; play one with an unused message type number.
    ns.run(|| {
        apply(F, T, &adds(&g)).unwrap();
        apply_inner(F, T, &dels(&g), Some(0xfe)).expect("fallback after unknown message type");
    });
    assert_all_empty(&ns);
    assert!(!DESTROY_UNSUPPORTED.load(Ordering::Relaxed));
}

/// Not a timed assertion: prints what apply() costs (run with
/// `cargo test --lib measure -- --nocapture` to see it).
#[test]
fn measure_apply_cost() {
    fn cpu_us() -> f64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime fills ts.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
    }
    let ns = Netns::with_table();
    let g = guest_elems("vif1.0");
    // One element per set: the typical per-vif batch.
    let four = vec![g[0].clone(), g[1].clone(), g[2].clone(), g[4].clone()];
    // The two hash sets only, to see our own cost without the kernel's
    // pipapo (interval) work.
    let two = vec![g[0].clone(), g[1].clone()];
    const N: usize = 100;
    let report = ns.run(|| {
        let mut lines = Vec::new();
        // (label, elements, destroy type, reuse the thread's socket?)
        let modes = [
            ("4 elems, DESTROYSETELEM, cached socket", &four, Some(NFT_MSG_DESTROYSETELEM), true),
            ("4 elems, DESTROYSETELEM, new socket per call (incl. close)", &four, Some(NFT_MSG_DESTROYSETELEM), false),
            ("4 elems, pre-6.3 fallback, cached socket", &four, None, true),
            ("2 elems in the hash sets only, cached socket", &two, Some(NFT_MSG_DESTROYSETELEM), true),
            ("2 elems in the hash sets only, new socket per call", &two, Some(NFT_MSG_DESTROYSETELEM), false),
            ("", &four, None, true), // marker: populate 64 other guests, then measure again
            ("4 elems, 64 other guests in the sets, cached socket", &four, Some(NFT_MSG_DESTROYSETELEM), true),
        ];
        for (label, elems, destroy, cached) in modes {
            if label.is_empty() {
                let others: Vec<ElemOp> = (0..64).flat_map(|i| adds(&guest_elems(&format!("vif{}.0", i + 10)))).collect();
                apply(F, T, &others).unwrap();
                continue;
            }
            let (add_ops, del_ops) = (adds(elems), dels(elems));
            drop_cached_sock();
            let mut t = [(0.0f64, 0.0f64); 2]; // (wall, cpu) for add, delete
            for _ in 0..N {
                for (k, ops) in [&add_ops, &del_ops].into_iter().enumerate() {
                    let (c, w) = (cpu_us(), std::time::Instant::now());
                    apply_inner(F, T, ops, destroy).unwrap();
                    if !cached {
                        drop_cached_sock();
                    }
                    t[k].0 += w.elapsed().as_secs_f64() * 1e6;
                    t[k].1 += cpu_us() - c;
                }
            }
            let n = N as f64;
            lines.push(format!(
                "{label}: add {:.0} us wall / {:.0} us user+sys; delete {:.0} us wall / {:.0} us user+sys",
                t[0].0 / n, t[0].1 / n, t[1].0 / n, t[1].1 / n
            ));
        }
        lines
    });
    for l in report {
        eprintln!("apply() mean of {N}: {l}");
    }
    assert_eq!(ns.elements("guarded").len(), 64);
}
