//! Replay: republishes the envelopes of `publish_failed` log records, exactly as the function
//! would have published them.
//!
//! Chat does not retry `Group.CallbackSendMsgException`, so when a publish fails, the
//! function's `publish_failed` log record is the only copy of that exception. [`scan`] reads
//! such records back from text in either form an operator has it:
//!
//! - the function's own log lines: one JSON object per line, with `envelope` nested as a JSON
//!   object (or a JSON string holding it), among any other lines, which are skipped;
//! - what `aws logs filter-log-events` (or `get-log-events`) prints: `{"events": [{"message":
//!   "<one log line>", …}], …}`, pretty-printed or not, several documents one after the other
//!   when the pages of a paged query were concatenated.
//!
//! [`replay`] publishes each envelope, unchanged, as the message body, to its category's topic in
//! the configuration. Everything else (attributes, subject, FIFO group and deduplication id)
//! comes from [`MessageParts::into_message`], the derivation the function itself uses, applied to
//! the envelope's fields and its `callback` re-parsed as the function parses a request body
//! ([`message_from_envelope`]). On a FIFO topic the deduplication id is the envelope's
//! `dedupKey`, so an exception replayed twice, or replayed after its first publish reached SNS
//! after all, is delivered once.

use crate::callback;
use crate::classify::Category;
use crate::config::{Config, TOPIC_VARIABLES};
use crate::envelope::{Message, MessageParts};
use crate::publish::Publisher;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::Write;

/// The `event` of the record the function writes when a publish fails.
pub const PUBLISH_FAILED: &str = "publish_failed";

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
    Ok(MessageParts {
        category,
        error_code: fields.error_code,
        sdk_app_id: &fields.sdk_app_id,
        opt_platform: fields.opt_platform.as_deref(),
        callback: &parsed.callback,
        dedup_key,
        body: envelope.to_owned(),
    }
    .into_message())
}

/// What a replay did. Displayed as the tool's last line, `replayed N, failed M`.
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

/// Publishes every record of `scan` to its category's topic in `config`, in input order, and
/// writes one line per record to `report`. A record that repeats an earlier one (the same
/// envelope, as when one file is given twice) is published once.
pub async fn replay<P: Publisher>(
    scan: &Scan,
    config: &Config,
    publisher: &P,
    report: &mut dyn Write,
) -> Summary {
    let mut summary = Summary {
        skipped: scan.skipped,
        ..Summary::default()
    };
    let mut seen: HashMap<&str, &Origin> = HashMap::new();
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
        match publish(record, config, publisher).await {
            Ok(line) => {
                summary.replayed += 1;
                let _ = writeln!(report, "replayed {}: {line}", record.origin);
            }
            Err(problem) => {
                summary.failed += 1;
                let _ = writeln!(report, "failed {}: {problem}", record.origin);
            }
        }
    }
    summary
}

/// Scans `text` (named `input` in the report) and replays what it holds.
pub async fn replay_text<P: Publisher>(
    input: &str,
    text: &str,
    config: &Config,
    publisher: &P,
    report: &mut dyn Write,
) -> Summary {
    replay(&scan(input, text), config, publisher, report).await
}

/// Publishes one record; says what was done, or why it was not.
async fn publish<P: Publisher>(
    record: &Record,
    config: &Config,
    publisher: &P,
) -> Result<String, String> {
    let message = message_from_envelope(&record.envelope).map_err(|e| e.to_string())?;
    let what = format!("{} {}", message.category, message.dedup_key);
    let topic = config.topic(message.category).ok_or_else(|| {
        format!(
            "{what}: no topic is configured for category {} (set {})",
            message.category,
            TOPIC_VARIABLES[message.category.index()]
        )
    })?;
    let message_id = publisher
        .publish(topic, &message)
        .await
        .map_err(|e| format!("{what} to {}: {e}", topic.arn))?;
    let moved = match &record.topic_arn {
        Some(logged) if *logged != topic.arn => format!(" (logged for {logged})"),
        _ => String::new(),
    };
    Ok(format!(
        "{what} to {}{moved}, message id {message_id}",
        topic.arn
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::RecordingPublisher;

    const ENVELOPE: &str = r#"{"category":"frequency_limit","errorCode":10023,"sdkAppId":"1400000000","optPlatform":"RESTAPI","receivedAt":"2026-11-25T20:00:00.123Z","dedupKey":"d3b4c0a6e2c1f0b7a8e9d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5","callback":{"ErrorCode":"10023",  "GroupId":"@TGS#1","Random":1,"X":[1.50,"\u00e9"]}}"#;

    fn line(envelope: &str) -> String {
        format!(
            r#"{{"timestamp":"2026-11-25T20:00:00.700Z","level":"ERROR","event":"publish_failed","outcome":"publish_failed","category":"frequency_limit","topicArn":"arn:aws:sns:us-east-1:1:fl","envelope":{envelope},"error":"publish failed","requestId":"r1"}}"#
        )
    }

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
    fn the_message_keeps_the_envelope_byte_for_byte() {
        let message = message_from_envelope(ENVELOPE).unwrap();
        assert_eq!(message.body, ENVELOPE);
        assert_eq!(message.category, Category::FrequencyLimit);
        assert_eq!(message.dedup_key.len(), 64);
        assert_eq!(message.group_id, "@TGS#1");
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

    fn config(unclassified: bool) -> Config {
        Config::from_lookup(|name| {
            let topic = |n: &str| Some(format!("arn:aws:sns:us-east-1:1:{n}"));
            match name {
                "IM_SDK_APP_ID" => Some("1400000000".into()),
                "TOPIC_ARN_INVALID_GROUP" => topic("ig"),
                "TOPIC_ARN_FREQUENCY_LIMIT" => topic("fl"),
                "TOPIC_ARN_CONTENT_FILTER" => topic("cf"),
                "TOPIC_ARN_MUTED_SENDER" => topic("ms"),
                "TOPIC_ARN_UNCLASSIFIED" if unclassified => topic("un"),
                _ => None,
            }
        })
        .unwrap()
    }

    fn replay_now(
        text: &str,
        config: &Config,
        publisher: &RecordingPublisher,
    ) -> (Summary, String) {
        let mut report = Vec::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let summary = runtime.block_on(replay_text("log", text, config, publisher, &mut report));
        (summary, String::from_utf8(report).unwrap())
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
        assert_eq!(sent[0].0, "arn:aws:sns:us-east-1:1:fl");
        assert_eq!(sent[0].1, message_from_envelope(ENVELOPE).unwrap());
        assert_eq!(sent[1].0, "arn:aws:sns:us-east-1:1:un");
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
        assert!(report.contains("publish failed: down"), "{report}");
    }
}
