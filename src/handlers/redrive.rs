//! The redrive function's entry point: an SQS event source mapping hands it messages of the
//! retry queue, each a queued publish, and it sends each one to SNS unchanged.
//!
//! Nothing is lost without a person: a message that was not republished is reported as a batch
//! item failure, so SQS hands that one (and only it) back after the visibility timeout; after
//! the queue's maximum receive count, SQS moves it to the dead-letter queue, which an alarm
//! watches. A message that is not a queued publish fails at once, and never holds up the rest.

use crate::adapters::Publisher;
use crate::domain::publish::QueuedPublish;
use crate::telemetry::lines::{self, BatchLine, ItemFailure};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// How long one message's publish may take, retries included. No caller waits here as Chat
/// does; the bound keeps a batch well inside the function's timeout with SNS down.
pub const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);

/// Republishes every message of `event` at once, and says which failed.
pub async fn handle<P: Publisher>(
    sns: &P,
    event: SqsEvent,
    request_id: &str,
) -> (SqsBatchResponse, BatchLine) {
    let until = Instant::now() + PUBLISH_DEADLINE;
    let records = event.records.len();
    let outcomes = futures_util::future::join_all(
        event
            .records
            .iter()
            .map(|message| republish(sns, message, until)),
    )
    .await;
    let failures: Vec<ItemFailure> = outcomes.into_iter().flatten().collect();
    let mut response = SqsBatchResponse::default();
    for failure in &failures {
        let mut item = BatchItemFailure::default();
        item.item_identifier = failure.message_id.clone();
        response.batch_item_failures.push(item);
    }
    let line = BatchLine::new(records, failures, request_id, SystemTime::now());
    (response, line)
}

/// Publishes one message; `Some` when it failed.
async fn republish<P: Publisher>(
    sns: &P,
    message: &SqsMessage,
    until: Instant,
) -> Option<ItemFailure> {
    let message_id = message.message_id.clone().unwrap_or_default();
    let publish = match QueuedPublish::from_json(message.body.as_deref().unwrap_or_default()) {
        Ok(publish) => publish,
        Err(reason) => {
            return Some(ItemFailure {
                message_id,
                dedup_key: None,
                reason: lines::reason(&reason),
            });
        }
    };
    let failed = sns.publish(&publish, until).await.err()?;
    Some(ItemFailure {
        message_id,
        dedup_key: publish.dedup_key().map(str::to_owned),
        reason: lines::reason(&failed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    /// Fails the publishes to one topic, records the others.
    struct Sns {
        down: &'static str,
        sent: Mutex<Vec<String>>,
    }

    impl Publisher for Sns {
        async fn publish(
            &self,
            publish: &QueuedPublish,
            _until: Instant,
        ) -> Result<String, String> {
            if publish.topic_arn == self.down {
                return Err("ServiceUnavailable".into());
            }
            self.sent.lock().unwrap().push(publish.message.clone());
            Ok("m".into())
        }
    }

    #[tokio::test]
    async fn only_the_failing_and_foreign_messages_are_reported() {
        let publish = |topic: &str, dedup: &str| {
            json!({"TopicArn": topic, "Message": "{}", "MessageAttributes": {"dedupKey": {"DataType": "String", "StringValue": dedup}}}).to_string()
        };
        let event: SqsEvent = serde_json::from_value(json!({"Records": [
            {"messageId": "good", "body": publish("arn:up", "k1")},
            {"messageId": "failing", "body": publish("arn:down", "k2")},
            {"messageId": "foreign", "body": "{\"event\":\"publish_failed\"}"},
            {"messageId": "good-too", "body": publish("arn:up", "k3")},
        ]}))
        .unwrap();
        let sns = Sns {
            down: "arn:down",
            sent: Mutex::new(vec![]),
        };
        let (response, line) = handle(&sns, event, "req").await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["failing", "foreign"]);
        assert_eq!(sns.sent.lock().unwrap().len(), 2);
        let line = serde_json::to_value(&line).unwrap();
        assert_eq!(
            (line["Redriven"].as_u64(), line["RedriveFailures"].as_u64()),
            (Some(2), Some(2))
        );
        assert_eq!(line["failures"][0]["dedupKey"], "k2");
        assert!(
            line["failures"][1]["reason"]
                .as_str()
                .unwrap()
                .starts_with("not a queued publish")
        );
    }
}
