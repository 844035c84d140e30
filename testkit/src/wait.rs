//! Waiting for a condition under a deadline: the one poll loop of the
//! tests. A test never sleeps a fixed time hoping something happened; it
//! waits for the thing, and a wait that runs out panics naming what it
//! waited for (and, with [`wait_ok`], why the condition last failed).

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;
use std::time::Instant;

/// The default bound on a wait (a node ready, a leader elected, a cluster
/// converged). Generous: on a loaded 2-core machine things take seconds;
/// only a hang should reach it.
pub const WAIT: Duration = Duration::from_secs(30);

/// How often a condition is checked again.
pub const POLL: Duration = Duration::from_millis(20);

/// Check `cond` until it returns `Some`, and return that value; panic
/// naming `what` once `timeout` has passed.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_ok(what, timeout, || {
        let f = cond();
        async move { f.await.ok_or("the condition does not hold yet") }
    })
    .await
}

/// Check `cond` until it returns `Ok`, and return that value; panic
/// naming `what` and the last `Err` once `timeout` has passed.
pub async fn wait_ok<T, E, F, Fut>(what: &str, timeout: Duration, cond: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    match until(timeout, cond).await {
        Ok(v) => v,
        Err(last) => panic!("timed out after {timeout:?} waiting for {what}; last: {last}"),
    }
}

/// Check `cond` until it returns `Ok` (that value) or `timeout` has passed
/// (the last `Err`), for callers that add their own context to a timeout.
pub async fn until<T, E, F, Fut>(timeout: Duration, cond: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    until_every(timeout, POLL, cond).await
}

/// [`until`], checking every `every` (the fault harness polls nodes under
/// faults more gently than a test polls a quiet cluster).
pub async fn until_every<T, E, F, Fut>(
    timeout: Duration,
    every: Duration,
    mut cond: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    loop {
        let last = match cond().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if start.elapsed() >= timeout {
            return Err(last);
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_condition_holds() {
        let mut n = 0;
        let v = wait_for("n to reach 3", WAIT, || {
            n += 1;
            let now = n;
            async move { (now >= 3).then_some(now) }
        })
        .await;
        assert_eq!(v, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for never; last: still 7")]
    async fn panics_with_the_last_reason() {
        wait_ok("never", Duration::from_millis(50), || async {
            Err::<(), _>("still 7")
        })
        .await;
    }
}
