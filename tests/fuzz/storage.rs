//! WAL records (huge length headers fail fast, round trips) and snapshot
//! blobs and files (round trips, damaged files rejected).

use super::*;

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
pub(super) fn arb_command() -> impl Strategy<Value = Command> {
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

pub(super) fn write_snapshot(dir: &std::path::Path, c: &Cache, index: u64) -> std::path::PathBuf {
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
