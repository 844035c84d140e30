//! The cache against a model under random command sequences: accounting
//! and determinism.

use super::*;

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
