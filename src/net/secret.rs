//! [`ClusterSecret`]: the shared secret peers present, compared in constant
//! time.
//!
//! Invariants:
//! - Comparison takes time independent of where the presented value first
//!   differs (`subtle::ConstantTimeEq`); only whether the lengths are equal
//!   can leak, which says nothing useful about a random secret.
//! - `Debug` never shows the secret.
//!
//! Not here: where the secret comes from (`config`), which routes need it
//! (the listeners).

use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;

/// The cluster secret, cheap to clone.
#[derive(Clone)]
pub struct ClusterSecret(Arc<str>);

impl ClusterSecret {
    pub fn new(secret: &str) -> Self {
        ClusterSecret(Arc::from(secret))
    }

    /// Whether `presented` (a header's bytes, if any) is the secret.
    pub fn matches(&self, presented: Option<&[u8]>) -> bool {
        presented.is_some_and(|p| bool::from(p.ct_eq(self.0.as_bytes())))
    }

    /// The value to send in the secret header.
    pub fn header_value(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_exact_secret() {
        let s = ClusterSecret::new("0123456789abcdef");
        assert!(s.matches(Some(b"0123456789abcdef")));
        assert!(!s.matches(Some(b"0123456789abcdeF")));
        assert!(!s.matches(Some(b"0123456789abcde")));
        assert!(!s.matches(Some(b"")));
        assert!(!s.matches(None));
        assert!(!format!("{s:?}").contains("0123"));
    }
}
