use super::*;
use crate::kv::Ttl;

fn set(key: &str, value: &str, cas: Option<u64>) -> Request {
    set_ttl(key, value, cas, Ttl::Clear)
}

fn set_ttl(key: &str, value: &str, cas: Option<u64>, ttl: Ttl) -> Request {
    Request::new(
        0,
        Command::Set {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            cas,
            ttl,
        },
    )
}

fn at(now_ms: u64, mut r: Request) -> Request {
    r.now_ms = now_ms;
    r
}

fn del(key: &str, cas: Option<u64>) -> Request {
    Request::new(
        0,
        Command::Delete {
            key: key.into(),
            cas,
        },
    )
}

#[test]
fn set_tracks_create_modify_and_version() {
    let mut c = Cache::new();
    assert_eq!(
        c.apply(5, &set("a", "1", None)),
        Response::Set {
            meta: EntryMeta::at(5, 5, 1),
            expires_at: 0
        }
    );
    assert_eq!(
        c.apply(9, &set("a", "2", None)),
        Response::Set {
            meta: EntryMeta::at(5, 9, 2),
            expires_at: 0
        }
    );
    assert_eq!(c.get("a").unwrap().value, b"2");
}

#[test]
fn cas_zero_means_absent_only() {
    let mut c = Cache::new();
    assert!(matches!(
        c.apply(1, &set("k", "v", Some(0))),
        Response::Set { .. }
    ));
    assert_eq!(
        c.apply(2, &set("k", "w", Some(0))),
        Response::CasFailed { current: 1 }
    );
    assert_eq!(c.get("k").unwrap().value, b"v");
}

#[test]
fn cas_matches_modify_index() {
    let mut c = Cache::new();
    c.apply(3, &set("k", "v", None));
    assert_eq!(
        c.apply(4, &set("k", "x", Some(2))),
        Response::CasFailed { current: 3 }
    );
    assert!(matches!(
        c.apply(5, &set("k", "x", Some(3))),
        Response::Set { .. }
    ));
    assert_eq!(
        c.apply(6, &del("k", Some(3))),
        Response::CasFailed { current: 5 }
    );
    assert_eq!(
        c.apply(7, &del("k", Some(5))),
        Response::Deleted { existed: true }
    );
    assert_eq!(
        c.apply(8, &del("k", Some(0))),
        Response::CasFailed { current: 0 }
    );
}

#[test]
fn delete_absent_reports_not_existed_and_recreate_resets_create_index() {
    let mut c = Cache::new();
    assert_eq!(
        c.apply(1, &del("x", None)),
        Response::Deleted { existed: false }
    );
    c.apply(2, &set("x", "a", None));
    c.apply(3, &del("x", None));
    assert_eq!(
        c.apply(4, &set("x", "b", None)),
        Response::Set {
            meta: EntryMeta::at(4, 4, 1),
            expires_at: 0
        }
    );
}

#[test]
fn memory_accounting_follows_writes_ttls_and_deletes() {
    let mut c = Cache::new();
    c.apply(1, &set("ab", "xyz", None));
    assert_eq!(c.mem_bytes(), entry_cost(2, 3, false));
    c.apply(2, &set("ab", "x", None));
    assert_eq!(c.mem_bytes(), entry_cost(2, 1, false));
    c.apply(3, &set_ttl("c", "", None, Ttl::In(10)));
    assert_eq!(
        c.mem_bytes(),
        entry_cost(2, 1, false) + entry_cost(1, 0, true)
    );
    c.apply(4, &del("ab", None));
    assert_eq!(c.mem_bytes(), entry_cost(1, 0, true));
    let rebuilt = Cache::from_items(c.items().cloned(), c.clock_ms());
    assert_eq!(rebuilt, c);
    assert_eq!(rebuilt.digest(), c.digest());
    assert_eq!(rebuilt.stats().ttl_keys, 1);
}

#[test]
fn same_log_same_digest_different_log_different_digest() {
    let log = [set("a", "1", None), set("b", "2", None), del("a", None)];
    let mut x = Cache::new();
    let mut y = Cache::new();
    for (i, r) in log.iter().enumerate() {
        x.apply(i as u64 + 1, r);
        y.apply(i as u64 + 1, r);
    }
    assert_eq!(x.digest(), y.digest());
    y.apply(10, &set("b", "3", None));
    assert_ne!(x.digest(), y.digest());
    // Digest is incremental: equal to a fresh rebuild.
    let z = Cache::from_items(y.items().cloned(), y.clock_ms());
    assert_eq!(z.digest(), y.digest());
}

#[test]
fn a_cache_built_in_chunks_equals_one_built_by_writes() {
    // More than three chunks, every fifth key with a deadline.
    let n = 3 * CacheBuilder::MIN_CHUNK as u64 + 5;
    let mut written = Cache::new();
    for i in 0..n {
        let ttl = if i % 5 == 0 {
            Ttl::In(60_000)
        } else {
            Ttl::Clear
        };
        written.apply(
            i + 1,
            &at(1_000, set_ttl(&format!("k{i:07}"), "v", None, ttl)),
        );
    }
    let rebuilt = Cache::from_items(written.items().cloned(), written.clock_ms());
    assert_eq!(rebuilt, written);
    assert_eq!(rebuilt.digest(), written.digest());
    assert_eq!(rebuilt.stats(), written.stats());
    // Key order is best, any order is right.
    let shuffled = written.items().rev().cloned();
    assert_eq!(Cache::from_items(shuffled, written.clock_ms()), written);
}

