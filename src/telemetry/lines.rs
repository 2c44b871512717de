//! The log lines that carry data, as typed values: one per callback (and one more for the forward
//! of an exception), the `publish_failed` record, and the redrive function's batch line. A field
//! that is absent is left out; the metrics are the line's own fields (see [`emf`]).

use crate::domain::bounded;
use crate::domain::classify::Category;
use crate::domain::message::Message;
use crate::domain::publish::QueuedPublish;
use crate::telemetry::emf::{self, Metrics};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use std::time::SystemTime;

/// RFC 3339 in UTC with milliseconds, `2026-11-25T20:00:00.123Z`.
#[derive(Debug, Clone, Copy)]
pub struct Timestamp(pub SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

/// One line of the webhook.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub timestamp: Timestamp,
    pub level: &'static str,
    pub event: &'static str,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub request_id: String,
    #[serde(flatten)]
    pub metrics: Option<Metrics>,
}

/// What came of a callback, with the fields that say so.
#[derive(Debug, Serialize)]
#[serde(
    tag = "outcome",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Outcome {
    Published {
        #[serde(flatten)]
        exception: Exception,
        message_id: String,
        duration_ms: u64,
    },
    /// SNS failed; the publish is kept in the retry queue (`message_id` is SQS's).
    Queued {
        #[serde(flatten)]
        exception: Exception,
        message_id: String,
        reason: String,
        duration_ms: u64,
    },
    /// No topic for its category: this line is where the exception goes.
    Logged {
        #[serde(flatten)]
        exception: Exception,
        envelope: Option<Box<RawValue>>,
    },
    /// The last resort: SNS failed, and the retry queue failed too or there is none. This line
    /// is the only copy of the exception.
    PublishFailed {
        #[serde(flatten)]
        exception: Exception,
        reason: String,
        publish: QueuedPublish,
    },
    Rejected {
        reason: &'static str,
        detail: String,
        status: u16,
        #[serde(skip_serializing_if = "Option::is_none")]
        source_ip: Option<String>,
    },
    OtherCommand {
        command: String,
    },
    Forwarded {
        command: String,
        status: u16,
        duration_ms: u64,
        /// The forward of an exception (`FORWARD_EXCEPTIONS`), beside its publish.
        #[serde(skip)]
        of_exception: bool,
    },
    ForwardFailed {
        command: String,
        reason: &'static str,
        detail: String,
        duration_ms: u64,
    },
}

/// The fields of an accepted exception that its lines carry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exception {
    pub category: Category,
    pub error_code: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_account: Option<String>,
    pub dedup_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
}

impl Exception {
    pub fn of(message: &Message, source_ip: Option<&str>) -> Exception {
        Exception {
            category: message.category,
            error_code: message.error_code,
            group_id: message.group_id.as_deref().map(|g| bounded(g).into_owned()),
            from_account: message
                .from_account
                .as_deref()
                .map(|a| bounded(a).into_owned()),
            dedup_key: message.dedup_key.clone(),
            source_ip: source_ip.map(str::to_owned),
        }
    }
}

/// At most this many characters of an error a line keeps: SDK errors can run long.
const MAX_REASON_CHARS: usize = 300;

/// An error, cut to [`MAX_REASON_CHARS`].
pub fn reason(error: &str) -> String {
    error.chars().take(MAX_REASON_CHARS).collect()
}

