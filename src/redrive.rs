//! The redrive function: CloudWatch Logs hands it the webhook's `publish_failed` records (a
//! subscription filter `{ $.event = "publish_failed" }` on the webhook's log group), and it
//! republishes each one exactly as the replay tool would.
//!
//! Nothing is lost without a person: when any record of a batch could not be published, the
//! invocation fails, so Lambda's asynchronous retries bring the batch again; after the last
//! retry the event goes to the on-failure destination (the redrive dead-letter queue), from
//! which `im-exception-replay --queue` republishes it. A record republished twice carries the
//! same `dedupKey`, so FIFO topics deliver it once and other subscribers can drop the copy.

use crate::config::Topics;
use crate::metrics::{Counted, emf_metadata};
use crate::publish::Publisher;
use crate::record_source::{self, SubscriptionEvent};
use crate::republish::{Options, Summary, republish};
use std::time::{Duration, SystemTime};

/// How long one record's publish may take, retries included. No caller waits here as Chat
/// does, but a batch must end well within the function's timeout even with SNS down: after
/// the first failed publish the rest of the batch is not attempted (it comes again whole).
pub const PUBLISH_DEADLINE: Duration = Duration::from_secs(5);

/// What one cold start of the redrive function builds.
#[derive(Debug)]
pub struct Redrive<P> {
    pub topics: Topics,
    pub publisher: P,
}

/// Why a batch failed: the invocation fails with this, and Lambda retries the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveError(pub String);

impl std::fmt::Display for RedriveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedriveError {}

impl<P: Publisher> Redrive<P> {
    /// Republishes the records of one subscription event and logs one line for the batch.
    pub async fn handle(
        &self,
        event: &SubscriptionEvent,
        request_id: &str,
    ) -> Result<Summary, RedriveError> {
        let now = SystemTime::now();
        let found = match record_source::from_subscription("batch", event) {
            Ok(found) => found,
            Err(problem) => {
                tracing::error!(
                    event = "redrive",
                    outcome = "unreadable",
                    detail = problem,
                    Redriven = 0,
                    RedriveFailures = 1,
                    _aws = emf_metadata(Counted::Redrive, now),
                    requestId = request_id,
                );
                return Err(RedriveError(format!("the event cannot be read: {problem}")));
            }
        };
        let mut report = Vec::new();
        let options = Options {
            stop_after_failure: true,
            ..Options::default()
        };
        let summary = republish(&found, &self.topics, &self.publisher, options, &mut report).await;
        let report = String::from_utf8_lossy(&report);
        let failures: Vec<&str> = report.lines().filter(|l| l.starts_with("failed")).collect();
        // One line per batch, at INFO when everything was published, at ERROR when not.
        macro_rules! batch_line {
            ($level:ident, $outcome:expr) => {
                tracing::$level!(
                    event = "redrive",
                    outcome = $outcome,
                    records = found.records.len(),
                    repeated = summary.repeated,
                    skipped = summary.skipped,
                    failures = (!failures.is_empty()).then(|| failures.join("; ")),
                    Redriven = summary.replayed,
                    RedriveFailures = summary.failed,
                    _aws = emf_metadata(Counted::Redrive, now),
                    requestId = request_id,
                )
            };
        }
        if summary.failed == 0 {
            batch_line!(info, "redriven");
            return Ok(summary);
        }
        batch_line!(error, "failed");
        Err(RedriveError(format!(
            "{} of {} records not published; the batch will be tried again",
            summary.failed,
            found.records.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::RecordingPublisher;
    use crate::record_source::subscription_event;
    use crate::test_support::{ENVELOPE, config_with, record_line};

    fn redrive(publisher: RecordingPublisher) -> Redrive<RecordingPublisher> {
        Redrive {
            topics: config_with(&[]).topics,
            publisher,
        }
    }

    #[tokio::test]
    async fn a_batch_is_republished_and_counted() {
        let (_guard, logs) = crate::logging::capture::start(true);
        let r = redrive(RecordingPublisher::default());
        let event = subscription_event(
            "/aws/lambda/x-webhook",
            &[
                &record_line(ENVELOPE),
                "START RequestId: x",
                &record_line(ENVELOPE),
            ],
        );
        let summary = r.handle(&event, "req").await.unwrap();
        assert_eq!(
            (summary.replayed, summary.repeated, summary.skipped),
            (1, 1, 1)
        );
        let sent = r.publisher.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.body, ENVELOPE);
        let records = logs.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["outcome"], "redriven");
        assert_eq!(records[0]["Redriven"], 1);
        assert_eq!(
            crate::metrics::validate_emf(&records[0]).unwrap(),
            ["Redriven", "RedriveFailures"]
        );
    }

    #[tokio::test]
    async fn a_batch_with_a_record_not_published_fails_the_invocation() {
        let (_guard, logs) = crate::logging::capture::start(true);
        let r = redrive(RecordingPublisher::failing());
        let event = subscription_event("/aws/lambda/x-webhook", &[&record_line(ENVELOPE)]);
        let error = r.handle(&event, "req").await.unwrap_err();
        assert!(error.0.contains("1 of 1 records not published"), "{error}");
        let records = logs.records();
        assert_eq!(records[0]["outcome"], "failed");
        assert_eq!(records[0]["RedriveFailures"], 1);

        let unreadable = SubscriptionEvent {
            awslogs: record_source::AwsLogs { data: "%%%".into() },
        };
        assert!(r.handle(&unreadable, "req").await.is_err());
    }
}
