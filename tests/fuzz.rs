//! Property-based fuzzing (proptest, stable Rust) of everything that parses
//! untrusted bytes: key and query decoding, the HTTP handlers, WAL records,
//! snapshot blobs and files, the YAML config, the tokens file, route needs
//! and presented bearer tokens; plus the cache's accounting
//! and determinism under random command sequences.
//!
//! Properties: no panic, no huge allocation from a lying length header
//! (a per-thread allocation tracker checks the largest single request),
//! correct round trips, damaged checksummed data is rejected.
//!
//! Case counts are bounded so the file runs in well under a minute in debug.
//! Every property draws from `DCACHE_TEST_SEED` (printed; see
//! `dcache_testkit::seed`): a failure is repeated by setting it.

use std::alloc::GlobalAlloc;
use std::alloc::Layout;
use std::alloc::System;
use std::cell::Cell;
use std::time::Duration;
use std::time::Instant;

use dcache::api::keys;
use dcache::config::Config;
use dcache::kv::Cache;
use dcache::kv::Command;
use dcache::kv::Request;
use dcache::kv::Ttl;
use dcache::kv::cache::entry_cost;
use dcache::raft::NodeId;
use dcache::raft::TypeConfig;
use dcache::raft::log_store::Rec;
use dcache::raft::snapshot;
use dcache::raft::typ;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::proc::unique;
use dcache_testkit::seed;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use proptest::test_runner::TestCaseError;
use proptest::test_runner::TestRunner;

// --- largest allocation, per thread ---------------------------------------

/// Tracks the largest single allocation made on the current thread, so a
/// decoder that trusts a length header (e.g. "4 GiB string follows") is
/// caught even when the allocator would happen to satisfy it lazily.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: allocations during thread teardown must not panic.
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size);
        }
    });
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Run `f` and return its result with the largest allocation it made on
/// this thread.
fn largest_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let r = f();
    (r, LARGEST.with(|l| l.get()))
}

/// No single allocation while decoding `n` input bytes may exceed this.
fn alloc_budget(n: usize) -> usize {
    64 * 1024 + 16 * n
}

/// `cases` cases drawn from the run's seed (so a failure is repeated with
/// the same `DCACHE_TEST_SEED`; proptest prints the minimal failing input).
fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed::seed()),
        ..ProptestConfig::default()
    }
}

// --- api::keys ----------------------------------------------------------------

