//! The whole request path on arbitrary input: what a caller controls (method, query string,
//! headers, body) becomes the Lambda event API Gateway would deliver (HTTP API, REST API or
//! function URL; the body base64-encoded or not), which goes through `lambda_http`'s conversion
//! and the production handler (decision, envelope, attributes, the JSON log lines) with a
//! publisher that succeeds or fails and an upstream that answers (any status, content type and
//! body), is unreachable, times out or answers too much. Beyond "no panic", each run checks:
//!
//! - the answer is a status of the table of docs/contract.md with a JSON FAIL body whose ErrorCode / 10 is
//!   the status (200 is the exact acknowledgement), or, for a forwarded command, the upstream's
//!   answer unchanged (status, Content-Type, body bytes), or 502/5020 (no usable answer) or
//!   504/5040 (timed out); and never holds a token or the upstream URL;
//! - a forwarded request carries the query string exactly as received (for HTTP API and
//!   function URL events the raw query string, byte for byte; for REST events, which carry no
//!   raw query string, one that decodes to exactly the parameters of the event), the body bytes
//!   as received and the request's Content-Type; only commands other than the exception's are
//!   forwarded, only with an upstream configured, and exceptions only with FORWARD_EXCEPTIONS,
//!   where Chat's answer is the publish's alone;
//! - a published message's envelope carries the body byte for byte, goes to its category's
//!   topic, and republishing derives from it exactly the message that was published;
//! - the log is one JSON object per line, one line per callback plus one for a forwarded
//!   exception, each line's EMF metadata valid; no line holds a token or the upstream URL;
//!   no forward line (`forward_failed` above all) holds the body or the Sign; a failed publish
//!   leaves exactly one `publish_failed` record (written by `record`, read back by
//!   `record_source::scan`) holding the envelope and topic that failed, and nothing else does;
//!   an exception without a topic leaves its envelope in its `logged` line.
//!
//! `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run request -- -max_total_time=300`; `FUZZ_STATS=1`
//! prints the outcome counts every 20,000 runs and at exit.

#![no_main]

use im_exception_webhook::config::{Config, Topic};
use im_exception_webhook::envelope::Message;
use im_exception_webhook::forward::{Forward, ForwardError, Forwarder, UpstreamAnswer};
use im_exception_webhook::handler::{self, ACKNOWLEDGEMENT, App};
use im_exception_webhook::publish::{PublishError, Publisher};
use im_exception_webhook::{EXCEPTION_COMMAND, logging, metrics, record_source, republish};
use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::http::header::CONTENT_TYPE;
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "fuzz-Token-0123456789";
const PREVIOUS: &str = "fuzz-Previous-Token-9876";
const STRANGER: &str = "fuzz-nobody-configured-this";
const UPSTREAM_SECRET: &str = "upstream-secret-key";
const KNOWN: [&str; 9] = [
    "SdkAppid",
    "Sign",
    "RequestTime",
    "CallbackCommand",
    "ClientIP",
    "OptPlatform",
    "contenttype",
    "Group.CallbackSendMsgException",
    "Group.CallbackBeforeSendMsg",
];
const COMMANDS: [&str; 4] = [
    EXCEPTION_COMMAND,
    "Group.CallbackBeforeSendMsg",
    "Group.CallbackAfterSendMsg",
    "State.StateChange",
];

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    HttpApi,
    RestApi,
    FunctionUrl,
}

/// A method other than POST (POST itself is `None`, half of the inputs).
#[derive(Arbitrary, Debug)]
enum Method<'a> {
    Get,
    Other(&'a str),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Signer {
    Current,
    Previous,
    Stranger,
}

