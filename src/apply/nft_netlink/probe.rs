//! Asking the kernel what is there: which elements exist (the delete fallback for kernels
//! without DESTROYSETELEM), whether a table exists, and a set's elements.

use super::*;

/// Deletes without DESTROYSETELEM: checks which elements exist, then one
/// batch with NEWSETELEM for the adds and DELSETELEM for the present ones.
pub(super) fn apply_fallback(sock: &mut Sock, ctx: Ctx, ops: &[ElemOp]) -> Result<(), NftNetlinkError> {
    let dels: Vec<usize> = (0..ops.len())
        .filter(|&i| matches!(ops[i], ElemOp::Delete(_)))
        .collect();
    let present = probe_elements(sock, ctx, ops, &dels)?;

    // Walk the ops in order, tracking what will be in the set at each step,
    // so that add-then-delete and repeated deletes behave as with DESTROY.
    let mut state: Vec<(&SetElem, bool)> = dels
        .iter()
        .zip(&present)
        .map(|(&i, &p)| (ops[i].elem(), p))
        .collect();
    let mut items: Vec<Item> = Vec::with_capacity(ops.len());
    for op in ops {
        let e = op.elem();
        let slot = match state.iter().position(|(s, _)| *s == e) {
            Some(p) => p,
            None => {
                state.push((e, false));
                state.len() - 1
            }
        };
        match op {
            ElemOp::Add(_) => {
                items.push(Item {
                    msg: NFT_MSG_NEWSETELEM,
                    flags: NLM_F_CREATE,
                    op,
                });
                state[slot].1 = true;
            }
            ElemOp::Delete(_) => {
                if state[slot].1 {
                    items.push(Item {
                        msg: NFT_MSG_DELSETELEM,
                        flags: 0,
                        op,
                    });
                    state[slot].1 = false;
                }
            }
        }
    }
    if items.is_empty() {
        return Ok(());
    }
    match run_batch(sock, ctx, &items) {
        Ok(()) => Ok(()),
        Err(BatchFailure::Local(e)) => Err(e),
        Err(BatchFailure::Refused { batch, items: errs }) => {
            let sent: Vec<&ElemOp> = items.iter().map(|it| it.op).collect();
            Err(refused_error(ctx, &sent, batch, errs))
        }
    }
}

/// For each op index in `dels`: is that element in its set right now?
/// A missing set is an error (GETSET), a missing element is `false`.
pub(super) fn probe_elements(
    sock: &mut Sock,
    ctx: Ctx,
    ops: &[ElemOp],
    dels: &[usize],
) -> Result<Vec<bool>, NftNetlinkError> {
    const OP: &str = "check elements to delete";
    if dels.is_empty() {
        return Ok(Vec::new());
    }
    let mut sets: Vec<&str> = Vec::new();
    for &i in dels {
        let s = ops[i].elem().set.as_str();
        if !sets.contains(&s) {
            sets.push(s);
        }
    }
    // Requests: sets first (seq base..), then elements (seq base+sets..).
    let nreq = (sets.len() + dels.len()) as u32;
    let base = sock.seqs(nreq);
    let mut b = Builder::new(nreq as usize * 128);
    for (j, s) in sets.iter().enumerate() {
        let m = b.msg_begin(
            nft_type(NFT_MSG_GETSET),
            NLM_F_REQUEST | NLM_F_ACK,
            base + j as u32,
            ctx.family,
            0,
        );
        b.attr_strz(NFTA_SET_TABLE, ctx.table);
        b.attr_strz(NFTA_SET_NAME, s);
        b.msg_end(m);
    }
    let ebase = base + sets.len() as u32;
    for (j, &i) in dels.iter().enumerate() {
        b.elem_msg(
            NFT_MSG_GETSETELEM,
            NLM_F_REQUEST | NLM_F_ACK,
            ebase + j as u32,
            ctx.family,
            ctx.table,
            ops[i].elem(),
        );
    }
    sock.grow_buffers(b.buf.len() * 2, nreq as usize * 2048 + 64 * 1024);
    sock.send(&b.buf).map_err(|e| ctx.io(OP, e))?;

    let mut acks: Vec<Option<NlAck>> = (0..nreq).map(|_| None).collect();
    let mut found: Vec<Vec<KeyPair>> = vec![Vec::new(); dels.len()];
    let mut remaining = nreq as usize;
    let mut buf = vec![0u8; 32 * 1024];
    while remaining > 0 {
        let Some(len) = sock.recv(&mut buf, false).map_err(|e| ctx.io(OP, e))? else {
            return Err(ctx.timeout(OP));
        };
        for m in split_msgs(&buf[..len]).map_err(|d| ctx.protocol(OP, d))? {
            if m.seq < base || m.seq >= base + nreq {
                continue;
            }
            let k = (m.seq - base) as usize;
            if m.ty == NLMSG_ERROR {
                if acks[k].is_none() {
                    acks[k] = Some(parse_ack(&m).map_err(|d| ctx.protocol(OP, d))?);
                    remaining -= 1;
                }
            } else if m.ty == nft_type(NFT_MSG_NEWSETELEM) && k >= sets.len() {
                found[k - sets.len()].extend(msg_elements(&m));
            }
        }
    }
    for (j, s) in sets.iter().enumerate() {
        let ack = acks[j].as_ref().expect("all answered");
        if ack.errno != 0 {
            let hint = if ack.errno == libc::ENOENT {
                "no such set or table"
            } else {
                ""
            };
            return Err(ctx.kernel(
                Some(s),
                &format!("look up set {s} to delete elements"),
                ack,
                hint,
                "; nothing applied",
            ));
        }
    }
    let mut present = Vec::with_capacity(dels.len());
    for (j, &i) in dels.iter().enumerate() {
        let ack = acks[sets.len() + j].as_ref().expect("all answered");
        let e = ops[i].elem();
        match ack.errno {
            0 => {
                // The kernel may answer with the element *containing* the
                // key (intervals): present only if it is exactly ours.
                let want_end = e.key_end.as_ref().unwrap_or(&e.key);
                present.push(
                    found[j]
                        .iter()
                        .any(|(k, ke)| *k == e.key && ke.as_ref().unwrap_or(k) == want_end),
                );
            }
            libc::ENOENT => present.push(false),
            _ => {
                let op = &ops[i];
                return Err(ctx.kernel(
                    Some(&e.set),
                    &op.describe(),
                    ack,
                    elem_hint(op, ack.errno),
                    "; nothing applied",
                ));
            }
        }
    }
    Ok(present)
}