/// Strict percent-encoding: everything but unreserved ASCII as %XX.
fn encode(s: &str, upper: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// Reference: every `%` is followed by two hex digits.
fn escapes_well_formed(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Reference decoder (lenient on UTF-8) for well-formed input.
fn reference_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Strings rich in `%` and hex digits, plus some multi-byte characters.
fn percentish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            3 => Just("%".to_string()),
            3 => "[0-9a-fA-F]",
            2 => "[g-zG-Z/+ ?=&]",
            1 => "%[0-9a-fA-F]{2}",
            1 => "%[cCdDeEfF][0-9a-fA-F]%[89abAB][0-9a-fA-F]",
            1 => any::<char>().prop_map(|c| c.to_string()),
        ],
        0..24,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(cfg(2000))]

    #[test]
    fn decode_never_panics_and_matches_the_reference(s in prop_oneof![any::<String>(), percentish()]) {
        let r = keys::decode(&s, "key");
        if !escapes_well_formed(&s) {
            prop_assert!(r.is_err(), "malformed escape accepted: {s:?} -> {r:?}");
        } else {
            let want = String::from_utf8(reference_decode(&s));
            match (&r, want) {
                (Ok(got), Ok(want)) => prop_assert_eq!(got, &want),
                (Err(e), Err(_)) => prop_assert!(!e.to_string().is_empty()),
                (got, want) => prop_assert!(false, "{s:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn decode_inverts_strict_percent_encoding(s in any::<String>(), upper in any::<bool>()) {
        prop_assert_eq!(keys::decode(&encode(&s, upper), "key").unwrap(), s.clone());
        // Unreserved characters need no escape: decoding is the identity.
        let plain: String = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        prop_assert_eq!(keys::decode(&plain, "key").unwrap(), plain.clone());
    }

    #[test]
    fn malformed_escapes_are_rejected(
        pre in "[a-z0-9/]{0,8}",
        bad in prop_oneof![
            Just(String::new()),
            "[g-zG-Z_ /]",
            "[0-9a-fA-F]",
            "[0-9a-fA-F][g-zG-Z_ /%]",
            "[g-zG-Z_ /%][0-9a-fA-F]",
        ],
        post in "[a-z0-9/]{0,8}",
    ) {
        // `bad` at the end: a truncated escape; otherwise a non-hex digit.
        let s = if bad.len() < 2 { format!("{pre}%{bad}") } else { format!("{pre}%{bad}{post}") };
        prop_assert!(keys::decode(&s, "key").is_err(), "{s:?} accepted");
    }

    #[test]
    fn parse_query_never_panics(q in prop_oneof![any::<String>(), percentish(), "[a-z=&%+0-9]{0,40}"]) {
        match keys::parse_query(Some(&q)) {
            Ok(pairs) => {
                // A well-formed query yields at most one pair per `&` part.
                prop_assert!(pairs.len() <= q.split('&').count());
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        prop_assert!(keys::parse_query(None).unwrap().is_empty());
    }

    #[test]
    fn validate_never_panics(s in any::<String>(), max in 0usize..64) {
        let r = keys::validate(&s, max);
        prop_assert_eq!(r.is_ok(), !s.is_empty() && s.len() <= max);
    }
}

// --- WAL records ---------------------------------------------------------------

fn entry(index: u64, key: String, value: Vec<u8>, cas: Option<u64>) -> typ::Entry {
    typ::Entry {
        log_id: openraft::testing::log_id::<TypeConfig>(3, NodeId::from("n1"), index),
        payload: typ::EntryPayload::Normal(Request::new(
            1_700_000_000_000 + index,
            Command::Set {
                key,
                value,
                cas,
                ttl: Ttl::Clear,
            },
        )),
    }
}

fn encode_rec<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    codeq::Encode::encode(&Rec(v), &mut buf).unwrap();
    buf
}

fn decode_entry(bytes: &[u8]) -> (Result<Rec<typ::Entry>, std::io::Error>, usize) {
    largest_alloc(|| <Rec<typ::Entry> as codeq::Decode>::decode(bytes))
}

/// msgpack headers that claim an enormous string, binary, array or map.
fn huge_headers() -> Vec<Vec<u8>> {
    vec![
        vec![0xdb, 0xff, 0xff, 0xff, 0xff],       // str32, 4 GiB
        vec![0xc6, 0xff, 0xff, 0xff, 0xff],       // bin32
        vec![0xdd, 0xff, 0xff, 0xff, 0xff],       // array32
        vec![0xdf, 0xff, 0xff, 0xff, 0xff],       // map32
        vec![0xc9, 0xff, 0xff, 0xff, 0xff, 0x01], // ext32
        vec![0xda, 0xff, 0xff],                   // str16
    ]
}

#[test]
fn wal_record_with_huge_length_headers_fails_fast() {
    let valid = encode_rec(&entry(7, "key".into(), b"value".to_vec(), None));
    let value_at = valid
        .windows(5)
        .position(|w| w == b"value")
        .expect("value in the record");
    for h in huge_headers() {
        // Alone, as the whole record, and in place of the value's header.
        let mut inner = valid[..value_at - 2].to_vec();
        inner.extend_from_slice(&h);
        inner.extend_from_slice(b"tail");
        for input in [h.clone(), inner] {
            // The allocation bound is the check; the time bound only
            // catches a decoder that loops (a hang), not a slow machine.
            let start = Instant::now();
            let (r, largest) = decode_entry(&input);
            assert!(r.is_err(), "{input:x?} decoded");
            assert!(
                largest < alloc_budget(input.len()),
                "{input:x?}: allocated {largest} bytes"
            );
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{input:x?} hangs"
            );
        }
    }
    // Every other Rec type of the WAL too.
    for h in huge_headers() {
        let (r, largest) = largest_alloc(|| <Rec<typ::LogId> as codeq::Decode>::decode(&h[..]));
        assert!(r.is_err() && largest < alloc_budget(h.len()));
        let (r, largest) = largest_alloc(|| <Rec<typ::Vote> as codeq::Decode>::decode(&h[..]));
        assert!(r.is_err() && largest < alloc_budget(h.len()));
    }
}

proptest! {
    #![proptest_config(cfg(1000))]

    #[test]
    fn wal_record_decode_of_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let (_r, largest) = decode_entry(&bytes);
        prop_assert!(largest < alloc_budget(bytes.len()), "allocated {largest}");
        let _ = <Rec<typ::LogId> as codeq::Decode>::decode(&bytes[..]);
        let _ = <Rec<typ::Vote> as codeq::Decode>::decode(&bytes[..]);
    }

    #[test]
    fn wal_record_roundtrips_and_mutations_never_panic(
        index in 1u64..1_000_000,
        key in ".{1,16}",
        value in proptest::collection::vec(any::<u8>(), 0..64),
        cas in proptest::option::of(any::<u64>()),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let e = entry(index, key, value, cas);
        let bytes = encode_rec(&e);
        let (back, _) = decode_entry(&bytes);
        prop_assert_eq!(&back.unwrap().0, &e);
        // msgpack is self-delimiting: trailing bytes are not read.
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"\x01\x02");
        prop_assert_eq!(&decode_entry(&longer).0.unwrap().0, &e);
        // A strict prefix never decodes.
        let n = cut.index(bytes.len());
        prop_assert!(decode_entry(&bytes[..n]).0.is_err());
        let mut bad = bytes.clone();
        for (at, x) in &flips {
            let i = at.index(bad.len());
            bad[i] ^= x;
        }
        let (_r, largest) = decode_entry(&bad);
        prop_assert!(largest < alloc_budget(bad.len()), "allocated {largest}");
    }
}

