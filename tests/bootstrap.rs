//! The release artefact as Lambda runs it: the `bootstrap` binary under a Lambda Runtime API,
//! configured only through its environment, answering API Gateway events and writing its
//! log records to standard output.

mod runtime_api;

use runtime_api::RuntimeApi;
use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_im-exception-webhook");
const TOKEN: &str = "bootstrap-test-token";
const QUERY: &str = "SdkAppid=1400000000&CallbackCommand=Group.CallbackSendMsgException&contenttype=json&ClientIP=203.0.113.5&OptPlatform=Android";

/// What Lambda sets, plus the function's configuration; SNS points at `sns`.
fn lambda_env(runtime_api: &str, sns: &str) -> Vec<(&'static str, String)> {
    let topic = |name: &str| format!("arn:aws:sns:us-east-1:123456789012:{name}");
    vec![
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", "im-exception-webhook".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_ENDPOINT_URL", sns.to_string()),
        ("IM_SDK_APP_ID", "1400000000".into()),
        ("IM_CALLBACK_TOKEN", TOKEN.into()),
        ("PUBLISH_TIMEOUT_MS", "500".into()),
        ("TOPIC_ARN_INVALID_GROUP", topic("ig")),
        ("TOPIC_ARN_FREQUENCY_LIMIT", topic("fl")),
        ("TOPIC_ARN_CONTENT_FILTER", topic("cf")),
        ("TOPIC_ARN_MUTED_SENDER", topic("ms")),
    ]
}

struct Bootstrap {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Bootstrap {
    fn spawn(env: &[(&'static str, String)]) -> Bootstrap {
        let mut child = Command::new(BIN)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the bootstrap");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = stdout.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Bootstrap { child, stdout }
    }

    fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }
}

fn http_api_event(method: &str, query: &str, body: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "POST /callback",
        "rawPath": "/callback",
        "rawQueryString": query,
        "headers": {"content-type": "application/json", "host": "example.execute-api.us-east-1.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "example", "domainName": "example.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "example", "requestId": "r1", "routeKey": "POST /callback", "stage": "$default",
            "time": "25/Nov/2026:20:00:00 +0000", "timeEpoch": 1795636800000u64,
            "http": {"method": method, "path": "/callback", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.5", "userAgent": "Chat"}
        },
        "body": body,
        "isBase64Encoded": false
    })
}

fn signed(query: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let sign = hex::encode(im_exception_webhook::auth::sign(TOKEN, &now));
    format!("{query}&RequestTime={now}&Sign={sign}")
}

/// The API Gateway response the bootstrap posted for `id`: status and parsed body.
async fn response_for(api: &mut RuntimeApi, id: &str) -> (u64, Value) {
    let posted = api
        .next_posted(Duration::from_secs(20))
        .await
        .expect("the bootstrap answers");
    assert_eq!(
        posted.path,
        format!("/2018-06-01/runtime/invocation/{id}/response"),
        "{posted:?}"
    );
    let response: Value = serde_json::from_str(&posted.body).unwrap();
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
    let bootstrap = Bootstrap::spawn(&lambda_env(&api.addr.to_string(), &closed_port()));

    let other = signed("SdkAppid=1400000000&CallbackCommand=Group.CallbackAfterSendMsg");
    let id = api.invoke(&http_api_event("POST", &other, "{}"));
    let (status, body) = response_for(&mut api, &id).await;
    assert_eq!(
        (status, body.clone()),
        (
            200,
            json!({"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0})
        )
    );

    let id = api.invoke(&http_api_event("POST", QUERY, "{}"));
    let (status, body) = response_for(&mut api, &id).await;
    assert_eq!(status, 401, "unsigned while a token is configured: {body}");

    let callback = r#"{"CallbackCommand":"Group.CallbackSendMsgException","GroupId":"@TGS#2J4SZEAEL","From_Account":"jared","Random":7,"ErrorCode":"10023","EventTime":"1670574414123"}"#;
    let query = signed(QUERY);
    let id = api.invoke(&http_api_event("POST", &query, callback));
    let (status, body) = response_for(&mut api, &id).await;
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

    let sign = query.rsplit("Sign=").next().unwrap();
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
        let mut env = lambda_env(&api.addr.to_string(), &closed_port());
        env.retain(|(k, _)| *k != variable);
        if let Some(value) = value {
            env.push((variable, value.to_string()));
        }
        let mut bootstrap = Bootstrap::spawn(&env);
        let status = tokio::time::timeout(Duration::from_secs(20), bootstrap.child.wait())
            .await
            .expect("the bootstrap stops")
            .unwrap();
        assert!(!status.success(), "{variable}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lines = bootstrap.lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains(variable), "{lines:#?}");
        assert!(lines[0].contains("configuration error"), "{lines:#?}");
    }
}
