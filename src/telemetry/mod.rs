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

/// Writes `line` as one JSON line on standard output, in one write, so lines of invocations
/// running at once (Lambda Managed Instances) never interleave.
pub fn emit(line: &impl Serialize) {
    let mut bytes = serde_json::to_vec(line).expect("log lines always serialize");
    bytes.push(b'\n');
    // Nothing useful can be done if standard output is gone.
    let _ = std::io::stdout().lock().write_all(&bytes);
}

/// Diagnostics (configuration errors, `auth_disabled`, a failed secret refresh) the way the
/// Lambda runtime sets them up: `AWS_LAMBDA_LOG_FORMAT` and `AWS_LAMBDA_LOG_LEVEL` (or
/// `RUST_LOG`) honoured.
pub fn init() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// The configuration, or one error line naming the variable and the end of the cold start:
/// Lambda reports the init failure, and nothing is accepted that could not be handled.
pub fn or_exit<T, E: std::fmt::Display>(loaded: Result<T, E>) -> T {
    loaded.unwrap_or_else(|error| {
        tracing::error!(event = "config_error", "{error}");
        std::process::exit(1);
    })
}
