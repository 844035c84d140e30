//! What reads return: [`Kv`] (one key with its value and metadata) and
//! the bounds every range and transaction result shares. Shared by the
//! cache (which builds results) and `txn` (which validates and runs
//! transactions), so that neither has to reach into the other for them.

use serde::Deserialize;
use serde::Serialize;

use super::EntryMeta;
use super::item::Item;

/// Keys one range (a scan page, a `Range` op) returns at most.
pub const MAX_RANGE_LIMIT: u32 = 10_000;
/// Key and value bytes one range, or all the ranges and gets of one
/// transaction together, return at most (the first key is returned
/// whatever its size, so a cursor always advances).
pub const MAX_RESULT_BYTES: u64 = 4 * 1024 * 1024;

/// One key with its value and metadata (a range's or a get's result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    pub key: String,
    /// Empty when the range was `keys_only`.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub meta: EntryMeta,
    /// Expiry deadline, ms since the epoch on the replicated clock; 0 = none.
    pub expires_at: u64,
}

impl Kv {
    pub(super) fn of(it: &Item, keys_only: bool) -> Kv {
        Kv {
            key: String::from_utf8_lossy(it.key()).into_owned(),
            value: if keys_only {
                Vec::new()
            } else {
                it.value().to_vec()
            },
            meta: it.meta(),
            expires_at: it.expires_at(),
        }
    }

    /// What the kv counts against a result budget.
    pub fn size(&self) -> u64 {
        (self.key.len() + self.value.len()) as u64
    }
}
