//! What the functions tell their operators: typed log lines, each one JSON object on one line of
//! standard output, with their CloudWatch metrics embedded (EMF); and `tracing` for diagnostics.
//!
//! The data lines bypass `tracing`: they are the product's own output (metrics, the last-resort
//! record), one JSON line whatever `AWS_LAMBDA_LOG_FORMAT` and `AWS_LAMBDA_LOG_LEVEL` say, and
//! a typed value serialized once is all they need.

pub mod emf;
pub mod lines;

use serde::Serialize;
use std::io::Write;
use tracing_subscriber::filter::LevelFilter;

/// Writes `line` as one JSON line on standard output, in one write, so lines of invocations
/// running at once (Lambda Managed Instances) never interleave.
pub fn emit(line: &impl Serialize) {
    let mut bytes = serde_json::to_vec(line).expect("log lines always serialize");
    bytes.push(b'\n');
    // Nothing useful can be done if standard output is gone.
    let _ = std::io::stdout().lock().write_all(&bytes);
}

/// Diagnostics (configuration errors, `auth_disabled`, a failed secret refresh, the SDK's own)
/// the way the Lambda runtime's `init_default_subscriber` sets them up: `AWS_LAMBDA_LOG_LEVEL`
/// (else `RUST_LOG`, else INFO) and `AWS_LAMBDA_LOG_FORMAT` (JSON or text). Written here rather
/// than called: the runtime's version filters with `EnvFilter`, whose regex engine made the
/// bootstrap 1.1 MB larger and its cold start measurably slower (docs/performance.md), for
/// per-module directives a Lambda function's log level never uses.
pub fn init() {
    let level = ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
        .iter()
        .find_map(|name| std::env::var(name).ok())
        .and_then(|level| match level.trim().to_ascii_uppercase().as_str() {
            // Lambda's FATAL has no `tracing` level: its nearest is ERROR.
            "FATAL" => Some(LevelFilter::ERROR),
            other => other.parse().ok(),
        })
        .unwrap_or(LevelFilter::INFO);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .without_time();
    if json {
        subscriber.json().init()
    } else {
        subscriber.init()
    }
}

/// The configuration, or one error line naming the variable and the end of the cold start:
/// Lambda reports the init failure, and nothing is accepted that could not be handled.
pub fn or_exit<T, E: std::fmt::Display>(loaded: Result<T, E>) -> T {
    loaded.unwrap_or_else(|error| {
        tracing::error!(event = "config_error", "{error}");
        std::process::exit(1);
    })
}