#[derive(Arbitrary, Debug)]
enum Text<'a> {
    /// One of the names and values Chat sends, with each letter's case from the mask.
    Known(u8, u64),
    AppId,
    /// A time `offset` seconds from now, and the Sign over it.
    Time(i16),
    Sign(Signer, i16),
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
/// perhaps text spliced in somewhere), for the exception or another command.
#[derive(Arbitrary, Debug)]
enum BodyInput<'a> {
    Bytes(&'a [u8]),
    Callback {
        command: Option<u8>,
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
            command,
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
        let command = command.map_or(EXCEPTION_COMMAND, |i| COMMANDS[usize::from(i) % 4]);
        object.insert("CallbackCommand".into(), json!(command));
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

/// How the raw query string is written.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Encoding {
    /// Everything but RFC 3986's unreserved characters percent-encoded.
    Needed,
    /// Every byte percent-encoded.
    All,
    /// Also the query's sub-delimiters (`+` among them) and `:@/?` left as they are.
    Lenient,
}

#[derive(Arbitrary, Debug)]
enum ContentType<'a> {
    Json,
    TextUtf8,
    Any(&'a str),
}

/// Chat's own SdkAppid, CallbackCommand, and a Sign and RequestTime this many seconds off.
#[derive(Arbitrary, Debug)]
struct Chat {
    command: u8,
    signer: Signer,
    offset: i16,
}

/// What the upstream does when a callback is forwarded to it.
#[derive(Arbitrary, Debug)]
enum UpstreamInput<'a> {
    Answer {
        /// None: 200.
        status: Option<u16>,
        content_type: Option<&'a str>,
        body: &'a [u8],
    },
    ChatAnswer,
    Unreachable,
    TimedOut(u16),
    AnswerTooLarge,
}