// --- snapshots -------------------------------------------------------------------

fn arb_ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        3 => Just(Ttl::Clear),
        1 => Just(Ttl::Keep),
        2 => (1u64..50).prop_map(Ttl::In),
        1 => (0u64..200).prop_map(Ttl::At),
    ]
}

/// Commands over a few keys, TTLs and ticks included.
fn arb_command() -> impl Strategy<Value = Command> {
    let key = "[a-d]{1,2}";
    let cas = proptest::option::of(prop_oneof![Just(0u64), 0u64..40]);
    prop_oneof![
        3 => (key, proptest::collection::vec(any::<u8>(), 0..24), cas.clone(), arb_ttl())
            .prop_map(|(key, value, cas, ttl)| Command::Set { key, value, cas, ttl }),
        1 => (key, cas).prop_map(|(key, cas)| Command::Delete { key, cas }),
        1 => (key, arb_ttl()).prop_map(|(key, ttl)| Command::Expire { key, ttl }),
        1 => (0u32..4).prop_map(|max| Command::Tick { max }),
        1 => "[a-d]{0,1}".prop_map(|prefix| Command::DeletePrefix { prefix }),
        1 => (key, any::<bool>(), proptest::collection::vec(arb_txn_op(), 0..4), proptest::collection::vec(arb_txn_op(), 0..4))
            .prop_map(|(key, exists, success, failure)| Command::Txn {
                compare: vec![dcache::kv::Compare {
                    key,
                    op: dcache::kv::CmpOp::Eq,
                    target: if exists { dcache::kv::Target::Exists } else { dcache::kv::Target::Absent },
                }],
                success,
                failure,
            }),
    ]
}

/// An op allowed inside a transaction.
fn arb_txn_op() -> impl Strategy<Value = Command> {
    let key = "[a-d]{1,2}";
    prop_oneof![
        3 => (key, proptest::collection::vec(any::<u8>(), 0..24), arb_ttl())
            .prop_map(|(key, value, ttl)| Command::Set { key, value, cas: None, ttl }),
        1 => key.prop_map(|key| Command::Delete { key, cas: None }),
        1 => "[a-d]{0,1}".prop_map(|prefix| Command::DeletePrefix { prefix }),
        1 => key.prop_map(|key| Command::Get { key }),
    ]
}

