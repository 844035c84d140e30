//! `cache.*`: the memory bound, the eviction policy and active expiry; and
//! the two value types they need, [`ByteSize`] and [`EvictionPolicy`].

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::Deserialize;
use serde::Deserializer;
use serde::Serialize;
use serde::de::Unexpected;

use super::FromStrVisitor;

/// `cache.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// The memory budget of the cached data (keys, values and their
    /// accounted overhead), with units (`512MiB`, `2GB`) or in bytes; 0 =
    /// unlimited. The leader's value applies to the whole cluster: set the
    /// same on every node.
    pub max_memory: ByteSize,
    /// What happens when a write would go past `max_memory` (Redis's names).
    pub eviction_policy: EvictionPolicy,
    /// How often the leader checks for keys whose deadline has passed and
    /// proposes their removal; also the bound on how late a key may be seen
    /// by a stale read on the leader.
    pub expiry_tick_ms: u64,
    /// Most keys one expiry entry removes (expiry is batched so that a mass
    /// expiry does not stall writes).
    pub expiry_batch: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_memory: ByteSize(0),
            eviction_policy: EvictionPolicy::NoEviction,
            expiry_tick_ms: 100,
            expiry_batch: 10_000,
        }
    }
}

/// A size in bytes, written as a number or with a unit: `B`, `KB`/`MB`/
/// `GB`/`TB` (powers of 1000) or `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024),
/// any case, optional space: `512MiB`, `2 GB`, `1048576`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

const EXPECT_SIZE: &str =
    "a size in bytes, optionally with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)";

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<ByteSize, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("expected {EXPECT_SIZE}"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1000,
            "mb" | "m" => 1000_u64.pow(2),
            "gb" | "g" => 1000_u64.pow(3),
            "tb" | "t" => 1000_u64.pow(4),
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => return Err(format!("expected {EXPECT_SIZE}")),
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| "size too large".to_string())
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECT_SIZE)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse()
                    .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// What a write does when the cache is full (Redis's policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvictionPolicy {
    /// Refuse the write (507 `out_of_memory`); reads and deletes still work.
    #[default]
    #[serde(rename = "noeviction")]
    NoEviction,
    /// Evict the least recently used keys (sampled).
    AllkeysLru,
    /// Evict the least recently used keys among those with a TTL (sampled).
    VolatileLru,
    /// Evict the least frequently used keys (sampled, decaying counter).
    AllkeysLfu,
    /// Evict the keys with a TTL whose deadline is nearest (exact).
    VolatileTtl,
    /// Evict random keys.
    AllkeysRandom,
}

const EXPECT_POLICY: &str =
    "one of noeviction, allkeys-lru, volatile-lru, allkeys-lfu, volatile-ttl, allkeys-random";

impl EvictionPolicy {
    pub const ALL: [EvictionPolicy; 6] = [
        EvictionPolicy::NoEviction,
        EvictionPolicy::AllkeysLru,
        EvictionPolicy::VolatileLru,
        EvictionPolicy::AllkeysLfu,
        EvictionPolicy::VolatileTtl,
        EvictionPolicy::AllkeysRandom,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EvictionPolicy::NoEviction => "noeviction",
            EvictionPolicy::AllkeysLru => "allkeys-lru",
            EvictionPolicy::VolatileLru => "volatile-lru",
            EvictionPolicy::AllkeysLfu => "allkeys-lfu",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
            EvictionPolicy::AllkeysRandom => "allkeys-random",
        }
    }
}

impl fmt::Display for EvictionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EvictionPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("expected {EXPECT_POLICY}"))
    }
}

impl<'de> Deserialize<'de> for EvictionPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(FromStrVisitor(PhantomData, EXPECT_POLICY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units() {
        for (s, n) in [
            ("0", 0),
            ("1024", 1024),
            ("512MiB", 512 << 20),
            ("2GB", 2_000_000_000),
            ("2 gb", 2_000_000_000),
            ("1kib", 1024),
            ("7b", 7),
        ] {
            assert_eq!(s.parse::<ByteSize>(), Ok(ByteSize(n)), "{s}");
        }
        for bad in ["", "MiB", "1.5GB", "-1", "12 parsecs", "99999999999TiB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn policies_by_redis_name() {
        for p in EvictionPolicy::ALL {
            assert_eq!(p.as_str().parse::<EvictionPolicy>(), Ok(p));
        }
        assert_eq!(
            "ALLKEYS_LRU".parse::<EvictionPolicy>(),
            Ok(EvictionPolicy::AllkeysLru)
        );
        assert!("lru".parse::<EvictionPolicy>().is_err());
    }
}
