//! [`Item`]: one stored key, packed for memory.
//!
//! Layout: one heap allocation `[meta (32 bytes) | key | value]` plus a
//! 24-byte handle (the allocation's fat pointer, the key length and a
//! node-local access word). The meta is create index, modify index,
//! version and expiry deadline, little-endian. An `Item` is ordered and
//! looked up by its key bytes (`Borrow<[u8]>`), so the map is a
//! `BTreeSet<Item>` and a key is stored once.
//!
//! Invariants:
//! - The buffer always holds a whole meta header; `key_len` never exceeds
//!   what follows it.
//! - The access word is node-local bookkeeping for eviction (last access
//!   time, access frequency). It is not part of the replicated state: not
//!   hashed into the digest, not written to snapshots, not compared by
//!   `Eq`; replicas may disagree on it.

use std::borrow::Borrow;
use std::cmp::Ordering as CmpOrdering;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;

use super::EntryMeta;

/// Bytes of the meta header at the start of an item's buffer.
pub const META_BYTES: usize = 32;

pub struct Item {
    buf: Box<[u8]>,
    key_len: u32,
    /// Node-local: see the module doc and [`Access`].
    access: AtomicU32,
}

/// A borrowed view of an item's replicated content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemRef<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub meta: EntryMeta,
    /// Expiry deadline, ms since the epoch on the replicated clock; 0 = none.
    pub expires_at: u64,
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Item {
    pub fn new(key: &[u8], value: &[u8], meta: EntryMeta, expires_at: u64, access: u32) -> Item {
        let mut buf = Vec::with_capacity(META_BYTES + key.len() + value.len());
        buf.extend_from_slice(&meta.create_index.to_le_bytes());
        buf.extend_from_slice(&meta.modify_index.to_le_bytes());
        buf.extend_from_slice(&meta.version.to_le_bytes());
        buf.extend_from_slice(&expires_at.to_le_bytes());
        buf.extend_from_slice(key);
        buf.extend_from_slice(value);
        Item {
            buf: buf.into_boxed_slice(),
            key_len: u32::try_from(key.len()).expect("keys are bounded far below 4 GiB"),
            access: AtomicU32::new(access),
        }
    }

    /// Rebuild from the raw record [`Item::raw`] returned (snapshots).
    /// `None` if the record is too short for its header and key.
    pub fn from_raw(raw: Box<[u8]>, key_len: u32, access: u32) -> Option<Item> {
        (raw.len() >= META_BYTES + key_len as usize).then_some(Item {
            buf: raw,
            key_len,
            access: AtomicU32::new(access),
        })
    }

    /// The packed record (meta, key, value) and the key length.
    pub fn raw(&self) -> (&[u8], u32) {
        (&self.buf, self.key_len)
    }

    pub fn key(&self) -> &[u8] {
        &self.buf[META_BYTES..META_BYTES + self.key_len as usize]
    }

    pub fn value(&self) -> &[u8] {
        &self.buf[META_BYTES + self.key_len as usize..]
    }

    pub fn meta(&self) -> EntryMeta {
        EntryMeta {
            create_index: get_u64(&self.buf, 0),
            modify_index: get_u64(&self.buf, 8),
            version: get_u64(&self.buf, 16),
        }
    }

    /// Expiry deadline (ms, replicated clock); 0 = none.
    pub fn expires_at(&self) -> u64 {
        get_u64(&self.buf, 24)
    }

    pub fn view(&self) -> ItemRef<'_> {
        ItemRef {
            key: self.key(),
            value: self.value(),
            meta: self.meta(),
            expires_at: self.expires_at(),
        }
    }

    /// A copy with another deadline (the access word is kept).
    pub fn with_expiry(&self, expires_at: u64) -> Item {
        let mut buf = self.buf.clone();
        buf[24..32].copy_from_slice(&expires_at.to_le_bytes());
        Item {
            buf,
            key_len: self.key_len,
            access: AtomicU32::new(self.access()),
        }
    }

    pub fn access(&self) -> u32 {
        self.access.load(Ordering::Relaxed)
    }

    pub fn set_access(&self, v: u32) {
        self.access.store(v, Ordering::Relaxed)
    }
}

impl Clone for Item {
    fn clone(&self) -> Item {
        Item {
            buf: self.buf.clone(),
            key_len: self.key_len,
            access: AtomicU32::new(self.access()),
        }
    }
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("value_len", &self.value().len())
            .field("meta", &self.meta())
            .field("expires_at", &self.expires_at())
            .finish()
    }
}