/// A cache built by applying arbitrary commands with a clock that moves
/// forward by 0..20 ms per command.
fn arb_cache() -> impl Strategy<Value = Cache> {
    proptest::collection::vec((arb_command(), 0u64..20), 0..40).prop_map(|cmds| {
        let mut c = Cache::new();
        let mut now = 1000;
        for (i, (cmd, dt)) in cmds.into_iter().enumerate() {
            now += dt;
            c.apply(i as u64 + 1, &Request::new(now, cmd));
        }
        c
    })
}

fn snapshot_meta(index: u64) -> typ::SnapshotMeta {
    typ::SnapshotMeta {
        last_log_id: Some(openraft::testing::log_id::<TypeConfig>(
            2,
            NodeId::from("n1"),
            index,
        )),
        last_membership: Default::default(),
    }
}

fn write_snapshot(dir: &std::path::Path, c: &Cache, index: u64) -> std::path::PathBuf {
    let mut w = snapshot::Writer::create(dir, &snapshot_meta(index), &c.stats()).unwrap();
    w.items(c.items()).unwrap();
    w.finish().unwrap()
}

#[test]
fn snapshot_file_roundtrip_and_damaged_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::new(cfg(200));
    runner
        .run(
            &(
                arb_cache(),
                1u64..10_000,
                proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
                any::<prop::sample::Index>(),
                proptest::collection::vec(any::<u8>(), 0..256),
            ),
            |(cache, index, flips, cut, junk)| {
                let sub = dir.path().join(format!("s{}", unique()));
                let path = write_snapshot(&sub, &cache, index);
                let (meta, back) = snapshot::load(&path).unwrap();
                prop_assert_eq!(meta, snapshot_meta(index));
                prop_assert_eq!(&back, &cache);
                prop_assert_eq!(back.digest(), cache.digest());
                prop_assert_eq!(back.stats(), cache.stats());
                prop_assert_eq!(snapshot::latest(&sub).unwrap(), Some(path.clone()));

                // Flipped bytes (distinct positions, non-zero xor: never a no-op).
                let good = std::fs::read(&path).unwrap();
                let mut bad = good.clone();
                let mut positions = std::collections::BTreeMap::new();
                for (at, x) in &flips {
                    positions.entry(at.index(good.len())).or_insert(*x);
                }
                for (p, x) in &positions {
                    bad[*p] ^= x;
                }
                std::fs::write(&path, &bad).unwrap();
                let e = snapshot::load(&path);
                prop_assert!(e.is_err(), "mutation at {positions:?} accepted");
                prop_assert!(e.unwrap_err().to_string().contains("snapshot"));
                prop_assert!(snapshot::verify(&path).is_err());
                // Truncated.
                std::fs::write(&path, &good[..cut.index(good.len())]).unwrap();
                prop_assert!(snapshot::load(&path).is_err());

                // Arbitrary file contents, now and then behind a valid magic.
                let mut junk = junk;
                if junk.len() > 8 && junk[0] % 2 == 0 {
                    junk[..8].copy_from_slice(b"DCSNAP2\n");
                }
                std::fs::write(&path, &junk).unwrap();
                let (r, largest) = largest_alloc(|| snapshot::load(&path));
                prop_assert!(r.is_err());
                // The reader's buffer plus what the junk itself may describe.
                prop_assert!(
                    largest <= (1 << 20) + alloc_budget(junk.len()),
                    "allocated {largest}"
                );
                std::fs::remove_dir_all(&sub).unwrap();
                Ok(())
            },
        )
        .unwrap();
}

// --- config ------------------------------------------------------------------------

const EXAMPLE_YAML: &str = include_str!("../configs/config.example.yaml");

