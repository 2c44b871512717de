//! Log set-up: one JSON object per line (what CloudWatch Logs Insights, metric filters and the
//! replay tool read), unless Lambda's log format is explicitly `Text`.

use crate::envelope::Rfc3339Millis;
use serde_json::value::RawValue;
use std::fmt::{self, Write as _};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// String fields that hold JSON and are written into the record as JSON, not as a string, so
/// that Logs Insights can query inside them and replay reads them back unchanged.
pub const JSON_FIELDS: [&str; 2] = ["envelope", "_aws"];

/// Whether `AWS_LAMBDA_LOG_FORMAT` asks for JSON. Unset means JSON too: the `publish_failed`
/// record must stay machine-readable for replay.
pub fn json_from_env() -> bool {
    !std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text"))
}

/// `AWS_LAMBDA_LOG_LEVEL` (as Lambda sets it), else `RUST_LOG` as a bare level, else INFO.
pub fn level_from_env() -> LevelFilter {
    ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find_map(|v| match v.trim().to_ascii_uppercase().as_str() {
            "FATAL" => Some(LevelFilter::ERROR),
            other => other.parse().ok(),
        })
        .unwrap_or(LevelFilter::INFO)
}

/// The subscriber used in production, writing to `writer`; tests pass a buffer.
pub fn subscriber<W>(json: bool, level: LevelFilter, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(false);
    if json {
        Box::new(builder.event_format(JsonLines).finish())
    } else {
        Box::new(builder.without_time().finish())
    }
}

/// Installs the production subscriber on standard output.
pub fn init() {
    let subscriber = subscriber(json_from_env(), level_from_env(), std::io::stdout);
    // Only fails if a subscriber is already set, in which case that one is kept.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// `{"timestamp":…,"level":…,"message":…, then the event's fields in order}`.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::with_capacity(256);
        line.push_str("{\"timestamp\":\"");
        let _ = write!(line, "{}", Rfc3339Millis(std::time::SystemTime::now()));
        line.push_str("\",\"level\":\"");
        line.push_str(event.metadata().level().as_str());
        line.push('"');
        event.record(&mut JsonFields(&mut line));
        line.push('}');
        writeln!(writer, "{line}")
    }
}

struct JsonFields<'a>(&'a mut String);

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        self.0.push(',');
        push_json_string(self.0, field.name());
        self.0.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        // A record must stay on one line: CloudWatch stores each line as its own event. A body
        // sent pretty-printed keeps its line breaks in the envelope, so such an envelope is
        // written as a string, which keeps its bytes exact for replay.
        let embed = JSON_FIELDS.contains(&field.name())
            && !value.contains(['\n', '\r'])
            && serde_json::from_str::<&RawValue>(value).is_ok();
        if embed {
            self.0.push_str(value.trim());
        } else {
            push_json_string(self.0, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        match serde_json::Number::from_f64(value) {
            Some(n) => {
                let _ = write!(self.0, "{n}");
            }
            None => self.0.push_str("null"),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

fn push_json_string(out: &mut String, value: &str) {
    out.push_str(&serde_json::to_string(value).expect("a string always serializes"));
}

/// Captures the production JSON format in memory, for tests.
#[cfg(test)]
pub(crate) mod capture {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub(crate) struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }

        pub(crate) fn records(&self) -> Vec<serde_json::Value> {
            self.text()
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect()
        }
    }

    /// Installs a capturing subscriber on this thread until the guard drops.
    pub(crate) fn start(json: bool) -> (tracing::subscriber::DefaultGuard, Buffer) {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let guard =
            tracing::subscriber::set_default(subscriber(json, LevelFilter::INFO, move || {
                writer.clone()
            }));
        (guard, buffer)
    }
}

#[cfg(test)]
mod tests {
    fn capture(json: bool, emit: impl FnOnce()) -> String {
        let (guard, buffer) = super::capture::start(json);
        emit();
        drop(guard);
        buffer.text()
    }

    #[test]
    fn records_are_one_json_object_per_line_with_envelopes_nested() {
        let out = capture(true, || {
            tracing::error!(
                event = "publish_failed",
                errorCode = 10023,
                envelope = r#"{"a":[1,"x"]}"#,
                note = "say \"hi\"\n",
                "message {}",
                1
            );
            tracing::debug!(event = "hidden");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let record: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(record["level"], "ERROR");
        assert_eq!(record["event"], "publish_failed");
        assert_eq!(record["errorCode"], 10023);
        assert_eq!(record["envelope"]["a"][1], "x");
        assert_eq!(record["note"], "say \"hi\"\n");
        assert_eq!(record["message"], "message 1");
        assert!(record["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn a_json_field_with_line_breaks_stays_a_string_on_one_line() {
        let envelope = "{\"callback\":{\n  \"ErrorCode\": 1\r\n}}";
        let out = capture(true, || tracing::error!(envelope));
        assert_eq!(out.lines().count(), 1, "{out}");
        let record: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(record["envelope"], envelope);
    }

    #[test]
    fn a_json_field_that_is_not_json_stays_a_string() {
        let out = capture(true, || tracing::info!(envelope = "{not json"));
        let record: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(record["envelope"], "{not json");
    }

    #[test]
    fn text_format_is_available() {
        let out = capture(false, || tracing::info!(event = "callback", "hello"));
        assert!(
            out.contains("hello") && out.contains("event=\"callback\""),
            "{out}"
        );
    }
}