/// Equal when the replicated content is equal (the access word is not).
impl PartialEq for Item {
    fn eq(&self, other: &Item) -> bool {
        self.key_len == other.key_len && self.buf == other.buf
    }
}

impl Eq for Item {}

impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Item) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

/// Ordered by key only, consistent with `Borrow<[u8]>`: the set holds one
/// item per key.
impl Ord for Item {
    fn cmp(&self, other: &Item) -> CmpOrdering {
        self.key().cmp(other.key())
    }
}

impl Borrow<[u8]> for Item {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

/// The access word: for LRU the last access time in seconds on the
/// replicated clock (low 24 bits, wrapping every ~194 days), for LFU a
/// logarithmic access counter (high 8 bits), as Redis keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access(pub u32);

impl Access {
    const CLOCK_MASK: u32 = 0x00ff_ffff;

    /// A fresh key: accessed now, counter at its initial value (5, as in
    /// Redis, so a new key is not the first LFU victim).
    pub fn new(now_ms: u64) -> Access {
        Access((5 << 24) | Self::clock(now_ms))
    }

    fn clock(now_ms: u64) -> u32 {
        ((now_ms / 1000) as u32) & Self::CLOCK_MASK
    }

    /// Seconds since the last access, at `now_ms`.
    pub fn idle_secs(self, now_ms: u64) -> u32 {
        Self::clock(now_ms).wrapping_sub(self.0 & Self::CLOCK_MASK) & Self::CLOCK_MASK
    }

    pub fn counter(self) -> u8 {
        (self.0 >> 24) as u8
    }

    /// The LFU counter decayed by one per idle minute (Redis's
    /// `lfu-decay-time 1`): what eviction compares.
    pub fn frequency(self, now_ms: u64) -> u8 {
        let decay = (self.idle_secs(now_ms) / 60).min(255) as u8;
        self.counter().saturating_sub(decay)
    }

    /// Touched at `now_ms`; the LFU counter grows with probability
    /// 1/(counter·10+1) given `coin` uniform in [0, 1) (Redis's
    /// logarithmic counter), so 255 takes about a million accesses.
    pub fn touched(self, now_ms: u64, coin: f64) -> Access {
        let c = self.counter();
        let c = if c < 255 && coin < 1.0 / (f64::from(c) * 10.0 + 1.0) {
            c + 1
        } else {
            c
        };
        Access((u32::from(c) << 24) | Self::clock(now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks() {
        let it = Item::new(b"key", b"value", EntryMeta::at(1, 2, 3), 99, 7);
        assert_eq!(it.key(), b"key");
        assert_eq!(it.value(), b"value");
        assert_eq!(it.meta(), EntryMeta::at(1, 2, 3));
        assert_eq!(it.expires_at(), 99);
        assert_eq!(it.with_expiry(5).expires_at(), 5);
        assert_eq!(it.with_expiry(5).value(), b"value");
        let (raw, kl) = it.raw();
        let back = Item::from_raw(raw.into(), kl, 0).unwrap();
        assert_eq!(back, it);
        assert!(Item::from_raw(vec![0u8; 10].into(), 0, 0).is_none());
        assert_eq!(std::mem::size_of::<Item>(), 24);
    }

    #[test]
    fn ordered_and_found_by_key() {
        let mut s = std::collections::BTreeSet::new();
        s.insert(Item::new(b"b", b"1", EntryMeta::at(1, 1, 1), 0, 0));
        s.insert(Item::new(b"a", b"2", EntryMeta::at(2, 2, 1), 0, 0));
        assert_eq!(s.get(b"a".as_slice()).unwrap().value(), b"2");
        let keys: Vec<_> = s.iter().map(|i| i.key().to_vec()).collect();
        assert_eq!(keys, [b"a".to_vec(), b"b".to_vec()]);
        let it = Item::new(b"a", b"x", EntryMeta::at(3, 3, 1), 0, 0);
        let old = s.replace(it).unwrap();
        assert_eq!(old.value(), b"2");
    }

    #[test]
    fn access_word_tracks_idle_time_and_a_log_counter() {
        let a = Access::new(10_000);
        assert_eq!(a.counter(), 5);
        assert_eq!(a.idle_secs(13_500), 3);
        let b = a.touched(20_000, 0.0);
        assert_eq!((b.counter(), b.idle_secs(20_000)), (6, 0));
        assert_eq!(a.touched(20_000, 0.99).counter(), 5);
    }
}
