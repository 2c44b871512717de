//! The integration-test harness: a moto server (the real SNS API), SQS queues to read back
//! what subscribers receive, API Gateway events, the function built as production builds it,
//! and captured log records.

// Each test binary (integration, faults, load, …) uses its own part of the harness.
#![allow(dead_code)]

pub mod bootstrap;
pub mod events;
pub mod fault_proxy;
pub mod logs;
pub mod moto;
pub mod replay_bin;
pub mod runtime_api;
pub mod upstream;
pub mod world;

use im_exception_webhook::classify::Category;
use im_exception_webhook::config::Config;
use im_exception_webhook::handler::{self, LambdaApp};
use lambda_http::request::LambdaRequest;
use lambda_http::tower::ServiceExt;
use lambda_http::{Adapter, Context, LambdaEvent};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

// Not every test binary uses each of these.
#[allow(unused_imports)]
pub use events::Call;
#[allow(unused_imports)]
pub use logs::Logs;
use world::Delivery;
#[allow(unused_imports)]
pub use world::World;

pub const SDK_APP_ID: &str = "1400000000";
pub const CLIENT_IP: &str = "203.0.113.7";
pub const ACK: &str = r#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}"#;

/// The function as `main.rs` builds it, with configuration from `env` instead of the process
/// environment and the SDK pointed at `endpoint` with static credentials.
pub async fn function(env: &HashMap<String, String>, endpoint: &str) -> &'static LambdaApp {
    let config = Config::from_lookup(|name| env.get(name).cloned())
        .unwrap_or_else(|e| panic!("test configuration: {e}"));
    Box::leak(Box::new(
        LambdaApp::new(config, world::loader(endpoint)).await,
    ))
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

    /// `status` with a FAIL body: ActionStatus FAIL, a non-zero ErrorCode, a non-empty
    /// ErrorInfo, and nothing else.
    #[track_caller]
    pub fn assert_fail(&self, status: u16) {
        assert_eq!(self.status, status, "{:#?}", self.raw);
        let body = self.json();
        let object = body.as_object().expect("FAIL body is an object");
        assert_eq!(
            object.len(),
            3,
            "FAIL body has exactly three fields: {body}"
        );
        assert_eq!(body["ActionStatus"], "FAIL", "{body}");
        assert!(
            body["ErrorCode"].as_u64().is_some_and(|c| c != 0),
            "ErrorCode is a non-zero number: {body}"
        );
        assert!(
            body["ErrorInfo"].as_str().is_some_and(|i| !i.is_empty()),
            "ErrorInfo is a non-empty string: {body}"
        );
    }
}

