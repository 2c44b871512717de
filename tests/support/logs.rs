//! Captures the production JSON log records of one test.
//!
//! The subscriber is installed with `set_default`, which is thread-local: tests that capture
//! logs use the default current-thread `#[tokio::test]` runtime, so every poll of the handler
//! happens on the test's thread.

use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::fmt::MakeWriter;

/// A shared, growable buffer the subscriber writes into.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

/// Writes through to [`Logs`].
pub struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter(Arc::clone(&self.0))
    }
}

impl Logs {
    /// Installs the production JSON subscriber (INFO) on this thread until the guard drops.
    pub fn capture() -> (Logs, DefaultGuard) {
        let logs = Logs::default();
        let subscriber =
            im_exception_webhook::logging::subscriber(true, LevelFilter::INFO, logs.clone());
        // tracing caches, across threads, a callsite met while no subscriber was interested as
        // "never". A process-wide sink keeps every callsite interesting for the tests that run
        // code without capturing, and the rebuild mends what was cached before it existed.
        static SINK: std::sync::Once = std::sync::Once::new();
        SINK.call_once(|| {
            let sink =
                im_exception_webhook::logging::subscriber(true, LevelFilter::INFO, std::io::sink);
            let _ = tracing::subscriber::set_global_default(sink);
        });
        let guard = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        (logs, guard)
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("log output is UTF-8")
    }

    /// Every record, each line parsed as one JSON object.
    pub fn records(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// The records whose `event` field is `event`.
    pub fn events(&self, event: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["event"] == event)
            .collect()
    }

    /// The one `callback` record whose outcome is `rejected`; there must be exactly one.
    #[track_caller]
    pub fn rejection(&self) -> Value {
        let mut rejected: Vec<Value> = self
            .events("callback")
            .into_iter()
            .filter(|r| r["outcome"] == "rejected")
            .collect();
        assert_eq!(rejected.len(), 1, "one rejected record: {}", self.text());
        rejected.pop().unwrap()
    }
}

/// The envelope a record carries for replay: written into the line as a JSON object (the
/// production log format embeds it), or, failing that, as a string holding JSON.
pub fn envelope(record: &Value) -> Value {
    match &record["envelope"] {
        Value::Object(_) => record["envelope"].clone(),
        Value::String(s) => serde_json::from_str(s)
            .unwrap_or_else(|e| panic!("the logged envelope is not JSON ({e}): {s}")),
        other => panic!("the record carries no envelope ({other}): {record}"),
    }
}
