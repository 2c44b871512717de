//! How a publish spends its deadline: attempts, each bounded, and short pauses between them.
//!
//! Chat waits 2 s and, by default, never sends this callback again, so every fault SNS recovers
//! from within the deadline must cost a retry, not the exception. The numbers:
//!
//! - **An attempt gets at most half the deadline** (750 ms of the default 1,500). SNS answers a
//!   Publish in tens of milliseconds; an attempt still running after half the budget has
//!   stalled (a black-holed connection, a pooled connection that died while Lambda froze the
//!   environment), and abandoning it then leaves the other half for a second attempt.
//! - **The first retry waits at most 10 ms**, and each further wait doubles up to 160 ms. A
//!   fast failure (HTTP 5xx, throttling, a reset or refused connection) is usually a single bad
//!   host or connection, and a new connection a few milliseconds later finds a good one; the
//!   growing wait keeps a real outage from turning into a retry storm: with the default
//!   deadline, at most about 15 attempts per callback.
//! - **Each wait is jittered** to between half and all of its nominal length, so that many
//!   concurrent functions retrying after the same fault do not arrive together.
//! - **Retries go on while they fit**: a retry starts only if, after its wait, at least
//!   [`MIN_ATTEMPT`] of the deadline is left; otherwise the last error is the answer, before
//!   the deadline rather than at it.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// The first pause after a fast failure.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_millis(160);
/// Of an error that SNS explains at length, a retry line keeps this much.
const MAX_ERROR_CHARS: usize = 300;
/// Less time than this left is not worth an attempt: a TLS handshake alone takes longer.
pub const MIN_ATTEMPT: Duration = Duration::from_millis(25);

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt<T, E> {
    Done(T),
    /// Worth trying again: a fault of the way to SNS, or of SNS, that another attempt may miss.
    Retry(E),
    /// Another attempt would meet the same answer (a refusal of the request itself).
    Fail(E),
}

/// Why a run of attempts ended without a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp<E> {
    /// How many attempts were made.
    pub attempts: u32,
    /// The last attempt's error; `None` when it was abandoned at its timeout.
    pub last_error: Option<E>,
    /// Whether the last attempt was refused outright (not worth retrying).
    pub refused: bool,
}

/// The retry policy of one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub deadline: Duration,
}

impl RetryPolicy {
    pub fn new(deadline: Duration) -> Self {
        RetryPolicy { deadline }
    }

    /// How long an attempt may run when `remaining` of the deadline is left.
    pub fn attempt_timeout(&self, remaining: Duration) -> Duration {
        (self.deadline / 2).min(remaining)
    }

    /// The nominal pause before retry number `retry` (1 for the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(16);
        FIRST_BACKOFF
            .saturating_mul(1 << doublings)
            .min(MAX_BACKOFF)
    }

    /// Runs `attempt` (given its timeout) until it succeeds, is refused, or no further attempt
    /// fits in the deadline. Each retry is logged with `dedup_key`, since a retry after an
    /// attempt whose answer was lost may deliver the message twice.
    pub async fn run<T, E, F, Fut>(&self, dedup_key: &str, mut attempt: F) -> Result<T, GaveUp<E>>
    where
        E: std::fmt::Display,
        F: FnMut(Duration) -> Fut,
        Fut: Future<Output = Attempt<T, E>>,
    {
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            let remaining = self.deadline.saturating_sub(started.elapsed());
            let timeout = self.attempt_timeout(remaining);
            attempts += 1;
            let last_error = match tokio::time::timeout(timeout, attempt(timeout)).await {
                Ok(Attempt::Done(value)) => return Ok(value),
                Ok(Attempt::Fail(error)) => {
                    return Err(GaveUp {
                        attempts,
                        last_error: Some(error),
                        refused: true,
                    });
                }
                Ok(Attempt::Retry(error)) => Some(error),
                Err(_elapsed) => None,
            };
            let pause = jitter(self.backoff(attempts));
            let left = self.deadline.saturating_sub(started.elapsed());
            if left < pause + MIN_ATTEMPT {
                return Err(GaveUp {
                    attempts,
                    last_error,
                    refused: false,
                });
            }
            tracing::warn!(
                event = "publish_retry",
                attempt = attempts,
                dedupKey = dedup_key,
                error = last_error
                    .as_ref()
                    .map(|e| e
                        .to_string()
                        .chars()
                        .take(MAX_ERROR_CHARS)
                        .collect::<String>())
                    .as_deref()
                    .unwrap_or("stalled"),
                pauseMs = pause.as_millis() as u64,
            );
            tokio::time::sleep(pause).await;
        }
    }
}

