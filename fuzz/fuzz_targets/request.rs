//! The whole request path on arbitrary input: what a caller controls (method, query string,
//! headers, body) becomes the Lambda event API Gateway would deliver (HTTP API, REST API or
//! function URL; the body base64-encoded or not), which goes through `lambda_http`'s conversion
//! and the production handler (decision, envelope, attributes, the typed log lines), with fakes
//! for SNS and the retry queue that succeed or fail, and the tests' recording upstream
//! (tests/support/upstream.rs, on loopback) answering with any status, content type and body,
//! closing the connection, cutting its answer short, or, rarely, not answering in time. Beyond
//! "no panic", each run checks:
//!
//! - the answer is a status of the table of docs/contract.md with a JSON FAIL body whose
//!   ErrorCode / 10 is the status (200 is the exact acknowledgement), or, for a forwarded
//!   command, the upstream's answer unchanged (status, Content-Type, Location, body bytes), or
//!   502/5020 (no usable answer) or 504/5040 (timed out); and never holds a token or the
//!   upstream's key;
//! - a forwarded request carries the query string exactly as received (for HTTP API and
//!   function URL events the raw query string, byte for byte; for REST events, which carry no
//!   raw query string, one that decodes to exactly the parameters of the event), the body bytes
//!   as received and the request's Content-Type; only commands other than the exception's are
//!   forwarded, only with an upstream configured, and exceptions only with FORWARD_EXCEPTIONS,
//!   where Chat's answer is the publish's alone;
//! - an exception's publish carries the body byte for byte (but U+FFFE and U+FFFF, written as
//!   escapes, and no such raw character anywhere in it), goes to its category's topic, and is
//!   what the retry queue gets when SNS fails, or what the `publish_failed` record keeps (with
//!   503) when the queue fails too or there is none; an exception without a topic leaves its
//!   envelope in its `logged` line;
//! - the log is one JSON object per line, one line per callback plus one for a forwarded
//!   exception, each line's EMF metadata valid (tests/support/emf.rs); no line holds a token or
//!   the upstream's key; no forward line holds the body or the Sign.
//!
//! `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run request -- -max_total_time=300`; `FUZZ_STATS=1`
//! prints the outcome counts every 20,000 runs and at exit.

#![no_main]

// The body's model (`well_formed`, `command`) is the decision target's: here only its bytes.
#[allow(dead_code)]
mod inputs;
mod stats;

// The tests' own harness pieces, shared rather than copied.
#[allow(dead_code)]
#[path = "../../tests/support/emf.rs"]
mod emf;
#[allow(dead_code)]
#[path = "../../tests/support/upstream.rs"]
mod upstream;

use im_exception_webhook::adapters::Publisher;
use im_exception_webhook::adapters::secret::Tokens;
use im_exception_webhook::adapters::upstream::Forwarder;
use im_exception_webhook::domain::EXCEPTION_COMMAND;
use im_exception_webhook::domain::classify::Category;
use im_exception_webhook::domain::config::{Config, TokenSource};
use im_exception_webhook::domain::publish::QueuedPublish;
use im_exception_webhook::handlers::webhook::{ACKNOWLEDGEMENT, App, handle};
use inputs::{BodyInput, PREVIOUS, QueryInput, TOKEN, as_carried, spells};
use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::http::header::{CONTENT_TYPE, LOCATION};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};
use upstream::{Action, Recorded, Reply, Upstream};

const UPSTREAM_KEY: &str = "upstream-secret-key";
const UPSTREAM_PATH: &str = "/im?key=upstream-secret-key";
const REFUSED: [char; 2] = ['\u{FFFE}', '\u{FFFF}'];

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    HttpApi,
    RestApi,
    FunctionUrl,
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