// ---- TTL -------------------------------------------------------------------

#[test]
fn a_ttl_is_relative_to_the_replicated_clock_which_never_goes_back() {
    let mut c = Cache::new();
    let r = c.apply(1, &at(1_000, set_ttl("k", "v", None, Ttl::In(500))));
    assert_eq!(
        r,
        Response::Set {
            meta: EntryMeta::at(1, 1, 1),
            expires_at: 1_500
        }
    );
    // A stamp from a leader whose clock is behind does not move time back.
    c.apply(2, &at(900, set("other", "x", None)));
    assert_eq!(c.clock_ms(), 1_000);
    assert!(c.get("k").is_some());
    // Time passes on the replicated clock (any entry carries it).
    c.apply(3, &at(1_500, set("other", "y", None)));
    assert!(c.get("k").is_none(), "expired at the deadline");
    assert_eq!(
        c.len(),
        2,
        "still stored until a tick or a command removes it"
    );
    let r = c.apply(4, &at(1_500, Request::new(0, Command::Tick { max: 10 })));
    assert_eq!(r, Response::Ticked { removed: 1 });
    assert_eq!(c.len(), 1);
    assert_eq!(c.stats().expired_total, 1);
    assert_eq!(c.mem_bytes(), entry_cost(5, 1, false));
}

#[test]
fn a_write_without_ttl_clears_it_keepttl_keeps_it() {
    let mut c = Cache::new();
    c.apply(1, &at(10, set_ttl("k", "v", None, Ttl::In(100))));
    let r = c.apply(2, &at(20, set_ttl("k", "w", None, Ttl::Keep)));
    assert_eq!(
        r,
        Response::Set {
            meta: EntryMeta::at(1, 2, 2),
            expires_at: 110
        }
    );
    let r = c.apply(3, &at(30, set("k", "x", None)));
    assert_eq!(
        r,
        Response::Set {
            meta: EntryMeta::at(1, 3, 3),
            expires_at: 0
        }
    );
    assert_eq!(c.stats().ttl_keys, 0);
}

#[test]
fn an_expired_key_is_absent_for_every_command() {
    let mut c = Cache::new();
    c.apply(1, &at(10, set_ttl("k", "v", None, Ttl::In(5))));
    // CAS against the old index fails: the key is gone.
    assert_eq!(
        c.apply(2, &at(20, set("k", "w", Some(1)))),
        Response::CasFailed { current: 0 }
    );
    assert_eq!(c.stats().expired_total, 1);
    // Recreated: a new create index.
    assert_eq!(
        c.apply(3, &at(20, set("k", "w", Some(0)))),
        Response::Set {
            meta: EntryMeta::at(3, 3, 1),
            expires_at: 0
        }
    );
    c.apply(4, &at(20, set_ttl("e", "v", None, Ttl::In(1))));
    let r = c.apply(
        5,
        &at(
            30,
            Request::new(
                0,
                Command::Expire {
                    key: "e".into(),
                    ttl: Ttl::In(100),
                },
            ),
        ),
    );
    assert_eq!(
        r,
        Response::Expired {
            found: false,
            expires_at: 0
        }
    );
}

#[test]
fn expire_and_persist_change_only_the_deadline() {
    let mut c = Cache::new();
    c.apply(1, &at(100, set("k", "v", None)));
    let expire = |ttl| {
        Request::new(
            0,
            Command::Expire {
                key: "k".into(),
                ttl,
            },
        )
    };
    let r = c.apply(2, &at(200, expire(Ttl::In(50))));
    assert_eq!(
        r,
        Response::Expired {
            found: true,
            expires_at: 250
        }
    );
    let e = c.get("k").unwrap();
    assert_eq!((e.meta, e.expires_at), (EntryMeta::at(1, 1, 1), 250));
    let r = c.apply(3, &at(210, expire(Ttl::Clear)));
    assert_eq!(
        r,
        Response::Expired {
            found: true,
            expires_at: 0
        }
    );
    c.apply(4, &at(10_000, Request::new(0, Command::Tick { max: 10 })));
    assert!(c.get("k").is_some(), "persisted");
    assert_eq!(
        c.apply(
            5,
            &at(
                10_000,
                Request::new(
                    0,
                    Command::Expire {
                        key: "no".into(),
                        ttl: Ttl::In(5)
                    }
                )
            )
        ),
        Response::Expired {
            found: false,
            expires_at: 0
        }
    );
}