/// Between half and all of `nominal`.
fn jitter(nominal: Duration) -> Duration {
    let half = nominal / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const DEFAULT: RetryPolicy = RetryPolicy {
        deadline: Duration::from_millis(1500),
    };

    #[test]
    fn the_first_retry_comes_within_50_ms_and_pauses_grow_to_a_cap() {
        assert!(DEFAULT.backoff(1) <= Duration::from_millis(50));
        let pauses: Vec<u128> = (1..=8).map(|r| DEFAULT.backoff(r).as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 160, 160, 160]);
        assert_eq!(DEFAULT.backoff(u32::MAX), MAX_BACKOFF);
        for _ in 0..1000 {
            let j = jitter(Duration::from_millis(10));
            assert!((Duration::from_millis(5)..=Duration::from_millis(10)).contains(&j));
        }
    }

    #[test]
    fn a_stalled_attempt_leaves_room_for_another() {
        let first = DEFAULT.attempt_timeout(DEFAULT.deadline);
        assert_eq!(first, Duration::from_millis(750));
        let after_stall = DEFAULT.deadline - first - DEFAULT.backoff(1);
        assert!(DEFAULT.attempt_timeout(after_stall) >= Duration::from_millis(700));
        assert_eq!(
            DEFAULT.attempt_timeout(Duration::from_millis(30)),
            Duration::from_millis(30),
            "an attempt never outlives the deadline"
        );
    }

    /// Runs `policy` over attempts scripted by `outcomes` (each sleeps its duration, then
    /// answers), on tokio's paused clock; returns the result and when each attempt started.
    async fn script(
        policy: RetryPolicy,
        outcomes: &[(u64, Attempt<&'static str, &'static str>)],
    ) -> (Result<&'static str, GaveUp<&'static str>>, Vec<u128>) {
        let started = Instant::now();
        let starts = RefCell::new(Vec::new());
        let outcomes = RefCell::new(outcomes.iter());
        let result = policy
            .run("key", |_timeout| {
                starts.borrow_mut().push(started.elapsed().as_millis());
                let next = outcomes.borrow_mut().next();
                async move {
                    let Some((ms, outcome)) = next else {
                        return Attempt::Fail("script ended");
                    };
                    tokio::time::sleep(Duration::from_millis(*ms)).await;
                    match outcome {
                        Attempt::Done(v) => Attempt::Done(*v),
                        Attempt::Retry(e) => Attempt::Retry(*e),
                        Attempt::Fail(e) => Attempt::Fail(*e),
                    }
                }
            })
            .await;
        (result, starts.into_inner())
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_failure_is_retried_at_once() {
        let (result, starts) = script(
            DEFAULT,
            &[(5, Attempt::Retry("500")), (5, Attempt::Done("id"))],
        )
        .await;
        assert_eq!(result, Ok("id"));
        assert_eq!(starts.len(), 2);
        assert!(starts[1] - 5 <= 10, "second attempt at {} ms", starts[1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_then_a_healthy_sns_succeeds_within_the_deadline() {
        let (result, starts) = script(
            DEFAULT,
            &[(10_000, Attempt::Done("late")), (20, Attempt::Done("id"))],
        )
        .await;
        assert_eq!(result, Ok("id"));
        assert_eq!(starts[0], 0);
        assert!((750..=760).contains(&starts[1]), "{starts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_go_on_while_they_fit_and_end_before_the_deadline() {
        let failures: Vec<_> = (0..100).map(|_| (1, Attempt::Retry("503"))).collect();
        let started = Instant::now();
        let (result, starts) = script(DEFAULT, &failures).await;
        let gave_up = result.unwrap_err();
        assert_eq!(gave_up.last_error, Some("503"));
        assert!(!gave_up.refused);
        assert!(started.elapsed() <= DEFAULT.deadline);
        assert!(
            started.elapsed() >= DEFAULT.deadline - MAX_BACKOFF - MIN_ATTEMPT,
            "gave up early, after {:?}",
            started.elapsed()
        );
        assert_eq!(gave_up.attempts as usize, starts.len());
        assert!(
            (10..=20).contains(&starts.len()),
            "{} attempts",
            starts.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn two_stalls_end_at_the_deadline_without_an_error() {
        let (result, starts) = script(
            DEFAULT,
            &[
                (10_000, Attempt::Done("late")),
                (10_000, Attempt::Done("late")),
            ],
        )
        .await;
        let gave_up = result.unwrap_err();
        assert_eq!(gave_up.last_error, None);
        assert_eq!(starts.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_not_retried() {
        let (result, starts) = script(
            DEFAULT,
            &[
                (1, Attempt::Fail("InvalidParameter")),
                (1, Attempt::Done("id")),
            ],
        )
        .await;
        assert!(result.unwrap_err().refused);
        assert_eq!(starts.len(), 1);
    }
}