/// Runs one Lambda event through the same path `lambda_http::run` takes: deserialized as a
/// `LambdaRequest`, through `Adapter` around the production service, and the response
/// serialized as it goes back to API Gateway.
pub async fn invoke(app: &'static LambdaApp, event: &Value) -> Answer {
    let request: LambdaRequest =
        serde_json::from_value(event.clone()).expect("the event deserializes as a LambdaRequest");
    let mut context = Context::default();
    context.request_id = "7f9c1a2b-test-request".into();
    let adapter = Adapter::from(handler::service(app));
    let response = adapter
        .oneshot(LambdaEvent::new(request, context))
        .await
        .unwrap_or_else(|never| match never {});
    let raw = serde_json::to_value(&response).expect("the response serializes");
    let status = raw["statusCode"].as_u64().expect("statusCode") as u16;
    let body = raw["body"].as_str().unwrap_or_default().to_owned();
    Answer { status, body, raw }
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

/// The `dedupKey` of docs/contract.md, computed independently of the crate: lowercase hex SHA-256 of
/// `sdkAppId|GroupId|From_Account|Random|EventTime|ErrorCode`, numbers in decimal whether
/// they arrived as numbers or strings, a missing or null field as the empty string.
pub fn expected_dedup_key(sdk_app_id: &str, callback: &Value) -> String {
    let field = |name: &str| match &callback[name] {
        Value::Null => String::new(),
        Value::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    };
    let preimage = [
        sdk_app_id.to_owned(),
        field("GroupId"),
        field("From_Account"),
        field("Random"),
        field("EventTime"),
        field("ErrorCode"),
    ]
    .join("|");
    hex::encode(Sha256::digest(preimage.as_bytes()))
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS.mmmZ`, or `None` for any other shape.
pub fn parse_rfc3339_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let n = |from: usize, to: usize| s[from..to].parse::<i64>().ok();
    let (y, m, d) = (n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let (hh, mm, ss, ms) = (n(11, 13)?, n(14, 16)?, n(17, 19)?, n(20, 23)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms)
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Checks an envelope against the callback sent: every documented field, exact values.
#[track_caller]
pub fn assert_envelope(
    envelope: &Value,
    category: &str,
    error_code: i64,
    sent: &Value,
    sent_between: (i64, i64),
) {
    let object = envelope.as_object().expect("envelope is an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "callback",
            "category",
            "clientIp",
            "dedupKey",
            "errorCode",
            "optPlatform",
            "receivedAt",
            "sdkAppId"
        ],
        "{envelope:#}"
    );
    assert_eq!(envelope["category"], category);
    assert!(
        envelope["errorCode"].is_i64(),
        "errorCode is a JSON number: {envelope}"
    );
    assert_eq!(envelope["errorCode"], error_code);
    assert_eq!(envelope["sdkAppId"], SDK_APP_ID);
    assert_eq!(envelope["clientIp"], CLIENT_IP);
    assert_eq!(envelope["optPlatform"], "RESTAPI");
    let received_at = envelope["receivedAt"].as_str().expect("receivedAt string");
    let millis = parse_rfc3339_millis(received_at)
        .unwrap_or_else(|| panic!("receivedAt {received_at:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ"));
    assert!(
        (sent_between.0..=sent_between.1).contains(&millis),
        "receivedAt {received_at} is not within the call ({sent_between:?})"
    );
    let dedup = envelope["dedupKey"].as_str().expect("dedupKey string");
    assert_eq!(dedup, expected_dedup_key(SDK_APP_ID, sent));
    assert!(
        dedup.len() == 64
            && dedup
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
        "dedupKey is 64 lowercase hex: {dedup}"
    );
    assert_eq!(&envelope["callback"], sent, "callback is the body as sent");
}

/// A test's function on its own topics, with the configuration changed by `tweak`.
pub async fn setup(
    world: &World,
    tweak: impl FnOnce(&mut HashMap<String, String>),
) -> &'static LambdaApp {
    let mut env = world.env();
    tweak(&mut env);
    function(&env, &world.endpoint).await
}

/// Checks that `delivery`'s Message is the envelope a `publish_failed` record of the function's
/// log `log` ends with, byte for byte, and that it holds the callback `body`.
#[track_caller]
pub fn assert_logged_envelope(delivery: &Delivery, log: &str, body: &Value) {
    let message = delivery.notification["Message"].as_str().unwrap();
    let logged = format!("\"envelope\":{message}}}");
    assert!(
        log.lines()
            .any(|l| l.contains(r#""event":"publish_failed""#) && l.ends_with(&logged)),
        "the Message is the envelope of a logged record, byte for byte:\n{message}\n{log}"
    );
    assert_eq!(delivery.envelope()["callback"], *body);
}

/// Checks that `delivery`, a message republished on `world`'s topic for `category` from the
/// function's log `log`, is what the function would have published for `body`: its Message is
/// a logged envelope of `body` ([`assert_logged_envelope`]); and a fresh publish of the same
/// callback by `fresh`'s function (its SNS reachable, on its world's topics) delivers the same
/// subject, message attributes, FIFO group and deduplication ids, and the same envelope but for
/// `receivedAt`.
pub async fn assert_published_as_the_function_would(
    world: &World,
    delivery: &Delivery,
    log: &str,
    body: &Value,
    category: Category,
    fresh: (&World, &'static LambdaApp),
) {
    assert_logged_envelope(delivery, log, body);
    assert_eq!(
        delivery.notification["TopicArn"],
        world.topic(category).topic_arn.as_str()
    );

    let (fresh_world, fresh_app) = fresh;
    invoke(fresh_app, &Call::chat(body.to_string()).http_api())
        .await
        .assert_acknowledged();
    let published = fresh_world.only_delivery(category).await;
    assert_eq!(delivery.subject(), published.subject());
    assert_eq!(delivery.attributes(), published.attributes());
    for id in ["MessageGroupId", "MessageDeduplicationId"] {
        assert_eq!(
            delivery.system_attributes.get(id),
            published.system_attributes.get(id),
            "{id}"
        );
    }
    let without_time = |d: &Delivery| {
        let mut envelope = d.envelope();
        envelope.as_object_mut().unwrap().remove("receivedAt");
        envelope
    };
    assert_eq!(without_time(delivery), without_time(&published));
}
