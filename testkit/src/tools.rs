//! External tools and system features a test depends on (libfiu's
//! `fiu-run`, `chattr`, ...).
//!
//! A test that cannot run without one must not pass silently. When it is
//! missing:
//! - with `TESTKIT_REQUIRE_TOOLS=1` (CI sets it; `.ci/run` installs
//!   every tool) the test fails, naming the tool and its package;
//! - otherwise the test is skipped loudly: a `SKIPPED` line on stderr names
//!   the tool and how to install it, and the caller returns.

use std::process::Command;
use std::process::Stdio;

/// Set to `1` to make a missing tool a failure instead of a skip.
pub const REQUIRE_VAR: &str = "TESTKIT_REQUIRE_TOOLS";

/// Whether missing tools are failures in this run.
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

/// Whether `program` is on `PATH`.
pub fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `true` if every program in `programs` is on `PATH`. Otherwise fail
/// (`TESTKIT_REQUIRE_TOOLS=1`) or print a loud skip line and return
/// `false`; `install` says how to get them (e.g. "apt-get install
/// fiu-utils").
#[must_use = "the test must return when its tools are missing"]
pub fn require(test: &str, programs: &[&str], install: &str) -> bool {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !on_path(p)).collect();
    if missing.is_empty() {
        return true;
    }
    unavailable(
        test,
        &format!("{} not found on PATH", missing.join(", ")),
        install,
    );
    false
}

/// Report that `test` cannot run because of `why` (fix: `install`): panics
/// when tools are required, else prints the skip line. For prerequisites
/// that are not programs (a filesystem feature, a privilege).
pub fn unavailable(test: &str, why: &str, install: &str) {
    if required() {
        panic!("{test}: {why}; {REQUIRE_VAR}=1 makes this a failure (install: {install})");
    }
    eprintln!(
        "SKIPPED {test}: {why}. Install: {install}. \
         (Set {REQUIRE_VAR}=1 to make this a failure, as CI does.)"
    );
}
