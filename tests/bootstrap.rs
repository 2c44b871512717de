//! The webhook's binary as Lambda runs it (`Lambda::webhook`: a local Runtime API, nothing in
//! its environment but what the test gives it): what a cold start says about its
//! configuration, and the last-resort record on standard output whatever Lambda's log settings.
//!
//! No moto here: every AWS endpoint is a closed loopback port, so SNS and the retry queue are
//! unreachable, and nothing else is needed to start.
//!
//! Run with `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --all-features --test bootstrap`.

mod support;

use serde_json::{Value, json};
use std::collections::HashMap;
use support::moto::closed_url;
use support::{ACK, Call, Lambda, TOKEN, callback};

const GROUP: &str = "@TGS#2J4SZEAEL";
/// A key in the upstream URL's query, as a backend may require: never shown, as the token.
const UPSTREAM_KEY: &str = "upstream-k3y-never-shown";

/// A complete configuration on made-up topics (nothing is published in this file), signed
/// with [`TOKEN`], and `changes` on top: `None` removes a variable.
fn env(changes: &[(&str, Option<&str>)]) -> HashMap<String, String> {
    let signed = [
        ("IM_CALLBACK_TOKEN", Some(TOKEN)),
        ("PUBLISH_TIMEOUT_MS", Some("300")),
    ];
    support::made_up_env(&[&signed[..], changes].concat())
}

/// The longest run of `c` in `text`.
fn longest_run(text: &str, c: char) -> usize {
    text.split(|x| x != c).map(str::len).max().unwrap_or(0)
}

#[tokio::test]
async fn a_missing_or_malformed_variable_stops_the_cold_start_with_one_line_naming_it() {
    // 5,000 characters of one letter, which no message of the function contains in a row.
    let overlong = "q".repeat(5000);
    let plain_http = format!("http://backend.example/cb?key={UPSTREAM_KEY}");
    let cases = [
        ("IM_SDK_APP_ID", None),
        ("IM_SDK_APP_ID", Some("14000x")),
        ("TOPIC_ARN_MUTED_SENDER", None),
        ("TOPIC_ARN_FREQUENCY_LIMIT", Some("frequency-limit-topic")),
        ("MAX_BODY_BYTES", Some("65537")),
        ("PUBLISH_TIMEOUT_MS", Some("1901")),
        ("PUBLISH_TIMEOUT_MS", Some("soon")),
        // Beside IM_CALLBACK_TOKEN, which `env` sets.
        ("IM_CALLBACK_TOKEN_SECRET", Some("im/callback-token")),
        ("ERROR_CODE_OVERRIDES", Some(overlong.as_str())),
        // Every forward carries a valid Sign: plain HTTP only to a loopback host.
        ("UPSTREAM_CALLBACK_URL", Some(plain_http.as_str())),
    ];
    for (variable, value) in cases {
        let mut lambda = Lambda::webhook(&closed_url(), &env(&[(variable, value)])).await;
        let line = lambda.process.assert_configuration_error(variable).await;
        for secret in [TOKEN, UPSTREAM_KEY] {
            assert!(!line.contains(secret), "{secret} shown: {line}");
        }
        assert!(
            longest_run(&line, 'q') <= 100 && line.len() < 500,
            "{variable}: at most 100 characters of the value are quoted ({} bytes): {line}",
            line.len()
        );
    }
}