/// What the upstream does when a callback is forwarded to it.
#[derive(Arbitrary, Debug)]
enum UpstreamInput<'a> {
    Answer {
        /// 200 + this % 800: 600 and above are no HTTP status API Gateway passes on.
        status: u16,
        content_type: u8,
        location: bool,
        body: &'a [u8],
    },
    ChatAnswer,
    /// Closes the connection without answering: tried again once, then 502.
    Close,
    /// Cuts its answer short: 502.
    Truncate,
    /// Answers, then closes the connection: the next forward meets a stale pooled one.
    AnswerThenClose,
    /// No answer within UPSTREAM_TIMEOUT_MS (504), when 255; otherwise as `Close`. Each costs
    /// the timeout, so only one stalling input in 256 (and not the default of a short input).
    Stall(u8),
}

const UPSTREAM_TYPES: [Option<&str>; 5] = [
    None,
    Some("application/json"),
    Some("text/plain; charset=utf-8"),
    Some("text/html; charset=GBK"),
    Some("application/octet-stream"),
];

impl UpstreamInput<'_> {
    fn reply(&self) -> Reply {
        match self {
            UpstreamInput::Answer {
                status,
                content_type,
                location,
                body,
            } => {
                let status = 200 + status % 800;
                // A 204 or 304 has no body, whatever the upstream says.
                let body = if matches!(status, 204 | 304) {
                    &[][..]
                } else {
                    body
                };
                let content_type = UPSTREAM_TYPES[usize::from(*content_type) % 5];
                let mut reply = Reply::new(status, content_type, body.to_vec());
                if *location {
                    let to = "https://elsewhere.example/moved?a=1".to_owned();
                    reply.headers.push(("location".into(), to));
                }
                reply
            }
            UpstreamInput::ChatAnswer => Reply::json(
                r#"{"ActionStatus":"OK","ErrorCode":1,"ErrorInfo":"blocked by moderation"}"#,
            ),
            UpstreamInput::Close | UpstreamInput::Stall(..255) => {
                Reply::json("{}").then(Action::Close)
            }
            UpstreamInput::Truncate => {
                Reply::json("{\"ActionStatus\":\"OK\"}").then(Action::Truncate)
            }
            UpstreamInput::AnswerThenClose => Reply::json("{}").then(Action::AnswerThenClose),
            UpstreamInput::Stall(255) => Reply::json("{}").then(Action::Hold),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Failing {
    Nothing,
    Sns,
    SnsAndQueue,
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    // The small choices first: `arbitrary` fills fields in order, and a short input leaves the
    // last ones at their defaults.
    /// Which configuration: tokens, upstream, body limit, unclassified topic, retry queue.
    config: u8,
    failing: Failing,
    source: Source,
    base64: bool,
    encoding: Encoding,
    upstream: UpstreamInput<'a>,
    /// Another method than POST when the number is 7 modulo 8.
    method: (u8, &'a str),
    content_type: Option<ContentType<'a>>,
    body: BodyInput<'a>,
    query: QueryInput<'a>,
}

/// SNS or the retry queue: keeps every publish it is asked for; fails them when told to.
#[derive(Default)]
struct Fake {
    fail: AtomicBool,
    sent: Mutex<Vec<QueuedPublish>>,
}

impl Publisher for Fake {
    async fn publish(
        &self,
        publish: &QueuedPublish,
        _until: tokio::time::Instant,
    ) -> Result<String, String> {
        self.sent.lock().unwrap().push(publish.clone());
        match self.fail.load(Ordering::Relaxed) {
            false => Ok("fuzz-message-id".into()),
            true => Err("injected \"fault\"\n".into()),
        }
    }
}

type FuzzApp = App<Fake, Fake>;

const CONFIGS: u8 = 72;

/// The upstream, restarted every 32 requests so that reading what it recorded stays cheap,
/// and the apps, each rebuilt (with a forwarder to the upstream of the day) when first used
/// after a restart.
struct Harness {
    runtime: tokio::runtime::Runtime,
    upstream: Upstream,
    generation: u64,
    /// How many requests the upstream had recorded before this run.
    seen: usize,
    apps: Vec<Option<(u64, FuzzApp)>>,
}

impl Harness {
    fn new() -> Harness {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let upstream = runtime.block_on(Upstream::start(Reply::json("{}")));
        let apps = (0..CONFIGS).map(|_| None).collect();
        Harness {
            runtime,
            upstream,
            generation: 0,
            seen: 0,
            apps,
        }
    }

    fn restart_if_due(&mut self) {
        if self.seen >= 32 {
            self.upstream = self.runtime.block_on(Upstream::start(Reply::json("{}")));
            self.generation += 1;
            self.seen = 0;
        }
    }

    /// Configuration `v`: tokens (none, one, one and a previous one), upstream (none, one, one
    /// with FORWARD_EXCEPTIONS), MAX_BODY_BYTES (1024 or the default), an unclassified topic
    /// or not, a retry queue or not.
    fn prepare(&mut self, v: u8) {
        let v = v % CONFIGS;
        let url = self.upstream.url(UPSTREAM_PATH);
        let slot = &mut self.apps[usize::from(v)];
        if slot.as_ref().is_none_or(|(g, _)| *g != self.generation) {
            let (tokens, upstream, small, unclassified, queue) =
                (v % 3, (v / 3) % 3, (v / 9) % 2, (v / 18) % 2, v / 36);
            let config = Config::from_lookup(|name| {
                let topic = |n: &str| Some(format!("arn:aws:sns:us-east-1:1:{n}"));
                match name {
                    "IM_SDK_APP_ID" => Some(inputs::APP_IDS.into()),
                    "IM_CALLBACK_TOKEN" if tokens > 0 => Some(TOKEN.into()),
                    "IM_CALLBACK_TOKEN_PREVIOUS" if tokens == 2 => Some(PREVIOUS.into()),
                    "UPSTREAM_CALLBACK_URL" if upstream > 0 => Some(url.clone()),
                    "UPSTREAM_TIMEOUT_MS" => Some("100".into()),
                    "FORWARD_EXCEPTIONS" if upstream == 2 => Some("true".into()),
                    "MAX_BODY_BYTES" if small == 1 => Some("1024".into()),
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
            let tokens: Arc<[String]> = match &config.tokens {
                TokenSource::Env(tokens) => tokens.clone().into(),
                _ => Arc::new([]),
            };
            let app = App {
                tokens: Tokens::Fixed(tokens),
                sns: Fake::default(),
                queue: (queue == 1).then(Fake::default),
                upstream: config.upstream.clone().map(Forwarder::new),
                config,
            };
            *slot = Some((self.generation, app));
        }
    }

    fn app(&self, v: u8) -> &FuzzApp {
        &self.apps[usize::from(v % CONFIGS)]
            .as_ref()
            .expect("prepared")
            .1
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
    method: String,
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
    /// Whether the caller sent `secret` (outside a Sign): then a line or an answer may hold it.
    fn spells(&self, secret: &str) -> bool {
        String::from_utf8_lossy(&self.body).contains(secret)
            || self.unsigned.iter().any(|v| spells(v, secret))
    }
}

/// The event API Gateway would deliver for this call.
fn event(input: &Input<'_>, limit: usize) -> Sent {
    // API Gateway passes any token-shaped method on.
    let method = match input.method {
        (n, _) if n % 8 != 7 => "POST".to_owned(),
        (_, m) => m
            .chars()
            .filter(char::is_ascii_alphabetic)
            .take(10)
            .collect(),
    };
    let method = match method.to_ascii_uppercase() {
        m if m.is_empty() => "PATCH".to_owned(),
        m => m,
    };
    let pairs = input.query.pairs(now());
    let raw_query = (pairs.iter())
        .map(|(k, v)| {
            format!(
                "{}={}",
                encode(k, input.encoding),
                encode(v, input.encoding)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let mut bytes = input.body.render().bytes;
    // With the 1024-byte limit, a callback padded with blanks to just under or over it.
    if let BodyInput::Callback(callback) = &input.body
        && let Some(delta) = callback.pad
        && limit <= 1024
    {
        let target = limit.saturating_add_signed(isize::from(delta % 3));
        bytes.resize(bytes.len().max(target), b' ');
    }
    let (body, received) = if input.base64 {
        use base64::Engine;
        (
            base64::engine::general_purpose::STANDARD.encode(&bytes),
            bytes,
        )
    } else {
        // Only text reaches the function unencoded.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (text.clone(), text.into_bytes())
    };
    let single: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    let content_type = input.content_type.as_ref().and_then(|c| {
        let c = match c {
            ContentType::Json => "application/json".to_owned(),
            ContentType::TextUtf8 => "text/plain; charset=utf-8".to_owned(),
            // A header value: visible ASCII and spaces.
            ContentType::Any(s) => s
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .collect(),
        };
        Some(c.trim().to_owned()).filter(|c| !c.is_empty())
    });
    let mut headers = json!({"host": "example.execute-api.us-east-1.amazonaws.com"});
    if let Some(c) = &content_type {
        headers["content-type"] = json!(c);
    }
    let mut multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &pairs {
        multi.entry(k.clone()).or_default().push(v.clone());
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let event = match input.source {
        Source::RestApi => json!({
            "resource": "/callback", "path": "/callback", "httpMethod": method,
            "headers": headers, "multiValueHeaders": {},
            "queryStringParameters": single, "multiValueQueryStringParameters": multi,
            "requestContext": {"accountId": "1", "apiId": "a", "resourceId": "r",
                "resourcePath": "/callback", "httpMethod": method, "path": "/prod/callback",
                "stage": "prod", "requestId": "fuzz", "requestTimeEpoch": now_ms,
                "identity": {"sourceIp": "203.0.113.7"}},
            "body": body, "isBase64Encoded": input.base64
        }),
        Source::HttpApi | Source::FunctionUrl => json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/callback",
            "rawQueryString": raw_query, "queryStringParameters": single, "headers": headers,
            "requestContext": {"accountId": "1", "apiId": "a", "domainName": "example.com",
                "http": {"method": method, "path": "/callback", "protocol": "HTTP/1.1",
                    "sourceIp": "203.0.113.7", "userAgent": "TencentCloudChat"},
                "requestId": "fuzz", "routeKey": "$default", "stage": "$default",
                "time": "25/Nov/2026:20:00:00 +0000", "timeEpoch": now_ms},
            "body": body, "isBase64Encoded": input.base64
        }),
    };
    let sign = |k: &str| k.eq_ignore_ascii_case("Sign");
    let signs = (pairs.iter())
        .filter(|(k, _)| sign(k))
        .map(|(_, v)| v.clone())
        .collect();
    let unsigned = (pairs.iter())
        .flat_map(|(k, v)| [Some(k.clone()), (!sign(k)).then(|| v.clone())])
        .flatten()
        .collect();
    Sent {
        event,
        method,
        raw_query,
        multi,
        body: received,
        content_type,
        signs,
        unsigned,
    }
}

/// The `callback` of an envelope, as text.
fn callback_of(envelope: &str) -> String {
    #[derive(Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        callback: &'a RawValue,
    }
    let raw: Raw<'_> = serde_json::from_str(envelope).expect("the envelope is JSON");
    raw.callback.get().to_owned()
}

/// What the forwarded request was: exactly what was received.
fn check_forwarded(request: &Recorded, sent: &Sent, source: Source) {
    assert_eq!(request.method, "POST");
    assert_eq!(request.body, sent.body, "the forwarded body");
    let content_type = sent.content_type.as_deref().unwrap_or("application/json");
    assert_eq!(request.header_values("content-type"), [content_type]);
    let target = String::from_utf8(request.target.clone()).expect("an ASCII target");
    let query = target
        .strip_prefix(UPSTREAM_PATH)
        .expect("the upstream's own path and query");
    let query = query.strip_prefix('&').unwrap_or(query);
    match source {
        Source::HttpApi | Source::FunctionUrl => assert_eq!(query, sent.raw_query),
        Source::RestApi => {
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

/// A log line: its text, and its fields as values but for a `logged` line's `envelope`,
/// kept as text (a body may hold a number such as 1e400, valid JSON that `Value` cannot hold).
struct LogLine {
    text: String,
    value: Value,
    envelope: Option<String>,
}

impl LogLine {
    fn of(line: &impl serde::Serialize) -> LogLine {
        let text = serde_json::to_string(line).expect("a line serializes");
        assert!(text.starts_with('{') && !text.contains('\n'), "{text}");
        let fields: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(&text).expect("each line is one JSON object");
        let envelope = fields.get("envelope").map(|e| e.get().to_owned());
        let value = (fields.iter())
            .filter(|(name, _)| *name != "envelope")
            .map(|(name, v)| {
                (
                    name.clone(),
                    serde_json::from_str::<Value>(v.get()).unwrap(),
                )
            })
            .collect();
        LogLine {
            text,
            value,
            envelope,
        }
    }

    fn kind(&self) -> String {
        let field = |name: &str| self.value[name].as_str().unwrap_or("?").to_owned();
        format!("{}/{}", field("event"), field("outcome"))
    }
}

/// The envelope's category.
fn category_of(envelope: &str) -> Category {
    #[derive(Deserialize)]
    struct Head<'a> {
        category: &'a str,
    }
    let head: Head<'_> = serde_json::from_str(envelope).expect("the envelope is JSON");
    head.category.parse().expect("a category")
}

fn harness() -> &'static Mutex<Harness> {
    static HARNESS: OnceLock<Mutex<Harness>> = OnceLock::new();
    HARNESS.get_or_init(|| Mutex::new(Harness::new()))
}

fuzz_target!(|input: Input<'_>| {
    let mut harness = harness().lock().unwrap();
    harness.restart_if_due();
    harness.prepare(input.config);
    let forwarded = run(&harness, &input);
    harness.seen += forwarded;
});

/// One run; returns how many requests reached the upstream.
fn run(harness: &Harness, input: &Input<'_>) -> usize {
    let reply = input.upstream.reply();
    let stalls = reply.action == Action::Hold;
    harness.upstream.set(reply.clone());
    let app = harness.app(input.config);
    let config = &app.config;
    let sns_fails = !matches!(input.failing, Failing::Nothing);
    let queue_fails = matches!(input.failing, Failing::SnsAndQueue);
    app.sns.fail.store(sns_fails, Ordering::Relaxed);
    app.sns.sent.lock().unwrap().clear();
    if let Some(queue) = &app.queue {
        queue.fail.store(queue_fails, Ordering::Relaxed);
        queue.sent.lock().unwrap().clear();
    }

    let sent = event(input, config.max_body_bytes);
    // API Gateway refuses a request line over 10,240 bytes (an HTTP API quota) before any
    // function sees it; lambda_http's conversion panics on a URI past 64 KiB.
    if sent.raw_query.len() > 10_240 {
        return 0;
    }
    let lambda_request: LambdaRequest =
        serde_json::from_value(sent.event.clone()).expect("an API Gateway event deserializes");
    let request: Request = lambda_request.into();
    assert_eq!(request.body().as_ref(), sent.body.as_slice());
    let (response, lines) = harness.runtime.block_on(handle(app, &request));
    let forwarded = harness.upstream.requests()[harness.seen..].to_vec();

    let status = response.status().as_u16();
    let answer_body = response.body().as_ref().to_vec();
    let header = |name| response.headers().get(name).map(|v| v.as_bytes().to_vec());
    let published = app.sns.sent.lock().unwrap().clone();
    let queued = app
        .queue
        .as_ref()
        .map(|q| q.sent.lock().unwrap().clone())
        .unwrap_or_default();
    let lines: Vec<LogLine> = lines.iter().map(LogLine::of).collect();
    let kinds: Vec<String> = lines.iter().map(LogLine::kind).collect();
    let logged = lines.iter().find(|l| l.kind() == "callback/logged");

    // What happened: a publish, an exception kept in its log line, a forward.
    assert!(published.len() <= 1);
    let tried_queue = sns_fails && !published.is_empty() && app.queue.is_some();
    assert_eq!(
        queued.len(),
        usize::from(tried_queue),
        "the queue only when SNS failed"
    );
    // A connection closed before the answer is tried once more: the same request twice.
    assert!(forwarded.len() <= 2, "{forwarded:?}");
    let same = |a: &Recorded, b: &Recorded| (&a.target, &a.body) == (&b.target, &b.body);
    assert!(forwarded.windows(2).all(|w| same(&w[0], &w[1])));
    let exception = !published.is_empty() || logged.is_some();
    let was_forwarded = !forwarded.is_empty();
    let forward_decision = was_forwarded && !exception;
    match &config.upstream {
        Some(upstream) if exception => {
            assert_eq!(
                was_forwarded, upstream.forward_exceptions,
                "an exception forwarded"
            )
        }
        Some(_) => {}
        None => assert!(!was_forwarded, "forwarded without an upstream"),
    }

    // The answer.
    let answered = matches!(
        input.upstream,
        UpstreamInput::Answer { .. } | UpstreamInput::ChatAnswer | UpstreamInput::AnswerThenClose
    );
    let passed_on = forward_decision && answered && reply.status < 600;
    let mut outcome = if passed_on {
        assert_eq!(status, reply.status);
        assert_eq!(answer_body, reply.body);
        let sent_header = |name: &str| {
            let found = reply.headers.iter().find(|(n, _)| n == name);
            found.map(|(_, v)| v.as_bytes().to_vec())
        };
        assert_eq!(header(CONTENT_TYPE), sent_header("content-type"));
        assert_eq!(header(LOCATION), sent_header("location"));
        match response.body() {
            Body::Text(_) => assert!(std::str::from_utf8(&reply.body).is_ok()),
            Body::Binary(_) => assert!(std::str::from_utf8(&reply.body).is_err()),
            _ => panic!("an empty or unexpected body"),
        }
        "forwarded: the upstream's answer".to_owned()
    } else if forward_decision {
        let expected = if stalls { 504 } else { 502 };
        assert_eq!(status, expected, "{:?}", input.upstream);
        format!("forwarded: {expected}")
    } else {
        assert!(
            [200, 400, 401, 403, 405, 413, 503].contains(&status),
            "status {status}"
        );
        if sent.method == "POST" {
            assert_eq!(
                status == 413,
                sent.body.len() > config.max_body_bytes,
                "413 exactly when over"
            );
        }
        let kept = tried_queue && !queue_fails;
        assert_eq!(status == 503, !published.is_empty() && sns_fails && !kept);
        let (outcome, line) = match (status, exception) {
            (200, true) if published.is_empty() => {
                ("200 exception without a topic", "callback/logged")
            }
            (200, true) if sns_fails => ("200 exception queued", "callback/queued"),
            (200, true) => ("200 exception published", "callback/published"),
            (200, false) => {
                assert!(config.upstream.is_none(), "acknowledged with an upstream");
                ("200 other command, acknowledged", "callback/other_command")
            }
            (503, _) => (
                "503 publish failed, recorded",
                "publish_failed/publish_failed",
            ),
            (_, _) => ("refused", "callback/rejected"),
        };
        assert_eq!(kinds[0], line);
        outcome.replace("refused", &format!("{status} refused"))
    };
    if was_forwarded && exception {
        outcome.push_str("; forwarded too");
    }
    if !passed_on {
        // The function's own answer: JSON, the exact acknowledgement or a FAIL.
        assert_eq!(
            header(CONTENT_TYPE).as_deref(),
            Some(&b"application/json"[..])
        );
        let text = std::str::from_utf8(&answer_body).expect("a text answer");
        let answer: Value = serde_json::from_str(text).expect("the answer is JSON");
        if status == 200 {
            assert_eq!(text, ACKNOWLEDGEMENT);
        } else {
            assert_eq!(answer["ActionStatus"], "FAIL");
            let code = answer["ErrorCode"].as_u64().unwrap();
            assert_eq!(code / 10, u64::from(status));
            assert!(
                !forward_decision || code == u64::from(status) * 10,
                "{code}"
            );
            assert!(!answer["ErrorInfo"].as_str().unwrap().is_empty());
        }
    }
    let from_upstream = String::from_utf8_lossy(&reply.body);
    let answer_text = String::from_utf8_lossy(&answer_body);
    for secret in [TOKEN, PREVIOUS, UPSTREAM_KEY] {
        let held = answer_text.contains(secret) && !from_upstream.contains(secret);
        assert!(!held || sent.spells(secret), "the answer holds a secret");
    }

    // What was forwarded: exactly what was received.
    for request in &forwarded {
        check_forwarded(request, &sent, input.source);
    }

    // What was published, queued or recorded: one publish, to the category's topic, the body
    // in it as received, and nothing SNS or SQS refuses.
    for publish in published.iter().chain(&queued) {
        assert_eq!(callback_of(&publish.message), as_carried(&sent.body));
        let topic = config.topics.get(category_of(&publish.message));
        assert_eq!(Some(&publish.topic_arn), topic.map(|t| &t.arn));
        assert!(
            !publish.to_json().contains(REFUSED),
            "a publish holds U+FFFE or U+FFFF"
        );
        assert_eq!(
            publish, &published[0],
            "the queue gets what SNS did not take"
        );
    }
    let records: Vec<&Value> = (lines.iter())
        .filter(|l| l.value["event"] == "publish_failed")
        .map(|l| &l.value["publish"])
        .collect();
    assert_eq!(records.len(), usize::from(status == 503));
    for record in records {
        assert_eq!(QueuedPublish::deserialize(record).unwrap(), published[0]);
    }
    if let Some(line) = logged {
        let envelope = line
            .envelope
            .as_deref()
            .expect("a logged line keeps its envelope");
        assert!(config.topics.get(category_of(envelope)).is_none());
        assert_eq!(callback_of(envelope), as_carried(&sent.body));
        assert!(!envelope.contains(REFUSED));
    }

    // The log lines.
    assert_eq!(
        lines.len(),
        1 + usize::from(exception && was_forwarded),
        "{kinds:?}"
    );
    for line in &lines {
        let text = &line.text;
        for secret in [TOKEN, PREVIOUS, UPSTREAM_KEY] {
            assert!(
                !text.contains(secret) || sent.spells(secret),
                "a line holds a secret"
            );
        }
        if line.value.get("_aws").is_some() {
            emf::validate_emf(&line.value).unwrap_or_else(|e| panic!("{e}: {text}"));
        }
        let kind = line.kind();
        let forward_line = matches!(
            kind.as_str(),
            "callback/forwarded" | "forward/forwarded" | "forward_failed/forward_failed"
        );
        assert_eq!(
            forward_line,
            was_forwarded && (forward_decision || kind.starts_with("forward"))
        );
        if forward_line {
            let body_text = String::from_utf8_lossy(&sent.body);
            let command = line.value["command"].as_str().unwrap_or("");
            // Only another command is forwarded as itself; an exception only beside its publish.
            assert_eq!(command == EXCEPTION_COMMAND, !forward_decision, "{text}");
            if body_text.len() >= 16 && !command.contains(&*body_text) {
                assert!(
                    !text.contains(&*body_text),
                    "a forward line holds the body: {text}"
                );
            }
            for sign in sent.signs.iter().filter(|s| s.len() >= 16) {
                let held = text.contains(sign.as_str()) && !command.contains(sign.as_str());
                assert!(!held, "a forward line holds the Sign");
            }
        }
    }
    stats::count(&[&outcome], 20_000);
    forwarded.len()
}
