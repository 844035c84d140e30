use super::*;
use crate::kv::Request;
use crate::kv::Ttl;

fn put(key: &str, value: &str) -> Command {
    Command::Set {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        cas: None,
        ttl: Ttl::Clear,
    }
}

fn del(key: &str) -> Command {
    Command::Delete {
        key: key.into(),
        cas: None,
    }
}

fn get(key: &str) -> Command {
    Command::Get { key: key.into() }
}

fn prefix(p: &str) -> KeyRange {
    KeyRange::Prefix { prefix: p.into() }
}

fn cmp(key: &str, op: CmpOp, target: Target) -> Compare {
    Compare {
        key: key.into(),
        op,
        target,
    }
}

fn txn(compare: Vec<Compare>, success: Vec<Command>, failure: Vec<Command>) -> Request {
    Request::new(
        0,
        Command::Txn {
            compare,
            success,
            failure,
        },
    )
}

fn keys(r: &Response) -> Vec<String> {
    match r {
        Response::Range { kvs, .. } => kvs.iter().map(|kv| kv.key.clone()).collect(),
        other => panic!("not a range: {other:?}"),
    }
}

/// a=1 at index 1, b=2 at 2, then a=10 at 3: a has version 2, create 1,
/// modify 3.
fn seeded() -> Cache {
    let mut c = Cache::new();
    c.apply(1, &Request::new(0, put("a", "1")));
    c.apply(2, &Request::new(0, put("b", "2")));
    c.apply(3, &Request::new(0, put("a", "10")));
    c
}

#[test]
fn compares_cover_value_version_indexes_and_presence() {
    let c = seeded();
    let holds = |key: &str, op, t| c.compare(&cmp(key, op, t));
    let v = |s: &str| Target::Value {
        value: s.as_bytes().to_vec(),
    };
    assert!(holds("a", CmpOp::Eq, v("10")));
    assert!(holds("a", CmpOp::Ne, v("1")));
    assert!(holds("a", CmpOp::Lt, v("2")), "bytes order: \"10\" < \"2\"");
    assert!(holds("a", CmpOp::Gt, v("0")));
    assert!(holds("a", CmpOp::Eq, Target::Version { n: 2 }));
    assert!(holds("a", CmpOp::Eq, Target::CreateIndex { n: 1 }));
    assert!(holds("a", CmpOp::Eq, Target::ModifyIndex { n: 3 }));
    assert!(holds("a", CmpOp::Gt, Target::ModifyIndex { n: 2 }));
    assert!(holds("a", CmpOp::Lt, Target::Version { n: 3 }));
    assert!(!holds("a", CmpOp::Ne, Target::Version { n: 2 }));
    assert!(holds("a", CmpOp::Eq, Target::Exists));
    assert!(!holds("a", CmpOp::Eq, Target::Absent));
    // An absent key: indexes and version 0, no value compare holds.
    assert!(holds("zz", CmpOp::Eq, Target::Absent));
    assert!(holds("zz", CmpOp::Eq, Target::Version { n: 0 }));
    assert!(holds("zz", CmpOp::Eq, Target::ModifyIndex { n: 0 }));
    assert!(!holds("zz", CmpOp::Eq, v("")));
    assert!(!holds("zz", CmpOp::Ne, v("x")));
}

#[test]
fn success_ops_run_in_order_at_one_index_and_see_each_other() {
    let mut c = seeded();
    let r = c.apply(
        7,
        &txn(
            vec![cmp("a", CmpOp::Eq, Target::ModifyIndex { n: 3 })],
            vec![
                put("x", "1"),
                get("x"),
                del("b"),
                Command::Range {
                    range: prefix(""),
                    limit: 10,
                    keys_only: false,
                },
            ],
            vec![put("failed", "1")],
        ),
    );
    let Response::Txn { succeeded, results } = r else {
        panic!("{r:?}")
    };
    assert!(succeeded);
    assert_eq!(results.len(), 4);
    assert!(matches!(&results[0], Response::Set { meta, .. } if meta.modify_index == 7));
    assert!(
        matches!(&results[1], Response::Value { kv: Some(kv) } if kv.value == b"1" && kv.meta.create_index == 7)
    );
    assert_eq!(results[2], Response::Deleted { existed: true });
    assert_eq!(keys(&results[3]), ["a", "x"]);
    assert!(c.get("failed").is_none());
}