fn check_config(yaml: &str) -> Result<(), TestCaseError> {
    match Config::from_yaml_str(yaml, "fuzz.yaml") {
        Ok(c) => prop_assert!(c.validate().is_ok()),
        Err(e) => prop_assert!(!e.to_string().trim().is_empty(), "empty error for {yaml:?}"),
    }
    Ok(())
}

/// Edit `base` at char boundaries: delete, insert or replace short pieces.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(String::new()),
        "[ :\\-\\[\\]{}#'\"\n\t|>&*!%@`,?0-9a-z]{1,4}",
        any::<String>(),
    ];
    proptest::collection::vec((any::<prop::sample::Index>(), 0usize..8, piece), 1..6).prop_map(
        move |edits| {
            let mut s: Vec<char> = base.chars().collect();
            for (at, del, ins) in edits {
                let i = at.index(s.len() + 1);
                let j = (i + del).min(s.len());
                s.splice(i..j, ins.chars());
            }
            s.into_iter().collect()
        },
    )
}

#[test]
fn config_example_parses() {
    Config::from_yaml_str(EXAMPLE_YAML, "config.example.yaml").expect("example config");
}

#[test]
fn config_deeply_nested_yaml_is_an_error_not_a_crash() {
    for open in ["[", "{a: ", "- "] {
        let yaml = open.repeat(50_000);
        let e = Config::from_yaml_str(&yaml, "deep.yaml").unwrap_err();
        assert!(!e.to_string().is_empty());
    }
}

proptest! {
    #![proptest_config(cfg(400))]

    #[test]
    fn config_parse_of_arbitrary_text_never_panics(s in prop_oneof![
        any::<String>(),
        "([a-z_]{1,10}:( [a-z0-9_.:\\[\\]]{0,12})?\n(  [a-z_]{1,20}: [^\n]{0,12}\n){0,3}){0,4}",
    ]) {
        check_config(&s)?;
    }

    #[test]
    fn config_parse_of_mutated_example_never_panics(s in mutated(EXAMPLE_YAML)) {
        check_config(&s)?;
    }
}

// --- cache ---------------------------------------------------------------------------

/// key -> (value, modify index, deadline; 0 = none).
type Model = std::collections::BTreeMap<String, (Vec<u8>, u64, u64)>;

/// What `cmd` at `index` does to the model (expired keys already dropped).
fn model_apply(model: &mut Model, cmd: &Command, index: u64, now: u64) {
    let deadline = |ttl: &Ttl, cur: u64| match ttl {
        Ttl::Clear => 0,
        Ttl::Keep => cur,
        Ttl::In(ms) => now + ms,
        Ttl::At(at) => (*at).max(1),
    };
    match cmd {
        Command::Set {
            key,
            value,
            cas,
            ttl,
        } => {
            // A key that expired earlier in the same txn is absent.
            let live = model.get(key).filter(|e| e.2 == 0 || e.2 > now);
            let (cur, d) = live.map_or((0, 0), |e| (e.1, e.2));
            if cas.is_none_or(|c| c == cur) {
                model.insert(key.clone(), (value.clone(), index, deadline(ttl, d)));
            }
        }
        Command::Delete { key, cas } => {
            let cur = model.get(key).map_or(0, |e| e.1);
            if cas.is_none_or(|c| c == cur && cur != 0) {
                model.remove(key);
            }
        }
        Command::Expire { key, ttl } => {
            if let Some(e) = model.get_mut(key) {
                e.2 = deadline(ttl, e.2);
            }
        }
        Command::DeletePrefix { prefix } => model.retain(|k, _| !k.starts_with(prefix.as_str())),
        Command::Txn {
            compare,
            success,
            failure,
        } => {
            let holds = compare.iter().all(|c| {
                let present = model.contains_key(&c.key);
                match c.target {
                    dcache::kv::Target::Exists => present,
                    dcache::kv::Target::Absent => !present,
                    _ => unreachable!("not generated"),
                }
            });
            for op in if holds { success } else { failure } {
                model_apply(model, op, index, now);
            }
        }
        Command::Tick { .. } | Command::Get { .. } | Command::Range { .. } => {}
        Command::Rmw(_) | Command::Multi { .. } => unreachable!("not generated"),
    }
}

