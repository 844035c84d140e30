use super::*;

#[test]
fn integers_parse_as_redis_does() {
    assert_eq!(parse_i64(b"0"), Some(0));
    assert_eq!(parse_i64(b"-12"), Some(-12));
    assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
    for bad in [
        &b""[..],
        b"-",
        b"+1",
        b" 1",
        b"1 ",
        b"01",
        b"-0",
        b"1.0",
        b"9223372036854775808",
        b"abc",
    ] {
        assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn floats_format_as_redis_does() {
    assert_eq!(format_f64(10.5), "10.5");
    assert_eq!(format_f64(0.1 + 0.2), "0.3");
    assert_eq!(format_f64(3.0e5), "300000");
    assert_eq!(format_f64(-1.25), "-1.25");
    assert_eq!(format_f64(5.0e3 + 2.0e-1), "5000.2");
    assert_eq!(format_f64(0.0), "0");
    assert_eq!(parse_f64(b" 1"), None);
    assert_eq!(parse_f64(b"nan"), None);
    assert_eq!(parse_f64(b"1e3"), Some(1000.0));
}

#[test]
fn getrange_follows_redis() {
    let v = b"This is a string";
    assert_eq!(get_range(v, 0, 3), b"This");
    assert_eq!(get_range(v, -3, -1), b"ing");
    assert_eq!(get_range(v, 0, -1), v);
    assert_eq!(get_range(v, 10, 100), b"string");
    assert_eq!(get_range(v, -1, -5), b"");
    assert_eq!(get_range(b"", 0, -1), b"");
    assert_eq!(get_range(v, 5, 3), b"");
}

fn apply(c: &mut Cache, index: u64, now: u64, op: Rmw) -> Response {
    c.apply(index, &super::super::Request::new(now, Command::Rmw(op)))
}

fn reply(r: Response) -> Reply {
    match r {
        Response::Reply(r) => r,
        other => panic!("not a reply: {other:?}"),
    }
}

fn set(key: &str, value: &str) -> Rmw {
    Rmw::Set {
        key: key.into(),
        value: value.into(),
        cond: SetCond::Always,
        get: false,
        ttl: Ttl::Clear,
    }
}

#[test]
fn incr_keeps_the_ttl_and_refuses_overflow_and_text() {
    let mut c = Cache::new();
    let ex = Rmw::Set {
        key: "n".into(),
        value: b"9223372036854775806".to_vec(),
        cond: SetCond::Always,
        get: false,
        ttl: Ttl::In(60_000),
    };
    assert_eq!(reply(apply(&mut c, 1, 1000, ex)), Reply::Ok);
    let incr = || Rmw::Incr {
        key: "n".into(),
        by: 1,
    };
    assert_eq!(reply(apply(&mut c, 2, 1000, incr())), Reply::Int(i64::MAX));
    assert_eq!(
        reply(apply(&mut c, 3, 1000, incr())),
        Reply::err(ERR_OVERFLOW)
    );
    assert_eq!(c.get("n").unwrap().expires_at, 61_000);
    apply(&mut c, 4, 1000, set("t", "1.5"));
    let incr_t = Rmw::Incr {
        key: "t".into(),
        by: 1,
    };
    assert_eq!(
        reply(apply(&mut c, 5, 1000, incr_t)),
        Reply::err(ERR_NOT_INT)
    );
    let f = Rmw::IncrFloat {
        key: "t".into(),
        by: "0.25".into(),
    };
    assert_eq!(
        reply(apply(&mut c, 6, 1000, f)),
        Reply::Bulk(b"1.75".to_vec())
    );
}

#[test]
fn msetnx_is_all_or_nothing_and_a_past_deadline_deletes() {
    let mut c = Cache::new();
    apply(&mut c, 1, 1000, set("a", "1"));
    let nx = |k: &str| Rmw::MSet {
        pairs: vec![
            Pair {
                key: "b".into(),
                value: b"2".to_vec(),
            },
            Pair {
                key: k.into(),
                value: b"3".to_vec(),
            },
        ],
        nx: true,
    };
    assert_eq!(reply(apply(&mut c, 2, 1000, nx("a"))), Reply::Int(0));
    assert!(c.get("b").is_none());
    assert_eq!(reply(apply(&mut c, 3, 1000, nx("c"))), Reply::Int(1));
    assert!(c.get("b").is_some() && c.get("c").is_some());
    let gone = Rmw::Expire {
        key: "a".into(),
        ttl: Ttl::At(1),
        cond: ExpireCond::Always,
    };
    assert_eq!(reply(apply(&mut c, 4, 1000, gone)), Reply::Int(1));
    assert_eq!(c.len(), 2);
}

#[test]
fn multi_runs_nothing_when_a_watched_key_changed() {
    let mut c = Cache::new();
    apply(&mut c, 1, 1000, set("w", "1"));
    let multi = |index: u64| Command::Multi {
        watch: vec![Watched {
            key: "w".into(),
            index,
        }],
        ops: vec![
            MultiOp::Write(set("w", "2")),
            MultiOp::Read(Query::Get { key: "w".into() }),
        ],
    };
    let req = |cmd| super::super::Request::new(1000, cmd);
    assert_eq!(
        c.apply(2, &req(multi(7))),
        Response::Multi { results: None }
    );
    assert_eq!(c.get("w").unwrap().value, b"1");
    let Response::Multi {
        results: Some(results),
    } = c.apply(3, &req(multi(1)))
    else {
        panic!("ran");
    };
    assert_eq!(
        results,
        vec![
            Response::Reply(Reply::Ok),
            Response::Reply(Reply::Bulk(b"2".to_vec()))
        ]
    );
}
