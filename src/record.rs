//! The log lines that keep an exception: a `publish_failed` record (the publish failed; the
//! redrive function and `im-exception-replay` republish it from here) and the line of an
//! exception that has no topic to go to.
//!
//! Each is the only copy of its exception, so it is written as one JSON line whatever
//! `AWS_LAMBDA_LOG_FORMAT` and `AWS_LAMBDA_LOG_LEVEL` say (see [`crate::logging`]), with the
//! level FATAL, which Lambda's own application log-level filter never drops, and it is
//! written here, field by field, so that its size is known before anything is published:
//! CloudWatch Logs keeps at most 256 KiB of one log event, and a record cut short could never
//! be republished.

use crate::envelope::{Message, Rfc3339Millis};
use crate::logging::json_string;
use crate::metrics::{Counted, emf_metadata};
use std::fmt::{self, Write};
use std::time::SystemTime;

/// The largest log line CloudWatch Logs stores as one event.
pub const RECORD_LIMIT: usize = 262_144;

/// The tracing target of these lines: [`crate::logging`] writes them as they are.
pub const TARGET: &str = "im_exception_webhook::record";

/// The `event` of a `publish_failed` record.
pub const PUBLISH_FAILED: &str = "publish_failed";

/// At most this many bytes of a publish error are kept in the record.
const MAX_ERROR_BYTES: usize = 300;
/// At most this many bytes of the Lambda request id (a UUID: 36).
const MAX_REQUEST_ID_BYTES: usize = 64;

/// Why the exception is kept in the log.
#[derive(Debug, Clone, Copy)]
pub enum Kept<'a> {
    /// Publishing to `topic_arn` failed with `error`.
    PublishFailed { topic_arn: &'a str, error: &'a str },
    /// Its category has no topic: the log line is where the exception goes.
    NoTopic,
}

/// One line that keeps `message`.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub kept: Kept<'a>,
    pub message: &'a Message,
    pub request_id: &'a str,
    pub at: SystemTime,
}

