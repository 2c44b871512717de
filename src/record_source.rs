//! Reading `publish_failed` records back, wherever they are kept: the function's log lines as
//! text (a file, standard input, what `aws logs filter-log-events` prints), a CloudWatch Logs
//! subscription event (what the redrive function receives), and a Lambda on-failure
//! destination message holding such an event (what the redrive dead-letter queue holds).
//!
//! In text, [`scan`] reads records in either form an operator has them:
//!
//! - the function's own log lines: one JSON object per line, with `envelope` nested as a JSON
//!   object (or a JSON string holding it), among any other lines, which are skipped;
//! - what `aws logs filter-log-events` (or `get-log-events`) prints: `{"events": [{"message":
//!   "<one log line>", …}], …}`, pretty-printed or not, several documents one after the other
//!   when the pages of a paged query were concatenated.

pub use crate::record::PUBLISH_FAILED;
use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::io::Read;

/// Where a record was read: the input's name and the line the record starts on. A record inside
/// a `filter-log-events` document is placed at the line of its event's `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub input: String,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.input, self.line)
    }
}

/// A `publish_failed` record, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub origin: Origin,
    /// The envelope exactly as logged: the message body to publish.
    pub envelope: String,
    /// The topic the function tried (`topicArn`), shown in the report.
    pub topic_arn: Option<String>,
}

/// A `publish_failed` record that carries no usable envelope: it counts as failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub origin: Origin,
    pub problem: String,
}

/// What [`scan`] found in one input.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Every `publish_failed` record, in the order of the input.
    pub records: Vec<Result<Record, Unreadable>>,
    /// Lines and JSON values that are not `publish_failed` records.
    pub skipped: usize,
}

impl Scan {
    /// Appends what another input held.
    pub fn extend(&mut self, other: Scan) {
        self.records.extend(other.records);
        self.skipped += other.skipped;
    }
}

/// Finds the `publish_failed` records in `text`, read from the input called `input`.
pub fn scan(input: &str, text: &str) -> Scan {
    let mut scanner = Scanner {
        input,
        scan: Scan::default(),
    };
    scanner.text(text, Lines::new(text, 1));
    scanner.scan
}

struct Scanner<'n> {
    input: &'n str,
    scan: Scan,
}

/// Line numbers of positions in one text, counted forward as the scan moves on. A text nested
/// in a JSON string (a `filter-log-events` message) has the one line of that string.
struct Lines<'t> {
    text: &'t str,
    counted_to: usize,
    line: usize,
    fixed: bool,
}

impl<'t> Lines<'t> {
    fn new(text: &'t str, first_line: usize) -> Self {
        Lines {
            text,
            counted_to: 0,
            line: first_line,
            fixed: false,
        }
    }

    fn fixed(text: &'t str, line: usize) -> Self {
        Lines {
            fixed: true,
            ..Lines::new(text, line)
        }
    }

    /// The line of `part`, a slice of the text at or after every part asked about before.
    fn of(&mut self, part: &str) -> usize {
        if self.fixed {
            return self.line;
        }
        let offset = (part.as_ptr() as usize).saturating_sub(self.text.as_ptr() as usize);
        let offset = offset.min(self.text.len());
        if offset > self.counted_to {
            self.line += self.text.as_bytes()[self.counted_to..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.counted_to = offset;
        }
        self.line
    }
}

/// The fields of a log line or `filter-log-events` document that tell what it is. Every field
/// is taken raw, so that an unexpected type elsewhere cannot hide a record.
#[derive(Deserialize)]
struct Shape<'a> {
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    envelope: Option<&'a RawValue>,
    #[serde(rename = "topicArn", borrow, default)]
    topic_arn: Option<&'a RawValue>,
    /// `filter-log-events` / `get-log-events`: the log events.
    #[serde(borrow, default)]
    events: Option<&'a RawValue>,
    /// One log event of those: the log line as a string.
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
}

