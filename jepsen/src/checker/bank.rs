//! The bank check: a multi-key invariant under faults.
//!
//! The bank workload ([`crate`]'s harness, `bank.rs` in the binary) keeps
//! a fixed number of accounts whose balances only change by transfers, each
//! one transaction that debits one account and credits another. Whatever
//! a transfer's outcome (applied, refused, unknown), the total never
//! changes; so every read of all accounts taken at one Raft index must
//! show every account, balances that are not negative, and the starting
//! total. Two reads at the same index must also agree: an index names one
//! state of the replicated map, whichever node served it. The one
//! exception is a read of the state *before* the accounts were created (a
//! stale read on a node that has not caught up, e.g. one that restarted
//! empty): at an index below the creation index, no account at all is the
//! right answer, and any account is a violation.
//!
//! This is what Jepsen's bank test checks (totals conserved, no negative
//! balance); it is not a full serializability search over the transfers.

use std::collections::BTreeMap;
use std::fmt;

/// One read of every account, taken at one Raft index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankRead {
    /// Which kind of read (`txn` of gets, `scan`, `final nN`...), for reports.
    pub how: String,
    pub index: u64,
    /// Balance per account; `None` for an account the read did not find.
    pub balances: Vec<Option<i64>>,
}

/// What [`check_bank`] found.
#[derive(Debug, Default)]
pub struct BankReport {
    pub reads: usize,
    /// Reads of the state before the accounts existed (stale reads only).
    pub before_creation: usize,
    pub violations: Vec<String>,
}

impl BankReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for BankReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} reads of all accounts checked ({} of the state before they were created), {} violations",
            self.reads,
            self.before_creation,
            self.violations.len()
        )?;
        for v in self.violations.iter().take(20) {
            write!(f, "\n  {v}")?;
        }
        Ok(())
    }
}

/// Check every read against `accounts` accounts holding `total` in all,
/// created by the one entry at index `created_at`.
pub fn check_bank(reads: &[BankRead], accounts: usize, total: i64, created_at: u64) -> BankReport {
    let mut report = BankReport {
        reads: reads.len(),
        ..BankReport::default()
    };
    let mut at_index: BTreeMap<u64, &BankRead> = BTreeMap::new();
    for r in reads {
        let what = format!("{} at index {}: {:?}", r.how, r.index, r.balances);
        if r.index < created_at {
            if r.balances.len() == accounts && r.balances.iter().all(Option::is_none) {
                report.before_creation += 1;
            } else {
                report.violations.push(format!(
                    "{what}: not the empty state before the accounts were created at index {created_at}"
                ));
            }
            continue;
        }
        if r.balances.len() != accounts || r.balances.iter().any(Option::is_none) {
            report
                .violations
                .push(format!("{what}: not every one of {accounts} accounts"));
            continue;
        }
        let b: Vec<i64> = r.balances.iter().flatten().copied().collect();
        if b.iter().any(|&x| x < 0) {
            report.violations.push(format!("{what}: negative balance"));
        }
        let sum: i64 = b.iter().sum();
        if sum != total {
            report
                .violations
                .push(format!("{what}: total {sum}, expected {total}"));
        }
        match at_index.get(&r.index) {
            Some(other) if other.balances != r.balances => report.violations.push(format!(
                "{what}: differs from {} at the same index: {:?}",
                other.how, other.balances
            )),
            Some(_) => {}
            None => {
                at_index.insert(r.index, r);
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(index: u64, b: &[Option<i64>]) -> BankRead {
        BankRead {
            how: "txn".into(),
            index,
            balances: b.to_vec(),
        }
    }

    #[test]
    fn conserved_totals_pass() {
        let reads = [
            read(5, &[Some(10), Some(10), Some(10)]),
            read(6, &[Some(5), Some(15), Some(10)]),
            read(6, &[Some(5), Some(15), Some(10)]),
            read(9, &[Some(0), Some(20), Some(10)]),
        ];
        let r = check_bank(&reads, 3, 30, 1);
        assert!(r.ok(), "{r}");
        assert_eq!(r.reads, 4);
    }

    #[test]
    fn a_lost_or_doubled_transfer_fails() {
        let r = check_bank(&[read(7, &[Some(5), Some(10), Some(10)])], 3, 30, 1);
        assert_eq!(r.violations.len(), 1, "{r}");
        assert!(r.violations[0].contains("total 25, expected 30"), "{r}");
        let r = check_bank(&[read(7, &[Some(10), Some(15), Some(10)])], 3, 30, 1);
        assert!(r.violations[0].contains("total 35"), "{r}");
    }

    #[test]
    fn a_missing_account_or_negative_balance_fails() {
        let r = check_bank(&[read(3, &[Some(10), None, Some(20)])], 3, 30, 1);
        assert!(r.violations[0].contains("not every one"), "{r}");
        let r = check_bank(&[read(3, &[Some(10)])], 3, 30, 1);
        assert!(r.violations[0].contains("not every one"), "{r}");
        let r = check_bank(&[read(3, &[Some(-5), Some(25), Some(10)])], 3, 30, 1);
        assert_eq!(r.violations.len(), 1, "{r}");
        assert!(r.violations[0].contains("negative"), "{r}");
    }

    #[test]
    fn only_the_empty_state_may_precede_the_creation() {
        // A stale read on a node that restarted empty: index 0, no account.
        let r = check_bank(&[read(0, &[None, None, None])], 3, 30, 4);
        assert!(r.ok(), "{r}");
        assert_eq!(r.before_creation, 1);
        // Before the creation index, any account is impossible...
        let r = check_bank(&[read(3, &[Some(10), None, None])], 3, 30, 4);
        assert!(
            r.violations[0].contains("before the accounts were created"),
            "{r}"
        );
        // ...and at or after it, every account must be there.
        let r = check_bank(&[read(4, &[None, None, None])], 3, 30, 4);
        assert!(r.violations[0].contains("not every one"), "{r}");
        // A failed final read (no balances at all) stays a violation.
        let r = check_bank(&[read(0, &[])], 3, 30, 4);
        assert_eq!(r.violations.len(), 1, "{r}");
    }

    #[test]
    fn two_reads_at_one_index_must_agree() {
        let reads = [
            read(8, &[Some(10), Some(10), Some(10)]),
            read(8, &[Some(5), Some(15), Some(10)]),
        ];
        let r = check_bank(&reads, 3, 30, 1);
        assert_eq!(r.violations.len(), 1, "{r}");
        assert!(r.violations[0].contains("same index"), "{r}");
    }
}
