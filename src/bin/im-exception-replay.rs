//! `im-exception-replay`: the last resort's tool. Republishes the `publish` of the webhook's
//! `publish_failed` records, read from its log group, from files or from standard input.

use clap::Parser;
use im_exception_webhook::adapters::{aws, sns};
use im_exception_webhook::handlers::replay::{self, Found};
use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Republishes the webhook's publish_failed records exactly as the webhook would have published
/// them. Exit status: 0 when nothing failed, 1 when something did, 2 when the input could not
/// be read.
#[derive(Parser)]
#[command(name = "im-exception-replay", version)]
struct Args {
    /// Files of the webhook's log lines (one JSON record per line, any prefix before it);
    /// `-` or none: standard input.
    #[arg(conflicts_with = "log_group")]
    files: Vec<String>,
    /// Read the records of this CloudWatch Logs group instead (FilterLogEvents).
    #[arg(long, requires = "since")]
    log_group: Option<String>,
    /// From when: a duration ago (30m, 6h, 2d) or an RFC 3339 time (2026-12-01T10:00:00Z).
    #[arg(long, value_parser = when, requires = "log_group")]
    since: Option<SystemTime>,
    /// Until when (default: now), in the same forms.
    #[arg(long, value_parser = when, requires = "log_group")]
    until: Option<SystemTime>,
    /// Print what would be published; publish nothing (needs no credentials for files).
    #[arg(long)]
    dry_run: bool,
}

fn when(value: &str) -> Result<SystemTime, String> {
    if let Ok(ago) = humantime::parse_duration(value) {
        return Ok(SystemTime::now() - ago);
    }
    humantime::parse_rfc3339_weak(value)
        .map_err(|_| format!("{value:?} is neither a duration (30m, 6h, 2d) nor an RFC 3339 time"))
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d: Duration| d.as_millis() as i64)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    // The chain of a person's machine: environment, profile (AWS_PROFILE), SSO, credential_process.
    let loader = || aws_config::defaults(aws_config::BehaviorVersion::latest());
    let found: Result<Vec<Found>, String> = match &args.log_group {
        Some(group) => {
            let sdk = aws::sdk_config(loader()).await;
            let client = aws_sdk_cloudwatchlogs::Client::new(&sdk);
            let (since, until) = (
                args.since.unwrap_or(UNIX_EPOCH),
                args.until.unwrap_or_else(SystemTime::now),
            );
            replay::read_log_group(&client, group, millis(since), millis(until)).await
        }
        None => read_files(&args.files),
    };
    let found = match found {
        Ok(found) => found,
        Err(problem) => {
            eprintln!("im-exception-replay: {problem}");
            return ExitCode::from(2);
        }
    };
    let report = &mut std::io::stderr();
    let summary = if args.dry_run {
        replay::replay(found, None::<&aws_sdk_sns::Client>, report).await
    } else {
        let sdk = aws::sdk_config(loader()).await;
        replay::replay(found, Some(&sns::patient_client(&sdk)), report).await
    };
    println!("{summary}");
    if summary.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Every file, read before anything is published, so a bad name publishes nothing.
fn read_files(names: &[String]) -> Result<Vec<Found>, String> {
    let stdin = ["-".to_owned()];
    let names = if names.is_empty() { &stdin[..] } else { names };
    let mut found = Vec::new();
    for name in names {
        let mut bytes = Vec::new();
        let read = match name.as_str() {
            "-" => std::io::stdin().read_to_end(&mut bytes).map(|_| ()),
            path => std::fs::read(path).map(|b| bytes = b),
        };
        read.map_err(|e| format!("cannot read {name}: {e}"))?;
        let shown = if name == "-" { "stdin" } else { name };
        found.extend(replay::records(shown, &String::from_utf8_lossy(&bytes)));
    }
    Ok(found)
}