impl Scanner<'_> {
    /// Walks `text`: every JSON value in it, and every line that is not one.
    fn text(&mut self, text: &str, mut lines: Lines<'_>) {
        let mut rest = text;
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                return;
            }
            if let Some(consumed) = self.json_at(rest, &mut lines) {
                rest = &rest[consumed..];
                continue;
            }
            // Not JSON here: a Lambda platform line (START, END, REPORT), a text log line, or a
            // line with a prefix such as `aws logs tail` prints. One JSON object later on the
            // line is still tried.
            let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
            let line = &rest[..line_end];
            let found = line
                .find('{')
                .filter(|&i| i > 0)
                .and_then(|i| self.json_at(&rest[i..], &mut lines).map(|n| i + n))
                .or_else(|| self.message_field(line, &mut lines).map(|_| line_end));
            match found {
                Some(consumed) => rest = &rest[consumed.max(1)..],
                // A piece of a record (a log event cut at a line break, or a line cut short)
                // fails the replay rather than vanish with the skipped lines.
                None if line.contains(&format!("\"{PUBLISH_FAILED}\"")) => {
                    let at = lines.of(line);
                    self.unreadable(
                        at,
                        "a line that names publish_failed but is not a whole JSON record (a \
                         record split across log events, or cut short)"
                            .to_owned(),
                    );
                    rest = &rest[line_end..];
                }
                None => {
                    self.scan.skipped += 1;
                    rest = &rest[line_end..];
                }
            }
        }
    }

    /// Reads one JSON object or array at the start of `text`; returns how many bytes it took.
    fn json_at(&mut self, text: &str, lines: &mut Lines<'_>) -> Option<usize> {
        if !text.starts_with(['{', '[']) {
            return None;
        }
        let mut values = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
        let value = values.next()?.ok()?;
        let consumed = values.byte_offset();
        self.value(value, lines);
        Some(consumed)
    }

    /// A line `"message": "<log line>",` of a `filter-log-events` document whose whole could not
    /// be read (cut short, say): the log line it holds is still read.
    fn message_field(&mut self, line: &str, lines: &mut Lines<'_>) -> Option<()> {
        let value = line.trim_start().strip_prefix("\"message\"")?;
        let value = value.trim_start().strip_prefix(':')?.trim_start();
        let mut strings = serde_json::Deserializer::from_str(value).into_iter::<String>();
        let message = strings.next()?.ok()?;
        let line = lines.of(value);
        self.text(&message, Lines::fixed(&message, line));
        Some(())
    }

    fn value(&mut self, value: &RawValue, lines: &mut Lines<'_>) {
        let text = value.get();
        if text.starts_with('[') {
            match serde_json::from_str::<Vec<&RawValue>>(text) {
                Ok(items) => items.into_iter().for_each(|item| self.value(item, lines)),
                Err(_) => self.scan.skipped += 1,
            }
            return;
        }
        let line = lines.of(text);
        let shape = match serde_json::from_str::<Shape<'_>>(text) {
            Ok(shape) => shape,
            // Never lose a record to a shape this reader did not expect.
            Err(e) if text.contains("\"publish_failed\"") => {
                self.unreadable(
                    line,
                    format!("a publish_failed record that cannot be read: {e}"),
                );
                return;
            }
            Err(_) => {
                self.scan.skipped += 1;
                return;
            }
        };
        if shape.event.and_then(string).as_deref() == Some(PUBLISH_FAILED) {
            self.record(line, &shape);
        } else if let Some(events) = shape.events.filter(|e| e.get().starts_with('[')) {
            self.value(events, lines);
        } else if let Some(raw) = shape.message.filter(|_| shape.event.is_none()) {
            match string(raw) {
                Some(message) => {
                    let line = lines.of(raw.get());
                    self.text(&message, Lines::fixed(&message, line));
                }
                None => self.scan.skipped += 1,
            }
        } else {
            self.scan.skipped += 1;
        }
    }

    fn record(&mut self, line: usize, shape: &Shape<'_>) {
        let origin = Origin {
            input: self.input.to_owned(),
            line,
        };
        let envelope = match shape.envelope {
            Some(raw) if raw.get().starts_with('{') => Ok(raw.get().to_owned()),
            // A logger that could not nest it writes the envelope as a string of JSON.
            Some(raw) => match string(raw) {
                Some(text) if text.trim_start().starts_with('{') => Ok(text.into_owned()),
                _ => Err(format!("its envelope is not a JSON object: {}", raw.get())),
            },
            None => Err("it has no envelope".to_owned()),
        };
        self.scan.records.push(match envelope {
            Ok(envelope) => Ok(Record {
                origin,
                envelope,
                topic_arn: shape.topic_arn.and_then(string).map(Cow::into_owned),
            }),
            Err(problem) => Err(Unreadable {
                origin,
                problem: format!("a publish_failed record, but {problem}"),
            }),
        });
    }

    fn unreadable(&mut self, line: usize, problem: String) {
        let origin = Origin {
            input: self.input.to_owned(),
            line,
        };
        self.scan.records.push(Err(Unreadable { origin, problem }));
    }
}

/// The value of a JSON string, unescaped; `None` for any other JSON value.
fn string<'a>(raw: &'a RawValue) -> Option<Cow<'a, str>> {
    serde_json::from_str::<Cow<'a, str>>(raw.get()).ok()
}

/// A CloudWatch Logs subscription event: `{"awslogs": {"data": base64 of gzip of the batch}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionEvent {
    pub awslogs: AwsLogs,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AwsLogs {
    pub data: String,
}