impl UpstreamInput<'_> {
    fn result(&self) -> Result<UpstreamAnswer, ForwardError> {
        match self {
            UpstreamInput::Answer {
                status,
                content_type,
                body,
            } => Ok(UpstreamAnswer {
                status: status.unwrap_or(200),
                content_type: content_type.map(str::to_owned),
                location: None,
                body: body.to_vec(),
            }),
            UpstreamInput::ChatAnswer => Ok(UpstreamAnswer {
                status: 200,
                content_type: Some("application/json; charset=utf-8".into()),
                location: None,
                body: br#"{"ActionStatus":"OK","ErrorCode":1,"ErrorInfo":"blocked by moderation"}"#
                    .to_vec(),
            }),
            UpstreamInput::Unreachable => Err(ForwardError::Unreachable(
                "connection refused (fuzz)".into(),
            )),
            UpstreamInput::TimedOut(ms) => Err(ForwardError::TimedOut(Duration::from_millis(
                u64::from(*ms),
            ))),
            UpstreamInput::AnswerTooLarge => Err(ForwardError::AnswerTooLarge),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum PublishFailure {
    TimedOut,
    Refused,
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    source: Source,
    method: Option<Method<'a>>,
    query: Vec<(Text<'a>, Text<'a>)>,
    chat: Option<Chat>,
    encoding: Encoding,
    body: BodyInput<'a>,
    base64: bool,
    content_type: Option<ContentType<'a>>,
    /// Which configuration: tokens, upstream, body limit, unclassified topic.
    config: u8,
    publish_fails: Option<PublishFailure>,
    upstream: UpstreamInput<'a>,
}

/// Records every publish it is asked for; fails them when told to.
struct Recorder {
    fail: Mutex<Option<PublishFailure>>,
    attempts: Mutex<Vec<(String, Message)>>,
}

impl Publisher for Recorder {
    async fn publish(&self, topic: &Topic, message: &Message) -> Result<String, PublishError> {
        self.attempts
            .lock()
            .unwrap()
            .push((topic.arn.clone(), message.clone()));
        match *self.fail.lock().unwrap() {
            None => Ok("fuzz-message-id".into()),
            Some(PublishFailure::Refused) => Err(PublishError::Refused("injected".into())),
            Some(PublishFailure::TimedOut) => Err(PublishError::TimedOut {
                deadline: Duration::from_millis(1500),
                attempts: 3,
                last_error: Some("injected \"fault\"\n".into()),
            }),
        }
    }
}

/// What the upstream was given: query string, body, content type.
type Received = (Option<String>, Vec<u8>, Option<String>);

/// Records every forward it is asked for and answers as told.
struct Upstream {
    answer: Mutex<Result<UpstreamAnswer, ForwardError>>,
    received: Mutex<Vec<Received>>,
}

impl Forwarder for Upstream {
    async fn forward(&self, request: Forward<'_>) -> Result<UpstreamAnswer, ForwardError> {
        self.received.lock().unwrap().push((
            request.query.map(str::to_owned),
            request.body.to_vec(),
            request.content_type.map(str::to_owned),
        ));
        self.answer.lock().unwrap().clone()
    }
}

type FuzzApp = App<Recorder, Upstream>;

const CONFIGS: u8 = 36;

/// Configuration `v`: tokens (none, one, one and a previous one), upstream (none, one, one
/// with FORWARD_EXCEPTIONS), MAX_BODY_BYTES (96 or the default), an unclassified topic or not.
fn app(variant: u8) -> &'static FuzzApp {
    static APPS: OnceLock<Vec<FuzzApp>> = OnceLock::new();
    let apps = APPS.get_or_init(|| {
        (0..CONFIGS)
            .map(|v| {
                let (tokens, upstream, small, unclassified) =
                    (v % 3, (v / 3) % 3, (v / 9) % 2, v / 18);
                let config = Config::from_lookup(|name| {
                    let topic = |n: &str| Some(format!("arn:aws:sns:us-east-1:1:{n}"));
                    match name {
                        "IM_SDK_APP_ID" => Some("1400000000,1400000001".into()),
                        "IM_CALLBACK_TOKEN" if tokens > 0 => Some(TOKEN.into()),
                        "IM_CALLBACK_TOKEN_PREVIOUS" if tokens == 2 => Some(PREVIOUS.into()),
                        "UPSTREAM_CALLBACK_URL" if upstream > 0 => {
                            Some(format!("https://backend.example/im?key={UPSTREAM_SECRET}"))
                        }
                        "FORWARD_EXCEPTIONS" if upstream == 2 => Some("true".into()),
                        "MAX_BODY_BYTES" if small == 1 => Some("96".into()),
                        "TOPIC_ARN_UNCLASSIFIED" if unclassified == 1 => topic("un"),
                        "TOPIC_ARN_INVALID_GROUP" => topic("ig"),
                        "TOPIC_ARN_FREQUENCY_LIMIT" => topic("fl"),
                        "TOPIC_ARN_CONTENT_FILTER" => topic("cf.fifo"),
                        "TOPIC_ARN_MUTED_SENDER" => topic("ms"),
                        "ERROR_CODE_OVERRIDES" => Some("80005=content_filter".into()),
                        _ => None,
                    }
                })
                .expect("fuzz configuration");
                App {
                    config,
                    publisher: Recorder {
                        fail: Mutex::new(None),
                        attempts: Mutex::new(Vec::new()),
                    },
                    forwarder: Upstream {
                        answer: Mutex::new(Err(ForwardError::AnswerTooLarge)),
                        received: Mutex::new(Vec::new()),
                    },
                }
            })
            .collect()
    });
    &apps[usize::from(variant % CONFIGS)]
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

fn sign_hex(signer: Signer, time: &str) -> String {
    let token = match signer {
        Signer::Current => TOKEN,
        Signer::Previous => PREVIOUS,
        Signer::Stranger => STRANGER,
    };
    hex::encode(im_exception_webhook::auth::sign(token, time))
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
            Text::Sign(signer, offset) => {
                sign_hex(*signer, &(now_secs() + i64::from(*offset)).to_string())
            }
            Text::Any(s) => (*s).to_owned(),
        }
    }
}

