//! Republishing the envelope of a `publish_failed` record exactly as the function would have
//! published it: one derivation, for the redrive function and for `im-exception-replay`.
//!
//! The envelope, unchanged, is the message body, sent to its category's topic. Everything else
//! (attributes, subject, FIFO group and deduplication id) comes from the derivation the
//! function itself uses, applied to the envelope's fields and its `callback` re-parsed as the
//! function parses a request body ([`message_from_envelope`]). On a FIFO topic the
//! deduplication id is the envelope's `dedupKey`, so an exception republished twice, or after
//! its first publish reached SNS after all, is delivered once.

use crate::callback;
use crate::classify::Category;
use crate::config::{TOPIC_VARIABLES, Topics};
use crate::envelope::Message;
use crate::publish::Publisher;
use crate::record_source::{Origin, Record, Scan};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::Write;

/// Why an envelope cannot be republished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeError(pub String);

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EnvelopeError {}

/// The fields of an envelope that a publish is derived from.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeFields<'a> {
    #[serde(borrow)]
    category: Cow<'a, str>,
    error_code: i64,
    #[serde(borrow)]
    sdk_app_id: Cow<'a, str>,
    #[serde(borrow, default)]
    opt_platform: Option<Cow<'a, str>>,
    #[serde(borrow)]
    dedup_key: Cow<'a, str>,
    #[serde(borrow)]
    callback: &'a RawValue,
}

/// The publish the function would have made for `envelope`: the envelope itself, unchanged, as
/// the body; category, error code, SdkAppID, OptPlatform and dedupKey from its fields; group,
/// sender and the rest from its `callback`, parsed as the function parses a request body.
pub fn message_from_envelope(envelope: &str) -> Result<Message, EnvelopeError> {
    let fields: EnvelopeFields<'_> = serde_json::from_str(envelope)
        .map_err(|e| EnvelopeError(format!("not an envelope the function writes: {e}")))?;
    let category: Category = fields
        .category
        .parse()
        .map_err(|e| EnvelopeError(format!("envelope category: {e}")))?;
    let parsed = callback::parse(fields.callback.get().as_bytes())
        .map_err(|e| EnvelopeError(format!("the envelope's callback cannot be read: {e}")))?;
    if parsed.error_code != fields.error_code {
        return Err(EnvelopeError(format!(
            "the envelope's errorCode {} disagrees with its callback's ErrorCode {}",
            fields.error_code, parsed.error_code
        )));
    }
    let dedup_key = fields.dedup_key.into_owned();
    if dedup_key.len() != 64
        || !dedup_key
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(EnvelopeError(format!(
            "the envelope's dedupKey {dedup_key:?} is not 64 lowercase hex digits"
        )));
    }
    Ok(Message::derive(
        category,
        fields.error_code,
        &fields.sdk_app_id,
        fields.opt_platform.as_deref(),
        &parsed.callback,
        dedup_key,
        envelope.to_owned(),
    ))
}

/// What a republish did. Displayed as the replay tool's last line, `replayed N, failed M`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Records published.
    pub replayed: usize,
    /// Records not published: unreadable, no topic for their category, or the publish failed.
    pub failed: usize,
    /// Records that repeat one earlier in the input (the same envelope): published once.
    pub repeated: usize,
    /// Lines and JSON values that are not `publish_failed` records.
    pub skipped: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "replayed {}, failed {}", self.replayed, self.failed)
    }
}

/// How to go through the records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Say what would be published, and publish nothing.
    pub dry_run: bool,
    /// After a failed publish, attempt no more (the redrive: SNS is likely down, and the whole
    /// batch comes again with Lambda's next retry).
    pub stop_after_failure: bool,
}