#[test]
fn a_failed_compare_runs_the_failure_branch_only() {
    let mut c = seeded();
    let before = c.digest();
    let r = c.apply(
        8,
        &txn(
            vec![
                cmp("a", CmpOp::Eq, Target::Exists),
                cmp("b", CmpOp::Eq, Target::Version { n: 5 }),
            ],
            vec![put("a", "changed")],
            vec![get("b")],
        ),
    );
    assert!(
        matches!(&r, Response::Txn { succeeded: false, results } if matches!(&results[0], Response::Value { kv: Some(kv) } if kv.value == b"2"))
    );
    assert_eq!(c.digest(), before, "a read-only branch changes nothing");
    assert_eq!(c.get("a").unwrap().value, b"10");
}

#[test]
fn validation_names_the_op_at_fault() {
    let nested = Command::Txn {
        compare: vec![],
        success: vec![],
        failure: vec![],
    };
    let with_cas = Command::Set {
        key: "k".into(),
        value: vec![],
        cas: Some(1),
        ttl: Ttl::Clear,
    };
    type Case = (Vec<Compare>, Vec<Command>, Vec<Command>, &'static str);
    let cases: Vec<Case> = vec![
        (vec![], vec![put("a", "1"), nested], vec![], "success[1]"),
        (vec![], vec![], vec![with_cas], "failure[0]"),
        (vec![], vec![put("", "1")], vec![], "success[0]"),
        (
            vec![
                cmp("a", CmpOp::Eq, Target::Exists),
                cmp("", CmpOp::Eq, Target::Exists),
            ],
            vec![],
            vec![],
            "compare[1]",
        ),
        (
            vec![cmp("a", CmpOp::Gt, Target::Absent)],
            vec![],
            vec![],
            "compare[0]",
        ),
        (
            vec![],
            vec![Command::Expire {
                key: "a".into(),
                ttl: Ttl::Clear,
            }],
            vec![],
            "success[0]",
        ),
        (
            vec![],
            vec![Command::Range {
                range: prefix("a"),
                limit: MAX_RANGE_LIMIT + 1,
                keys_only: false,
            }],
            vec![],
            "success[0]",
        ),
        (
            vec![],
            (0..129).map(|i| get(&i.to_string())).collect(),
            vec![],
            "txn",
        ),
    ];
    for (compare, success, failure, op) in cases {
        let e = validate(&compare, &success, &failure, None).unwrap_err();
        assert_eq!(e.op, op, "{e}");
        // Apply refuses the same entry without changing anything.
        let mut c = seeded();
        let before = c.clone();
        let r = c.apply(9, &txn(compare, success, failure));
        assert!(
            matches!(&r, Response::Invalid { op: o, .. } if o == op),
            "{r:?}"
        );
        assert!(c == before);
    }
    let big = vec![put("k", "0123456789")];
    assert_eq!(validate(&[], &big, &[], Some(10)).unwrap_err().op, "txn");
    assert!(validate(&[], &big, &[], Some(11)).is_ok());
    let full: Vec<Command> = (0..128).map(|i| get(&i.to_string())).collect();
    assert!(validate(&[], &full, &[], None).is_ok());
}

#[test]
fn ranges_are_ordered_bounded_and_skip_expired_keys() {
    let mut c = Cache::new();
    for (i, k) in ["a/1", "a/2", "a/3", "a0", "b/1"].iter().enumerate() {
        c.apply(i as u64 + 1, &Request::new(1_000, put(k, "vv")));
    }
    let ttl = Command::Set {
        key: "a/25".into(),
        value: b"x".to_vec(),
        cas: None,
        ttl: Ttl::In(10),
    };
    c.apply(6, &Request::new(1_000, ttl));
    let mut budget = u64::MAX;
    let page = c.range(&prefix("a/"), None, 10, false, &mut budget);
    let names: Vec<_> = page.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(names, ["a/1", "a/2", "a/25", "a/3"]);
    assert!(!page.more);
    // The clock passes the deadline: the key is gone from ranges at once.
    c.apply(7, &Request::new(2_000, get("none")));
    let page = c.range(&prefix("a/"), None, 2, true, &mut budget);
    assert_eq!(page.kvs.len(), 2);
    assert!(page.more && page.kvs[0].value.is_empty());
    let page = c.range(&prefix("a/"), Some(b"a/2"), 2, false, &mut budget);
    assert_eq!(
        page.kvs
            .iter()
            .map(|kv| kv.key.as_str())
            .collect::<Vec<_>>(),
        ["a/3"]
    );
    assert!(!page.more);
    let between = KeyRange::Between {
        start: "a/2".into(),
        end: Some("b".into()),
    };
    let page = c.range(&between, None, 10, false, &mut budget);
    assert_eq!(page.kvs.len(), 3);
    assert_eq!(c.count(&between), 3);
    assert_eq!(c.count(&prefix("")), 5);
    // A byte budget smaller than one kv still returns one (progress).
    let mut small = 1;
    let page = c.range(&prefix(""), None, 10, false, &mut small);
    assert_eq!((page.kvs.len(), page.more, small), (1, true, 0));
}

#[test]
fn delete_prefix_is_bounded_per_entry() {
    let mut c = Cache::new();
    let n = MAX_DELETE_PREFIX as u64 + 5;
    for i in 0..n {
        c.apply(i + 1, &Request::new(0, put(&format!("p/{i:06}"), "")));
    }
    c.apply(n + 1, &Request::new(0, put("q", "")));
    let del = Request::new(
        0,
        Command::DeletePrefix {
            prefix: "p/".into(),
        },
    );
    assert_eq!(
        c.apply(n + 2, &del),
        Response::DeletedPrefix {
            deleted: u64::from(MAX_DELETE_PREFIX),
            more: true
        }
    );
    assert_eq!(
        c.apply(n + 3, &del),
        Response::DeletedPrefix {
            deleted: 5,
            more: false
        }
    );
    assert_eq!(c.len(), 1);
    assert!(c.get("q").is_some());
}

#[test]
fn a_txn_that_does_not_fit_applies_nothing() {
    let mut c = Cache::new();
    c.apply(1, &Request::new(0, put("a", "1")));
    c.apply(2, &Request::new(0, put("old", "1")));
    let one = crate::kv::cache::entry_cost(1, 100, false);
    let max = c.mem_bytes() + one + 10;
    let big = |k: &str| Command::Set {
        key: k.into(),
        value: vec![b'x'; 100],
        cas: None,
        ttl: Ttl::Clear,
    };
    let mut req = txn(vec![], vec![put("a", "2"), big("x"), big("y")], vec![]);
    req.max_memory = max;
    let before = c.digest();
    assert!(matches!(c.apply(3, &req), Response::OutOfMemory { .. }));
    assert_eq!(c.digest(), before);
    assert_eq!(c.stats().oom_total, 1);
    assert_eq!(c.get("a").unwrap().value, b"1", "no op of the txn ran");
    assert!(c.get("x").is_none());
    // With a victim that frees enough, it fits, and the victim goes.
    req.evict = vec!["old".into(), "a".into()];
    req.max_memory = c.mem_bytes() - crate::kv::cache::entry_cost(3, 1, false) + 2 * one;
    assert!(matches!(
        c.apply(4, &req),
        Response::Txn {
            succeeded: true,
            ..
        }
    ));
    assert!(c.get("old").is_none());
    assert_eq!(
        c.get("a").unwrap().value,
        b"2",
        "a key the txn writes is never a victim"
    );
    assert!(c.mem_bytes() <= req.max_memory);
}

#[test]
fn growth_is_an_upper_bound_along_the_ops() {
    let c = seeded();
    let cost = |k: usize, v: usize| crate::kv::cache::entry_cost(k, v, false);
    // Overwrite a (same size as "10"): 0; new x: its cost.
    assert_eq!(c.txn_growth(&[put("a", "11"), put("x", "1")]), cost(1, 1));
    // Delete then re-put: the delete is not credited.
    assert_eq!(c.txn_growth(&[del("a"), put("a", "10")]), cost(1, 2));
    assert_eq!(
        c.txn_growth(&[Command::DeletePrefix { prefix: "".into() }, put("b", "2")]),
        cost(1, 1)
    );
    assert_eq!(c.txn_growth(&[get("a")]), 0);
}

#[test]
fn replicas_applying_the_same_txns_agree() {
    let log = [
        txn(vec![], vec![put("a", "1"), put("b", "1")], vec![]),
        txn(
            vec![cmp("a", CmpOp::Eq, Target::Version { n: 1 })],
            vec![put("a", "2"), Command::DeletePrefix { prefix: "b".into() }],
            vec![put("c", "1")],
        ),
        txn(
            vec![cmp("b", CmpOp::Eq, Target::Exists)],
            vec![put("d", "1")],
            vec![put("e", "1")],
        ),
    ];
    let run = || {
        let mut c = Cache::new();
        let rs: Vec<_> = log
            .iter()
            .enumerate()
            .map(|(i, r)| c.apply(i as u64 + 1, r))
            .collect();
        (c, rs)
    };
    let (a, ra) = run();
    let (b, rb) = run();
    assert_eq!(ra, rb);
    assert_eq!(a.digest(), b.digest());
    assert!(a.get("e").is_some() && a.get("d").is_none() && a.get("c").is_none());
}

#[test]
fn old_log_entries_still_decode_and_new_ones_round_trip() {
    // A `Set` entry as the first release wrote it (rmp-serde, named).
    let old = Request::new(5, put("k", "v"));
    let bytes = rmp_serde::to_vec_named(&old).unwrap();
    let golden = "83a66e6f775f6d7305a3636d6481a3536574\
84a36b6579a16ba576616c7565c40176a3636173c0a374746ca5436c656172\
aa6d61785f6d656d6f727900";
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, golden, "the encoding of existing variants changed");
    let back: Request = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, old);
    let t = txn(
        vec![cmp(
            "a",
            CmpOp::Lt,
            Target::Value {
                value: vec![0, 255],
            },
        )],
        vec![Command::Range {
            range: KeyRange::Between {
                start: "a".into(),
                end: None,
            },
            limit: 3,
            keys_only: true,
        }],
        vec![Command::DeletePrefix { prefix: "p".into() }],
    );
    let back: Request = rmp_serde::from_slice(&rmp_serde::to_vec_named(&t).unwrap()).unwrap();
    assert_eq!(back, t);
}