proptest! {
    #![proptest_config(cfg(300))]

    /// Two replicas applying the same log agree; the accounting is exact; a
    /// model of keys, modify indexes and deadlines predicts every read; a
    /// snapshot of the result restores it exactly.
    #[test]
    fn cache_accounting_and_determinism(cmds in proptest::collection::vec((arb_command(), 0u64..20), 0..60)) {
        let mut a = Cache::new();
        let mut b = Cache::new();
        // Model: key -> (value, modify index, deadline; 0 = none).
        let mut model = Model::default();
        let mut now = 1000u64;
        for (i, (cmd, dt)) in cmds.iter().enumerate() {
            now += dt;
            let index = i as u64 + 1;
            let req = Request::new(now, cmd.clone());
            let ra = a.apply(index, &req);
            let rb = b.apply(index, &req);
            prop_assert_eq!(&ra, &rb);
            model.retain(|_, (_, _, d)| *d == 0 || *d > now);
            model_apply(&mut model, cmd, index, now);
            let sum: u64 = a
                .items()
                .map(|it| entry_cost(it.key().len(), it.value().len(), it.expires_at() != 0))
                .sum();
            prop_assert_eq!(a.mem_bytes(), sum, "after {} commands", index);
            let live: Vec<_> = model.iter().filter(|(_, (_, _, d))| *d == 0 || *d > now).collect();
            for (k, (v, mi, d)) in &live {
                let e = a.get(k).unwrap();
                prop_assert_eq!(&e.value, v);
                prop_assert_eq!(e.meta.modify_index, *mi);
                prop_assert_eq!(e.expires_at, *d);
                prop_assert!(e.meta.create_index <= e.meta.modify_index);
            }
            let present = ["a", "b", "c", "d", "aa", "ab", "ba"].iter().filter(|k| a.get(k).is_some()).count();
            let expected = ["a", "b", "c", "d", "aa", "ab", "ba"].iter().filter(|k| live.iter().any(|(m, _)| m == *k)).count();
            prop_assert_eq!(present, expected);
        }
        prop_assert_eq!(a.digest(), b.digest());
        prop_assert_eq!(&a, &b);
        // A snapshot round trip keeps content, accounting, clock and digest.
        let dir = tempfile::tempdir().unwrap();
        let (_, back) = snapshot::load(&write_snapshot(dir.path(), &a, 1)).unwrap();
        prop_assert_eq!(back.digest(), a.digest());
        prop_assert_eq!(back.mem_bytes(), a.mem_bytes());
        prop_assert_eq!(back.stats(), a.stats());
    }
}

// --- HTTP handlers ---------------------------------------------------------------

#[derive(Debug, Clone)]
struct HttpCase {
    method: reqwest::Method,
    path: String,
    query: Option<String>,
    body: Vec<u8>,
    json_type: bool,
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        ".{0,12}".prop_map(Value::String),
        Just(Value::String("n0".into())),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,5}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A Raft address for `/join`: never one that resolves a name or reaches a
/// host other than this machine (127.0.0.1:1 refuses at once).
fn join_addr() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::json!("127.0.0.1:1")),
        "[0-9.:\\[\\]]{0,12}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof![
        Just(serde_json::json!("n0")),
        Just(serde_json::json!("")),
        json_value()
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..128),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (".{0,10}", ".{0,10}").prop_map(|(k, v)| serde_json::json!({"key": k, "value": v})
            .to_string()
            .into_bytes()),
        (json_value(), json_value()).prop_map(|(k, v)| serde_json::json!({"key": k, "value": v})
            .to_string()
            .into_bytes()),
        (id.clone(), join_addr()).prop_map(|(i, a)| serde_json::json!({"id": i, "addr": a})
            .to_string()
            .into_bytes()),
        id.clone()
            .prop_map(|i| serde_json::json!({"id": i, "to": i})
                .to_string()
                .into_bytes()),
        "[{}\\[\\]\":,a-z0-9 \\\\]{0,40}".prop_map(String::into_bytes),
    ]
}

