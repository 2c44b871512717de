//! The whole request path on arbitrary input: what a caller controls (method, query string,
//! body) becomes the Lambda event API Gateway would deliver (HTTP API, REST API or function
//! URL; the body base64-encoded or not), which goes through `lambda_http`'s conversion and the
//! production handler (decision, envelope, attributes, the JSON log lines) with a publisher
//! that succeeds or fails. Beyond "no panic", each run checks:
//!
//! - the answer is a status of DESIGN.md's table with a JSON body (200 is the exact
//!   acknowledgement), and never holds the token;
//! - a published message's envelope carries the body byte for byte, goes to its category's
//!   topic, and replay derives from it exactly the message that was published;
//! - every log line is one valid JSON object without the token, and a `publish_failed` record
//!   is read back by replay as exactly the envelope that failed.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run request -- -max_total_time=300` (see the README).

#![no_main]

use im_exception_webhook::config::{Config, Topic};
use im_exception_webhook::envelope::Message;
use im_exception_webhook::handler::{self, ACKNOWLEDGEMENT, App};
use im_exception_webhook::publish::{PublishError, Publisher};
use im_exception_webhook::{logging, replay};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

const TOKEN: &str = "fuzz-Token-0123456789";
const KNOWN: [&str; 8] = [
    "SdkAppid",
    "Sign",
    "RequestTime",
    "CallbackCommand",
    "ClientIP",
    "OptPlatform",
    "contenttype",
    "Group.CallbackSendMsgException",
];

#[derive(Arbitrary, Debug)]
enum Source {
    HttpApi,
    RestApi,
    FunctionUrl,
}

#[derive(Arbitrary, Debug)]
enum Method<'a> {
    Post,
    Get,
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Text<'a> {
    /// One of the names and values Chat sends, with each letter's case from the mask.
    Known(u8, u64),
    AppId,
    /// A time `offset` seconds from now, and the Sign over it when `signed`.
    Time(i16),
    Sign(i16),
    Any(&'a str),
}

/// A JSON value, a few levels deep.
#[derive(Arbitrary, Debug)]
enum Json<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Array(Vec<Json<'a>>),
    Object(Vec<(&'a str, Json<'a>)>),
}

impl Json<'_> {
    fn value(&self, depth: u8) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => json!(b),
            Json::Int(n) => json!(n),
            Json::Float(f) => json!(f),
            Json::Str(s) => json!(s),
            _ if depth > 4 => Value::Null,
            Json::Array(items) => items.iter().map(|j| j.value(depth + 1)).collect(),
            Json::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.value(depth + 1)))
                    .collect(),
            ),
        }
    }
}