/// Without a token the function still starts (the template asks for an explicit
/// `AllowUnsignedCallbacks=true`), and says so once, at cold start, not per invocation; with a
/// token it says nothing of the kind.
#[tokio::test]
async fn without_a_token_one_auth_disabled_warning_at_cold_start_and_none_with_one() {
    for token in [None, Some(TOKEN)] {
        let mut lambda =
            Lambda::webhook(&closed_url(), &env(&[("IM_CALLBACK_TOKEN", token)])).await;
        for _ in 0..2 {
            let mut call = Call::command("Group.CallbackAfterSendMsg", "{}");
            if let Some(token) = token {
                call = call.signed(token);
            }
            lambda.invoke(&call.http_api()).await.assert_acknowledged();
        }
        let stdout = lambda
            .process
            .stdout_when(|lines| lines.iter().filter(|l| l.contains("other_command")).count() >= 2)
            .await;
        let lines = lambda.process.lines();
        let warnings: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("auth_disabled"))
            .collect();
        match token {
            None => {
                assert_eq!(warnings.len(), 1, "{lines:#?}");
                let warning: Value = serde_json::from_str(warnings[0]).expect("a JSON line");
                assert_eq!(warning["level"], "WARN", "{warning}");
                assert_eq!(
                    stdout.iter().position(|l| l.contains("auth_disabled")),
                    Some(0),
                    "before any invocation: {stdout:#?}"
                );
            }
            Some(_) => assert!(warnings.is_empty(), "{lines:#?}"),
        }
    }
}

/// One run under `format` and `level`: another command (an INFO line), then an exception with
/// SNS and the retry queue unreachable (503, the record). Standard output once the record is
/// there.
async fn last_resort_under(format: &str, level: &str) -> Vec<String> {
    let retry_queue = "https://sqs.us-east-1.amazonaws.com/123456789012/retry";
    let mut lambda = Lambda::webhook(
        &closed_url(),
        &env(&[
            ("AWS_LAMBDA_LOG_FORMAT", Some(format)),
            ("AWS_LAMBDA_LOG_LEVEL", Some(level)),
            ("RETRY_QUEUE_URL", Some(retry_queue)),
        ]),
    )
    .await;
    let other = Call::command("Group.CallbackAfterSendMsg", "{}").signed(TOKEN);
    lambda.invoke(&other.http_api()).await.assert_acknowledged();
    let exception = Call::chat(callback(json!(10023), GROUP).to_string()).signed(TOKEN);
    lambda
        .invoke(&exception.http_api())
        .await
        .assert_fail(503, 5030);
    lambda
        .process
        .stdout_when(|lines| lines.iter().any(|l| l.contains("publish_failed")))
        .await
}

/// The record is the only copy of the exception: one JSON line on standard output at level
/// FATAL, which no application log level drops, whatever format and level Lambda is told; and
/// every data line that carries metrics is EMF that CloudWatch accepts.
#[tokio::test]
async fn the_last_resort_record_is_one_fatal_json_line_on_stdout_whatever_the_log_settings() {
    for (format, level) in [
        ("JSON", "ERROR"),
        ("JSON", "FATAL"),
        ("Text", "ERROR"),
        ("Text", "FATAL"),
    ] {
        let settings = format!("AWS_LAMBDA_LOG_FORMAT={format} AWS_LAMBDA_LOG_LEVEL={level}");
        let stdout = last_resort_under(format, level).await;
        let records: Vec<&String> = stdout
            .iter()
            .filter(|l| l.contains("publish_failed"))
            .collect();
        assert_eq!(records.len(), 1, "{settings}: {stdout:#?}");
        let record: Value = serde_json::from_str(records[0]).unwrap_or_else(|e| {
            panic!(
                "{settings}: the record is one JSON line ({e}): {}",
                records[0]
            )
        });
        assert_eq!(
            (record["event"].as_str(), record["level"].as_str()),
            (Some("publish_failed"), Some("FATAL")),
            "{settings}"
        );
        // What it holds is checked whole in tests/faults.rs and tests/size.rs.
        support::schema::check_queued_publish(&record["publish"]);
        let reason = record["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("SNS: ") && reason.contains("retry queue: "),
            "{settings}: both failures are named: {reason}"
        );

        let data: Vec<Value> = stdout
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l.get("event").is_some())
            .collect();
        let metrics = support::emf::assert_valid(&data);
        assert!(
            metrics.contains(&vec!["Exceptions".to_owned(), "PublishFailures".to_owned()]),
            "{settings}: {metrics:?}"
        );
        assert!(
            !stdout.iter().any(|l| l.contains(ACK)),
            "answers are not log lines"
        );
    }
}
