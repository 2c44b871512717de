//! The test harness, one of each kind: a moto server (the real SNS, SQS, Secrets Manager and
//! CloudWatch Logs APIs), a test's own topics and queues to read back what subscribers receive,
//! API Gateway events, the webhook in process ([`Function`]) or as its release-shaped binary
//! under a local Lambda Runtime API ([`Lambda`]), a recording upstream, and a fault proxy.

// Each test binary uses its own part of the harness.
#![allow(dead_code)]

pub mod bootstrap;
pub mod emf;
pub mod events;
pub mod fault_proxy;
pub mod moto;
pub mod runtime_api;
pub mod schema;
pub mod upstream;
pub mod world;

use im_exception_webhook::domain::classify::Category;
use im_exception_webhook::domain::config::Config;
use im_exception_webhook::domain::decision::{Decision, WebhookRequest, decide};
use im_exception_webhook::domain::message::Message;
use im_exception_webhook::domain::publish::QueuedPublish;
use im_exception_webhook::domain::query::Query;
use im_exception_webhook::handlers::webhook::{App, AsBuilt, handle};
use lambda_http::request::LambdaRequest;
use lambda_http::tower::ServiceExt;
use lambda_http::{Adapter, Context, LambdaEvent, Request};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

// Not every test binary uses each of these.
#[allow(unused_imports)]
pub use bootstrap::Bootstrap;
#[allow(unused_imports)]
pub use events::Call;
#[allow(unused_imports)]
pub use runtime_api::RuntimeApi;
#[allow(unused_imports)]
pub use world::World;

pub const SDK_APP_ID: &str = "1400000000";
pub const CLIENT_IP: &str = "203.0.113.7";
pub const TOKEN: &str = "test-token";
pub const ACK: &str = r#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}"#;