/// The body: any bytes, or a callback (some fields as numeric strings, unknown fields, and
/// perhaps text spliced in somewhere).
#[derive(Arbitrary, Debug)]
enum BodyInput<'a> {
    Bytes(&'a [u8]),
    Callback {
        error_code: i64,
        known_code: Option<u8>,
        fields: Vec<(Text<'a>, Json<'a>)>,
        group: Option<&'a str>,
        random: Option<i64>,
        event_time: Option<i64>,
        as_strings: bool,
        pretty: bool,
        splice: Option<(u16, &'a str)>,
    },
}

const CODES: [i64; 8] = [10004, 10023, 80001, 10017, 20012, 80005, 12345, 10016];

impl BodyInput<'_> {
    fn bytes(&self) -> Vec<u8> {
        let BodyInput::Callback {
            error_code,
            known_code,
            fields,
            group,
            random,
            event_time,
            as_strings,
            pretty,
            splice,
        } = self
        else {
            let BodyInput::Bytes(bytes) = self else {
                unreachable!()
            };
            return bytes.to_vec();
        };
        let number = |n: i64| {
            if *as_strings {
                json!(n.to_string())
            } else {
                json!(n)
            }
        };
        let code = known_code.map_or(*error_code, |i| CODES[usize::from(i) % CODES.len()]);
        let mut object = serde_json::Map::new();
        for (name, value) in fields {
            object.insert(name.render(), value.value(0));
        }
        object.insert(
            "CallbackCommand".into(),
            json!("Group.CallbackSendMsgException"),
        );
        object.insert("ErrorCode".into(), number(code));
        if let Some(group) = group {
            object.insert("GroupId".into(), json!(group));
        }
        if let Some(random) = random {
            object.insert("Random".into(), number(*random));
        }
        if let Some(time) = event_time {
            object.insert("EventTime".into(), number(*time));
        }
        let value = Value::Object(object);
        let mut text = if *pretty {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            value.to_string()
        };
        if let Some((at, insert)) = splice {
            let at = usize::from(*at) % (text.len() + 1);
            if text.is_char_boundary(at) {
                text.insert_str(at, insert);
            }
        }
        text.into_bytes()
    }
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    source: Source,
    method: Method<'a>,
    query: Vec<(Text<'a>, Text<'a>)>,
    /// Appends Chat's own SdkAppid, CallbackCommand, and a Sign and RequestTime this many
    /// seconds off.
    chat: Option<i16>,
    /// Percent-encode every byte of the query, not only those that need it.
    encode_all: bool,
    body: BodyInput<'a>,
    base64: bool,
    /// Which configuration: a token or not, a small body limit or not, unclassified topic.
    config: u8,
    publish_fails: bool,
}

/// Records every publish it is asked for; fails them when told to.
struct Recorder {
    fail: AtomicBool,
    attempts: Mutex<Vec<(String, Message)>>,
}

impl Publisher for Recorder {
    async fn publish(&self, topic: &Topic, message: &Message) -> Result<String, PublishError> {
        self.attempts
            .lock()
            .unwrap()
            .push((topic.arn.clone(), message.clone()));
        if self.fail.load(Ordering::Relaxed) {
            return Err(PublishError::Failed("injected".into()));
        }
        Ok("fuzz-message-id".into())
    }
}

fn app(variant: u8) -> &'static App<Recorder> {
    static APPS: OnceLock<Vec<App<Recorder>>> = OnceLock::new();
    let apps = APPS.get_or_init(|| {
        (0..8u8)
            .map(|v| {
                let config = Config::from_lookup(|name| {
                    let topic = |n: &str| Some(format!("arn:aws:sns:us-east-1:1:{n}"));
                    match name {
                        "IM_SDK_APP_ID" => Some("1400000000,1400000001".into()),
                        "IM_CALLBACK_TOKEN" if v & 1 == 1 => Some(TOKEN.into()),
                        "MAX_BODY_BYTES" if v & 2 == 2 => Some("96".into()),
                        "TOPIC_ARN_UNCLASSIFIED" if v & 4 == 4 => topic("un"),
                        "TOPIC_ARN_INVALID_GROUP" => topic("ig"),
                        "TOPIC_ARN_FREQUENCY_LIMIT" => topic("fl"),
                        "TOPIC_ARN_CONTENT_FILTER" => topic("cf.fifo"),
                        "TOPIC_ARN_MUTED_SENDER" => topic("ms"),
                        "ERROR_CODE_OVERRIDES" => Some("80005=content_filter".into()),
                        _ => None,
                    }
                })
                .expect("fuzz configuration");
                let publisher = Recorder {
                    fail: AtomicBool::new(false),
                    attempts: Mutex::new(Vec::new()),
                };
                App { config, publisher }
            })
            .collect()
    });
    &apps[usize::from(variant % 8)]
}

