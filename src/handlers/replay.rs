//! The replay tool, for the last resort only: the `publish_failed` records the webhook wrote when
//! SNS and the retry queue both failed, read back from CloudWatch Logs, files or standard input,
//! and their publishes sent again unchanged.

use crate::adapters::Publisher;
use crate::domain::publish::QueuedPublish;
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::time::Duration;
use tokio::time::Instant;

/// Each publish, retries included. An operator can wait longer than Chat does.
pub const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);

/// What CloudWatch Logs is asked for: the records alone.
pub const FILTER_PATTERN: &str = r#"{ $.event = "publish_failed" }"#;

/// A record found in the input, named `input:line` in the report.
#[derive(Debug)]
pub struct Found {
    pub origin: String,
    pub publish: Result<QueuedPublish, String>,
}

/// The `publish_failed` records of `text`, one per line. A line may carry text before its JSON
/// (what `aws logs tail` prints: a time and a stream name); lines that are not records are
/// skipped.
pub fn records(input: &str, text: &str) -> Vec<Found> {
    #[derive(Deserialize)]
    struct Record {
        event: Option<String>,
        publish: Option<serde_json::Value>,
    }
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let Some(start) = line.find('{') else {
            continue;
        };
        let Ok(record) = serde_json::from_str::<Record>(line[start..].trim_end()) else {
            continue;
        };
        if record.event.as_deref() != Some("publish_failed") {
            continue;
        }
        let publish = match record.publish {
            Some(value) => QueuedPublish::deserialize(value)
                .map_err(|e| format!("the record's publish is unreadable: {e}")),
            None => Err("the record holds no publish".into()),
        };
        found.push(Found {
            origin: format!("{input}:{}", index + 1),
            publish,
        });
    }
    found
}

/// What a replay did; displayed as its last line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub replayed: usize,
    pub failed: usize,
    /// Records that repeat one earlier in the input, byte for byte: sent once.
    pub repeated: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "replayed {}, failed {}", self.replayed, self.failed)
    }
}

/// Sends every publish found, in input order, with one report line each; `sns` `None` is a dry
/// run, which says what it would send and sends nothing.
pub async fn replay<P: Publisher>(
    found: Vec<Found>,
    sns: Option<&P>,
    report: &mut impl Write,
) -> Summary {
    let mut summary = Summary::default();
    let mut seen = HashSet::new();
    for Found { origin, publish } in found {
        let publish = match publish {
            Ok(publish) => publish,
            Err(problem) => {
                summary.failed += 1;
                let _ = writeln!(report, "failed {origin}: {problem}");
                continue;
            }
        };
        if !seen.insert(publish.to_json()) {
            summary.repeated += 1;
            let _ = writeln!(
                report,
                "repeated {origin}: the same publish as before, sent once"
            );
            continue;
        }
        let what = format!(
            "{} {}",
            publish.topic_arn,
            publish.dedup_key().unwrap_or("-")
        );
        let Some(sns) = sns else {
            summary.replayed += 1;
            let _ = writeln!(report, "would publish {origin}: {what}");
            continue;
        };
        match sns
            .publish(&publish, Instant::now() + PUBLISH_DEADLINE)
            .await
        {
            Ok(id) => {
                summary.replayed += 1;
                let _ = writeln!(report, "published {origin}: {what} as {id}");
            }
            Err(error) => {
                summary.failed += 1;
                let _ = writeln!(report, "failed {origin}: {what}: {error}");
            }
        }
    }
    summary
}

/// The records of `log_group` logged from `start_ms` to `end_ms` (inclusive, milliseconds since
/// the epoch), every page; each log event named `GROUP/STREAM@MILLIS` in the report.
pub async fn read_log_group(
    client: &aws_sdk_cloudwatchlogs::Client,
    log_group: &str,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<Found>, String> {
    let mut pages = client
        .filter_log_events()
        .log_group_name(log_group)
        .filter_pattern(FILTER_PATTERN)
        .start_time(start_ms)
        .end_time(end_ms)
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            format!(
                "cannot read log group {log_group}: {}",
                aws_sdk_cloudwatchlogs::error::DisplayErrorContext(e)
            )
        })?;
        for event in page.events() {
            let name = format!(
                "{log_group}/{}@{}",
                event.log_stream_name().unwrap_or("?"),
                event.timestamp().unwrap_or_default()
            );
            found.extend(records(&name, event.message().unwrap_or_default()));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLISH: &str = r#"{"TopicArn":"arn:aws:sns:us-east-1:1:fl","Message":"{}","MessageAttributes":{"dedupKey":{"DataType":"String","StringValue":"k"}}}"#;

    fn record(publish: &str) -> String {
        format!(
            r#"{{"timestamp":"2026-11-25T20:00:00.700Z","level":"FATAL","event":"publish_failed","reason":"down","publish":{publish},"requestId":"r1"}}"#
        )
    }

    #[test]
    fn records_are_found_among_other_lines_with_or_without_a_prefix() {
        let text = [
            "START RequestId: x".to_owned(),
            record(PUBLISH),
            r#"{"event":"callback","outcome":"published"}"#.to_owned(),
            format!(
                "2026-11-25T20:00:00.700000+00:00 2026/11/25/[$LATEST]abc {}",
                record(PUBLISH)
            ),
            record(r#"{"Message":"no topic"}"#),
        ]
        .join("\n");
        let found = records("log", &text);
        let origins: Vec<&str> = found.iter().map(|f| f.origin.as_str()).collect();
        assert_eq!(origins, ["log:2", "log:4", "log:5"]);
        assert_eq!(found[0].publish.as_ref().unwrap().dedup_key(), Some("k"));
        assert!(found[2].publish.is_err());
    }

    struct Recording(std::sync::Mutex<Vec<QueuedPublish>>);

    impl Publisher for Recording {
        async fn publish(
            &self,
            publish: &QueuedPublish,
            _until: Instant,
        ) -> Result<String, String> {
            self.0.lock().unwrap().push(publish.clone());
            Ok("m-1".into())
        }
    }

    #[tokio::test]
    async fn each_publish_is_sent_once_and_a_dry_run_sends_nothing() {
        let text = [record(PUBLISH), record(PUBLISH), record("{}")].join("\n");
        let sns = Recording(Default::default());
        let mut report = Vec::new();
        let summary = replay(records("f", &text), Some(&sns), &mut report).await;
        assert_eq!(
            summary,
            Summary {
                replayed: 1,
                failed: 1,
                repeated: 1
            }
        );
        assert_eq!(
            sns.0.lock().unwrap()[0],
            QueuedPublish::from_json(PUBLISH).unwrap()
        );
        let report = String::from_utf8(report).unwrap();
        assert!(
            report.starts_with("published f:1: arn:aws:sns:us-east-1:1:fl k as m-1\n"),
            "{report}"
        );

        let mut report = Vec::new();
        let summary = replay(records("f", &text), None::<&Recording>, &mut report).await;
        assert_eq!(summary.to_string(), "replayed 1, failed 1");
        assert!(
            String::from_utf8(report)
                .unwrap()
                .starts_with("would publish f:1")
        );
        assert_eq!(sns.0.lock().unwrap().len(), 1);
    }
}