/// The batch inside a subscription event.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogBatch {
    message_type: String,
    #[serde(default)]
    log_stream: String,
    #[serde(default)]
    log_events: Vec<LogEvent>,
}

#[derive(Debug, Deserialize)]
struct LogEvent {
    #[serde(default)]
    id: String,
    message: String,
}

/// The records of a subscription event. Each log event is one log line; its origin is
/// `input` with the event's stream and id. CloudWatch's `CONTROL_MESSAGE` (sent once when the
/// subscription is made) holds none.
pub fn from_subscription(input: &str, event: &SubscriptionEvent) -> Result<Scan, String> {
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(event.awslogs.data.trim())
        .map_err(|e| format!("awslogs.data is not base64: {e}"))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_end(&mut json)
        .map_err(|e| format!("awslogs.data is not gzip: {e}"))?;
    let batch: LogBatch = serde_json::from_slice(&json)
        .map_err(|e| format!("awslogs.data is not a log batch: {e}"))?;
    let mut found = Scan::default();
    if batch.message_type != "DATA_MESSAGE" {
        return Ok(found);
    }
    for event in &batch.log_events {
        let name = format!("{input}:{}/{}", batch.log_stream, event.id);
        found.extend(scan(&name, &event.message));
    }
    Ok(found)
}

/// The records of a Lambda on-failure destination message (the body of a message in the
/// redrive dead-letter queue): its `requestPayload` is the subscription event that failed.
pub fn from_destination(input: &str, body: &str) -> Result<Scan, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Destination {
        request_payload: SubscriptionEvent,
    }
    let destination: Destination = serde_json::from_str(body)
        .map_err(|e| format!("not a Lambda destination record of a subscription event: {e}"))?;
    from_subscription(input, &destination.request_payload)
}