/// Publishes every record of `scan` to its category's topic, in input order, and writes one
/// line per record to `report`. A record that repeats an earlier one (the same envelope, as
/// when one file is given twice) is published once.
pub async fn republish<P: Publisher>(
    scan: &Scan,
    topics: &Topics,
    publisher: &P,
    options: Options,
    report: &mut dyn Write,
) -> Summary {
    let mut summary = Summary {
        skipped: scan.skipped,
        ..Summary::default()
    };
    let mut seen: HashMap<&str, &Origin> = HashMap::new();
    let mut stopped = false;
    for found in &scan.records {
        let record = match found {
            Ok(record) => record,
            Err(unreadable) => {
                summary.failed += 1;
                let _ = writeln!(
                    report,
                    "failed {}: {}",
                    unreadable.origin, unreadable.problem
                );
                continue;
            }
        };
        if let Some(first) = seen.get(record.envelope.as_str()) {
            summary.repeated += 1;
            let _ = writeln!(
                report,
                "repeated {}: the same envelope as {first}, published once",
                record.origin
            );
            continue;
        }
        seen.insert(&record.envelope, &record.origin);
        if stopped {
            summary.failed += 1;
            let _ = writeln!(
                report,
                "failed {}: not attempted after an earlier publish failed",
                record.origin
            );
            continue;
        }
        match publish(record, topics, publisher, options.dry_run).await {
            Ok(line) => {
                summary.replayed += 1;
                let verb = if options.dry_run {
                    "would publish"
                } else {
                    "replayed"
                };
                let _ = writeln!(report, "{verb} {}: {line}", record.origin);
            }
            Err(Failure { problem, published }) => {
                summary.failed += 1;
                stopped = published && options.stop_after_failure;
                let _ = writeln!(report, "failed {}: {problem}", record.origin);
            }
        }
    }
    summary
}

/// Scans `text` (named `input` in the report) and republishes what it holds.
pub async fn republish_text<P: Publisher>(
    input: &str,
    text: &str,
    topics: &Topics,
    publisher: &P,
    report: &mut dyn Write,
) -> Summary {
    let found = crate::record_source::scan(input, text);
    republish(&found, topics, publisher, Options::default(), report).await
}

/// Why a record was not published; `published` when the publish itself failed.
struct Failure {
    problem: String,
    published: bool,
}

