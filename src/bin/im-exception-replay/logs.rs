//! Reading the records straight from the function's log group.

use aws_sdk_cloudwatchlogs::error::DisplayErrorContext;
use im_exception_webhook::envelope::Rfc3339Millis;
use im_exception_webhook::record_source::{self, Scan};
use std::time::{Duration, UNIX_EPOCH};

/// What the metric filter and the alarm match too. CloudWatch Logs does the filtering where it
/// can; a server that ignores the pattern (moto) returns every event, and [`record_source::scan`]
/// skips what is not a record, so the outcome is the same.
pub const FILTER_PATTERN: &str = r#"{ $.event = "publish_failed" }"#;

/// Every `publish_failed` record of `log_group` logged from `start_ms` to `end_ms` (inclusive,
/// milliseconds since the epoch), all pages of it. Each log event is one log line, named
/// `GROUP/STREAM@TIME` in the report.
pub async fn read(
    client: &aws_sdk_cloudwatchlogs::Client,
    log_group: &str,
    start_ms: i64,
    end_ms: i64,
) -> Result<Scan, String> {
    let mut pages = client
        .filter_log_events()
        .log_group_name(log_group)
        .filter_pattern(FILTER_PATTERN)
        .start_time(start_ms)
        .end_time(end_ms)
        .into_paginator()
        .send();
    let mut found = Scan::default();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            format!(
                "cannot read log group {log_group}: {}",
                DisplayErrorContext(e)
            )
        })?;
        for event in page.events() {
            let Some(message) = event.message() else {
                continue;
            };
            let name = event_name(
                log_group,
                event.log_stream_name().unwrap_or("?"),
                event.timestamp(),
            );
            found.extend(record_source::scan(&name, message));
        }
    }
    Ok(found)
}

/// The stream and the time say where to look in the console; the event id would not.
fn event_name(log_group: &str, stream: &str, timestamp_ms: Option<i64>) -> String {
    match timestamp_ms.and_then(|ms| u64::try_from(ms).ok()) {
        Some(ms) => {
            let at = Rfc3339Millis(UNIX_EPOCH + Duration::from_millis(ms));
            format!("{log_group}/{stream}@{at}")
        }
        None => format!("{log_group}/{stream}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_named_by_group_stream_and_time() {
        assert_eq!(
            event_name(
                "/aws/lambda/im",
                "2026/12/01/[$LATEST]abc",
                Some(1_796_119_200_123)
            ),
            "/aws/lambda/im/2026/12/01/[$LATEST]abc@2026-12-01T10:00:00.123Z"
        );
        assert_eq!(event_name("g", "s", None), "g/s");
    }
}
