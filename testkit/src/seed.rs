//! Seeded randomness for tests.
//!
//! Every random choice a test makes (which node gets a write, when a
//! process is killed, a random value, proptest's cases) comes from one
//! per-run seed: `DCACHE_TEST_SEED` if set, else a fresh random one. The
//! seed is printed when first used and again after every panic message in
//! the process (a panic hook), so a failure can be repeated with
//! `DCACHE_TEST_SEED=<seed> cargo test --test <file> <name>`.
//!
//! [`rng`] mixes the test's name into the seed, so a test draws the same
//! numbers whichever other tests run and in whatever order.

use std::sync::OnceLock;

use rand::SeedableRng;
use rand::rngs::StdRng;

/// The environment variable that fixes the seed.
pub const SEED_VAR: &str = "DCACHE_TEST_SEED";

/// This run's seed (see the module doc). The first call prints it and
/// installs the panic hook that prints it again on failure.
pub fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        let (seed, from) = match std::env::var(SEED_VAR) {
            Ok(v) => (
                v.trim().parse().unwrap_or_else(|_| {
                    panic!("{SEED_VAR}={v:?} is not an unsigned 64-bit number")
                }),
                "from the environment",
            ),
            Err(_) => (rand::random(), "random"),
        };
        eprintln!("test seed: {SEED_VAR}={seed} ({from})");
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            eprintln!(
                "test seed: the random choices of this run came from {SEED_VAR}={seed}; \
                 set it to repeat them"
            );
        }));
        seed
    })
}

/// A seeded RNG for the test (or task) named `name`: the same sequence for
/// the same seed and name.
pub fn rng(name: &str) -> StdRng {
    StdRng::seed_from_u64(seed() ^ fnv1a(name.as_bytes()))
}

/// FNV-1a: a stable hash (std's `DefaultHasher` may change between
/// releases, which would change the numbers a seed gives).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn the_same_name_draws_the_same_numbers() {
        let draw = |name: &str| {
            let mut r = rng(name);
            (0..4).map(|_| r.r#gen::<u32>()).collect::<Vec<_>>()
        };
        assert_eq!(draw("t"), draw("t"));
        assert_ne!(draw("t"), draw("u"));
    }
}