/// Static test credentials, the test region and every AWS service at `endpoint`: a binary's
/// whole AWS environment.
pub fn aws_env(endpoint: &str) -> HashMap<String, String> {
    [
        ("AWS_REGION", world::REGION),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_ENDPOINT_URL", endpoint),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A complete configuration on made-up topics of the test account (`content_filter`'s a FIFO
/// one), for a function whose publishes reach nothing of the test's, with `changes` on top
/// (`None` removes a variable).
pub fn made_up_env(changes: &[(&str, Option<&str>)]) -> HashMap<String, String> {
    let topic = |category: Category| {
        let fifo = if category == Category::ContentFilter {
            ".fifo"
        } else {
            ""
        };
        format!(
            "arn:aws:sns:{}:123456789012:{category}{fifo}",
            world::REGION
        )
    };
    let topics = world::CATEGORIES
        .iter()
        .map(|(c, v)| (v.to_string(), topic(*c)));
    let mut env: HashMap<String, String> = topics.collect();
    env.insert("IM_SDK_APP_ID".into(), SDK_APP_ID.into());
    for (name, value) in changes {
        match value {
            Some(value) => env.insert(name.to_string(), value.to_string()),
            None => env.remove(*name),
        };
    }
    env
}

/// The configuration `env` gives the function, read as it reads its environment.
pub fn config(env: &HashMap<String, String>) -> Config {
    Config::from_lookup(|name| env.get(name).cloned())
        .unwrap_or_else(|e| panic!("test configuration: {e}"))
}

/// The message `decide` makes of Chat's POST of `body` with `query`, received at `at` (no Sign
/// checked); anything but an exception fails the test.
#[track_caller]
pub fn decided(config: &Config, query: Query<'_>, body: &str, at: SystemTime) -> Message {
    let request = WebhookRequest {
        method: "POST",
        query,
        body: body.as_bytes(),
    };
    match decide(&request, config, &[], at) {
        Ok(Decision::Exception { message, .. }) => message,
        other => panic!("not an exception: {other:?} for {body}"),
    }
}

/// The publish a healthy webhook with `env` makes of Chat's call with `body`, received at the
/// `receivedAt` of `envelope`: the one the decision makes, to its category's topic.
pub fn expected_publish(
    env: &HashMap<String, String>,
    body: &str,
    envelope: &str,
) -> QueuedPublish {
    let config = config(env);
    let call = Call::chat(body);
    let query = Query::new(call.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let envelope: Value = serde_json::from_str(envelope).expect("the envelope is JSON");
    let at = humantime::parse_rfc3339(envelope["receivedAt"].as_str().unwrap()).unwrap();
    let message = decided(&config, query, body, at);
    let topic = config.topics.get(message.category).expect("a topic");
    message.publish_to(topic)
}

/// What API Gateway receives back from the function.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// The serialized Lambda response, as API Gateway reads it.
    pub raw: Value,
}

impl Answer {
    fn from_raw(raw: Value) -> Answer {
        let status = raw["statusCode"].as_u64().expect("statusCode") as u16;
        let body = raw["body"].as_str().unwrap_or_default().to_owned();
        Answer { status, body, raw }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("answer body is not JSON ({e}): {}", self.body))
    }

    /// HTTP 200 with Chat's acknowledgement, byte for byte.
    #[track_caller]
    pub fn assert_acknowledged(&self) {
        assert_eq!(
            (self.status, self.body.as_str()),
            (200, ACK),
            "{:#?}",
            self.raw
        );
    }

    /// `status` with a FAIL body: exactly ActionStatus FAIL, ErrorCode `code` and a non-empty
    /// ErrorInfo.
    #[track_caller]
    pub fn assert_fail(&self, status: u16, code: u64) {
        assert_eq!(self.status, status, "{:#?}", self.raw);
        let body = self.json();
        assert_eq!(body.as_object().map(|o| o.len()), Some(3), "{body}");
        assert_eq!(body["ActionStatus"], "FAIL", "{body}");
        assert_eq!(body["ErrorCode"], code, "{body}");
        assert!(
            body["ErrorInfo"].as_str().is_some_and(|i| !i.is_empty()),
            "{body}"
        );
    }
}

/// The webhook in this process, built as `main.rs` builds it but from `env`, its SDK pointed
/// at `endpoint`; each call goes through the same `lambda_http` path as in Lambda, and the
/// lines it would write are kept for the test.
pub struct Function {
    app: &'static App,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Function {
    pub async fn new(env: &HashMap<String, String>, endpoint: &str) -> Function {
        let app = App::new(config(env), world::loader(endpoint))
            .await
            .expect("the app starts");
        Function {
            app: Box::leak(Box::new(app)),
            lines: Arc::default(),
        }
    }

    /// Runs one Lambda event: deserialized as a `LambdaRequest`, through `Adapter`, and the
    /// response serialized as it goes back to API Gateway.
    pub async fn invoke(&self, event: &Value) -> Answer {
        let request: LambdaRequest =
            serde_json::from_value(event.clone()).expect("a LambdaRequest");
        let mut context = Context::default();
        context.request_id = "7f9c1a2b-test-request".into();
        let (app, lines) = (self.app, self.lines.clone());
        let service = lambda_http::service_fn(move |request: Request| {
            let lines = lines.clone();
            async move {
                let (response, logged) = handle(app, &request).await;
                let mut lines = lines.lock().unwrap();
                lines.extend(logged.iter().map(|l| serde_json::to_value(l).unwrap()));
                Ok::<_, Infallible>(AsBuilt(response))
            }
        });
        let response = Adapter::from(service)
            .oneshot(LambdaEvent::new(request, context))
            .await
            .unwrap_or_else(|never| match never {});
        Answer::from_raw(serde_json::to_value(&response).expect("the response serializes"))
    }

    /// The lines written so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }
}

/// A function as Lambda runs it: its binary under a local Runtime API, configured only through
/// its environment (`env`, plus what Lambda sets and the AWS variables for `endpoint`).
pub struct Lambda {
    pub api: RuntimeApi,
    pub process: Bootstrap,
}

impl Lambda {
    pub async fn start(bin: &str, endpoint: &str, env: &HashMap<String, String>) -> Lambda {
        let api = RuntimeApi::start().await;
        let mut all = bootstrap::lambda_env(&api, "im-exception", endpoint);
        all.extend(env.clone());
        let process = Bootstrap::spawn(bin, &all);
        Lambda { api, process }
    }

    /// The webhook's binary with `env`.
    pub async fn webhook(endpoint: &str, env: &HashMap<String, String>) -> Lambda {
        Lambda::start(bootstrap::WEBHOOK, endpoint, env).await
    }

    pub async fn invoke(&mut self, event: &Value) -> Answer {
        Answer::from_raw(self.api.call(event).await)
    }

    /// Standard output's JSON lines so far, once `ready` holds of them (or after 5 s).
    pub async fn lines_when(&self, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let parse = |lines: &[String]| -> Vec<Value> {
            lines
                .iter()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        };
        parse(&self.process.stdout_when(|lines| ready(&parse(lines))).await)
    }

    /// Standard output's JSON lines with `event` = `name`, once there are `n` (or after 5 s).
    pub async fn events(&self, name: &str, n: usize) -> Vec<Value> {
        let of = |lines: &[Value]| {
            lines
                .iter()
                .filter(|l| l["event"] == name)
                .cloned()
                .collect::<Vec<_>>()
        };
        of(&self.lines_when(|lines| of(lines).len() >= n).await)
    }
}

/// A `Group.CallbackSendMsgException` body with every documented field, and one unknown one.
pub fn callback(error_code: Value, group_id: &str) -> Value {
    json!({
        "CallbackCommand": "Group.CallbackSendMsgException",
        "GroupId": group_id,
        "Type": "Public",
        "From_Account": "jared",
        "Operator_Account": "",
        "Random": 123456789,
        "OnlineOnlyFlag": 1,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "red packet"}}],
        "CloudCustomData": "your cloud custom data",
        "ErrorCode": error_code,
        "ErrorInfo": "send msg failed",
        "EventTime": 1670574414123_i64,
        "SomethingNew": {"kept": [true, null, 1.5]}
    })
}