/// The production JSON log lines, into a buffer this target reads back.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Text<'_> {
    fn render(&self) -> String {
        match self {
            Text::Known(i, mask) => KNOWN[usize::from(*i) % KNOWN.len()]
                .chars()
                .enumerate()
                .map(|(n, c)| {
                    if (mask >> (n % 64)) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect(),
            Text::AppId => "1400000000".into(),
            Text::Time(offset) => (now_secs() + i64::from(*offset)).to_string(),
            Text::Sign(offset) => {
                let time = (now_secs() + i64::from(*offset)).to_string();
                hex::encode(im_exception_webhook::auth::sign(TOKEN, &time))
            }
            Text::Any(s) => (*s).to_owned(),
        }
    }
}

/// Percent-encodes what a request line cannot carry (or every byte).
fn encode(text: &str, all: bool) -> String {
    text.bytes()
        .map(|b| {
            if !all && (b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The event API Gateway would deliver for this call.
fn event(input: &Input<'_>) -> Value {
    let method = match input.method {
        Method::Post => "POST".to_owned(),
        Method::Get => "GET".to_owned(),
        // API Gateway passes any token-shaped method on.
        Method::Other(m) => m
            .chars()
            .filter(|c| c.is_ascii_alphabetic())
            .take(10)
            .collect::<String>()
            .to_ascii_uppercase(),
    };
    let method = if method.is_empty() {
        "PATCH".into()
    } else {
        method
    };
    let mut pairs: Vec<(String, String)> = input
        .query
        .iter()
        .map(|(k, v)| (k.render(), v.render()))
        .collect();
    if let Some(offset) = input.chat {
        for (name, value) in [
            (Text::AppId, Text::AppId),
            (Text::Known(3, 0), Text::Known(7, 0)),
            (Text::Known(1, 0), Text::Sign(offset)),
            (Text::Known(2, 0), Text::Time(offset)),
        ] {
            let name = match name {
                Text::AppId => "SdkAppid".to_owned(),
                other => other.render(),
            };
            pairs.push((name, value.render()));
        }
    }
    let raw_query = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                encode(k, input.encode_all),
                encode(v, input.encode_all)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let bytes = input.body.bytes();
    let (body, base64) = if input.base64 {
        use base64::Engine;
        (
            base64::engine::general_purpose::STANDARD.encode(&bytes),
            true,
        )
    } else {
        // Only text reaches the function unencoded.
        (String::from_utf8_lossy(&bytes).into_owned(), false)
    };
    let single: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    let headers = json!({"host": "example.execute-api.us-east-1.amazonaws.com", "content-type": "application/json"});
    match input.source {
        Source::RestApi => {
            let mut multi = serde_json::Map::new();
            for (k, v) in &pairs {
                multi
                    .entry(k.clone())
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                    .unwrap()
                    .push(v.as_str().into());
            }
            json!({
                "resource": "/callback", "path": "/callback", "httpMethod": method,
                "headers": headers, "multiValueHeaders": {},
                "queryStringParameters": single, "multiValueQueryStringParameters": multi,
                "requestContext": {"accountId": "1", "apiId": "a", "resourceId": "r",
                    "resourcePath": "/callback", "httpMethod": method, "path": "/prod/callback",
                    "stage": "prod", "requestId": "fuzz", "identity": {}},
                "body": body, "isBase64Encoded": base64
            })
        }
        Source::HttpApi | Source::FunctionUrl => json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/callback",
            "rawQueryString": raw_query, "queryStringParameters": single, "headers": headers,
            "requestContext": {"accountId": "1", "apiId": "a", "domainName": "example.com",
                "http": {"method": method, "path": "/callback", "protocol": "HTTP/1.1",
                    "sourceIp": "203.0.113.7", "userAgent": "TencentCloudChat"},
                "requestId": "fuzz", "routeKey": "$default", "stage": "$default",
                "time": "25/Nov/2026:20:00:00 +0000", "timeEpoch": 0},
            "body": body, "isBase64Encoded": base64
        }),
    }
}

/// With `FUZZ_STATS` set, counts answers by status and prints them every 20,000 runs, to see
/// that the input reaches every outcome.
fn stats(status: u16, publish_fails: bool) {
    static COUNTS: Mutex<Vec<(u16, u64)>> = Mutex::new(Vec::new());
    static ON: OnceLock<bool> = OnceLock::new();
    if !*ON.get_or_init(|| std::env::var_os("FUZZ_STATS").is_some()) {
        return;
    }
    let key = if status == 200 && publish_fails {
        299
    } else {
        status
    };
    let mut counts = COUNTS.lock().unwrap();
    match counts.iter_mut().find(|(s, _)| *s == key) {
        Some((_, n)) => *n += 1,
        None => counts.push((key, 1)),
    }
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    if total.is_multiple_of(20_000) {
        counts.sort_unstable();
        eprintln!("fuzz stats after {total} runs (299: 200 with a failing publisher): {counts:?}");
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let subscriber =
            logging::subscriber(true, tracing::level_filters::LevelFilter::INFO, || {
                LogWriter
            });
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|input: Input<'_>| {
    let runtime = runtime();
    let app = app(input.config);
    app.publisher
        .fail
        .store(input.publish_fails, Ordering::Relaxed);
    app.publisher.attempts.lock().unwrap().clear();
    LOG.lock().unwrap().clear();

    let event = event(&input);
    let lambda_request: LambdaRequest =
        serde_json::from_value(event).expect("an API Gateway event deserializes");
    let request: Request = lambda_request.into();
    let sent_body: Vec<u8> = request.body().as_ref().to_vec();
    let response = runtime.block_on(handler::handle(app, request));

    // The answer.
    let status = response.status().as_u16();
    stats(status, input.publish_fails);
    assert!(
        [200, 400, 401, 403, 405, 413, 503].contains(&status),
        "status {status}"
    );
    let answer = match response.body() {
        Body::Text(text) => text.clone(),
        other => panic!("answer body {other:?}"),
    };
    assert!(!answer.contains(TOKEN));
    let answer_json: Value = serde_json::from_str(&answer).expect("the answer is JSON");
    if status == 200 {
        assert_eq!(answer, ACKNOWLEDGEMENT);
    } else {
        assert_eq!(answer_json["ActionStatus"], "FAIL");
        assert_eq!(
            answer_json["ErrorCode"].as_u64().unwrap() / 10,
            u64::from(status)
        );
    }
    let attempts = app.publisher.attempts.lock().unwrap().clone();
    assert!(attempts.len() <= 1);
    assert_eq!(status == 503, input.publish_fails && !attempts.is_empty());

    // What was published (or would have been).
    let trimmed = |b: &[u8]| -> Vec<u8> {
        let text = std::str::from_utf8(b).expect("an accepted body is UTF-8");
        text.trim_matches([' ', '\t', '\r', '\n'])
            .as_bytes()
            .to_vec()
    };
    for (arn, message) in &attempts {
        #[derive(serde::Deserialize)]
        struct Raw<'a> {
            #[serde(borrow)]
            callback: &'a serde_json::value::RawValue,
        }
        let raw: Raw<'_> = serde_json::from_str(&message.body).expect("the envelope is JSON");
        assert_eq!(raw.callback.get().as_bytes(), trimmed(&sent_body));
        let topic = app
            .config
            .topic(message.category)
            .expect("published to a topic");
        assert_eq!(*arn, topic.arn);
        assert_eq!(
            &replay::message_from_envelope(&message.body).expect("replayable"),
            message
        );
    }

    // The log lines, and the replay record.
    let log = String::from_utf8(LOG.lock().unwrap().clone()).expect("the log is UTF-8");
    assert!(!log.contains(TOKEN));
    // One JSON object per line: CloudWatch stores each line as its own event.
    for line in log.lines() {
        serde_json::from_str::<IgnoredAny>(line).expect("each log line is one JSON value");
        assert!(line.starts_with('{'));
    }
    let records = replay::scan("fuzz", &log).records;
    if status == 503 {
        // The record is the envelope that failed, and replay would publish that message.
        assert_eq!(records.len(), 1, "{log}");
        let record = records[0].as_ref().expect("a readable record");
        assert_eq!(record.envelope, attempts[0].1.body);
        assert_eq!(record.topic_arn.as_deref(), Some(attempts[0].0.as_str()));
    } else {
        assert!(records.is_empty(), "{log}");
    }
});
