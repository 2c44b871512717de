//! Forwarding to the app's existing callback backend (the upstream), from the outside: API
//! Gateway and function URL events through the webhook in process, a recording upstream on
//! loopback (support/upstream.rs) standing for the backend, and the real binary under a local
//! Runtime API where `SSL_CERT_FILE` matters. (The cold start's refusal of plain HTTP to a host
//! that is not loopback: tests/bootstrap.rs.)
//!
//! Run with `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --all-features --test forward`
//! (moto serves the test where an exception is published as well as forwarded).

mod support;

use im_exception_webhook::adapters::upstream::MAX_ANSWER_BYTES;
use im_exception_webhook::domain::EXCEPTION_COMMAND;
use im_exception_webhook::domain::classify::Category;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::moto::closed_url;
use support::upstream::{Action, Recorded, Reply, TestCa, Upstream};
use support::{ACK, Answer, Call, Function, Lambda, World};

const TOKEN: &str = "fwd-T0ken-never-logged";
const BEFORE_SEND: &str = "Group.CallbackBeforeSendMsg";
const AFTER_SEND: &str = "Group.CallbackAfterSendMsg";
/// In every forwarded body: a log line that held the body would show it.
const BODY_MARKER: &str = "BODY-MARKER-4f1c9e";
/// A key in the upstream URL's own query, as a backend may require: never logged either.
const UPSTREAM_KEY: &str = "upstream-k3y-never-logged";
/// How long past a timeout the contract fixes an answer may take on a busy, shared machine:
/// a deadline, not a benchmark.
const MARGIN: Duration = Duration::from_millis(2000);