/// Publishes one record; says what was done, or why it was not.
async fn publish<P: Publisher>(
    record: &Record,
    topics: &Topics,
    publisher: &P,
    dry_run: bool,
) -> Result<String, Failure> {
    let refuse = |problem: String| Failure {
        problem,
        published: false,
    };
    let message = message_from_envelope(&record.envelope).map_err(|e| refuse(e.to_string()))?;
    let what = format!("{} {}", message.category, message.dedup_key);
    let topic = topics.get(message.category).ok_or_else(|| {
        refuse(format!(
            "{what}: no topic is configured for category {} (set {})",
            message.category,
            TOPIC_VARIABLES[message.category.index()]
        ))
    })?;
    let moved = match &record.topic_arn {
        Some(logged) if *logged != topic.arn => format!(" (logged for {logged})"),
        _ => String::new(),
    };
    if dry_run {
        return Ok(format!("{what} to {}{moved}", topic.arn));
    }
    let message_id = publisher
        .publish(topic, &message)
        .await
        .map_err(|e| Failure {
            problem: format!("{what} to {}: {e}", topic.arn),
            published: true,
        })?;
    Ok(format!(
        "{what} to {}{moved}, message id {message_id}",
        topic.arn
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::RecordingPublisher;
    use crate::record_source::scan;
    use crate::test_support::{ENVELOPE, config_with, record_line as line};

    #[test]
    fn the_message_keeps_the_envelope_byte_for_byte() {
        let message = message_from_envelope(ENVELOPE).unwrap();
        assert_eq!(message.body, ENVELOPE);
        assert_eq!(message.category, Category::FrequencyLimit);
        assert_eq!(message.dedup_key.len(), 64);
        assert_eq!(message.group_id.as_deref(), Some("@TGS#1"));
        assert_eq!(
            message.subject,
            "frequency_limit: error 10023 in group @TGS#1"
        );
    }

    #[test]
    fn envelopes_the_function_would_not_write_are_refused() {
        for (from, to) in [
            ("\"frequency_limit\"", "\"spam\""),
            ("\"errorCode\":10023", "\"errorCode\":10024"),
            ("\"dedupKey\":\"d3", "\"dedupKey\":\"D3"),
            ("\"ErrorCode\":\"10023\"", "\"ErrorCode\":true"),
            ("\"sdkAppId\":\"1400000000\",", ""),
        ] {
            let changed = ENVELOPE.replacen(from, to, 1);
            assert_ne!(changed, ENVELOPE);
            assert!(message_from_envelope(&changed).is_err(), "{to}");
        }
    }

    fn config(unclassified: bool) -> Topics {
        let un = "arn:aws:sns:us-east-1:123456789012:un";
        config_with(&[("TOPIC_ARN_UNCLASSIFIED", if unclassified { un } else { "" })]).topics
    }

    fn replay_with(
        text: &str,
        topics: &Topics,
        publisher: &RecordingPublisher,
        options: Options,
    ) -> (Summary, String) {
        let mut report = Vec::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let found = scan("log", text);
        let summary = runtime.block_on(republish(&found, topics, publisher, options, &mut report));
        (summary, String::from_utf8(report).unwrap())
    }

    fn replay_now(
        text: &str,
        topics: &Topics,
        publisher: &RecordingPublisher,
    ) -> (Summary, String) {
        replay_with(text, topics, publisher, Options::default())
    }

    #[test]
    fn replay_publishes_each_record_once_to_its_categorys_topic() {
        let unclassified = ENVELOPE
            .replace("frequency_limit", "unclassified")
            .replace("10023", "12345");
        let text = [line(ENVELOPE), line(&unclassified), line(ENVELOPE)].join("\n");
        let publisher = RecordingPublisher::default();
        let (summary, report) = replay_now(&text, &config(true), &publisher);
        assert_eq!(summary.to_string(), "replayed 2, failed 0", "{report}");
        assert_eq!(summary.repeated, 1);
        let sent = publisher.sent.lock().unwrap();
        assert_eq!(sent[0].0, "arn:aws:sns:us-east-1:123456789012:fl");
        assert_eq!(sent[0].1, message_from_envelope(ENVELOPE).unwrap());
        assert_eq!(sent[1].0, "arn:aws:sns:us-east-1:123456789012:un");
        assert!(
            report.contains("logged for arn:aws:sns:us-east-1:1:fl"),
            "{report}"
        );
    }

    #[test]
    fn replay_counts_what_it_could_not_publish() {
        let unclassified = ENVELOPE
            .replace("frequency_limit", "unclassified")
            .replace("10023", "12345");
        let text = [
            line(&unclassified),
            r#"{"event":"publish_failed"}"#.into(),
            line(&ENVELOPE.replace("frequency_limit", "spam")),
        ]
        .join("\n");
        let publisher = RecordingPublisher::default();
        let (summary, report) = replay_now(&text, &config(false), &publisher);
        assert_eq!(summary.to_string(), "replayed 0, failed 3");
        assert!(report.contains("set TOPIC_ARN_UNCLASSIFIED"), "{report}");
        assert!(publisher.sent.lock().unwrap().is_empty());

        let down = RecordingPublisher::failing();
        let (summary, report) = replay_now(&line(ENVELOPE), &config(false), &down);
        assert_eq!(summary.to_string(), "replayed 0, failed 1");
        assert!(report.contains("last: down"), "{report}");
    }

    #[test]
    fn a_dry_run_says_what_would_be_published_and_publishes_nothing() {
        let publisher = RecordingPublisher::default();
        let options = Options {
            dry_run: true,
            ..Options::default()
        };
        let (summary, report) = replay_with(&line(ENVELOPE), &config(false), &publisher, options);
        assert_eq!(summary.replayed, 1);
        assert!(
            report.starts_with("would publish log:1: frequency_limit d3b4"),
            "{report}"
        );
        assert!(
            report.contains("to arn:aws:sns:us-east-1:123456789012:fl"),
            "{report}"
        );
        assert!(publisher.sent.lock().unwrap().is_empty());
    }

    #[test]
    fn after_a_failed_publish_the_redrive_attempts_no_more() {
        let other = ENVELOPE.replace("\"Random\":1", "\"Random\":2");
        let text = [line(ENVELOPE), line(&other)].join("\n");
        let options = Options {
            stop_after_failure: true,
            ..Options::default()
        };
        let down = RecordingPublisher::failing();
        let (summary, report) = replay_with(&text, &config(false), &down, options);
        assert_eq!(summary.to_string(), "replayed 0, failed 2");
        assert!(report.contains("not attempted"), "{report}");
    }
}