fn http_case() -> impl Strategy<Value = HttpCase> {
    let suffix = "[A-Za-z0-9%._~!$&'()*+,;=:@/ -]{0,40}";
    let method = prop_oneof![
        Just(reqwest::Method::GET),
        Just(reqwest::Method::PUT),
        Just(reqwest::Method::POST),
        Just(reqwest::Method::DELETE),
        Just(reqwest::Method::HEAD),
        Just(reqwest::Method::PATCH),
    ];
    let path = prop_oneof![
        3 => suffix.prop_map(|s| format!("/v1/kv/{s}")),
        3 => suffix.prop_map(|s| format!("/store/{s}")),
        2 => Just("/store".to_string()),
        1 => Just("/join".to_string()),
        1 => Just("/leave".to_string()),
        1 => Just("/v1/cluster/members".to_string()),
        1 => suffix.prop_map(|s| format!("/v1/cluster/members/{s}")),
        1 => Just("/v1/cluster/transfer-leader".to_string()),
    ];
    let query = proptest::option::of(prop_oneof![
        "[A-Za-z0-9%=&+._-]{0,30}",
        "(cas|consistency|redirect)=[a-z0-9%+-]{0,8}(&(cas|consistency|redirect)=[a-z0-9%-]{0,6})?",
    ]);
    (method, path, query, body(), any::<bool>()).prop_map(
        |(method, path, query, body, json_type)| {
            // Seed write routes are POSTs; send most bodies where they matter.
            let method = match path.as_str() {
                "/store"
                | "/join"
                | "/leave"
                | "/v1/cluster/members"
                | "/v1/cluster/transfer-leader"
                    if method != reqwest::Method::HEAD =>
                {
                    reqwest::Method::POST
                }
                _ => method,
            };
            HttpCase {
                method,
                path,
                query,
                body,
                json_type,
            }
        },
    )
}

/// 502 is documented for a joiner whose Raft address cannot be reached.
fn allowed_5xx(case: &HttpCase, status: u16) -> bool {
    status == 502 && (case.path == "/join" || case.path == "/v1/cluster/members")
}

async fn check_http(
    client: &reqwest::Client,
    base: &str,
    case: &HttpCase,
    seen: &std::sync::Mutex<std::collections::BTreeMap<u16, u32>>,
) -> Result<(), TestCaseError> {
    let mut url = format!("{base}{}", case.path);
    if let Some(q) = &case.query {
        url.push('?');
        url.push_str(q);
    }
    // The generators only make URLs that parse; one that does not is a
    // broken generator, not a pass.
    let url = reqwest::Url::parse(&url)
        .map_err(|e| TestCaseError::fail(format!("generated an unparsable URL {url:?}: {e}")))?;
    let mut req = client.request(case.method.clone(), url.clone());
    if case.json_type {
        req = req.header("content-type", "application/json");
    }
    if case.method != reqwest::Method::GET && case.method != reqwest::Method::HEAD {
        req = req.body(case.body.clone());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("{} {url}: {e}", case.method)))?;
    let status = resp.status().as_u16();
    *seen.lock().unwrap().entry(status).or_default() += 1;
    let body = resp
        .bytes()
        .await
        .map_err(|e| TestCaseError::fail(format!("{} {url}: body not read: {e}", case.method)))?;
    prop_assert!(
        status < 500 || allowed_5xx(case, status),
        "{} {url} body {:?}: {status} {}",
        case.method,
        String::from_utf8_lossy(&case.body),
        String::from_utf8_lossy(&body)
    );
    if status >= 400 && case.method != reqwest::Method::HEAD {
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            TestCaseError::fail(format!(
                "{} {url}: {status} body is not JSON ({e}): {:?}",
                case.method,
                String::from_utf8_lossy(&body)
            ))
        })?;
        prop_assert!(
            v["error"].is_string(),
            "{} {url}: {status} body has no error field: {v}",
            case.method
        );
    }
    Ok(())
}