#[test]
fn applies_report_what_they_changed_and_why() {
    use crate::kv::ChangeKind::*;
    let mut c = seeded();
    assert!(c.take_changes().is_empty(), "not recording yet");
    c.record_changes();
    let kinds = |c: &mut Cache| {
        c.take_changes()
            .into_iter()
            .map(|ch| (ch.kind, ch.key))
            .collect::<Vec<_>>()
    };
    c.apply(
        10,
        &txn(
            vec![],
            vec![put("x", "1"), del("a"), get("b"), del("none")],
            vec![],
        ),
    );
    assert_eq!(kinds(&mut c), [(Put, "x".into()), (Delete, "a".into())]);
    let ttl = Command::Set {
        key: "t".into(),
        value: vec![],
        cas: None,
        ttl: Ttl::In(5),
    };
    c.apply(11, &Request::new(100, ttl));
    let mut tick = Request::new(200, Command::Tick { max: 10 });
    c.apply(12, &tick);
    assert_eq!(kinds(&mut c), [(Put, "t".into()), (Expire, "t".into())]);
    tick.cmd = put("y", "1");
    tick.evict = vec!["x".into()];
    tick.max_memory = 1;
    c.apply(13, &tick);
    // Refused (it cannot fit in 1 byte): nothing changed, nothing evicted.
    assert!(kinds(&mut c).is_empty());
    tick.max_memory = c.mem_bytes();
    c.apply(14, &tick);
    assert_eq!(kinds(&mut c), [(Evict, "x".into()), (Put, "y".into())]);
    let changes_of_put = c.apply(15, &Request::new(0, put("z", "zz")));
    assert!(matches!(changes_of_put, Response::Set { .. }));
    let ch = c.take_changes();
    assert_eq!(
        (ch[0].value.as_slice(), ch[0].meta.modify_index),
        (b"zz".as_slice(), 15)
    );
}