/// Percent-encodes what a request line cannot carry, as `encoding` says.
fn encode(text: &str, encoding: Encoding) -> String {
    text.bytes()
        .map(|b| {
            let keep = match encoding {
                Encoding::All => false,
                Encoding::Needed => b.is_ascii_alphanumeric() || b"-._~".contains(&b),
                Encoding::Lenient => b.is_ascii_alphanumeric() || b"-._~!$'()*+,;:@/?".contains(&b),
            };
            if keep {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What the event says was received.
struct Sent {
    event: Value,
    /// The raw query string of an HTTP API or function URL event.
    raw_query: String,
    /// The parameters of a REST event, by name, in order.
    multi: BTreeMap<String, Vec<String>>,
    /// The body bytes as the function receives them (decoded from base64 when sent so).
    body: Vec<u8>,
    content_type: Option<String>,
    /// Every Sign value sent.
    signs: Vec<String>,
    /// Every query name and value sent, but the Signs.
    unsigned: Vec<String>,
}

impl Sent {
    /// Whether the caller sent `secret` (outside a Sign), as is or as JSON or `{:?}` escapes
    /// it: an escape can spell what was sent in pieces (`"\u{f}uzz-Token"` is `"\u000fuzz-Token"`
    /// in JSON).
    fn spells(&self, secret: &str) -> bool {
        String::from_utf8_lossy(&self.body).contains(secret)
            || self.unsigned.iter().any(|v| {
                v.contains(secret)
                    || serde_json::to_string(v).is_ok_and(|j| j.contains(secret))
                    || format!("{v:?}").contains(secret)
            })
    }
}

/// The event API Gateway would deliver for this call.
fn event(input: &Input<'_>) -> Sent {
    let method = match input.method {
        None => "POST".to_owned(),
        Some(Method::Get) => "GET".to_owned(),
        // API Gateway passes any token-shaped method on.
        Some(Method::Other(m)) => m
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
    if let Some(chat) = &input.chat {
        let time = (now_secs() + i64::from(chat.offset)).to_string();
        pairs.push(("SdkAppid".into(), "1400000000".into()));
        pairs.push((
            "CallbackCommand".into(),
            COMMANDS[usize::from(chat.command) % 4].into(),
        ));
        pairs.push(("Sign".into(), sign_hex(chat.signer, &time)));
        pairs.push(("RequestTime".into(), time));
    }
    let raw_query = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                encode(k, input.encoding),
                encode(v, input.encoding)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let bytes = input.body.bytes();
    let (body, base64, received) = if input.base64 {
        use base64::Engine;
        (
            base64::engine::general_purpose::STANDARD.encode(&bytes),
            true,
            bytes,
        )
    } else {
        // Only text reaches the function unencoded.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let received = text.clone().into_bytes();
        (text, false, received)
    };
    let single: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    let content_type = input.content_type.as_ref().map(|c| match c {
        ContentType::Json => "application/json".to_owned(),
        ContentType::TextUtf8 => "text/plain; charset=utf-8".to_owned(),
        // A header value: visible ASCII and spaces.
        ContentType::Any(s) => s
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .collect::<String>()
            .trim()
            .to_owned(),
    });
    let content_type = content_type.filter(|c| !c.is_empty());
    let mut headers = json!({"host": "example.execute-api.us-east-1.amazonaws.com"});
    if let Some(c) = &content_type {
        headers["content-type"] = json!(c);
    }
    let mut multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &pairs {
        multi.entry(k.clone()).or_default().push(v.clone());
    }
    let event = match input.source {
        Source::RestApi => json!({
            "resource": "/callback", "path": "/callback", "httpMethod": method,
            "headers": headers, "multiValueHeaders": {},
            "queryStringParameters": single, "multiValueQueryStringParameters": multi,
            "requestContext": {"accountId": "1", "apiId": "a", "resourceId": "r",
                "resourcePath": "/callback", "httpMethod": method, "path": "/prod/callback",
                "stage": "prod", "requestId": "fuzz", "identity": {}},
            "body": body, "isBase64Encoded": base64
        }),
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
    };
    let signs = pairs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Sign"))
        .map(|(_, v)| v.clone())
        .collect();
    let unsigned = pairs
        .iter()
        .flat_map(|(k, v)| {
            let sign = k.eq_ignore_ascii_case("Sign");
            [Some(k.clone()), (!sign).then(|| v.clone())]
        })
        .flatten()
        .collect();
    Sent {
        event,
        raw_query,
        multi,
        body: received,
        content_type,
        signs,
        unsigned,
    }
}

// ----------------------------------------------------------------------------------------
// Outcome counts.
// ----------------------------------------------------------------------------------------

static RUNS: AtomicU64 = AtomicU64::new(0);
static COUNTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn stats_on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let on = std::env::var_os("FUZZ_STATS").is_some();
        if on {
            unsafe extern "C" {
                fn atexit(callback: extern "C" fn()) -> i32;
            }
            extern "C" fn at_exit() {
                print_stats("at exit");
            }
            // SAFETY: registers a plain function with the C runtime, once.
            unsafe { atexit(at_exit) };
        }
        on
    })
}

fn count(outcome: String) {
    if stats_on() {
        *COUNTS.lock().unwrap().entry(outcome).or_default() += 1;
    }
}

fn print_stats(when: &str) {
    let runs = RUNS.load(Ordering::Relaxed);
    let mut text = format!("fuzz stats {when}: {runs} runs\n");
    for (outcome, n) in COUNTS.lock().unwrap().iter() {
        text.push_str(&format!("  {n:>9}  {outcome}\n"));
    }
    eprint!("{text}");
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

/// The `envelope` of a record line, as text.
fn envelope_of(line: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        envelope: &'a RawValue,
    }
    let line: Line<'_> = serde_json::from_str(line).expect("a record line");
    let raw = line.envelope.get();
    if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).expect("an envelope string")
    } else {
        raw.to_owned()
    }
}