/// One exception of each category, each in a group of its own, `{group_prefix}{category}`.
pub fn one_of_each(group_prefix: &str) -> Vec<(Category, Value)> {
    [
        (Category::InvalidGroup, 10004),
        (Category::FrequencyLimit, 10023),
        (Category::ContentFilter, 80004),
        (Category::MutedSender, 20012),
        (Category::Unclassified, 12345),
    ]
    .into_iter()
    .map(|(category, code)| {
        (
            category,
            callback(json!(code), &format!("{group_prefix}{category}")),
        )
    })
    .collect()
}

/// The `dedupKey` of docs/contract.md, computed independently of the crate: lowercase hex
/// SHA-256 of `sdkAppId|GroupId|From_Account|Random|EventTime|ErrorCode`; the three numbers in
/// decimal whether they arrived as numbers or as numeric strings (" 42 " is 42), the two
/// strings as sent, a missing or null field as the empty string.
pub fn expected_dedup_key(sdk_app_id: &str, callback: &Value) -> String {
    let field = |name: &str| match &callback[name] {
        Value::String(s) if name == "GroupId" || name == "From_Account" => s.clone(),
        number => decimal(number),
    };
    let fields = [
        "GroupId",
        "From_Account",
        "Random",
        "EventTime",
        "ErrorCode",
    ];
    let preimage = format!("{sdk_app_id}|{}", fields.map(field).join("|"));
    hex::encode(Sha256::digest(preimage.as_bytes()))
}

/// An integer field of a callback in decimal, sent as a number or as a numeric string; empty
/// when missing or null.
fn decimal(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map(|n| n.to_string())
            .unwrap_or_default(),
        other => other.to_string(),
    }
}

/// Checks an envelope against the callback sent: docs/schema/'s envelope (its fields, their
/// types and forms), and every field's value.
#[track_caller]
pub fn assert_envelope(envelope: &Value, category: Category, sent: &Value) {
    schema::check_envelope(envelope);
    assert_eq!(envelope["category"], category.as_str());
    assert_eq!(
        envelope["errorCode"].to_string(),
        decimal(&sent["ErrorCode"])
    );
    assert_eq!(envelope["sdkAppId"], SDK_APP_ID);
    assert_eq!(envelope["clientIp"], CLIENT_IP);
    assert_eq!(envelope["optPlatform"], "RESTAPI");
    let received_at = envelope["receivedAt"].as_str().expect("receivedAt");
    let at = humantime::parse_rfc3339(received_at).expect("receivedAt is RFC 3339");
    let age = SystemTime::now().duration_since(at);
    assert!(age.is_ok_and(|age| age.as_secs() < 120), "{received_at}");
    assert_eq!(envelope["dedupKey"], expected_dedup_key(SDK_APP_ID, sent));
    assert_eq!(&envelope["callback"], sent, "callback is the body as sent");
}