/// The webhook's configuration: a token, made-up topics (published to only where SNS is pointed
/// at a server of the test's), the upstream `upstream` and `extra`.
fn env(upstream: Option<&str>, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = support::made_up_env(&[("IM_CALLBACK_TOKEN", Some(TOKEN))]);
    env.extend(upstream.map(|url| ("UPSTREAM_CALLBACK_URL".to_owned(), url.to_owned())));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// The webhook in process, forwarding to `upstream`; SNS is a closed port.
async fn function(upstream: &Upstream, extra: &[(&str, &str)]) -> Function {
    let env = env(Some(&upstream.url("/im")), extra);
    Function::new(&env, &closed_url()).await
}

/// Chat's call of `command`, signed with [`TOKEN`].
fn chat(command: &str, body: &str) -> Call {
    Call::command(command, body).signed(TOKEN)
}

/// Chat's call of a before-send callback, as an HTTP API event.
fn before_send() -> Value {
    chat(BEFORE_SEND, "{}").http_api()
}

/// Chat's query with every kind of encoding a backend's own parser or Sign check may depend
/// on: `%2B`, `%20`, `+`, UTF-8 escapes in both cases of hex, an encoded dot in the command, a
/// repeated parameter, SdkAppid again in another case, an empty value, a name without `=`,
/// and literal sub-delimiters.
const TRICKY: &str = "SdkAppid=1400000000&CallbackCommand=Group%2ECallbackBeforeSendMsg\
    &contenttype=json&ClientIP=203.0.113.7&OptPlatform=RESTAPI&plus=a%2Bb&space=a%20b\
    &formspace=a+b&utf8=%E4%BD%A0%E5%A5%BD%F0%9F%98%80&lower=%c3%a9&tag=1&tag=2\
    &empty=&flag&sdkappid=1400000000&eq=a=b&sub=!$'()*,;:@/?~";

/// `raw` with `Sign` and `RequestTime` for now appended, as Chat signs.
fn signed(raw: &str) -> String {
    let time = support::events::now_secs().to_string();
    let sign = im_exception_webhook::domain::auth::sign(TOKEN, &time);
    format!("{raw}&Sign={}&RequestTime={time}", hex::encode(sign))
}

fn sign_of(raw_query: &str) -> &str {
    let mut params = raw_query.split('&');
    params.find_map(|p| p.strip_prefix("Sign=")).unwrap()
}

/// `event` (payload 2.0) with `raw` as its query string, exactly: lambda_http reads the
/// parameters from it, not from `queryStringParameters`.
fn with_raw_query(mut event: Value, raw: &str) -> Value {
    event["rawQueryString"] = raw.into();
    event
}

/// A before-send body with odd but valid JSON: escapes, non-ASCII, spacing.
fn before_send_body() -> String {
    format!(
        "{{\"CallbackCommand\":\"{BEFORE_SEND}\", \"GroupId\":\"@TGS#1\",\n\t\"MsgBody\":\
         [{{\"MsgType\":\"TIMTextElem\",\"MsgContent\":{{\"Text\":\"h\\u00e9 \u{4f60}\u{597d} \
         \\\"q\\\" {BODY_MARKER}\"}}}}] }}"
    )
}

/// `application/x-www-form-urlencoded` pairs, decoded (`+` is a space), sorted.
fn form_decode(raw: &[u8]) -> Vec<(String, String)> {
    let decode = |part: &[u8]| {
        let (mut out, mut i) = (Vec::new(), 0);
        while i < part.len() {
            let hex = |at: usize| part.get(at).and_then(|b| (*b as char).to_digit(16));
            match (part[i], hex(i + 1), hex(i + 2)) {
                (b'%', Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                (b'+', ..) => out.push(b' '),
                (b, ..) => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let pair = |p: &[u8]| match p.iter().position(|b| *b == b'=') {
        Some(i) => (decode(&p[..i]), decode(&p[i + 1..])),
        None => (decode(p), String::new()),
    };
    let mut pairs: Vec<_> = raw.split(|b| *b == b'&').map(pair).collect();
    pairs.retain(|p| *p != Default::default());
    pairs.sort();
    pairs
}

/// A header of the answer, as API Gateway passes it on.
fn header(answer: &Answer, name: &str) -> Option<String> {
    answer.raw["headers"][name].as_str().map(str::to_owned)
}

/// The answer's body bytes (decoded when the function answered base64).
fn body_bytes(answer: &Answer) -> Vec<u8> {
    match answer.raw["isBase64Encoded"] == true {
        true => aws_smithy_types::base64::decode(&answer.body).unwrap(),
        false => answer.body.clone().into_bytes(),
    }
}

/// Invokes `f` with `event`, expects the acknowledgement the upstream answers with, and returns
/// the one request that this call made the upstream receive.
async fn forwarded(f: &Function, upstream: &Upstream, event: &Value) -> Recorded {
    let before = upstream.requests().len();
    f.invoke(event).await.assert_acknowledged();
    let mut requests = upstream.requests();
    assert_eq!(requests.len(), before + 1, "{requests:#?}");
    requests.pop().unwrap()
}

/// The upstream got a POST of exactly `target` and `body`, with one `content_type`.
#[track_caller]
fn assert_forwarded(request: &Recorded, target: &str, body: &[u8], content_type: &str) {
    assert_eq!(request.method, "POST");
    let got = String::from_utf8_lossy(&request.target);
    assert_eq!(got, target, "the target, byte for byte");
    assert!(request.body == body, "the body: {request:#?}");
    assert_eq!(request.header_values("content-type"), [content_type]);
}

/// The one `forward_failed` line of `lines`, for `command` and `reason`.
#[track_caller]
fn assert_forward_failed(lines: &[Value], command: &str, reason: &str) -> Value {
    let mut failed = lines.iter().filter(|l| l["event"] == "forward_failed");
    let line = failed.next().expect("a forward_failed line").clone();
    assert!(failed.next().is_none(), "{lines:#?}");
    let fields = ["outcome", "level", "command", "reason"].map(|k| line[k].clone());
    let expected = ["forward_failed", "WARN", command, reason].map(Value::from);
    assert_eq!(fields, expected, "{line}");
    assert!(line["durationMs"].is_u64(), "{line}");
    assert!(line["detail"].is_string(), "{line}");
    let metrics = support::emf::assert_valid(std::slice::from_ref(&line));
    assert_eq!(metrics, [["ForwardFailures"]]);
    line
}

/// No token, no Sign, nothing of the body and no key of the upstream URL in `text`.
#[track_caller]
fn assert_nothing_secret(text: &str, sign: Option<&str>) {
    for secret in [TOKEN, BODY_MARKER, UPSTREAM_KEY].into_iter().chain(sign) {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

fn text(lines: &[Value]) -> String {
    serde_json::to_string(lines).unwrap()
}

// What the upstream receives: Chat's query and body, exactly.

#[tokio::test]
async fn the_upstream_gets_chats_query_after_its_own_and_the_body_exactly_and_chat_its_answer() {
    let verdict = r#"{"ActionStatus":"OK","ErrorCode":1,"ErrorInfo":"blocked"}"#;
    let json_utf8 = Some("application/json; charset=utf-8");
    let upstream = Upstream::start(Reply::new(200, json_utf8, verdict)).await;
    // The upstream URL's own query (with a key, as a backend may want) comes first.
    let own = format!("/im/callback?app=im&key={UPSTREAM_KEY}%2Fx");
    let f = Function::new(&env(Some(&upstream.url(&own)), &[]), &closed_url()).await;
    let (query, body) = (signed(TRICKY), before_send_body());
    let call = Call::command(BEFORE_SEND, body.as_str());
    let call = call.content_type(Some("text/plain"));

    let answer = f.invoke(&with_raw_query(call.http_api(), &query)).await;

    assert_eq!((answer.status, answer.body.as_str()), (200, verdict));
    assert_eq!(header(&answer, "content-type").as_deref(), json_utf8);
    let request = upstream.only_request();
    let target = format!("{own}&{query}");
    assert_forwarded(&request, &target, body.as_bytes(), "text/plain");
    let lines = f.lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    let mut got = line.as_object().unwrap().clone();
    got.retain(|k, _| !["timestamp", "level", "durationMs", "_aws"].contains(&k.as_str()));
    let expected = json!({"event": "callback", "outcome": "forwarded", "status": 200,
        "command": BEFORE_SEND, "Command": BEFORE_SEND, "Forwarded": 1,
        "requestId": "7f9c1a2b-test-request"});
    assert_eq!(Value::Object(got), expected, "and nothing else");
    assert!(line["durationMs"].is_u64(), "{line}");
    assert_eq!(support::emf::assert_valid(&lines), [["Forwarded"]]);
    assert_nothing_secret(&text(&lines), Some(sign_of(&query)));
}

#[tokio::test]
async fn every_event_source_forwards_the_query_and_body_as_received() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let f = function(&upstream, &[]).await;
    let (query, text_body) = (signed(TRICKY), before_send_body());
    let call = Call::command(BEFORE_SEND, text_body.as_str());

    // A function URL event: the raw query and the body as they came.
    let event = with_raw_query(call.function_url(), &query);
    let request = forwarded(&f, &upstream, &event).await;
    let target = format!("/im?{query}");
    assert_forwarded(&request, &target, text_body.as_bytes(), "application/json");

    // Base64 bodies, decoded: not JSON, not UTF-8, since a forwarded body is never read.
    let bytes = [b"\x00\xff\xfe{\x80\r\n", BODY_MARKER.as_bytes()].concat();
    let call = chat(AFTER_SEND, "").binary_body(&bytes);
    let sent = form_decode(call.raw_query_string().as_bytes());
    let octets = call.clone().content_type(Some("application/octet-stream"));
    for (event, content_type) in [
        (
            call.clone().content_type(None).http_api(),
            "application/json",
        ),
        (octets.rest_api(), "application/octet-stream"),
        (octets.function_url(), "application/octet-stream"),
    ] {
        let request = forwarded(&f, &upstream, &event).await;
        assert_eq!(request.body, bytes);
        assert_eq!(request.header_values("content-type"), [content_type]);
        assert_eq!(form_decode(request.query().unwrap()), sent);
    }

    // An event without a body: an empty one.
    let no_body = Call { body: None, ..call };
    for event in [no_body.http_api(), no_body.rest_api()] {
        let request = forwarded(&f, &upstream, &event).await;
        assert_eq!((request.method.as_str(), request.body.len()), ("POST", 0));
    }

    // REST API events carry decoded parameters and no raw query string: the forward rebuilds
    // one that decodes to the same parameters, repeated ones included.
    let call = chat(BEFORE_SEND, "{}")
        .param("plus", "a+b")
        .param("space", "a b")
        .param("utf8", "\u{4f60}\u{597d}\u{1f600}")
        .param("reserved", "&=?/#%")
        .param("tag", "1")
        .param("tag", "2")
        .param("empty", "");
    let request = forwarded(&f, &upstream, &call.rest_api()).await;
    let mut sent = call.query.clone();
    sent.sort();
    assert_eq!(form_decode(request.query().unwrap()), sent);
}

// What Chat receives: the upstream's answer, unchanged.

/// lambda_http's own response conversion transcodes text-like bodies from their declared
/// charset into UTF-8 (and drops a byte-order mark); an upstream's answer must reach Chat
/// as it was sent, whatever it says its charset is.
#[tokio::test]
async fn chat_gets_the_upstreams_answer_unchanged_a_redirect_too_and_at_most_1_mib() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let f = function(&upstream, &[]).await;
    let fail = r#"{"ActionStatus":"FAIL","ErrorCode":90001,"ErrorInfo":"no"}"#;
    let latin1 = Some("text/plain; charset=iso-8859-1");
    let cases: [(u16, Option<&str>, &[u8]); 11] = [
        (500, Some("text/plain"), b"upstream broke"),
        (400, Some("application/json"), fail.as_bytes()),
        (503, Some("text/html; charset=iso-8859-1"), b"<h1>busy</h1>"),
        (204, None, b""),
        (418, None, b"no content type"),
        (200, Some("application/octet-stream"), b"\xde\xad\x00\xff"),
        // Latin-1 "café", then UTF-8 under the same label: as they are, not "fixed".
        (200, latin1, b"caf\xe9"),
        (200, latin1, "caf\u{e9}".as_bytes()),
        // GBK, as a backend in China may answer.
        (200, Some("text/plain; charset=gbk"), b"\xc4\xe3\xba\xc3"),
        (200, Some("application/json"), b"\xef\xbb\xbf{}"),
        (200, None, b"\xff\x00ok"),
    ];
    for (status, content_type, body) in cases {
        upstream.set(Reply::new(status, content_type, body));
        let answer = f.invoke(&before_send()).await;
        assert_eq!(answer.status, status, "{answer:#?}");
        let got = header(&answer, "content-type");
        assert_eq!(got.as_deref(), content_type, "{answer:#?}");
        assert_eq!(body_bytes(&answer), body, "{answer:#?}");
    }

    // A redirect, whole with its Location, and never followed.
    let elsewhere = upstream.url("/elsewhere");
    let mut moved = Reply::new(302, Some("text/plain"), "moved");
    moved.headers.push(("location".into(), elsewhere.clone()));
    upstream.set(moved);
    let answer = f.invoke(&before_send()).await;
    assert_eq!((answer.status, answer.body.as_str()), (302, "moved"));
    assert_eq!(header(&answer, "location"), Some(elsewhere));
    assert_eq!(upstream.requests().len(), cases.len() + 1);

    // At most 1 MiB of answer.
    assert_eq!(MAX_ANSWER_BYTES, 1 << 20);
    let largest = "a".repeat(MAX_ANSWER_BYTES);
    upstream.set(Reply::new(200, None, largest.as_str()));
    let answer = f.invoke(&before_send()).await;
    assert!(answer.status == 200 && answer.body == largest);
    upstream.set(Reply::new(200, None, format!("{largest}b")));
    f.invoke(&before_send()).await.assert_fail(502, 5020);
    assert_forward_failed(&f.lines(), BEFORE_SEND, "answer_too_large");
}

// No usable answer: 502 or 504, and a forward_failed line.

#[tokio::test]
async fn a_connection_closed_without_an_answer_is_retried_once_and_one_cut_off_is_502() {
    let body = format!("{ACK}{}", " ".repeat(64));
    let reply = Reply::new(200, Some("application/json"), body);
    for action in [Action::Close, Action::Truncate] {
        let upstream = Upstream::start(reply.clone().then(action)).await;
        let f = function(&upstream, &[]).await;
        f.invoke(&before_send()).await.assert_fail(502, 5020);
        assert_forward_failed(&f.lines(), BEFORE_SEND, "unreachable");
        if action == Action::Close {
            let requests = upstream.requests();
            let connections: Vec<usize> = requests.iter().map(|r| r.connection).collect();
            assert_eq!(connections, [0, 1], "once more, on a new connection");
        }
    }
}

#[tokio::test]
async fn a_slow_upstream_is_504_within_the_timeout_and_its_connection_is_not_reused() {
    // Held, never released: an upstream that does not answer.
    let upstream = Upstream::start(Reply::json(ACK).then(Action::Hold)).await;
    let f = function(&upstream, &[("UPSTREAM_TIMEOUT_MS", "400")]).await;
    let call = chat(BEFORE_SEND, &before_send_body());

    let started = Instant::now();
    let answer = f.invoke(&call.http_api()).await;
    let elapsed = started.elapsed();
    println!("upstream slower than UPSTREAM_TIMEOUT_MS=400: answered in {elapsed:?}");

    answer.assert_fail(504, 5040);
    assert!(elapsed < Duration::from_millis(400) + MARGIN, "{elapsed:?}");
    assert!(answer.body.contains("400 ms"), "{}", answer.body);
    assert_forward_failed(&f.lines(), BEFORE_SEND, "timeout");
    let raw = call.raw_query_string();
    assert_nothing_secret(&text(&f.lines()), Some(sign_of(&raw)));
    assert_eq!(upstream.requests().len(), 1, "no retry after a timeout");

    upstream.set(Reply::json(ACK));
    let request = forwarded(&f, &upstream, &before_send()).await;
    assert_eq!(request.connection, 1, "not the one still waiting");
}

/// API Gateway would turn such a status into an error of its own, and Chat would never see
/// the 502 the contract promises.
#[tokio::test]
async fn a_status_outside_200_to_599_is_502_with_a_bad_status_line() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let f = function(&upstream, &[]).await;
    // 199 is read as an interim answer, and what follows it cannot be a final one.
    for (n, status) in [600, 199].into_iter().enumerate() {
        upstream.set(Reply::new(status, Some("application/json"), ACK));
        f.invoke(&before_send()).await.assert_fail(502, 5020);
        assert_eq!(upstream.requests().len(), n + 1, "it answered: no retry");
        let lines = f.lines();
        let last = &lines[lines.len() - 1..];
        assert_forward_failed(last, BEFORE_SEND, "bad_status");
    }
}

// Refused callbacks never reach the upstream; without one, nothing changes.

#[tokio::test]
async fn a_forged_or_refused_callback_never_reaches_the_upstream() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    // Exceptions are forwarded too here: a forged one must not be either.
    let extra = [("MAX_BODY_BYTES", "1024"), ("FORWARD_EXCEPTIONS", "true")];
    let f = function(&upstream, &extra).await;
    let now = support::events::now_secs();
    let unsigned = || Call::command(BEFORE_SEND, "{}");
    let exception = support::callback(json!(10023), "@TGS#1").to_string();
    let cases = [
        (unsigned().signed_at("guessed", now), 401, 4014),
        (Call::chat(exception).signed_at("guessed", now), 401, 4014),
        (unsigned(), 401, 4010),
        (unsigned().signed_at(TOKEN, now - 3600), 401, 4013),
        (unsigned().set_param("SdkAppid", "1400000009"), 403, 4031),
        (chat(BEFORE_SEND, "{}").method("GET"), 405, 4050),
        (chat(BEFORE_SEND, &"x".repeat(1025)), 413, 4130),
    ];
    for (call, status, code) in &cases {
        f.invoke(&call.http_api()).await.assert_fail(*status, *code);
        f.invoke(&call.rest_api()).await.assert_fail(*status, *code);
    }
    assert_eq!(upstream.connections(), 0, "not even a connection");
    let lines = f.lines();
    assert_eq!(lines.len(), 2 * cases.len());
    assert!(
        lines.iter().all(|l| l["outcome"] == "rejected"),
        "{lines:#?}"
    );

    // The same call, made right, is forwarded.
    forwarded(&f, &upstream, &before_send()).await;
}

#[tokio::test]
async fn without_an_upstream_other_commands_are_acknowledged_as_before() {
    // An empty UPSTREAM_CALLBACK_URL (a SAM parameter left blank) is no upstream.
    for upstream in [None, Some("")] {
        let f = Function::new(&env(upstream, &[]), &closed_url()).await;
        for command in [BEFORE_SEND, AFTER_SEND, "State.StateChange"] {
            let call = chat(command, "not even json");
            f.invoke(&call.http_api()).await.assert_acknowledged();
        }
        let lines = f.lines();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l["outcome"] == "other_command"));
    }
}

// One client per cold start, connections kept alive.

#[tokio::test]
async fn two_forwards_reuse_one_connection_and_one_the_upstream_closed_is_replaced() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let f = function(&upstream, &[]).await;
    for command in [BEFORE_SEND, AFTER_SEND] {
        forwarded(&f, &upstream, &chat(command, "{}").http_api()).await;
    }
    assert_eq!(upstream.connections(), 1);

    // The upstream closes each connection after its answer without saying so, as a backend
    // does with idle connections while Lambda keeps the environment frozen: each callback is
    // saved, on a new connection.
    upstream.set(Reply::json(ACK).then(Action::AnswerThenClose));
    for n in 0..3 {
        let request = forwarded(&f, &upstream, &before_send()).await;
        assert_eq!(request.connection, n, "{request:#?}");
    }
}

