//! Log set-up: one JSON object per line (what CloudWatch Logs Insights, metric filters and the
//! replay tool read), unless Lambda's log format is explicitly `Text`.

use crate::envelope::Rfc3339Millis;
use serde_json::value::RawValue;
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// String fields that hold JSON and are written into the line as JSON, not as a string, so
/// that CloudWatch reads the EMF metadata and Logs Insights can query inside it.
pub const JSON_FIELDS: [&str; 1] = ["_aws"];

/// Whether `AWS_LAMBDA_LOG_FORMAT` asks for JSON. Unset means JSON too: the `publish_failed`
/// record must stay machine-readable for replay.
pub fn json_from_env() -> bool {
    !std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text"))
}

/// `AWS_LAMBDA_LOG_LEVEL` (as Lambda sets it), else `RUST_LOG` as a bare level, else INFO.
/// Never off: the lines that keep an exception ([`crate::record`]) go out at ERROR whatever
/// the level, so the level cannot silence them.
pub fn level_from_env() -> LevelFilter {
    ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find_map(|v| parse_level(&v))
        .unwrap_or(LevelFilter::INFO)
}

fn parse_level(value: &str) -> Option<LevelFilter> {
    match value.trim().to_ascii_uppercase().as_str() {
        "FATAL" | "OFF" => Some(LevelFilter::ERROR),
        other => other.parse().ok(),
    }
}

/// The subscriber used in production, writing to `writer`; tests pass a buffer.
pub fn subscriber<W>(json: bool, level: LevelFilter, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_max_level(level.max(LevelFilter::ERROR))
        .with_writer(writer)
        .with_ansi(false);
    if json {
        Box::new(builder.event_format(RecordsAsIs(JsonLines)).finish())
    } else {
        let text = tracing_subscriber::fmt::format()
            .without_time()
            .with_target(false)
            .with_ansi(false);
        Box::new(builder.event_format(RecordsAsIs(text)).finish())
    }
}

/// Writes the lines of [`crate::record`] exactly as they were made, one JSON line each, in
/// either format; everything else goes to the format `F`.
struct RecordsAsIs<F>(F);

impl<S, N, F> FormatEvent<S, N> for RecordsAsIs<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if event.metadata().target() == crate::record::TARGET {
            let mut line = RecordLine {
                out: &mut writer,
                written: None,
            };
            event.record(&mut line);
            if let Some(written) = line.written {
                return written;
            }
        }
        self.0.format_event(ctx, writer, event)
    }
}

/// Writes the `record` field of a [`crate::record`] event as its line, without a copy.
struct RecordLine<'a, W: fmt::Write> {
    out: &'a mut W,
    written: Option<fmt::Result>,
}

impl<W: fmt::Write> Visit for RecordLine<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "record" {
            self.written = Some(writeln!(self.out, "{value}"));
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn fmt::Debug) {}
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
        // Written straight into the subscriber's line buffer: no string of our own per line.
        write!(
            writer,
            r#"{{"timestamp":"{}","level":"{}""#,
            Rfc3339Millis(std::time::SystemTime::now()),
            event.metadata().level().as_str()
        )?;
        let mut fields = JsonFields {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writeln!(writer, "}}")
    }
}

/// The event's fields as `,"name":value` pairs; the first write error is kept for the caller.
struct JsonFields<'a, W: fmt::Write> {
    out: &'a mut W,
    result: fmt::Result,
}

impl<W: fmt::Write> JsonFields<'_, W> {
    fn put(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self
                .out
                .write_char(',')
                .and_then(|()| json_string(self.out, field.name()))
                .and_then(|()| self.out.write_char(':'))
                .and_then(|()| value(self.out));
        }
    }
}

impl<W: fmt::Write> Visit for JsonFields<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // A JSON field is embedded as JSON only when it is valid JSON on one line: CloudWatch
        // stores each line as its own event.
        let embed = JSON_FIELDS.contains(&field.name())
            && !value.contains(['\n', '\r'])
            && serde_json::from_str::<&RawValue>(value).is_ok();
        self.put(field, |out| {
            if embed {
                out.write_str(value.trim())
            } else {
                json_string(out, value)
            }
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, |out| match serde_json::Number::from_f64(value) {
            Some(n) => write!(out, "{n}"),
            None => out.write_str("null"),
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

/// `value` as a JSON string, with serde_json's escaping, written straight into `out`: for log
/// lines and for the records of [`crate::record`].
pub(crate) fn json_string(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    struct Adapter<'w, W: fmt::Write>(&'w mut W);
    impl<W: fmt::Write> std::io::Write for Adapter<'_, W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            // serde_json writes whole UTF-8 pieces of the string it was given.
            let text = std::str::from_utf8(buf).map_err(std::io::Error::other)?;
            self.0.write_str(text).map_err(std::io::Error::other)?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Adapter(out), value).map_err(|_| fmt::Error)
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
        start_at(json, LevelFilter::INFO)
    }

    pub(crate) fn start_at(
        json: bool,
        level: LevelFilter,
    ) -> (tracing::subscriber::DefaultGuard, Buffer) {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let guard =
            tracing::subscriber::set_default(subscriber(json, level, move || writer.clone()));
        tracing::callsite::rebuild_interest_cache();
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
    fn lines_are_one_json_object_each() {
        let out = capture(true, || {
            tracing::error!(
                event = "callback",
                errorCode = 10023,
                _aws = r#"{"a":[1,"x"]}"#,
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
        assert_eq!(record["event"], "callback");
        assert_eq!(record["errorCode"], 10023);
        assert_eq!(record["_aws"]["a"][1], "x");
        assert_eq!(record["note"], "say \"hi\"\n");
        assert_eq!(record["message"], "message 1");
        assert!(record["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn a_json_field_that_is_not_json_stays_a_string() {
        let out = capture(true, || tracing::info!(_aws = "{not json"));
        let record: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(record["_aws"], "{not json");
    }

    /// The lines that keep an exception come out as made, in the text format too, and at any
    /// level the environment can set.
    #[test]
    fn records_are_json_lines_whatever_the_format_and_level() {
        let line = r#"{"event":"publish_failed","envelope":{"a":1}}"#;
        for json in [true, false] {
            let (guard, buffer) = super::capture::start_at(json, super::LevelFilter::ERROR);
            tracing::info!(event = "callback", "dropped at this level");
            tracing::error!(target: crate::record::TARGET, record = line);
            drop(guard);
            assert_eq!(buffer.text(), format!("{line}\n"), "json: {json}");
        }
        for (value, level) in [
            ("OFF", super::LevelFilter::ERROR),
            ("fatal", super::LevelFilter::ERROR),
            ("warn", super::LevelFilter::WARN),
            (" DEBUG ", super::LevelFilter::DEBUG),
        ] {
            assert_eq!(super::parse_level(value), Some(level), "{value}");
        }
        assert_eq!(super::parse_level("loud"), None);
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