impl Line {
    /// The line of `outcome`: its level, event and metrics follow from it.
    pub fn new(outcome: Outcome, request_id: &str, at: SystemTime) -> Line {
        use Outcome::*;
        let counted = |dimension: Option<(&'static str, String)>,
                       values: &[(&'static str, u64)]| {
            Some(Metrics::new(at, dimension, values))
        };
        let category = |e: &Exception| Some(("Category", e.category.as_str().to_owned()));
        let (level, event, metrics) = match &outcome {
            Published { exception, .. } => (
                "INFO",
                "callback",
                counted(category(exception), &[("Exceptions", 1)]),
            ),
            // The only copy of an exception without a topic: FATAL, past Lambda's own filter, as
            // the last-resort record below.
            Logged { exception, .. } => (
                "FATAL",
                "callback",
                counted(category(exception), &[("Exceptions", 1)]),
            ),
            Queued { exception, .. } => (
                "WARN",
                "callback",
                counted(category(exception), &[("Exceptions", 1), ("Queued", 1)]),
            ),
            // FATAL: with the JSON log format Lambda drops lines below the function's log
            // level, and FATAL is the one level no setting drops.
            PublishFailed { exception, .. } => (
                "FATAL",
                "publish_failed",
                counted(
                    category(exception),
                    &[("Exceptions", 1), ("PublishFailures", 1)],
                ),
            ),
            Rejected { reason, .. } => (
                "WARN",
                "callback",
                counted(Some(("Reason", (*reason).to_owned())), &[("Rejected", 1)]),
            ),
            OtherCommand { .. } => ("INFO", "callback", None),
            Forwarded {
                command,
                of_exception,
                ..
            } => (
                "INFO",
                if *of_exception { "forward" } else { "callback" },
                counted(
                    Some(("Command", emf::command_dimension(command))),
                    &[("Forwarded", 1)],
                ),
            ),
            ForwardFailed { .. } => (
                "WARN",
                "forward_failed",
                counted(None, &[("ForwardFailures", 1)]),
            ),
        };
        Line {
            timestamp: Timestamp(at),
            level,
            event,
            outcome,
            request_id: request_id.to_owned(),
            metrics,
        }
    }
}

/// The redrive function's one line per batch.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchLine {
    pub timestamp: Timestamp,
    pub level: &'static str,
    pub event: &'static str,
    pub outcome: &'static str,
    pub request_id: String,
    pub records: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<ItemFailure>,
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// A message of the batch that was not republished, and why.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemFailure {
    pub message_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    pub reason: String,
}

impl BatchLine {
    pub fn new(
        records: usize,
        failures: Vec<ItemFailure>,
        request_id: &str,
        at: SystemTime,
    ) -> BatchLine {
        let failed = failures.len();
        BatchLine {
            timestamp: Timestamp(at),
            level: if failed == 0 { "INFO" } else { "ERROR" },
            event: "redrive",
            outcome: if failed == 0 { "redriven" } else { "failed" },
            request_id: request_id.to_owned(),
            records,
            failures,
            metrics: Metrics::new(
                at,
                None,
                &[
                    ("Redriven", (records - failed) as u64),
                    ("RedriveFailures", failed as u64),
                ],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::time::{Duration, UNIX_EPOCH};

    const AT: Duration = Duration::from_millis(1_795_636_800_123);

    fn exception() -> Exception {
        Exception {
            category: Category::FrequencyLimit,
            error_code: 10023,
            group_id: Some("@TGS#1".into()),
            from_account: None,
            dedup_key: "d".repeat(64),
            source_ip: None,
        }
    }

    fn line(outcome: Outcome) -> Value {
        serde_json::to_value(Line::new(outcome, "req-1", UNIX_EPOCH + AT)).unwrap()
    }

    #[test]
    fn a_published_line_carries_its_fields_and_metrics_and_leaves_absent_ones_out() {
        let v = line(Outcome::Published {
            exception: exception(),
            message_id: "m-1".into(),
            duration_ms: 12,
        });
        let mut expected = json!({
            "timestamp": "2026-11-25T20:00:00.123Z", "level": "INFO", "event": "callback",
            "outcome": "published", "category": "frequency_limit", "errorCode": 10023,
            "groupId": "@TGS#1", "dedupKey": "d".repeat(64), "messageId": "m-1", "durationMs": 12,
            "requestId": "req-1", "Category": "frequency_limit", "Exceptions": 1,
        });
        expected["_aws"] = v["_aws"].clone();
        assert_eq!(v, expected);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Category"], []])
        );
    }

    #[test]
    fn each_outcome_has_its_event_level_and_metrics() {
        let publish = QueuedPublish::from_json(r#"{"TopicArn":"t","Message":"m"}"#).unwrap();
        let metric_names = |v: &Value| -> Vec<String> {
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .map(|m| m["Name"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let cases = [
            (
                Outcome::Logged {
                    exception: exception(),
                    envelope: None,
                },
                "callback",
                "logged",
                "FATAL",
                vec!["Exceptions"],
            ),
            (
                Outcome::Queued {
                    exception: exception(),
                    message_id: "q".into(),
                    reason: "down".into(),
                    duration_ms: 1,
                },
                "callback",
                "queued",
                "WARN",
                vec!["Exceptions", "Queued"],
            ),
            (
                Outcome::PublishFailed {
                    exception: exception(),
                    reason: "down".into(),
                    publish,
                },
                "publish_failed",
                "publish_failed",
                "FATAL",
                vec!["Exceptions", "PublishFailures"],
            ),
            (
                Outcome::Rejected {
                    reason: "signature",
                    detail: "Sign does not match".into(),
                    status: 401,
                    source_ip: Some("203.0.113.7".into()),
                },
                "callback",
                "rejected",
                "WARN",
                vec!["Rejected"],
            ),
            (
                Outcome::OtherCommand {
                    command: "C2C.CallbackAfterSendMsg".into(),
                },
                "callback",
                "other_command",
                "INFO",
                vec![],
            ),
            (
                Outcome::Forwarded {
                    command: "x y".into(),
                    status: 200,
                    duration_ms: 3,
                    of_exception: true,
                },
                "forward",
                "forwarded",
                "INFO",
                vec!["Forwarded"],
            ),
            (
                Outcome::ForwardFailed {
                    command: "c".into(),
                    reason: "timeout",
                    detail: "late".into(),
                    duration_ms: 1500,
                },
                "forward_failed",
                "forward_failed",
                "WARN",
                vec!["ForwardFailures"],
            ),
        ];
        for (outcome, event, name, level, metrics) in cases {
            let v = line(outcome);
            assert_eq!(
                (
                    v["event"].as_str(),
                    v["outcome"].as_str(),
                    v["level"].as_str()
                ),
                (Some(event), Some(name), Some(level)),
                "{v}"
            );
            assert_eq!(metric_names(&v), metrics, "{v}");
        }
        let forwarded = line(Outcome::Forwarded {
            command: "x y".into(),
            status: 200,
            duration_ms: 3,
            of_exception: false,
        });
        assert_eq!(
            (forwarded["event"].as_str(), forwarded["Command"].as_str()),
            (Some("callback"), Some("other"))
        );
        let rejected = line(Outcome::Rejected {
            reason: "signature",
            detail: "d".into(),
            status: 401,
            source_ip: None,
        });
        assert_eq!(
            (rejected["Reason"].as_str(), rejected["sourceIp"].as_str()),
            (Some("signature"), None)
        );
    }

    #[test]
    fn a_batch_line_counts_what_was_and_was_not_redriven() {
        let failure = ItemFailure {
            message_id: "m2".into(),
            dedup_key: None,
            reason: "not a queued publish".into(),
        };
        let v =
            serde_json::to_value(BatchLine::new(3, vec![failure], "req", UNIX_EPOCH + AT)).unwrap();
        assert_eq!(
            (v["outcome"].as_str(), v["level"].as_str()),
            (Some("failed"), Some("ERROR"))
        );
        assert_eq!(
            (v["Redriven"].as_u64(), v["RedriveFailures"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(v["failures"][0]["messageId"], "m2");
        let ok = serde_json::to_value(BatchLine::new(2, vec![], "req", UNIX_EPOCH + AT)).unwrap();
        assert!(ok.get("failures").is_none());
    }
}