fuzz_target!(|input: Input<'_>| {
    RUNS.fetch_add(1, Ordering::Relaxed);
    let runtime = runtime();
    let app = app(input.config);
    *app.publisher.fail.lock().unwrap() = input.publish_fails;
    app.publisher.attempts.lock().unwrap().clear();
    let upstream_result = input.upstream.result();
    *app.forwarder.answer.lock().unwrap() = upstream_result.clone();
    app.forwarder.received.lock().unwrap().clear();
    LOG.lock().unwrap().clear();
    let config = &app.config;

    let sent = event(&input);
    let lambda_request: LambdaRequest =
        serde_json::from_value(sent.event.clone()).expect("an API Gateway event deserializes");
    let request: Request = lambda_request.into();
    assert_eq!(request.body().as_ref(), sent.body.as_slice());
    let response = runtime.block_on(handler::handle(app, request));

    let status = response.status().as_u16();
    let answer_body = response.body().as_ref().to_vec();
    let answer_type = response.headers().get(CONTENT_TYPE).cloned();
    let attempts = app.publisher.attempts.lock().unwrap().clone();
    let received = app.forwarder.received.lock().unwrap().clone();
    let log = String::from_utf8(LOG.lock().unwrap().clone()).expect("the log is UTF-8");
    let lines: Vec<(&str, Value)> = log
        .lines()
        .map(|line| {
            assert!(line.starts_with('{'), "{line}");
            (
                line,
                serde_json::from_str(line).expect("each log line is one JSON value"),
            )
        })
        .collect();
    let event_of = |v: &Value| {
        format!(
            "{}/{}",
            v["event"].as_str().unwrap_or("?"),
            v["outcome"].as_str().unwrap_or("?")
        )
    };
    let logged = lines
        .iter()
        .find(|(_, v)| v["event"] == "callback" && v["outcome"] == "logged");

    // What happened: a publish, an exception kept in its log line, a forward.
    assert!(attempts.len() <= 1);
    assert!(received.len() <= 1, "{received:?}");
    let exception = !attempts.is_empty() || logged.is_some();
    let forwarded = !received.is_empty();
    let forward_decision = forwarded && !exception;
    if forwarded {
        let upstream = config
            .upstream
            .as_ref()
            .expect("forwarded without an upstream");
        assert!(
            !exception || upstream.forward_exceptions,
            "an exception forwarded"
        );
    }
    if exception && let Some(upstream) = &config.upstream {
        assert_eq!(forwarded, upstream.forward_exceptions);
    }

    // The answer.
    let publish_failed = input.publish_fails.is_some() && !attempts.is_empty();
    let outcome = if forward_decision {
        match &upstream_result {
            Ok(answer) if StatusCode::from_u16(answer.status).is_ok() => {
                assert_eq!(status, answer.status);
                assert_eq!(answer_body, answer.body);
                let expected_type = answer
                    .content_type
                    .as_deref()
                    .and_then(|c| HeaderValue::from_str(c).ok());
                assert_eq!(answer_type, expected_type);
                match response.body() {
                    Body::Text(_) => assert!(std::str::from_utf8(&answer.body).is_ok()),
                    Body::Binary(_) => assert!(std::str::from_utf8(&answer.body).is_err()),
                    Body::Empty => panic!("an empty body"),
                    _ => panic!("an unexpected body"),
                }
                "forwarded: the upstream's answer".to_owned()
            }
            Ok(_) => {
                assert_eq!(status, 502);
                "forwarded: an answer with an impossible status, 502".to_owned()
            }
            Err(ForwardError::TimedOut(_)) => {
                assert_eq!(status, 504);
                "forwarded: timed out, 504".to_owned()
            }
            Err(e) => {
                assert_eq!(status, 502);
                format!("forwarded: {}, 502", e.reason())
            }
        }
    } else {
        assert!(
            [200, 400, 401, 403, 405, 413, 503].contains(&status),
            "status {status}"
        );
        assert_eq!(status == 503, publish_failed);
        let mut outcome = match (status, exception) {
            (200, true) if attempts.is_empty() => "200 exception without a topic, logged".into(),
            (200, true) => "200 exception published".into(),
            (200, false) => {
                assert!(config.upstream.is_none(), "acknowledged with an upstream");
                "200 other command, acknowledged".into()
            }
            (503, _) => "503 publish failed".into(),
            (s, _) => format!("{s} refused"),
        };
        if forwarded {
            outcome.push_str(&format!(
                "; forwarded too ({})",
                match &upstream_result {
                    Ok(_) => "answered",
                    Err(e) => e.reason(),
                }
            ));
        }
        outcome
    };
    let passed_on = forward_decision
        && matches!(&upstream_result, Ok(a) if StatusCode::from_u16(a.status).is_ok());
    if !passed_on {
        // The function's own answer: JSON, the exact acknowledgement or a FAIL with the
        // documented codes.
        assert_eq!(
            answer_type.as_ref().map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        let text = std::str::from_utf8(&answer_body).expect("a text answer");
        let answer_json: Value = serde_json::from_str(text).expect("the answer is JSON");
        if status == 200 {
            assert_eq!(text, ACKNOWLEDGEMENT);
        } else {
            assert_eq!(answer_json["ActionStatus"], "FAIL");
            assert_eq!(
                answer_json["ErrorCode"].as_u64().unwrap() / 10,
                u64::from(status)
            );
            assert!(!answer_json["ErrorInfo"].as_str().unwrap().is_empty());
            if forward_decision {
                // No usable answer from the upstream: 502/5020, or 504/5040 when it timed out.
                let code = if status == 504 { 5040 } else { 5020 };
                assert_eq!(answer_json["ErrorCode"], code);
            }
        }
    }
    let upstream_body = upstream_result
        .as_ref()
        .map_or(&[][..], |a| a.body.as_slice());
    for secret in [TOKEN, PREVIOUS, UPSTREAM_SECRET] {
        let text = String::from_utf8_lossy(&answer_body);
        assert!(
            !text.contains(secret)
                || String::from_utf8_lossy(upstream_body).contains(secret)
                || sent.spells(secret),
            "the answer holds a secret"
        );
    }
    count(outcome);

    // What was forwarded: exactly what was received.
    if let Some((query, body, content_type)) = received.first() {
        assert_eq!(body, &sent.body, "the forwarded body");
        assert_eq!(
            content_type, &sent.content_type,
            "the forwarded content type"
        );
        match input.source {
            Source::HttpApi | Source::FunctionUrl => {
                let expected = (!sent.raw_query.is_empty()).then(|| sent.raw_query.clone());
                assert_eq!(query, &expected, "the forwarded query string");
            }
            Source::RestApi => {
                let query = query.as_deref().unwrap_or("");
                let parsed: QueryMap = query.parse().unwrap();
                let mut names: Vec<String> = parsed.iter().map(|(k, _)| k.to_owned()).collect();
                names.sort();
                names.dedup();
                assert_eq!(
                    names,
                    sent.multi.keys().cloned().collect::<Vec<_>>(),
                    "{query}"
                );
                for (name, values) in &sent.multi {
                    let got: Vec<&str> = parsed.all(name).unwrap_or_default();
                    assert_eq!(got, *values, "the forwarded values of {name:?}");
                }
            }
        }
    }

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
            callback: &'a RawValue,
        }
        let raw: Raw<'_> = serde_json::from_str(&message.body).expect("the envelope is JSON");
        assert_eq!(raw.callback.get().as_bytes(), trimmed(&sent.body));
        let topic = config
            .topic(message.category)
            .expect("published to a topic");
        assert_eq!(*arn, topic.arn);
        assert_eq!(
            &republish::message_from_envelope(&message.body).expect("republishable"),
            message
        );
    }
    if let Some((line, _)) = logged {
        let envelope = envelope_of(line);
        let message = republish::message_from_envelope(&envelope).expect("republishable");
        assert!(config.topic(message.category).is_none());
        assert!(envelope.ends_with(&format!(
            ",\"callback\":{}}}",
            String::from_utf8(trimmed(&sent.body)).unwrap()
        )));
    }

    // The log lines.
    for secret in [TOKEN, PREVIOUS, UPSTREAM_SECRET] {
        assert!(
            !log.contains(secret) || sent.spells(secret),
            "the log holds a secret"
        );
    }
    let expected_lines = 1 + usize::from(exception && forwarded);
    assert_eq!(lines.len(), expected_lines, "{log}");
    for (line, value) in &lines {
        if value.get("_aws").is_some() {
            metrics::validate_emf(value).unwrap_or_else(|e| panic!("{e}: {line}"));
        }
        let kind = event_of(value);
        let forward_line = matches!(
            kind.as_str(),
            "callback/forwarded" | "forward/forwarded" | "forward_failed/forward_failed"
        );
        assert_eq!(
            forward_line,
            forwarded && (forward_decision || kind.starts_with("forward"))
        );
        if forward_line {
            let body_text = String::from_utf8_lossy(&sent.body);
            let command = value["command"].as_str().unwrap_or("");
            // Only another command is forwarded as itself; an exception only alongside its
            // publish.
            assert_eq!(command == EXCEPTION_COMMAND, !forward_decision, "{line}");
            if body_text.len() >= 16 && !command.contains(&*body_text) {
                assert!(
                    !line.contains(&*body_text),
                    "a forward line holds the body: {line}"
                );
            }
            for sign in &sent.signs {
                if sign.len() >= 16 && !command.contains(sign.as_str()) {
                    assert!(
                        !line.contains(sign.as_str()),
                        "a forward line holds the Sign"
                    );
                }
            }
        }
    }
    let records = record_source::scan("fuzz", &log).records;
    if publish_failed {
        // The record is the envelope that failed, and republishing would send that message.
        assert_eq!(records.len(), 1, "{log}");
        let record = records[0].as_ref().expect("a readable record");
        assert_eq!(record.envelope, attempts[0].1.body);
        assert_eq!(record.topic_arn.as_deref(), Some(attempts[0].0.as_str()));
    } else {
        assert!(records.is_empty(), "{log}");
    }
});