// ---------------------------------------------------------------------------
// Queries

/// True if the table exists (NFT_MSG_GETTABLE), used to decide whether the
/// one-time table setup must run.
pub fn table_exists(family: u8, table: &str) -> Result<bool, NftNetlinkError> {
    const OP: &str = "look up table";
    let ctx = Ctx { family, table };
    ctx.check_name(|| OP.into(), "table", table)?;
    let mut sock = ctx.open(OP)?;
    let seq = sock.seqs(1);
    let mut b = Builder::new(64 + table.len());
    let m = b.msg_begin(
        nft_type(NFT_MSG_GETTABLE),
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        family,
        0,
    );
    b.attr_strz(NFTA_TABLE_NAME, table);
    b.msg_end(m);
    sock.send(&b.buf).map_err(|e| ctx.io(OP, e))?;
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let Some(len) = sock.recv(&mut buf, false).map_err(|e| ctx.io(OP, e))? else {
            return Err(ctx.timeout(OP));
        };
        for m in split_msgs(&buf[..len]).map_err(|d| ctx.protocol(OP, d))? {
            if m.ty != NLMSG_ERROR || m.seq != seq {
                continue;
            }
            let ack = parse_ack(&m).map_err(|d| ctx.protocol(OP, d))?;
            let r = match ack.errno {
                0 => Ok(true),
                libc::ENOENT => Ok(false),
                _ => Err(ctx.kernel(None, OP, &ack, "", "")),
            };
            if r.is_ok() {
                put_sock(sock);
            }
            return r;
        }
    }
}

/// Lists the elements of a set (NFT_MSG_GETSETELEM dump) as (key, key_end)
/// byte vectors, for `status` and tests. Catch-all elements are left out.
#[allow(clippy::type_complexity)]
pub fn list_elements(
    family: u8,
    table: &str,
    set: &str,
) -> Result<Vec<(Vec<u8>, Option<Vec<u8>>)>, NftNetlinkError> {
    let op = format!("list elements of set {set}");
    let ctx = Ctx { family, table };
    ctx.check_name(|| op.clone(), "table", table)?;
    ctx.check_name(|| op.clone(), "set", set)?;
    let mut sock = ctx.open(&op)?;
    // A dump is interrupted (NLM_F_DUMP_INTR) when the ruleset changes
    // under it: try again a few times.
    for _ in 0..5 {
        let seq = sock.seqs(1);
        let mut b = Builder::new(64 + table.len() + set.len());
        let m = b.msg_begin(
            nft_type(NFT_MSG_GETSETELEM),
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            family,
            0,
        );
        b.attr_strz(NFTA_SET_ELEM_LIST_TABLE, table);
        b.attr_strz(NFTA_SET_ELEM_LIST_SET, set);
        b.msg_end(m);
        sock.send(&b.buf).map_err(|e| ctx.io(&op, e))?;

        let mut out = Vec::new();
        let mut interrupted = false;
        let mut buf = vec![0u8; 64 * 1024];
        'dump: loop {
            let Some(len) = sock.recv(&mut buf, false).map_err(|e| ctx.io(&op, e))? else {
                return Err(ctx.timeout(&op));
            };
            for m in split_msgs(&buf[..len]).map_err(|d| ctx.protocol(&op, d))? {
                if m.seq != seq {
                    continue;
                }
                if m.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match m.ty {
                    NLMSG_DONE => {
                        let err = if m.payload.len() >= 4 {
                            -(u32_at(m.payload, 0) as i32)
                        } else {
                            0
                        };
                        if err != 0 {
                            let ack = NlAck {
                                errno: err,
                                ext_msg: None,
                            };
                            return Err(ctx.kernel(Some(set), &op, &ack, "", ""));
                        }
                        break 'dump;
                    }
                    NLMSG_ERROR => {
                        let ack = parse_ack(&m).map_err(|d| ctx.protocol(&op, d))?;
                        if ack.errno == 0 {
                            break 'dump;
                        }
                        let hint = if ack.errno == libc::ENOENT {
                            "no such set or table"
                        } else {
                            ""
                        };
                        return Err(ctx.kernel(Some(set), &op, &ack, hint, ""));
                    }
                    t if t == nft_type(NFT_MSG_NEWSETELEM) => out.extend(msg_elements(&m)),
                    _ => {}
                }
            }
        }
        if !interrupted {
            put_sock(sock);
            return Ok(out);
        }
    }
    Err(ctx.protocol(
        &op,
        "dump kept being interrupted by concurrent ruleset changes",
    ))
}