// FORWARD_EXCEPTIONS: published and forwarded at once; the publish decides.

/// The SNS answer to a Publish, as the SDK reads it (awsQuery, XML).
const PUBLISH_OK: &str = "<PublishResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\">\
    <PublishResult><MessageId>fwd-message-id</MessageId></PublishResult><ResponseMetadata>\
    <RequestId>fwd-request</RequestId></ResponseMetadata></PublishResponse>";

#[tokio::test]
async fn an_exception_is_published_and_forwarded_at_once_and_the_publish_decides() {
    // SNS is a second recording server. Both hold every request until released, and the test
    // releases them only once each has one: one after the other, the first would wait for a
    // release that never comes, and time out.
    let hold = |reply: Reply| Upstream::start(reply.then(Action::Hold));
    let sns = hold(Reply::new(200, Some("text/xml"), PUBLISH_OK)).await;
    let upstream = hold(Reply::new(500, Some("text/plain"), "broken")).await;
    let extra = [
        ("FORWARD_EXCEPTIONS", "true"),
        ("UPSTREAM_TIMEOUT_MS", "1900"),
        ("PUBLISH_TIMEOUT_MS", "1900"),
    ];
    let env = env(Some(&upstream.url("/im")), &extra);
    let f = Function::new(&env, &sns.url("")).await;
    let exception = support::callback(json!(10023), "@TGS#2FWD").to_string();
    let call = chat(EXCEPTION_COMMAND, &exception);
    let event = call.http_api();

    let release = async {
        let both = async {
            while sns.requests().is_empty() || upstream.requests().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let concurrent = tokio::time::timeout(Duration::from_millis(1500), both).await;
        sns.release();
        upstream.release();
        concurrent.is_ok()
    };
    let (answer, concurrent) = tokio::join!(f.invoke(&event), release);

    assert!(concurrent, "both in flight at once");
    answer.assert_acknowledged();
    let publish = String::from_utf8(sns.only_request().body).unwrap();
    assert!(publish.contains("Action=Publish"), "{publish}");
    let target = format!("/im?{}", call.raw_query_string());
    let request = upstream.only_request();
    assert_forwarded(&request, &target, exception.as_bytes(), "application/json");
    let lines = f.lines();
    let forward = lines.iter().find(|l| l["event"] == "forward").unwrap();
    assert_eq!(forward["outcome"], "forwarded");
    assert_eq!(forward["status"], 500);
    assert_eq!(forward["Command"], EXCEPTION_COMMAND);

    // And a failed publish is Chat's 503, however well the upstream answers.
    sns.set(Reply::new(500, Some("text/plain"), "sns is down"));
    upstream.set(Reply::json(ACK));
    f.invoke(&event).await.assert_fail(503, 5030);
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn a_forwarded_exception_is_published_to_sns_and_acknowledged_when_the_upstream_is_down() {
    let world = World::standard("fwd-exceptions").await;
    let mut env = world.env();
    // Unreachable: a closed port, behind a URL whose key must not show in the line either.
    let down = format!("{}/im?key={UPSTREAM_KEY}", closed_url());
    env.insert("IM_CALLBACK_TOKEN".into(), TOKEN.into());
    env.insert("UPSTREAM_CALLBACK_URL".into(), down);
    env.insert("FORWARD_EXCEPTIONS".into(), "true".into());
    let f = Function::new(&env, &world.endpoint).await;
    let mut body = support::callback(json!(10017), "@TGS#2FWD");
    body["CloudCustomData"] = json!(BODY_MARKER);
    let call = chat(EXCEPTION_COMMAND, &body.to_string());

    f.invoke(&call.http_api()).await.assert_acknowledged();

    let delivery = world.only_delivery(Category::MutedSender).await;
    assert_eq!(delivery.envelope()["callback"], body);
    let lines = f.lines();
    assert_eq!(lines[0]["outcome"], "published");
    let line = assert_forward_failed(&lines, EXCEPTION_COMMAND, "unreachable");
    assert_eq!(line["event"], "forward_failed");
    let raw = call.raw_query_string();
    assert_nothing_secret(&text(&lines), Some(sign_of(&raw)));
}

// The Command dimension: Chat-shaped names only.

#[tokio::test]
async fn the_command_dimension_is_a_chat_shaped_name_or_other_and_the_field_is_bounded() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let f = function(&upstream, &[]).await;
    let (longest, too_long) = ("C".repeat(64), format!("A{}", "b".repeat(149)));
    let one_more = format!("{longest}C");
    // Raw query values: `%20` is a space once decoded. (More shapes: the unit test of the
    // dimension, src/telemetry/emf.rs.)
    let cases: [(&str, &str); 6] = [
        ("C2C.CallbackBeforeSendMsg", "C2C.CallbackBeforeSendMsg"),
        (&longest, &longest),
        (&one_more, "other"),
        ("Group.Callback%20Before", "other"),
        ("Group.Callback_Before", "other"),
        (&too_long, "other"),
    ];
    for (command, _) in &cases {
        forwarded(&f, &upstream, &chat(command, "{}").http_api()).await;
    }
    let lines = f.lines();
    let metrics = support::emf::assert_valid(&lines);
    assert_eq!(metrics, vec![["Forwarded"]; cases.len()]);
    for (line, (_, dimension)) in lines.iter().zip(&cases) {
        assert_eq!(line["Command"], *dimension, "{line}");
    }
    assert_eq!(lines[3]["command"], "Group.Callback Before");
    // The field quotes at most 100 characters of the caller's name.
    let field = lines[5]["command"].as_str().unwrap();
    assert!(field.starts_with(&too_long[..100]), "{field}");
    assert!(!field.contains(&too_long[..101]), "{field}");
}

// The real binary: HTTPS with SSL_CERT_FILE (plain HTTP to a host not on loopback stops the
// cold start: tests/bootstrap.rs).

/// The webhook's binary forwarding to `url`, trusting the CAs of `bundle`.
async fn binary(url: &str, bundle: &support::upstream::Bundle) -> Lambda {
    let ca_file = bundle.path().display().to_string();
    let env = env(Some(url), &[("SSL_CERT_FILE", &ca_file)]);
    Lambda::webhook(&closed_url(), &env).await
}

#[tokio::test]
async fn over_https_the_binary_trusts_the_ca_in_ssl_cert_file_and_keeps_the_connection() {
    let ca = TestCa::new("im-exception-webhook forward test CA");
    let bundle = ca.write_bundle("https-trusted");
    let verdict = r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","By":"up"}"#;
    let upstream = Upstream::start_tls(Reply::json(verdict), ca.server_config()).await;
    let url = upstream.url(&format!("/im?key={UPSTREAM_KEY}"));
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let mut lambda = binary(&url, &bundle).await;

    // (Chat's query with every kind of encoding, byte for byte: the in-process tests above.)
    let body = before_send_body();
    for command in [BEFORE_SEND, AFTER_SEND] {
        let call = chat(command, &body);
        let answer = lambda.invoke(&call.http_api()).await;
        let log = lambda.process.text();
        assert_eq!(answer.status, 200, "{log}");
        assert_eq!(answer.body, verdict);
        let query = call.raw_query_string();
        let target = format!("/im?key={UPSTREAM_KEY}&{query}");
        let request = upstream.requests().pop().unwrap();
        assert_forwarded(&request, &target, body.as_bytes(), "application/json");
        assert_nothing_secret(&log, Some(sign_of(&query)));
    }
    assert_eq!(upstream.connections(), 1, "one TLS connection, kept");
    let lines = lambda.events("callback", 2).await;
    assert!(lines.iter().all(|r| r["outcome"] == "forwarded"));
    assert_eq!(lines.len(), 2);
    lambda.process.kill().await;
}

#[tokio::test]
async fn over_https_a_certificate_from_an_untrusted_ca_is_502() {
    let trusted = TestCa::new("the CA in SSL_CERT_FILE");
    let bundle = trusted.write_bundle("https-untrusted");
    let stranger = TestCa::new("a CA nobody trusts");
    let tls = stranger.server_config();
    let upstream = Upstream::start_tls(Reply::json(ACK), tls).await;
    let url = upstream.url(&format!("/im?key={UPSTREAM_KEY}"));
    let mut lambda = binary(&url, &bundle).await;

    let call = chat(BEFORE_SEND, &before_send_body());
    let answer = lambda.invoke(&call.http_api()).await;
    answer.assert_fail(502, 5020);

    assert!(upstream.requests().is_empty(), "nothing sent over it");
    assert!(upstream.connections() >= 1, "the handshake was tried");
    let lines = lambda.events("forward_failed", 1).await;
    assert_forward_failed(&lines, BEFORE_SEND, "unreachable");
    // Neither the line nor the answer shows the body, the token, the Sign or the URL's key.
    let seen = format!("{} {}", lambda.process.text(), answer.body);
    assert_nothing_secret(&seen, Some(sign_of(&call.raw_query_string())));
    lambda.process.kill().await;
}