impl Record<'_> {
    /// The JSON line, without its line break.
    pub fn line(&self) -> String {
        let mut line = String::with_capacity(self.message.body.len() + 1024);
        self.write(&mut line).expect("a String takes every write");
        line
    }

    /// Writes the line to the log, past every level and format setting.
    pub fn emit(&self) {
        let line = self.line();
        tracing::error!(target: TARGET, record = line.as_str());
    }

    fn write(&self, out: &mut impl Write) -> fmt::Result {
        let m = self.message;
        let (event, outcome, counted) = match self.kept {
            Kept::PublishFailed { .. } => {
                (PUBLISH_FAILED, "publish_failed", Counted::PublishFailure)
            }
            Kept::NoTopic => ("callback", "logged", Counted::Exception),
        };
        // FATAL, whatever happened: with the JSON log format, Lambda itself drops a line whose
        // `level` is below the function's application log level, and FATAL is the one level no
        // setting drops. This line is the only copy of an exception.
        write!(
            out,
            r#"{{"timestamp":"{}","level":"FATAL","event":"{event}","outcome":"{outcome}","category":"{}","errorCode":{}"#,
            Rfc3339Millis(self.at),
            m.category,
            m.error_code,
        )?;
        if let Some(group_id) = &m.group_id {
            out.write_str(r#","groupId":"#)?;
            json_string(out, group_id)?;
        }
        if let Kept::PublishFailed { topic_arn, error } = self.kept {
            out.write_str(r#","topicArn":"#)?;
            json_string(out, topic_arn)?;
            out.write_str(r#","error":"#)?;
            json_string(out, &printable(error, MAX_ERROR_BYTES))?;
        }
        write!(out, r#","dedupKey":"{}","requestId":"#, m.dedup_key)?;
        json_string(out, &printable(self.request_id, MAX_REQUEST_ID_BYTES))?;
        write!(out, r#","Category":"{}","Exceptions":1"#, m.category)?;
        if matches!(self.kept, Kept::PublishFailed { .. }) {
            out.write_str(r#","PublishFailures":1"#)?;
        }
        write!(out, r#","_aws":{}"#, emf_metadata(counted, self.at))?;
        out.write_str(r#","envelope":"#)?;
        // A record must stay on one line. An envelope whose callback was sent pretty-printed
        // keeps its line breaks, so it is written as a JSON string instead, bytes exact.
        if m.body.bytes().any(|b| matches!(b, b'\n' | b'\r')) {
            json_string(out, &m.body)?;
        } else {
            out.write_str(&m.body)?;
        }
        out.write_char('}')
    }

    /// The most bytes the line for `message` can take, with its line break, whatever the
    /// publish error and request id turn out to be: the size check runs before the publish.
    pub fn largest(message: &Message, kept_for_topic: Option<&str>, at: SystemTime) -> usize {
        // The longest error and request id a record keeps, without an allocation per check.
        const ERROR: &str = match std::str::from_utf8(&[b'e'; MAX_ERROR_BYTES]) {
            Ok(s) => s,
            Err(_) => unreachable!(),
        };
        const REQUEST_ID: &str = match std::str::from_utf8(&[b'r'; MAX_REQUEST_ID_BYTES]) {
            Ok(s) => s,
            Err(_) => unreachable!(),
        };
        let record = Record {
            kept: match kept_for_topic {
                Some(topic_arn) => Kept::PublishFailed {
                    topic_arn,
                    error: ERROR,
                },
                None => Kept::NoTopic,
            },
            message,
            request_id: REQUEST_ID,
            at,
        };
        let mut counter = Counter(0);
        record.write(&mut counter).expect("counting never fails");
        counter.0 + 1
    }
}

/// Counts what would be written.
struct Counter(usize);

impl Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// `value` as printable ASCII without quotes or backslashes, at most `max` bytes: its JSON
/// form is then exactly as long as itself, which keeps [`Record::largest`] a true bound.
fn printable(value: &str, max: usize) -> String {
    value
        .chars()
        .map(|c| match c {
            '"' => '\'',
            ' '..='~' if c != '\\' => c,
            _ => '?',
        })
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Category;
    use std::time::{Duration, UNIX_EPOCH};

    fn message(body: &str) -> Message {
        Message {
            category: Category::InvalidGroup,
            error_code: 10004,
            body: body.to_owned(),
            subject: "s".into(),
            dedup_key: "d".repeat(64),
            sdk_app_id: "1400000000".into(),
            group_id: Some("@TGS#\"1\"".into()),
            group_type: None,
            from_account: None,
            operator_account: None,
            opt_platform: None,
        }
    }

    const AT: Duration = Duration::from_millis(1_795_636_800_123);

    #[test]
    fn a_publish_failed_record_is_one_json_object_with_the_envelope_nested() {
        let m = message(r#"{"category":"invalid_group","callback":{"ErrorCode":10004}}"#);
        let record = Record {
            kept: Kept::PublishFailed {
                topic_arn: "arn:aws:sns:us-east-1:1:ig",
                error: "refused by \"SNS\"\n\\",
            },
            message: &m,
            request_id: "7f9c1a2b",
            at: UNIX_EPOCH + AT,
        };
        let line = record.line();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "publish_failed");
        assert_eq!(v["level"], "FATAL", "past Lambda's own level filter");
        assert_eq!(v["timestamp"], "2026-11-25T20:00:00.123Z");
        assert_eq!(v["topicArn"], "arn:aws:sns:us-east-1:1:ig");
        assert_eq!(v["groupId"], "@TGS#\"1\"");
        assert_eq!(v["error"], "refused by 'SNS'??");
        assert_eq!(v["envelope"]["callback"]["ErrorCode"], 10004);
        assert_eq!(
            crate::metrics::validate_emf(&v).unwrap(),
            ["Exceptions", "PublishFailures"]
        );
    }

    #[test]
    fn an_envelope_with_line_breaks_is_kept_as_a_string_on_one_line() {
        let body = "{\"callback\":{\n  \"ErrorCode\": 1\r\n}}";
        let m = message(body);
        let line = Record {
            kept: Kept::NoTopic,
            message: &m,
            request_id: "r",
            at: UNIX_EPOCH + AT,
        }
        .line();
        assert!(!line.contains(['\n', '\r']));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["envelope"], body);
        assert_eq!(v["outcome"], "logged");
        assert_eq!(crate::metrics::validate_emf(&v).unwrap(), ["Exceptions"]);
    }

    #[test]
    fn the_largest_record_bounds_every_real_one() {
        for body in [
            r#"{"a":1}"#.to_owned(),
            format!("{{\"a\":\"{}\"}}\n", "\\\"".repeat(500)),
        ] {
            let m = message(&body);
            let bound = Record::largest(&m, Some("arn:aws:sns:us-east-1:1:ig"), UNIX_EPOCH + AT);
            for (error, request_id) in [
                ("", ""),
                (&*"\"".repeat(5000), &*"\\".repeat(5000)),
                (
                    "é".repeat(400).as_str(),
                    "7f9c1a2b-0000-0000-0000-000000000000",
                ),
            ] {
                let line = Record {
                    kept: Kept::PublishFailed {
                        topic_arn: "arn:aws:sns:us-east-1:1:ig",
                        error,
                    },
                    message: &m,
                    request_id,
                    at: UNIX_EPOCH + AT,
                }
                .line();
                assert!(line.len() < bound, "{} >= {bound}", line.len());
            }
            let exact = Record::largest(&m, None, UNIX_EPOCH + AT);
            let logged = Record {
                kept: Kept::NoTopic,
                message: &m,
                request_id: &"r".repeat(64),
                at: UNIX_EPOCH + AT,
            }
            .line();
            assert_eq!(logged.len() + 1, exact);
        }
    }
}