/// A subscription event holding `messages` as log events, as CloudWatch Logs sends it: for
/// tests and for the redrive's own checks.
pub fn subscription_event(log_group: &str, messages: &[&str]) -> SubscriptionEvent {
    use std::io::Write;
    let events: Vec<serde_json::Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| serde_json::json!({"id": i.to_string(), "timestamp": 0, "message": m}))
        .collect();
    let batch = serde_json::json!({
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": log_group,
        "logStream": "2026/12/01/[$LATEST]0123456789abcdef",
        "subscriptionFilters": ["publish_failed"],
        "logEvents": events,
    });
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(batch.to_string().as_bytes())
        .expect("writing to memory");
    let compressed = gzip.finish().expect("writing to memory");
    SubscriptionEvent {
        awslogs: AwsLogs {
            data: base64::engine::general_purpose::STANDARD.encode(compressed),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ENVELOPE, record_line as line};

    fn envelopes(scan: &Scan) -> Vec<&str> {
        scan.records
            .iter()
            .map(|r| r.as_ref().unwrap().envelope.as_str())
            .collect()
    }

    #[test]
    fn reads_raw_log_lines_and_skips_the_rest() {
        let text = format!(
            "START RequestId: r1 Version: $LATEST\n{}\n{{\"event\":\"callback\",\"outcome\":\"published\"}}\nnot json {{ at all\n\n{}\nEND RequestId: r1\n",
            line(ENVELOPE),
            line(ENVELOPE)
        );
        let scan = scan("log", &text);
        assert_eq!(envelopes(&scan), [ENVELOPE, ENVELOPE]);
        let first = scan.records[0].as_ref().unwrap();
        assert_eq!(first.origin.to_string(), "log:2");
        assert_eq!(scan.records[1].as_ref().unwrap().origin.line, 6);
        assert_eq!(
            first.topic_arn.as_deref(),
            Some("arn:aws:sns:us-east-1:1:fl")
        );
        assert_eq!(
            scan.skipped, 4,
            "START, the callback line, the text line, END"
        );
    }

    #[test]
    fn reads_an_envelope_logged_as_a_string() {
        let quoted = serde_json::to_string(ENVELOPE).unwrap();
        let scan = scan("log", &line(&quoted));
        assert_eq!(envelopes(&scan), [ENVELOPE]);
    }

    #[test]
    fn reads_concatenated_pretty_printed_filter_log_events_pages() {
        let page = |lines: &[String]| {
            let events: Vec<serde_json::Value> = lines
                .iter()
                .map(|l| {
                    serde_json::json!({
                        "logStreamName": "2026/11/25/[$LATEST]abc",
                        "timestamp": 1_795_636_800_700_u64,
                        "message": format!("{l}\n"),
                        "ingestionTime": 1_795_636_800_800_u64,
                        "eventId": "1"
                    })
                })
                .collect();
            serde_json::to_string_pretty(&serde_json::json!({
                "events": events,
                "searchedLogStreams": [],
                "nextToken": "abc"
            }))
            .unwrap()
        };
        let other = r#"{"event":"callback","outcome":"published"}"#.to_owned();
        let text = format!(
            "{}\n{}",
            page(&[line(ENVELOPE), other, "REPORT RequestId: r1".into()]),
            page(&[line(ENVELOPE)])
        );
        let scan = scan("events.json", &text);
        assert_eq!(envelopes(&scan), [ENVELOPE, ENVELOPE]);
        let first = scan.records[0].as_ref().unwrap();
        assert!(
            text.lines()
                .nth(first.origin.line - 1)
                .unwrap()
                .contains("\"message\""),
            "the origin is the line of the event's message: {}",
            first.origin
        );
    }

    #[test]
    fn reads_the_messages_of_a_filter_log_events_page_cut_short() {
        let full = serde_json::to_string_pretty(&serde_json::json!({
            "events": [{"message": line(ENVELOPE)}, {"message": line(ENVELOPE)}]
        }))
        .unwrap();
        let cut = &full[..full.len() - 10];
        assert_eq!(envelopes(&scan("cut", cut)), [ENVELOPE, ENVELOPE]);
    }

    #[test]
    fn reads_a_line_with_a_prefix() {
        let text = format!(
            "2026-11-25T20:00:00.700000+00:00 2026/11/25/[$LATEST]abc {}",
            line(ENVELOPE)
        );
        assert_eq!(envelopes(&scan("tail", &text)), [ENVELOPE]);
    }

    #[test]
    fn a_record_cut_into_pieces_is_kept_as_unreadable() {
        // As CloudWatch stores a record written over several lines: one event per line.
        let record = line(ENVELOPE).replace("\"callback\":{", "\"callback\":{\n");
        let events: Vec<serde_json::Value> = record
            .lines()
            .map(|l| serde_json::json!({"message": l}))
            .collect();
        let page = serde_json::json!({ "events": events }).to_string();
        let scan = scan("events", &page);
        assert_eq!(scan.records.len(), 1, "{scan:?}");
        assert!(scan.records[0].is_err());
        // The same record whole, over several lines of a raw log, is read.
        assert_eq!(
            envelopes(&super::scan("raw", &record)),
            [record_envelope(&record)]
        );
    }

    fn record_envelope(record: &str) -> &str {
        let start = record.find("\"envelope\":").unwrap() + "\"envelope\":".len();
        let end = record.find(",\"error\"").unwrap();
        &record[start..end]
    }

    #[test]
    fn a_publish_failed_record_without_an_envelope_is_kept_as_unreadable() {
        let text = r#"{"event":"publish_failed","envelope":12}
{"event":"publish_failed"}
{"event":"publish_failed","event":"publish_failed","envelope":{}}"#;
        let scan = scan("log", text);
        assert_eq!(scan.records.len(), 3);
        assert!(scan.records.iter().all(Result::is_err), "{scan:?}");
    }

    #[test]
    fn reads_the_records_of_a_subscription_event() {
        let other = r#"{"event":"callback","outcome":"published"}"#;
        let event = subscription_event(
            "/aws/lambda/x-webhook",
            &[&line(ENVELOPE), other, &line(ENVELOPE)],
        );
        let found = from_subscription("event", &event).unwrap();
        assert_eq!(envelopes(&found), [ENVELOPE, ENVELOPE]);
        assert_eq!(found.skipped, 1);
        assert!(
            found.records[0]
                .as_ref()
                .unwrap()
                .origin
                .input
                .starts_with("event:2026/12/01/")
        );

        let bad = SubscriptionEvent {
            awslogs: AwsLogs {
                data: "not base64!".into(),
            },
        };
        assert!(from_subscription("event", &bad).is_err());
        let not_gzip = SubscriptionEvent {
            awslogs: AwsLogs {
                data: "aGVsbG8=".into(),
            },
        };
        assert!(from_subscription("event", &not_gzip).is_err());
    }

    #[test]
    fn reads_the_event_inside_a_destination_record() {
        let event = subscription_event("/aws/lambda/x-webhook", &[&line(ENVELOPE)]);
        let body = serde_json::json!({
            "version": "1.0",
            "timestamp": "2026-12-01T18:00:00.000Z",
            "requestContext": {"requestId": "r", "condition": "RetriesExhausted", "approximateInvokeCount": 3},
            "requestPayload": {"awslogs": {"data": event.awslogs.data}},
            "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": "1 record not published"}
        })
        .to_string();
        assert_eq!(
            envelopes(&from_destination("queue", &body).unwrap()),
            [ENVELOPE]
        );
        assert!(from_destination("queue", r#"{"requestPayload":{}}"#).is_err());
    }
}