#[test]
fn ticks_remove_in_deadline_order_and_in_bounded_batches() {
    let mut c = Cache::new();
    for i in 0..10u64 {
        c.apply(
            i + 1,
            &at(0, set_ttl(&format!("k{i}"), "v", None, Ttl::In(100 - i))),
        );
    }
    c.apply(20, &at(1_000, set("clock", "", None)));
    let tick = Request::new(1_000, Command::Tick { max: 4 });
    assert_eq!(c.apply(21, &tick), Response::Ticked { removed: 4 });
    // The earliest deadlines went first: k9 (91), k8, k7, k6.
    assert!(!c.items.contains(b"k9".as_slice()));
    assert!(c.items.contains(b"k5".as_slice()));
    assert_eq!(c.apply(22, &tick), Response::Ticked { removed: 4 });
    assert_eq!(c.apply(23, &tick), Response::Ticked { removed: 2 });
    assert_eq!(c.apply(24, &tick), Response::Ticked { removed: 0 });
    assert_eq!(c.len(), 1);
}

// ---- memory limit and eviction ------------------------------------------

fn limited(mut r: Request, max: u64, evict: &[&str]) -> Request {
    r.max_memory = max;
    r.evict = evict.iter().map(|s| s.to_string()).collect();
    r
}

#[test]
fn a_full_cache_refuses_a_write_unless_the_victims_make_room() {
    let one = entry_cost(2, 10, false);
    let max = 2 * one;
    let mut c = Cache::new();
    c.apply(1, &limited(set("k1", "0123456789", None), max, &[]));
    c.apply(2, &limited(set("k2", "0123456789", None), max, &[]));
    // Full: refused, nothing evicted, nothing applied.
    let r = c.apply(3, &limited(set("k3", "0123456789", None), max, &[]));
    assert_eq!(r, Response::OutOfMemory { needed: one, max });
    assert_eq!((c.len(), c.stats().oom_total), (2, 1));
    // Victims that do not free enough: still refused, and not evicted.
    let r = c.apply(
        4,
        &limited(set("k3", "01234567890123456789", None), max, &["k1"]),
    );
    assert!(matches!(r, Response::OutOfMemory { .. }));
    assert!(c.get("k1").is_some());
    // A victim that makes room: evicted, then the write applies.
    let r = c.apply(5, &limited(set("k3", "0123456789", None), max, &["k1"]));
    assert!(matches!(r, Response::Set { .. }), "{r:?}");
    assert!(c.get("k1").is_none());
    assert_eq!(c.stats().evicted_total, 1);
    assert!(c.mem_bytes() <= max);
    // Overwriting with a value of the same size needs no room.
    let r = c.apply(6, &limited(set("k2", "abcdefghij", None), max, &[]));
    assert!(matches!(r, Response::Set { .. }));
    // Deletes always work.
    assert_eq!(
        c.apply(7, &limited(del("k2", None), max, &[])),
        Response::Deleted { existed: true }
    );
}

// ---- capture ----------------------------------------------------------------

fn collect_capture(c: &Cache, chunk: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let items = c.capture_chunk(after.as_deref(), chunk);
        if items.is_empty() {
            return out;
        }
        after = Some(items.last().unwrap().key().to_vec());
        out.extend(items.iter().map(|i| (i.key().to_vec(), i.value().to_vec())));
    }
}

#[test]
fn a_capture_streams_the_state_as_it_was_while_apply_goes_on() {
    let mut c = Cache::new();
    for k in ["a", "b", "c", "d", "e"] {
        c.apply(1, &set(k, k, None));
    }
    let expected: Vec<_> = c
        .items()
        .map(|i| (i.key().to_vec(), i.value().to_vec()))
        .collect();
    assert!(c.begin_capture().is_some());
    assert!(c.begin_capture().is_none(), "one capture at a time");
    let first = c.capture_chunk(None, 2);
    assert_eq!(first.len(), 2);
    // Changes after the capture began: overwrite, delete, insert, in
    // already-streamed and not-yet-streamed ranges.
    c.apply(2, &set("a", "A2", None));
    c.apply(3, &del("c", None));
    c.apply(4, &set("bb", "new", None));
    c.apply(5, &set("d", "D2", None));
    c.apply(6, &set("z", "new", None));
    c.apply(7, &del("d", None));
    let mut got: Vec<_> = first
        .iter()
        .map(|i| (i.key().to_vec(), i.value().to_vec()))
        .collect();
    let mut after = Some(first.last().unwrap().key().to_vec());
    loop {
        let items = c.capture_chunk(after.as_deref(), 2);
        if items.is_empty() {
            break;
        }
        after = Some(items.last().unwrap().key().to_vec());
        got.extend(items.iter().map(|i| (i.key().to_vec(), i.value().to_vec())));
    }
    assert_eq!(got, expected);
    for chunk in [1, 3, 100] {
        assert_eq!(collect_capture(&c, chunk), expected, "chunk {chunk}");
    }
    c.end_capture();
    assert!(c.begin_capture().is_some());
    let now: Vec<_> = c
        .items()
        .map(|i| (i.key().to_vec(), i.value().to_vec()))
        .collect();
    assert_eq!(collect_capture(&c, 2), now);
}
