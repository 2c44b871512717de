//! `im-exception-replay [FILE]...`: republishes the envelopes of the function's `publish_failed`
//! log records, read from the files given (`-` for standard input) or from standard input when
//! none are, to the topics configured by the function's own environment variables.
//!
//! One line per record goes to standard error; the last line on standard output is
//! `replayed N, failed M`. Exit status: 0 when nothing failed, 1 when something did, 2 when the
//! input or the configuration could not be read (nothing is published then).

use im_exception_webhook::config::Topics;
use im_exception_webhook::publish::{self, SnsPublisher};
use im_exception_webhook::record_source::{self, Scan};
use im_exception_webhook::republish::{self, Options};
use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: im-exception-replay [FILE]...

Republishes the envelopes of the webhook's publish_failed log records to the SNS topics of
their categories. FILE holds the function's JSON log lines, or what `aws logs
filter-log-events` prints (pages may be concatenated); with no FILE, or when FILE is -,
standard input is read. Configuration: the function's environment variables (IM_SDK_APP_ID,
TOPIC_ARN_*, PUBLISH_TIMEOUT_MS) and the standard AWS ones (AWS_REGION, credentials,
AWS_ENDPOINT_URL). Prints `replayed N, failed M`; exits non-zero when M > 0.";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut names: Vec<String> = std::env::args().skip(1).collect();
    if names.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if names.is_empty() {
        names.push("-".into());
    }

    // Everything is read before anything is published, so a bad argument publishes nothing.
    let mut scan = Scan::default();
    for name in &names {
        match read(name) {
            Ok(text) => scan.extend(record_source::scan(display_name(name), &text)),
            Err(e) => {
                eprintln!("im-exception-replay: cannot read {name}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let topics = match Topics::from_env() {
        Ok(topics) => topics,
        Err(e) => {
            eprintln!("im-exception-replay: {e}");
            return ExitCode::from(2);
        }
    };

    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    let client = publish::sns_client(loader).await;
    let publisher = SnsPublisher::new(client, Duration::from_secs(10));
    let summary = republish::republish(
        &scan,
        &topics,
        &publisher,
        Options::default(),
        &mut std::io::stderr(),
    )
    .await;
    if summary.skipped > 0 || summary.repeated > 0 {
        eprintln!(
            "skipped {} lines or values that are not publish_failed records; {} repeated records",
            summary.skipped, summary.repeated
        );
    }
    println!("{summary}");
    if summary.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn display_name(name: &str) -> &str {
    if name == "-" { "stdin" } else { name }
}

/// The text of a file, or of standard input for `-`. Invalid UTF-8 (never part of a record,
/// whose JSON is UTF-8) is replaced rather than refused.
fn read(name: &str) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    if name == "-" {
        std::io::stdin().read_to_end(&mut bytes)?;
    } else {
        bytes = std::fs::read(name)?;
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