#[test]
fn http_handlers_answer_arbitrary_requests_without_5xx() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = rt.block_on(TestCluster::start(1, |cfg| {
        cfg.http.max_key_bytes = 64;
        cfg.http.max_value_bytes = 96;
    }));
    let client = dcache_testkit::http::client();
    let base = cluster.url(0, "");
    let mut runner = TestRunner::new(cfg(300));
    let count = Cell::new(0u32);
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let result = runner.run(&http_case(), |case| {
        let n = count.get() + 1;
        count.set(n);
        rt.block_on(async {
            check_http(&client, &base, &case, &seen).await?;
            if n.is_multiple_of(50) {
                let r = client.get(format!("{base}/readyz")).send().await;
                prop_assert!(
                    r.is_ok_and(|r| r.status() == 200),
                    "not ready after {n} cases"
                );
            }
            Ok(())
        })
    });
    let ready = rt.block_on(async {
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        r.status().as_u16()
    });
    rt.block_on(cluster.shutdown_all());
    result.unwrap();
    assert_eq!(ready, 200, "node not ready after the fuzzing");
    let seen = seen.into_inner().unwrap();
    eprintln!("HTTP fuzz statuses: {seen:?}");
    // The generator reaches both the success and the error paths.
    assert!(
        seen.keys().any(|s| *s < 300) && seen.keys().any(|s| *s >= 400),
        "{seen:?}"
    );
}

// --- auth: tokens file, route needs, presented tokens -----------------------

/// A tokens file made of valid lines (one per role) to mutate.
fn tokens_file_text() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        use dcache::auth::Role;
        let mut lines = vec!["# tokens".to_string()];
        for (name, role, prefix) in [
            ("r", Role::Read, None),
            ("w", Role::Write, Some("t/")),
            ("a", Role::Admin, None),
        ] {
            lines.push(dcache::auth::new_token(name, role, prefix).unwrap().1);
        }
        lines.join("\n") + "\n"
    })
}

proptest! {
    #![proptest_config(cfg(300))]

    /// Any edit of a tokens file parses or fails with a line number, never
    /// panics, and an error never quotes a hash.
    #[test]
    fn tokens_file_parse_never_panics(text in mutated(tokens_file_text())) {
        match dcache::auth::parse(&text) {
            Ok(lines) => {
                for l in lines {
                    prop_assert!(dcache::auth::valid_name(&l.name));
                }
            }
            Err(e) => {
                prop_assert!(e.line >= 1);
                prop_assert!(!e.to_string().contains("$argon2"), "{e}");
            }
        }
    }

    /// Any request line maps to a need without panicking; routes that
    /// change membership always need admin.
    #[test]
    fn route_needs_never_panic(path in "/[ -~]{0,40}", probes in any::<bool>(), m in 0usize..5) {
        use axum::http::Method;
        let method = [Method::GET, Method::HEAD, Method::PUT, Method::POST, Method::DELETE][m].clone();
        if let Ok(uri) = path.parse::<axum::http::Uri>() {
            let need = dcache::api::guard::need(&method, &uri, probes);
            if dcache::api::guard::is_membership(&method, uri.path()) {
                prop_assert_eq!(need, dcache::auth::Need::Role(dcache::auth::Role::Admin));
            }
        }
    }
}

/// Presented tokens that are not valid are refused, whatever their shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_bearer_tokens_are_refused() {
    let tokens = dcache::auth::Tokens::new(dcache::auth::parse(tokens_file_text()).unwrap());
    let mut runner = TestRunner::new(cfg(100));
    let strategy = prop_oneof![
        any::<String>(),
        "dct\\.[rwa]\\.[A-Za-z0-9_-]{0,50}",
        "dct\\.[a-z]{0,3}\\.[ -~]{0,10}",
    ];
    use proptest::strategy::ValueTree;
    let mut cases: Vec<String> = Vec::new();
    for _ in 0..100 {
        cases.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    for t in cases {
        assert!(tokens.authenticate(&t).await.is_none(), "{t:?} accepted");
    }
}
