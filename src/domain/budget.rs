//! How much of Chat's 2 seconds is left. Chat's clock started when it sent the callback; the
//! nearest witness the function has is API Gateway's arrival time, which also puts a cold
//! start's own time inside the budget.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An arrival further back than this is not a live call from Chat (a replayed test event, a
/// clock gone wrong): the handler's own start counts instead.
const MAX_AGE: Duration = Duration::from_secs(5);

/// How long ago the request arrived, from API Gateway's epoch milliseconds
/// (`requestContext.timeEpoch` or `requestTimeEpoch`): zero when unknown, in the future, or
/// more than five seconds back.
pub fn since_arrival(arrival_epoch_ms: Option<i64>, now: SystemTime) -> Duration {
    let Some(arrival) = arrival_epoch_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
    else {
        return Duration::ZERO;
    };
    match now.duration_since(arrival) {
        Ok(age) if age <= MAX_AGE => age,
        _ => Duration::ZERO,
    }
}

/// The retry queue's share at the end of the budget: a `SendMessage` to SQS in the same region
/// takes a few tens of milliseconds, and the rest is margin for the answer itself.
pub const QUEUE_SHARE: Duration = Duration::from_millis(250);

/// How the time left is split: SNS first, then the retry queue in its last
/// [`QUEUE_SHARE`] (when there is a queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub sns: Duration,
    pub queue: Duration,
}

pub fn split(left: Duration, with_queue: bool) -> Split {
    if !with_queue {
        return Split {
            sns: left,
            queue: Duration::ZERO,
        };
    }
    let queue = QUEUE_SHARE.min(left);
    Split {
        sns: left - queue,
        queue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_764_000_000_123;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(NOW_MS)
    }

    #[test]
    fn the_budget_counts_from_the_arrival() {
        let arrived = |ago: i64| since_arrival(Some(NOW_MS as i64 - ago), now());
        assert_eq!(arrived(160), Duration::from_millis(160));
        assert_eq!(arrived(5000), Duration::from_secs(5));
        assert_eq!(arrived(5001), Duration::ZERO, "a replayed event");
        assert_eq!(arrived(-1), Duration::ZERO, "a time in the future");
        assert_eq!(since_arrival(None, now()), Duration::ZERO);
        assert_eq!(since_arrival(Some(-7), now()), Duration::ZERO);
    }

    #[test]
    fn sns_gets_all_but_the_queues_last_250_ms() {
        let ms = Duration::from_millis;
        assert_eq!(
            split(ms(1500), true),
            Split {
                sns: ms(1250),
                queue: ms(250)
            }
        );
        assert_eq!(
            split(ms(1500), false),
            Split {
                sns: ms(1500),
                queue: ms(0)
            }
        );
        assert_eq!(
            split(ms(100), true),
            Split {
                sns: ms(0),
                queue: ms(100)
            }
        );
    }
}
