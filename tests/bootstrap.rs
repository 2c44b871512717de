//! The release artefact as Lambda runs it: the `bootstrap` binary under a Lambda Runtime API,
//! configured only through its environment, answering API Gateway events and writing its
//! log records to standard output.

mod support;

use im_exception_webhook::EXCEPTION_COMMAND;
use serde_json::{Value, json};
use std::collections::HashMap;
use support::Call;
use support::bootstrap::{Bootstrap, WEBHOOK, lambda_env};
use support::runtime_api::RuntimeApi;

const TOKEN: &str = "bootstrap-test-token";

/// What Lambda sets, plus the function's configuration; SNS points at `sns`.
fn webhook_env(api: &RuntimeApi, sns: &str) -> HashMap<String, String> {
    let topic = |name: &str| format!("arn:aws:sns:us-east-1:123456789012:{name}");
    let mut env = lambda_env(api, "im-exception-webhook", sns);
    env.extend(
        [
            ("IM_SDK_APP_ID", support::SDK_APP_ID.into()),
            ("IM_CALLBACK_TOKEN", TOKEN.into()),
            ("PUBLISH_TIMEOUT_MS", "500".into()),
            ("TOPIC_ARN_INVALID_GROUP", topic("ig")),
            ("TOPIC_ARN_FREQUENCY_LIMIT", topic("fl")),
            ("TOPIC_ARN_CONTENT_FILTER", topic("cf")),
            ("TOPIC_ARN_MUTED_SENDER", topic("ms")),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    env
}

/// Chat's unsigned POST of `command` with `body`, from an Android client.
fn from_android(command: &str, body: &str) -> Call {
    Call::command(command, body).set_param("OptPlatform", "Android")
}

/// Another command than the exception callback, signed: acknowledged.
fn other_command() -> Call {
    Call::command("Group.CallbackAfterSendMsg", "{}").signed(TOKEN)
}

/// The API Gateway response the bootstrap posted for `call`, as an HTTP API event: status and
/// parsed body.
async fn answer(api: &mut RuntimeApi, call: &Call) -> (u64, Value) {
    let response = api.call(&call.http_api()).await;
    let body = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    (response["statusCode"].as_u64().unwrap(), body)
}

/// A loopback port with nothing listening: SNS refusing connections.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

#[tokio::test]
async fn answers_chat_and_keeps_what_it_could_not_publish() {
    let mut api = RuntimeApi::start().await;
    let bootstrap = Bootstrap::spawn(WEBHOOK, &webhook_env(&api, &closed_port()));

    let (status, body) = answer(&mut api, &other_command()).await;
    assert_eq!(
        (status, body.clone()),
        (
            200,
            json!({"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0})
        )
    );

    let (status, body) = answer(&mut api, &from_android(EXCEPTION_COMMAND, "{}")).await;
    assert_eq!(status, 401, "unsigned while a token is configured: {body}");

    let callback = FREQUENCY_LIMIT;
    let call = from_android(EXCEPTION_COMMAND, callback).signed(TOKEN);
    let (status, body) = answer(&mut api, &call).await;
    assert_eq!(status, 503);
    assert_eq!(body["ActionStatus"], "FAIL");

    let lines = bootstrap.lines();
    let records: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(
        records.len(),
        lines.len(),
        "every log line is JSON: {lines:#?}"
    );
    let failed: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "publish_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{lines:#?}");
    assert_eq!(failed[0]["category"], "frequency_limit");
    assert_eq!(
        failed[0]["topicArn"],
        "arn:aws:sns:us-east-1:123456789012:fl"
    );
    let envelope = &failed[0]["envelope"];
    assert_eq!(envelope["errorCode"], 10023);
    assert_eq!(envelope["optPlatform"], "Android");
    assert_eq!(
        envelope["callback"],
        serde_json::from_str::<Value>(callback).unwrap()
    );

    let sign = call.param_value("Sign").unwrap();
    for line in &lines {
        assert!(
            !line.contains(TOKEN) && !line.contains(sign),
            "secret in the log: {line}"
        );
    }
}

#[tokio::test]
async fn a_missing_or_malformed_variable_stops_the_cold_start_naming_it() {
    for (variable, value) in [
        ("IM_SDK_APP_ID", None),
        ("TOPIC_ARN_MUTED_SENDER", None),
        ("TOPIC_ARN_FREQUENCY_LIMIT", Some("frequency-limit-topic")),
        ("PUBLISH_TIMEOUT_MS", Some("soon")),
    ] {
        let api = RuntimeApi::start().await;
        let mut env = webhook_env(&api, &closed_port());
        env.remove(variable);
        if let Some(value) = value {
            env.insert(variable.into(), value.into());
        }
        let mut bootstrap = Bootstrap::spawn(WEBHOOK, &env);
        bootstrap.assert_configuration_error(variable).await;
    }
}

/// A frequency-limit exception (its topic is configured) and an unclassified one (no topic:
/// `webhook_env` leaves TOPIC_ARN_UNCLASSIFIED unset, so its log line is where it is kept).
const FREQUENCY_LIMIT: &str = r#"{"CallbackCommand":"Group.CallbackSendMsgException","GroupId":"@TGS#2J4SZEAEL","From_Account":"jared","Random":7,"ErrorCode":"10023","EventTime":"1670574414123"}"#;
const UNCLASSIFIED: &str = r#"{"CallbackCommand":"Group.CallbackSendMsgException","GroupId":"@TGS#2J4SZEAEL","From_Account":"jared","Random":8,"ErrorCode":12345,"EventTime":"1670574414124"}"#;

/// What one run of the bootstrap under a log configuration wrote to standard output, after
/// another command (an INFO line), the frequency-limit exception with SNS unreachable (503)
/// and the unclassified one (200).
async fn stdout_under(format: Option<&str>, level: Option<&str>) -> Vec<String> {
    let mut api = RuntimeApi::start().await;
    let mut env = webhook_env(&api, &closed_port());
    env.remove("AWS_LAMBDA_LOG_FORMAT");
    if let Some(format) = format {
        env.insert("AWS_LAMBDA_LOG_FORMAT".into(), format.into());
    }
    if let Some(level) = level {
        env.insert("AWS_LAMBDA_LOG_LEVEL".into(), level.into());
    }
    let bootstrap = Bootstrap::spawn(WEBHOOK, &env);

    assert_eq!(answer(&mut api, &other_command()).await.0, 200);
    let exception = |body| from_android(EXCEPTION_COMMAND, body).signed(TOKEN);
    let (status, body) = answer(&mut api, &exception(FREQUENCY_LIMIT)).await;
    assert_eq!((status, &body["ErrorCode"]), (503, &json!(5030)), "{body}");
    let (status, body) = answer(&mut api, &exception(UNCLASSIFIED)).await;
    assert_eq!(status, 200, "{body}");

    // Both lines were written before the answers were posted; give the pipe reader a moment.
    bootstrap
        .stdout_when(|lines| {
            let kept = lines.iter().filter(|l| {
                l.contains(r#""event":"publish_failed""#) || l.contains(r#""outcome":"logged""#)
            });
            kept.count() >= 2
        })
        .await
}

/// The lines of `stdout` that are one JSON object each, parsed, with `field` equal to `value`.
fn json_lines_with<'a>(stdout: &'a [String], field: &str, value: &str) -> Vec<(&'a str, Value)> {
    stdout
        .iter()
        .filter_map(|l| Some((l.as_str(), serde_json::from_str::<Value>(l).ok()?)))
        .filter(|(_, v)| v[field] == value)
        .collect()
}

/// The exceptions' lines are on standard output as one JSON line each, whatever the format and
/// level: the publish_failed record, which `record_source::scan` reads back whole, and the
/// unclassified exception's line, which keeps its envelope.
#[track_caller]
fn assert_exceptions_kept(stdout: &[String], configuration: &str) {
    let text = stdout.join("\n");
    let found = im_exception_webhook::record_source::scan("stdout", &text);
    assert_eq!(found.records.len(), 1, "{configuration}: {stdout:#?}");
    let record = found.records[0].as_ref().expect("a readable record");
    assert_eq!(
        record.topic_arn.as_deref(),
        Some("arn:aws:sns:us-east-1:123456789012:fl")
    );
    let envelope: Value = serde_json::from_str(&record.envelope).unwrap();
    assert_eq!(
        envelope["callback"],
        serde_json::from_str::<Value>(FREQUENCY_LIMIT).unwrap(),
        "{configuration}"
    );
    assert_eq!(envelope["optPlatform"], "Android");

    let failed = json_lines_with(stdout, "event", "publish_failed");
    assert_eq!(
        failed.len(),
        1,
        "{configuration}: one JSON line: {stdout:#?}"
    );
    assert_eq!(failed[0].1["level"], "FATAL");
    assert!(
        im_exception_webhook::metrics::validate_emf(&failed[0].1).is_ok(),
        "{configuration}: the EMF metadata is whole"
    );

    let logged = json_lines_with(stdout, "outcome", "logged");
    assert_eq!(logged.len(), 1, "{configuration}: {stdout:#?}");
    let line = &logged[0].1;
    assert_eq!(line["category"], "unclassified");
    assert_eq!(
        line["envelope"]["callback"],
        serde_json::from_str::<Value>(UNCLASSIFIED).unwrap(),
        "{configuration}"
    );
}

#[tokio::test]
async fn with_the_text_log_format_the_exceptions_are_still_json_lines_on_stdout() {
    let stdout = stdout_under(Some("Text"), None).await;
    assert_exceptions_kept(&stdout, "AWS_LAMBDA_LOG_FORMAT=Text");
    // The format did apply to the other lines: the acknowledged command's line is text.
    let other: Vec<&String> = stdout
        .iter()
        .filter(|l| l.contains("other_command"))
        .collect();
    assert_eq!(other.len(), 1, "{stdout:#?}");
    assert!(
        serde_json::from_str::<Value>(other[0]).is_err(),
        "a text line: {}",
        other[0]
    );
}

#[tokio::test]
async fn at_log_level_error_the_exceptions_are_still_json_lines_on_stdout() {
    let stdout = stdout_under(Some("JSON"), Some("ERROR")).await;
    assert_exceptions_kept(&stdout, "AWS_LAMBDA_LOG_LEVEL=ERROR");
    // The level did apply to the other lines: the INFO line of the other command is gone.
    assert!(
        !stdout.iter().any(|l| l.contains("other_command")),
        "{stdout:#?}"
    );
}

#[tokio::test]
async fn at_log_level_fatal_the_exceptions_are_still_json_lines_on_stdout() {
    let stdout = stdout_under(Some("JSON"), Some("FATAL")).await;
    assert_exceptions_kept(&stdout, "AWS_LAMBDA_LOG_LEVEL=FATAL");
    assert!(
        !stdout.iter().any(|l| l.contains("other_command")),
        "{stdout:#?}"
    );
}

#[tokio::test]
async fn in_text_format_at_log_level_error_the_exceptions_are_still_json_lines_on_stdout() {
    let stdout = stdout_under(Some("Text"), Some("ERROR")).await;
    assert_exceptions_kept(
        &stdout,
        "AWS_LAMBDA_LOG_FORMAT=Text, AWS_LAMBDA_LOG_LEVEL=ERROR",
    );
}

/// The levels of Lambda's application log-level filter, least severe first.
const LAMBDA_LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/// What Lambda sends on to CloudWatch Logs of `stdout` with the JSON log format and application
/// log level `level`, as its documentation describes the filter for custom runtimes
/// (docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html): a JSON
/// line with a `level` key has that level; any other line, or an unknown level, counts as
/// INFO; lines below `level` are dropped.
fn lambda_keeps(stdout: &[String], level: &str) -> Vec<String> {
    let rank = |l: &str| LAMBDA_LEVELS.iter().position(|x| x.eq_ignore_ascii_case(l));
    let threshold = rank(level).expect("a Lambda log level");
    stdout
        .iter()
        .filter(|line| {
            let own = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v["level"].as_str().and_then(rank))
                .unwrap_or(2);
            own >= threshold
        })
        .cloned()
        .collect()
}

/// The same run, through Lambda's own level filter, which reads the `level` field the lines
/// carry: the lines that keep an exception say FATAL, which no application log level drops
/// (they said INFO and ERROR before, and were dropped at WARN and above, or at FATAL).
#[tokio::test]
async fn the_exceptions_pass_lambdas_own_log_level_filter() {
    for level in ["WARN", "ERROR", "FATAL"] {
        let stdout = stdout_under(Some("JSON"), Some(level)).await;
        let kept = lambda_keeps(&stdout, level);
        assert_exceptions_kept(&kept, &format!("through Lambda's filter at {level}"));
    }
}

/// Without a token the function still starts (AllowUnsignedCallbacks is an explicit choice of
/// the deployment), and says once, at cold start, that anyone who knows an SdkAppID can call it;
/// with a token it says nothing of the kind.
#[tokio::test]
async fn without_a_token_one_auth_disabled_warning_at_cold_start() {
    for token in [None, Some(TOKEN)] {
        let mut api = RuntimeApi::start().await;
        let mut env = webhook_env(&api, &closed_port());
        env.remove("IM_CALLBACK_TOKEN");
        if let Some(token) = token {
            env.insert("IM_CALLBACK_TOKEN".into(), token.into());
        }
        let bootstrap = Bootstrap::spawn(WEBHOOK, &env);
        for _ in 0..2 {
            let (status, _) = answer(&mut api, &other_command()).await;
            assert_eq!(status, 200);
        }
        let lines = bootstrap.lines();
        let warnings: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("auth_disabled"))
            .collect();
        match token {
            None => {
                assert_eq!(warnings.len(), 1, "{lines:#?}");
                let warning: Value = serde_json::from_str(warnings[0]).unwrap();
                assert_eq!(warning["level"], "WARN");
                assert_eq!(warning["event"], "auth_disabled");
                let first: Value = serde_json::from_str(&lines[0]).unwrap();
                assert_eq!(
                    first["event"], "auth_disabled",
                    "before any invocation: {lines:#?}"
                );
            }
            Some(_) => assert!(warnings.is_empty(), "{lines:#?}"),
        }
    }
}
