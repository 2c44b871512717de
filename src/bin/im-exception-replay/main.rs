//! `im-exception-replay`: republishes the envelopes of the function's `publish_failed` log
//! records, read from files or standard input, from the log group, or from the redrive
//! function's dead-letter queue, to the topics configured by the function's own variables.
//! See [`args::USAGE`].

mod args;
mod logs;
mod queue;

use args::{Command, Source};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use im_exception_webhook::config::Topics;
use im_exception_webhook::publish::{self, SnsPublisher};
use im_exception_webhook::record_source::{self, Scan};
use im_exception_webhook::republish::{self, Options, Summary};
use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Each record's publish, retries included. An operator can wait longer than Chat does.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);

/// The arguments, the input or the configuration could not be read.
const UNREADABLE: u8 = 2;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (dry_run, source) = match args::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Replay { dry_run, source }) => (dry_run, source),
        Err(e) => return unreadable(&format!("{e}\n\n{}", args::USAGE)),
    };
    let topics = match Topics::from_env() {
        Ok(topics) => topics,
        Err(e) => return unreadable(&e.to_string()),
    };
    // Files need no AWS call to be read: read them before anything else, as before.
    let files = match &source {
        Source::Files(names) => match read_files(names) {
            Ok(scan) => Some(scan),
            Err(e) => return unreadable(&e),
        },
        _ => None,
    };

    // The chain of a person's machine: environment, profile (AWS_PROFILE), SSO,
    // credential_process. One configuration, so every client uses the same credentials.
    let sdk = publish::sdk_config(aws_config::defaults(BehaviorVersion::latest())).await;
    if sdk.region().is_none() {
        return unreadable("no AWS region: set AWS_REGION, or a region in the profile");
    }
    let publisher = SnsPublisher::new(aws_sdk_sns::Client::new(&sdk), PUBLISH_DEADLINE);
    let options = Options {
        dry_run,
        stop_after_failure: false,
    };
    let report = &mut std::io::stderr();

    let (summary, status) = match source {
        Source::Files(_) => {
            let scan = files.unwrap_or_default();
            let summary = republish::republish(&scan, &topics, &publisher, options, report).await;
            (summary, outcome(&summary, 0))
        }
        Source::LogGroup { name, since, until } => {
            let now = now_millis();
            let (start, end) = (since.millis(now), until.map_or(now, |u| u.millis(now)));
            if start > end {
                return unreadable("--since is later than --until");
            }
            let client = aws_sdk_cloudwatchlogs::Client::from_conf(
                aws_sdk_cloudwatchlogs::config::Builder::from(&sdk)
                    .retry_config(sdk_retries())
                    .build(),
            );
            let scan = match logs::read(&client, &name, start, end).await {
                Ok(scan) => scan,
                Err(e) => return unreadable(&e),
            };
            let summary = republish::republish(&scan, &topics, &publisher, options, report).await;
            (summary, outcome(&summary, 0))
        }
        Source::Queue { url } => {
            let sqs = aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(&sdk)
                    .retry_config(sdk_retries())
                    .build(),
            );
            let drain = queue::Drain {
                sqs: &sqs,
                url: &url,
                topics: &topics,
                publisher: &publisher,
                dry_run,
            };
            let drained = drain.run(report).await;
            eprintln!(
                "queue: {} messages deleted, {} left because something in them failed",
                drained.deleted, drained.kept
            );
            let status = match &drained.error {
                Some(e) => {
                    eprintln!("im-exception-replay: {e}");
                    ExitCode::from(UNREADABLE)
                }
                None => outcome(&drained.summary, drained.kept),
            };
            (drained.summary, status)
        }
    };
    if summary.skipped > 0 || summary.repeated > 0 {
        eprintln!(
            "skipped {} lines or values that are not publish_failed records; {} repeated records",
            summary.skipped, summary.repeated
        );
    }
    println!("{summary}");
    status
}

fn outcome(summary: &Summary, messages_kept: usize) -> ExitCode {
    if summary.failed > 0 || messages_kept > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn unreadable(problem: &str) -> ExitCode {
    eprintln!("im-exception-replay: {problem}");
    ExitCode::from(UNREADABLE)
}

/// The SDK's standard retries, off in the shared configuration for SNS (which has its own
/// policy): reading logs and the queue should ride out throttling, FilterLogEvents allowing
/// only a few calls a second.
fn sdk_retries() -> RetryConfig {
    RetryConfig::standard()
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Every file, read before anything is published, so a bad name publishes nothing.
fn read_files(names: &[String]) -> Result<Scan, String> {
    let mut scan = Scan::default();
    for name in names {
        let text = read(name).map_err(|e| format!("cannot read {name}: {e}"))?;
        let shown = if name == "-" { "stdin" } else { name };
        scan.extend(record_source::scan(shown, &text));
    }
    Ok(scan)
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
