//! Forwarding to the app's existing callback backend (the upstream), from the outside: API
//! Gateway and function URL events through the production service, a recording upstream on
//! loopback (support/upstream.rs) standing for the backend, and, over HTTPS, the real binary
//! under a local Lambda Runtime API with a test CA in `SSL_CERT_FILE`.
//!
//! Run with `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --all-features --test forward`
//! (moto serves the tests where an exception is published as well as forwarded).
//! `PROPTEST_CASES=N` runs N cases per property instead of each property's default.

mod support;

use im_exception_webhook::EXCEPTION_COMMAND;
use im_exception_webhook::classify::Category;
use im_exception_webhook::forward::MAX_ANSWER_BYTES;
use im_exception_webhook::handler::LambdaApp;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::upstream::{Action, Recorded, Reply, TestCa, Upstream};
use support::{ACK, Answer, Call, Logs, World, invoke};

const TOKEN: &str = "fwd-T0ken-never-logged";
const BEFORE_SEND: &str = "Group.CallbackBeforeSendMsg";
const AFTER_SEND: &str = "Group.CallbackAfterSendMsg";
/// In every forwarded body of these tests: a log line that held it would show it.
const BODY_MARKER: &str = "BODY-MARKER-4f1c9e";
/// A key in the upstream URL's own query, as a backend might require.
const UPSTREAM_KEY: &str = "upstream-k3y-never-logged";

/// How long past `UPSTREAM_TIMEOUT_MS` an answer may take on a busy machine: a deadline,
/// not a benchmark.
const MARGIN: Duration = Duration::from_millis(2000);

// ----------------------------------------------------------------------------------------
// Harness.
// ----------------------------------------------------------------------------------------

/// A loopback URL nothing listens on.
fn closed_url() -> String {
    format!("http://127.0.0.1:{}", support::moto::free_port())
}

/// The function's configuration without moto: the topics are never published to by a test
/// that uses it (it sends no exception, or one whose category has no topic).
fn base_env() -> HashMap<String, String> {
    let topic = |name: &str| format!("arn:aws:sns:us-east-1:123456789012:fwd-{name}");
    HashMap::from([
        ("IM_SDK_APP_ID".into(), support::SDK_APP_ID.into()),
        ("IM_CALLBACK_TOKEN".into(), TOKEN.into()),
        ("TOPIC_ARN_INVALID_GROUP".into(), topic("ig")),
        ("TOPIC_ARN_FREQUENCY_LIMIT".into(), topic("fl")),
        ("TOPIC_ARN_CONTENT_FILTER".into(), topic("cf")),
        ("TOPIC_ARN_MUTED_SENDER".into(), topic("ms")),
    ])
}

/// The function as production builds it, forwarding to `upstream` (`None`: no upstream),
/// with `extra` variables; SNS is a closed port.
async fn app(upstream: Option<&str>, extra: &[(&str, &str)]) -> &'static LambdaApp {
    let mut env = base_env();
    if let Some(url) = upstream {
        env.insert("UPSTREAM_CALLBACK_URL".into(), url.into());
    }
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    support::function(&env, &closed_url()).await
}

/// `Sign` and `RequestTime` for now, as Chat appends them.
fn sign_params() -> String {
    let time = support::events::now_secs().to_string();
    let sign = hex::encode(im_exception_webhook::auth::sign(TOKEN, &time));
    format!("Sign={sign}&RequestTime={time}")
}

fn signed(raw: &str) -> String {
    format!("{raw}&{}", sign_params())
}

/// Chat's call of `command`, signed with [`TOKEN`].
fn chat(command: &str, body: &str) -> Call {
    Call::command(command, body).signed(TOKEN)
}

/// Chat's query, every kind of encoding in it that a backend's own parser or Sign check may
/// depend on: `%2B`, `%20`, `+`, UTF-8 escapes in both cases of hex, an encoded dot in the
/// command, a parameter repeated (twice the same value, once another), SdkAppid repeated with
/// another case of its name, an empty value, a name without `=`, and literal sub-delimiters.
const TRICKY: &str = "SdkAppid=1400000000&CallbackCommand=Group%2ECallbackBeforeSendMsg\
    &contenttype=json&ClientIP=203.0.113.7&OptPlatform=RESTAPI&plus=a%2Bb&space=a%20b\
    &formspace=a+b&utf8=%E4%BD%A0%E5%A5%BD%F0%9F%98%80&lower=%c3%a9&tag=1&tag=2&tag=1\
    &empty=&flag&sdkappid=1400000000&eq=a=b&sub=!$'()*,;:@/?~";

/// A before-send body with odd but valid JSON: escapes, non-ASCII, spacing.
fn before_send_body() -> String {
    format!(
        "{{\"CallbackCommand\":\"Group.CallbackBeforeSendMsg\", \"GroupId\":\"@TGS#1\",\n\t\
         \"MsgBody\":[{{\"MsgType\":\"TIMTextElem\",\"MsgContent\":{{\"Text\":\"h\\u00e9llo \
         \u{4f60}\u{597d} \\\"q\\\" {BODY_MARKER}\"}}}}] }}"
    )
}

/// `event` with its query string replaced by `raw`, exactly; `queryStringParameters` as API
/// Gateway derives it (decoded, repeated values joined by commas).
fn with_raw_query(mut event: Value, raw: &str) -> Value {
    let mut single: Map<String, Value> = Map::new();
    for (k, v) in form_decode(raw.as_bytes()) {
        match single.get_mut(&k) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&v);
            }
            _ => {
                single.insert(k, v.into());
            }
        }
    }
    event["rawQueryString"] = raw.into();
    event["queryStringParameters"] = if single.is_empty() {
        Value::Null
    } else {
        Value::Object(single)
    };
    event
}

/// `application/x-www-form-urlencoded` pairs, decoded (`+` is a space), lossy UTF-8.
fn form_decode(raw: &[u8]) -> Vec<(String, String)> {
    fn decode(part: &[u8]) -> String {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            match part[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < part.len() => match (hex(part[i + 1]), hex(part[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    raw.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|b| *b == b'=') {
            Some(i) => (decode(&p[..i]), decode(&p[i + 1..])),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The answer's `Content-Type`, as API Gateway passes it on.
fn content_type(answer: &Answer) -> Option<String> {
    header(answer, "content-type")
}

fn header(answer: &Answer, name: &str) -> Option<String> {
    let headers = answer.raw["headers"].as_object()?;
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_owned)
}

/// The answer's body bytes (decoded when the function answered base64).
fn body_bytes(answer: &Answer) -> Vec<u8> {
    if answer.raw["isBase64Encoded"] == true {
        aws_smithy_types::base64::decode(&answer.body).expect("base64 answer body")
    } else {
        answer.body.clone().into_bytes()
    }
}

/// The FAIL answer `status` / `error_code`, in exactly Chat's shape.
#[track_caller]
fn assert_fail(answer: &Answer, status: u16, error_code: u64) {
    answer.assert_fail(status);
    assert_eq!(answer.json()["ErrorCode"], error_code, "{}", answer.body);
    assert_eq!(content_type(answer).as_deref(), Some("application/json"));
}

/// The request the upstream got: a POST of `target` with `body` and `content_type`.
#[track_caller]
fn assert_forwarded(request: &Recorded, target: &str, body: &[u8], content_type: &str) {
    assert_eq!(request.method, "POST");
    assert_eq!(
        String::from_utf8_lossy(&request.target),
        target,
        "the request target, byte for byte"
    );
    assert_eq!(request.target, target.as_bytes());
    assert!(
        request.body == body,
        "the body, byte for byte: {request:#?}"
    );
    assert_eq!(
        request.header_values("content-type"),
        [content_type],
        "one Content-Type"
    );
}

/// Nothing secret, and nothing of the body, in any log line.
#[track_caller]
fn assert_nothing_secret(text: &str, sign: Option<&str>) {
    assert!(!text.contains(TOKEN), "the token in a log line: {text}");
    assert!(
        !text.contains(BODY_MARKER),
        "the body in a log line: {text}"
    );
    assert!(
        !text.contains(UPSTREAM_KEY),
        "the upstream URL's key in a log line: {text}"
    );
    if let Some(sign) = sign {
        assert!(!text.contains(sign), "the Sign in a log line: {text}");
    }
}

fn sign_of(raw_query: &str) -> String {
    form_decode(raw_query.as_bytes())
        .into_iter()
        .find(|(k, _)| k == "Sign")
        .map(|(_, v)| v)
        .expect("a Sign")
}

// ----------------------------------------------------------------------------------------
// What the upstream receives: Chat's query and body, exactly.
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn the_upstream_gets_chats_query_and_body_byte_for_byte_and_chat_gets_its_answer() {
    let verdict = r#"{"ActionStatus":"OK","ErrorCode":1,"ErrorInfo":"blocked by moderation"}"#;
    let upstream = Upstream::start(Reply::new(
        200,
        Some("application/json; charset=utf-8"),
        verdict,
    ))
    .await;
    let app = app(Some(&upstream.url("/im/callback")), &[]).await;
    let (logs, _guard) = Logs::capture();

    let query = signed(TRICKY);
    let body = before_send_body();
    let call =
        Call::command(BEFORE_SEND, body.as_str()).content_type(Some("text/plain; charset=utf-8"));
    let answer = invoke(app, &with_raw_query(call.http_api(), &query)).await;

    assert_eq!(answer.status, 200, "{:#?}", answer.raw);
    assert_eq!(answer.body, verdict);
    assert_eq!(
        content_type(&answer).as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert_forwarded(
        &upstream.only_request(),
        &format!("/im/callback?{query}"),
        body.as_bytes(),
        "text/plain; charset=utf-8",
    );

    let records = logs.records();
    assert_eq!(records.len(), 1, "{records:#?}");
    let line = &records[0];
    assert_eq!(line["event"], "callback");
    assert_eq!(line["outcome"], "forwarded");
    assert_eq!(line["command"], BEFORE_SEND);
    assert_eq!(line["status"], 200);
    assert!(line["durationMs"].is_u64(), "{line}");
    assert_eq!(line["requestId"], "7f9c1a2b-test-request");
    assert_eq!(
        im_exception_webhook::metrics::validate_emf(line).unwrap(),
        ["Forwarded"]
    );
    assert_eq!(line["Forwarded"], 1);
    assert_eq!(line["Command"], BEFORE_SEND);
    assert_nothing_secret(&logs.text(), Some(&sign_of(&query)));
    upstream.stop();
}

#[tokio::test]
async fn without_a_content_type_the_forward_says_application_json() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let app = app(Some(&upstream.url("/im")), &[]).await;
    let call = chat(AFTER_SEND, "{}").content_type(None);

    let answer = invoke(app, &call.http_api()).await;

    answer.assert_acknowledged();
    assert_forwarded(
        &upstream.only_request(),
        &format!("/im?{}", call.raw_query_string()),
        b"{}",
        "application/json",
    );
}

#[tokio::test]
async fn the_upstream_urls_own_query_comes_first_joined_by_an_ampersand() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let call = chat(BEFORE_SEND, "{}");
    let raw = call.raw_query_string();
    for (path_and_query, expected) in [
        (
            format!("/hook?app=im&key={UPSTREAM_KEY}%2Fx"),
            format!("/hook?app=im&key={UPSTREAM_KEY}%2Fx&{raw}"),
        ),
        ("/hook?".to_owned(), format!("/hook?{raw}")),
        ("/hook?a=1&".to_owned(), format!("/hook?a=1&{raw}")),
        ("/".to_owned(), format!("/?{raw}")),
    ] {
        let app = app(Some(&upstream.url(&path_and_query)), &[]).await;
        let before = upstream.requests().len();
        invoke(app, &call.http_api()).await.assert_acknowledged();
        let requests = upstream.requests();
        assert_eq!(requests.len(), before + 1, "{path_and_query}");
        assert_eq!(
            String::from_utf8_lossy(&requests[before].target),
            expected,
            "upstream URL {path_and_query}"
        );
    }
}

/// A URL of scheme and authority only: the request target must still be origin-form,
/// `/?query` (RFC 9112, 3.2.1: an empty path is sent as "/").
#[tokio::test]
async fn an_upstream_url_without_a_path_gets_the_query_after_a_slash() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let app = app(Some(&upstream.url("")), &[]).await;
    let call = chat(BEFORE_SEND, "{}");

    let answer = invoke(app, &call.http_api()).await;

    answer.assert_acknowledged();
    assert_eq!(
        String::from_utf8_lossy(&upstream.only_request().target),
        format!("/?{}", call.raw_query_string())
    );
}

#[tokio::test]
async fn a_rest_api_event_forwards_its_parameters_rebuilt_and_its_body_exactly() {
    // REST API (payload 1.0) events carry decoded parameters and no raw query string: the
    // forward rebuilds one, which decodes to the same parameters, repeated ones included.
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let app = app(Some(&upstream.url("/im")), &[]).await;
    let body = before_send_body();
    let call = Call::command(BEFORE_SEND, body.as_str())
        .param("plus", "a+b")
        .param("space", "a b")
        .param("utf8", "\u{4f60}\u{597d}\u{1f600}")
        .param("reserved", "&=?/#%")
        .param("tag", "1")
        .param("tag", "2")
        .param("empty", "")
        .signed(TOKEN)
        .content_type(Some("application/json; charset=utf-8"));

    let answer = invoke(app, &call.rest_api()).await;

    answer.assert_acknowledged();
    let request = upstream.only_request();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path(), b"/im");
    let mut got = form_decode(request.query().expect("a query"));
    let mut sent = call.query.clone();
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "{}", String::from_utf8_lossy(&request.target));
    assert_eq!(request.body, body.as_bytes());
    assert_eq!(
        request.header_values("content-type"),
        ["application/json; charset=utf-8"]
    );
}

#[tokio::test]
async fn a_base64_event_forwards_the_decoded_bytes() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let app = app(Some(&upstream.url("/im")), &[]).await;
    // Not JSON, not UTF-8: the body of a forwarded command is not read, only carried.
    let mut bytes = vec![0x00, 0xff, 0xfe, b'{', 0x80, b'\r', b'\n', 0xc3];
    bytes.extend_from_slice(BODY_MARKER.as_bytes());

    for (kind, event) in [
        (
            "HTTP API",
            chat(BEFORE_SEND, "")
                .content_type(Some("application/octet-stream"))
                .binary_body(&bytes)
                .http_api(),
        ),
        (
            "REST API",
            chat(BEFORE_SEND, "")
                .content_type(Some("application/octet-stream"))
                .binary_body(&bytes)
                .rest_api(),
        ),
    ] {
        let before = upstream.requests().len();
        invoke(app, &event).await.assert_acknowledged();
        let requests = upstream.requests();
        assert_eq!(requests.len(), before + 1, "{kind}");
        assert_eq!(requests[before].body, bytes, "{kind}");
        assert_eq!(
            requests[before].header_values("content-type"),
            ["application/octet-stream"],
            "{kind}"
        );
    }
}

#[tokio::test]
async fn a_function_url_event_is_forwarded_like_an_http_api_event() {
    let upstream = Upstream::start(Reply::new(200, Some("text/plain"), "ok from upstream")).await;
    let app = app(Some(&upstream.url("/im")), &[]).await;
    let query = signed(TRICKY);
    let body = before_send_body();
    let call = Call::command(BEFORE_SEND, body.as_str());

    let answer = invoke(app, &with_raw_query(call.function_url(), &query)).await;

    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "ok from upstream")
    );
    assert_eq!(content_type(&answer).as_deref(), Some("text/plain"));
    assert_forwarded(
        &upstream.only_request(),
        &format!("/im?{query}"),
        body.as_bytes(),
        "application/json",
    );
}

#[tokio::test]
async fn an_event_without_a_body_forwards_an_empty_one() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let app = app(Some(&upstream.url("/im")), &[]).await;
    let call = Call {
        body: None,
        ..chat(AFTER_SEND, "")
    };

    invoke(app, &call.http_api()).await.assert_acknowledged();
    invoke(app, &call.rest_api()).await.assert_acknowledged();

    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    for request in requests {
        assert!(request.body.is_empty(), "{request:#?}");
        assert_eq!(request.method, "POST");
    }
}

#[tokio::test]
async fn the_command_comes_from_the_body_only_when_the_query_has_none() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let app = app(Some(&upstream.url("/im")), &[]).await;
    let (logs, _guard) = Logs::capture();

    // No CallbackCommand in the query: the body's decides, and the query goes on as it was.
    let body = before_send_body();
    let call = chat(BEFORE_SEND, body.as_str()).without_param("CallbackCommand");
    invoke(app, &call.http_api()).await.assert_acknowledged();
    assert_forwarded(
        &upstream.only_request(),
        &format!("/im?{}", call.raw_query_string()),
        body.as_bytes(),
        "application/json",
    );
    assert_eq!(logs.events("callback")[0]["command"], BEFORE_SEND);

    // The query's command decides even when the body names the exception: forwarded unread.
    let exception_body = support::callback(json!(10023), "@TGS#1").to_string();
    let call = chat(AFTER_SEND, exception_body.as_str());
    invoke(app, &call.http_api()).await.assert_acknowledged();
    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].body, exception_body.as_bytes());

    // The body's command is the exception's: handled here (no topic for 12345: logged and
    // acknowledged), not forwarded.
    let unclassified = support::callback(json!(12345), "@TGS#1").to_string();
    let call = chat(EXCEPTION_COMMAND, unclassified.as_str()).without_param("CallbackCommand");
    invoke(app, &call.http_api()).await.assert_acknowledged();
    assert_eq!(
        upstream.requests().len(),
        2,
        "the exception is not forwarded"
    );

    // Neither the query nor the body names a command: refused, not forwarded.
    let call = chat(BEFORE_SEND, "{}").without_param("CallbackCommand");
    assert_fail(&invoke(app, &call.http_api()).await, 400, 4000);
    assert_eq!(upstream.requests().len(), 2);
}

// ----------------------------------------------------------------------------------------
// What Chat receives: the upstream's answer, unchanged.
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn error_answers_and_odd_ones_pass_through_unchanged() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let app = app(Some(&upstream.url("/im")), &[]).await;
    let binary: Vec<u8> = vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0xff];
    for reply in [
        Reply::new(500, Some("text/plain"), "upstream broke"),
        Reply::new(
            400,
            Some("application/json"),
            r#"{"ActionStatus":"FAIL","ErrorCode":90001,"ErrorInfo":"bad"}"#,
        ),
        Reply::new(503, Some("text/html; charset=iso-8859-1"), "<h1>busy</h1>"),
        Reply::new(204, None, ""),
        Reply::new(418, None, "no content type"),
        Reply::new(200, Some("application/octet-stream"), binary.clone()),
    ] {
        upstream.set(reply.clone());
        let answer = invoke(app, &chat(BEFORE_SEND, "{}").http_api()).await;
        assert_eq!(answer.status, reply.status, "{:#?}", answer.raw);
        assert_eq!(
            content_type(&answer),
            reply.content_type,
            "{:#?}",
            answer.raw
        );
        assert_eq!(body_bytes(&answer), reply.body, "{:#?}", answer.raw);
    }
    assert_eq!(upstream.requests().len(), 6);
}

/// Found by this suite: lambda_http's own response conversion (`IntoResponse for Response<B>`,
/// `ConvertBody::convert`) transcodes every body whose Content-Type is text-like (`text/*`,
/// `application/json`, …) from its declared charset (UTF-8 when none) to UTF-8, with BOM
/// sniffing; the handler's answers now go out as built (`handler::AsBuilt`). An upstream
/// answering `text/plain; charset=iso-8859-1`, bytes that are not UTF-8, or a UTF-8 BOM
/// reaches Chat unchanged.
#[tokio::test]
async fn answer_bodies_pass_through_byte_for_byte_whatever_their_charset() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let app = app(Some(&upstream.url("/im")), &[]).await;
    let mut changed = Vec::new();
    for (declared, body) in [
        // Latin-1 "café", declared as such.
        ("text/plain; charset=iso-8859-1", b"caf\xe9".to_vec()),
        // UTF-8 "café" under a wrong label: passed on as it is, not "fixed".
        (
            "text/plain; charset=iso-8859-1",
            "caf\u{e9}".as_bytes().to_vec(),
        ),
        // GBK "\u{4f60}\u{597d}", as a backend in China may answer.
        (
            "application/json; charset=gbk",
            b"{\"ErrorInfo\":\"\xc4\xe3\xba\xc3\"}".to_vec(),
        ),
        // Not UTF-8 at all.
        ("text/plain", b"\xff\xfeok".to_vec()),
        // JSON after a UTF-8 byte order mark.
        ("application/json", b"\xef\xbb\xbf{}".to_vec()),
        // No Content-Type at all (taken for UTF-8 text).
        ("", b"\xff\x00ok".to_vec()),
    ] {
        let declared = Some(declared).filter(|d| !d.is_empty());
        upstream.set(Reply::new(200, declared, body.clone()));
        let answer = invoke(app, &chat(BEFORE_SEND, "{}").http_api()).await;
        assert_eq!(answer.status, 200);
        assert_eq!(content_type(&answer).as_deref(), declared);
        let got = body_bytes(&answer);
        if got != body {
            changed.push(format!("{declared:?}: sent {body:x?}, Chat got {got:x?}"));
        }
    }
    assert!(
        changed.is_empty(),
        "answers changed:\n{}",
        changed.join("\n")
    );
}

#[tokio::test]
async fn a_redirect_is_passed_on_and_never_followed() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    upstream.set(
        Reply::new(302, Some("text/plain"), "moved")
            .header("location", &upstream.url("/elsewhere")),
    );
    let app = app(Some(&upstream.url("/im")), &[]).await;

    let answer = invoke(app, &chat(BEFORE_SEND, "{}").http_api()).await;

    assert_eq!((answer.status, answer.body.as_str()), (302, "moved"));
    assert_eq!(content_type(&answer).as_deref(), Some("text/plain"));
    assert_eq!(
        header(&answer, "location"),
        Some(upstream.url("/elsewhere")),
        "Chat gets the redirect whole"
    );
    let request = upstream.only_request();
    assert_eq!(
        request.path(),
        b"/im",
        "exactly one request, not the redirect's"
    );
}

#[tokio::test]
async fn an_answer_of_1_mib_passes_and_one_byte_more_is_502() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let app = app(Some(&upstream.url("/im")), &[]).await;
    let (logs, _guard) = Logs::capture();

    let largest = "a".repeat(MAX_ANSWER_BYTES);
    upstream.set(Reply::new(200, Some("text/plain"), largest.as_str()));
    let answer = invoke(app, &chat(BEFORE_SEND, "{}").http_api()).await;
    assert_eq!(answer.status, 200);
    assert!(answer.body == largest, "the 1 MiB answer, unchanged");

    upstream.set(Reply::new(200, Some("text/plain"), format!("{largest}b")));
    let answer = invoke(app, &chat(BEFORE_SEND, "{}").http_api()).await;
    assert_fail(&answer, 502, 5020);
    let failed = logs.events("forward_failed");
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["reason"], "answer_too_large");
}

// ----------------------------------------------------------------------------------------
// No answer: 502 / 504, and a forward_failed record.
// ----------------------------------------------------------------------------------------

/// Checks the one `forward_failed` record of a failed forward of `command`.
#[track_caller]
fn assert_forward_failed(logs: &Logs, command: &str, reason: &str) -> Value {
    let failed = logs.events("forward_failed");
    assert_eq!(failed.len(), 1, "{}", logs.text());
    let record = failed[0].clone();
    assert_eq!(record["outcome"], "forward_failed");
    assert_eq!(record["command"], command);
    assert_eq!(record["reason"], reason);
    assert!(record["durationMs"].is_u64(), "{record}");
    assert!(
        record["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{record}"
    );
    assert_eq!(record["level"], "WARN", "{record}");
    assert_eq!(record["requestId"], "7f9c1a2b-test-request", "{record}");
    assert_eq!(
        im_exception_webhook::metrics::validate_emf(&record).unwrap(),
        ["ForwardFailures"]
    );
    assert_eq!(record["ForwardFailures"], 1);
    record
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_5020_and_logged_without_secrets() {
    let url = format!("{}/im?key={UPSTREAM_KEY}", closed_url());
    let app = app(Some(&url), &[("UPSTREAM_TIMEOUT_MS", "1500")]).await;
    let (logs, _guard) = Logs::capture();
    let body = before_send_body();
    let call = chat(BEFORE_SEND, body.as_str());

    let started = Instant::now();
    let answer = invoke(app, &call.http_api()).await;
    let elapsed = started.elapsed();
    println!("unreachable upstream (a closed port): answered in {elapsed:?}");

    assert_fail(&answer, 502, 5020);
    assert!(
        elapsed < Duration::from_millis(1500) + MARGIN,
        "answered in {elapsed:?}"
    );
    let record = assert_forward_failed(&logs, BEFORE_SEND, "unreachable");
    assert_eq!(logs.records().len(), 1, "{}", logs.text());
    assert!(record["durationMs"].as_u64().unwrap() <= elapsed.as_millis() as u64);
    assert_nothing_secret(&logs.text(), Some(&sign_of(&call.raw_query_string())));
    assert!(!answer.body.contains(UPSTREAM_KEY), "{}", answer.body);
}

#[tokio::test]
async fn a_connection_closed_without_an_answer_is_502_after_one_retry() {
    let upstream = Upstream::start(Reply::close()).await;
    let app = app(Some(&upstream.url("/im")), &[]).await;
    let (logs, _guard) = Logs::capture();

    let answer = invoke(app, &chat(BEFORE_SEND, "{}").http_api()).await;

    assert_fail(&answer, 502, 5020);
    assert_forward_failed(&logs, BEFORE_SEND, "unreachable");
    // The connection failed before any answer: tried once more, on a new connection.
    let requests = upstream.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_ne!(requests[0].connection, requests[1].connection);
}

#[tokio::test]
async fn an_answer_cut_off_is_502() {
    let upstream = Upstream::start(
        Reply::new(
            200,
            Some("application/json"),
            format!("{ACK}{}", " ".repeat(64)),
        )
        .then(Action::Truncate),
    )
    .await;
    let app = app(Some(&upstream.url("/im")), &[]).await;
    let (logs, _guard) = Logs::capture();

    let answer = invoke(app, &chat(BEFORE_SEND, "{}").http_api()).await;

    assert_fail(&answer, 502, 5020);
    assert_forward_failed(&logs, BEFORE_SEND, "unreachable");
    let requests = upstream.requests().len();
    assert!((1..=2).contains(&requests), "{requests} requests");
}

#[tokio::test]
async fn a_slow_upstream_is_504_5040_within_the_timeout() {
    let upstream = Upstream::start(Reply::json(ACK).delayed(Duration::from_secs(10))).await;
    let timeout = Duration::from_millis(400);
    let app = app(
        Some(&upstream.url("/im")),
        &[("UPSTREAM_TIMEOUT_MS", "400")],
    )
    .await;
    let (logs, _guard) = Logs::capture();
    let call = chat(BEFORE_SEND, &before_send_body());

    let started = Instant::now();
    let answer = invoke(app, &call.http_api()).await;
    let elapsed = started.elapsed();
    println!("upstream slower than UPSTREAM_TIMEOUT_MS=400: answered in {elapsed:?}");

    assert_fail(&answer, 504, 5040);
    assert!(
        answer.json()["ErrorInfo"]
            .as_str()
            .unwrap()
            .contains("400 ms"),
        "{}",
        answer.body
    );
    assert!(
        elapsed >= timeout - Duration::from_millis(5),
        "gave up early: {elapsed:?}"
    );
    assert!(elapsed < timeout + MARGIN, "answered in {elapsed:?}");
    assert_forward_failed(&logs, BEFORE_SEND, "timeout");
    assert_eq!(upstream.requests().len(), 1, "no retry after a timeout");
    assert_nothing_secret(&logs.text(), Some(&sign_of(&call.raw_query_string())));
    upstream.stop();
}

#[tokio::test]
async fn after_a_timeout_the_next_callback_is_forwarded_on_a_new_connection() {
    let upstream = Upstream::start(Reply::json(ACK).delayed(Duration::from_secs(10))).await;
    let app = app(
        Some(&upstream.url("/im")),
        &[("UPSTREAM_TIMEOUT_MS", "300")],
    )
    .await;

    let answer = invoke(app, &chat(BEFORE_SEND, "{}").http_api()).await;
    assert_fail(&answer, 504, 5040);

    upstream.set(Reply::new(200, Some("text/plain"), "fast again"));
    let answer = invoke(app, &chat(AFTER_SEND, "{}").http_api()).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "fast again"));
    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    assert_ne!(
        requests[0].connection, requests[1].connection,
        "the connection still waiting for its answer is not reused"
    );
}

// ----------------------------------------------------------------------------------------
// Refused callbacks never reach the upstream.
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn a_forged_or_refused_callback_never_reaches_the_upstream() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    // Exceptions are forwarded too here: a forged one must not be either.
    let app = app(
        Some(&upstream.url("/im")),
        &[("MAX_BODY_BYTES", "1024"), ("FORWARD_EXCEPTIONS", "true")],
    )
    .await;
    let (logs, _guard) = Logs::capture();
    let now = support::events::now_secs();
    let oversized = format!("{{\"Pad\":\"{}\"}}", "x".repeat(1024));
    let exception = support::callback(json!(10023), "@TGS#1").to_string();

    for (what, call, status, code) in [
        (
            "a forged Sign",
            Call::command(BEFORE_SEND, "{}").signed_at("a-guessed-token", now),
            401,
            4014,
        ),
        (
            "an exception with a forged Sign",
            Call::chat(exception.as_str()).signed_at("a-guessed-token", now),
            401,
            4014,
        ),
        (
            "a Sign made for another RequestTime",
            Call::command(BEFORE_SEND, "{}")
                .signed_at(TOKEN, now)
                .without_param("RequestTime")
                .param("RequestTime", &(now - 1).to_string()),
            401,
            4014,
        ),
        ("no Sign", Call::command(BEFORE_SEND, "{}"), 401, 4010),
        (
            "a stale RequestTime",
            Call::command(BEFORE_SEND, "{}").signed_at(TOKEN, now - 3600),
            401,
            4013,
        ),
        (
            "another SdkAppid",
            chat(BEFORE_SEND, "{}")
                .without_param("SdkAppid")
                .param("SdkAppid", "1400000009"),
            403,
            4031,
        ),
        (
            "no SdkAppid",
            chat(BEFORE_SEND, "{}").without_param("SdkAppid"),
            403,
            4030,
        ),
        ("a GET", chat(BEFORE_SEND, "{}").method("GET"), 405, 4050),
        ("a PUT", chat(BEFORE_SEND, "{}").method("PUT"), 405, 4050),
        (
            "a body over MAX_BODY_BYTES",
            chat(BEFORE_SEND, oversized.as_str()),
            413,
            4130,
        ),
        (
            "two different commands",
            chat(BEFORE_SEND, "{}").param("callbackcommand", AFTER_SEND),
            400,
            4001,
        ),
    ] {
        let answer = invoke(app, &call.http_api()).await;
        assert_eq!(answer.status, status, "{what}: {:#?}", answer.raw);
        assert_fail(&answer, status, code);
        let answer = invoke(app, &call.rest_api()).await;
        assert_eq!(answer.status, status, "{what} (REST): {:#?}", answer.raw);
    }
    assert!(upstream.requests().is_empty(), "{:#?}", upstream.requests());
    assert_eq!(upstream.connections(), 0, "not even a connection");
    assert!(logs.events("forward_failed").is_empty());
    assert!(
        logs.records().iter().all(|r| r["outcome"] == "rejected"),
        "{}",
        logs.text()
    );

    // The same calls, made right, are forwarded.
    invoke(app, &chat(BEFORE_SEND, "{}").http_api())
        .await
        .assert_acknowledged();
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn without_an_upstream_other_commands_are_acknowledged_as_before() {
    for upstream in [None, Some("")] {
        let app = app(upstream, &[]).await;
        let (logs, _guard) = Logs::capture();
        for command in [BEFORE_SEND, AFTER_SEND, "State.StateChange"] {
            let answer = invoke(app, &chat(command, "not even json").http_api()).await;
            answer.assert_acknowledged();
            assert_eq!(content_type(&answer).as_deref(), Some("application/json"));
        }
        let records = logs.records();
        assert_eq!(records.len(), 3, "{records:#?}");
        assert!(
            records
                .iter()
                .all(|r| r["event"] == "callback" && r["outcome"] == "other_command"),
            "{records:#?}"
        );
    }
}

// ----------------------------------------------------------------------------------------
// One client per cold start, connections kept alive.
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn two_forwards_reuse_one_connection() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let app = app(Some(&upstream.url("/im")), &[]).await;

    for command in [BEFORE_SEND, AFTER_SEND] {
        invoke(app, &chat(command, "{}").http_api())
            .await
            .assert_acknowledged();
    }

    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(upstream.connections(), 1, "{requests:#?}");
    assert_eq!(requests[0].connection, requests[1].connection);
    for request in &requests {
        assert_eq!(request.version, "HTTP/1.1");
        assert!(
            request.header_values("connection").is_empty()
                || request
                    .header("connection")
                    .unwrap()
                    .eq_ignore_ascii_case("keep-alive"),
            "{request:#?}"
        );
    }
}

#[tokio::test]
async fn a_kept_connection_the_upstream_closed_is_replaced_and_the_callback_saved() {
    // The upstream closes each connection after its answer without saying so, as a backend
    // does with idle connections while Lambda keeps the environment frozen.
    let upstream = Upstream::start(Reply::json(ACK).then(Action::AnswerThenClose)).await;
    let app = app(Some(&upstream.url("/im")), &[]).await;

    for command in [BEFORE_SEND, AFTER_SEND, BEFORE_SEND] {
        invoke(app, &chat(command, "{}").http_api())
            .await
            .assert_acknowledged();
    }
    let requests = upstream.requests();
    assert!(requests.len() >= 3, "{requests:#?}");
    assert_eq!(
        requests.last().unwrap().connection,
        upstream.connections() - 1
    );
}

// ----------------------------------------------------------------------------------------
// Exceptions: forwarded only with FORWARD_EXCEPTIONS=true, and published all the same.
// ----------------------------------------------------------------------------------------

const GROUP: &str = "@TGS#2FWD";

/// `body` reached `category`'s subscribers, and nothing reached any other topic. Delivered at
/// least once: a publish retried after an attempt that timed out on a busy machine may have
/// gone through twice, with the same dedupKey (the publisher's documented behaviour).
async fn assert_published(world: &World, category: Category, body: &Value) {
    let deliveries = world.received(category, 1).await;
    assert!(!deliveries.is_empty(), "nothing delivered to {category}");
    let keys: std::collections::BTreeSet<String> = deliveries
        .iter()
        .map(|d| {
            let envelope = d.envelope();
            assert_eq!(&envelope["callback"], body);
            envelope["dedupKey"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "one exception, however often: {deliveries:#?}"
    );
    world.assert_nothing_published().await;
}

#[tokio::test]
async fn without_forward_exceptions_an_exception_is_published_and_not_forwarded() {
    let world = World::standard("fwd-no-exceptions").await;
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let url = upstream.url("/im");
    let app = support::setup(&world, |env| {
        env.insert("UPSTREAM_CALLBACK_URL".into(), url);
    })
    .await;
    let body = support::callback(json!(10023), GROUP);

    let answer = invoke(app, &Call::chat(body.to_string()).http_api()).await;

    answer.assert_acknowledged();
    assert_published(&world, Category::FrequencyLimit, &body).await;
    assert!(upstream.requests().is_empty(), "{:#?}", upstream.requests());
    assert_eq!(upstream.connections(), 0);
}

#[tokio::test]
async fn with_forward_exceptions_an_exception_is_published_and_forwarded_exactly() {
    let world = World::standard("fwd-exceptions").await;
    // Whatever the upstream answers, Chat gets the publish's answer.
    let upstream = Upstream::start(Reply::new(400, Some("text/plain"), "upstream says no")).await;
    let url = upstream.url("/im");
    let app = support::setup(&world, |env| {
        env.insert("UPSTREAM_CALLBACK_URL".into(), url);
        env.insert("FORWARD_EXCEPTIONS".into(), "true".into());
    })
    .await;
    let (logs, _guard) = Logs::capture();
    let mut body = support::callback(json!(10023), GROUP);
    body["CloudCustomData"] = json!(BODY_MARKER);
    let text = body.to_string();
    let call = Call::chat(text.as_str()).param("extra", "a%2Bb%20c");

    let answer = invoke(app, &call.http_api()).await;

    answer.assert_acknowledged();
    assert_published(&world, Category::FrequencyLimit, &body).await;
    assert_forwarded(
        &upstream.only_request(),
        &format!("/im?{}", call.raw_query_string()),
        text.as_bytes(),
        "application/json",
    );
    let forwarded = logs.events("forward");
    assert_eq!(forwarded.len(), 1, "{}", logs.text());
    assert_eq!(forwarded[0]["outcome"], "forwarded");
    assert_eq!(forwarded[0]["command"], EXCEPTION_COMMAND);
    assert_eq!(forwarded[0]["status"], 400);
    assert_eq!(logs.events("callback")[0]["outcome"], "published");
}

#[tokio::test]
async fn a_forwarded_exception_is_acknowledged_by_its_publish_when_the_upstream_is_down() {
    let world = World::standard("fwd-exceptions-down").await;
    let url = format!("{}/im", closed_url());
    let app = support::setup(&world, |env| {
        env.insert("UPSTREAM_CALLBACK_URL".into(), url);
        env.insert("FORWARD_EXCEPTIONS".into(), "true".into());
    })
    .await;
    let (logs, _guard) = Logs::capture();
    let mut body = support::callback(json!(10017), GROUP);
    body["CloudCustomData"] = json!(BODY_MARKER);

    let answer = invoke(app, &Call::chat(body.to_string()).http_api()).await;

    answer.assert_acknowledged();
    assert_published(&world, Category::MutedSender, &body).await;
    let record = assert_forward_failed(&logs, EXCEPTION_COMMAND, "unreachable");
    assert_eq!(record["event"], "forward_failed");
    assert_eq!(logs.events("callback")[0]["outcome"], "published");
    assert_nothing_secret(&logs.text(), None);
}

/// The SNS answer to a Publish, as the SDK reads it (awsQuery, XML).
const PUBLISH_OK: &str = r#"<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>fwd-test-message-id</MessageId></PublishResult><ResponseMetadata><RequestId>fwd-test-request</RequestId></ResponseMetadata></PublishResponse>"#;

#[tokio::test]
async fn the_publish_and_the_forward_of_an_exception_run_at_once_and_the_publish_decides() {
    // SNS is a second recording server. Both it and the upstream hold every request until
    // released, and the test releases them only once each has a request: done one after
    // the other, the first would wait for a release that never comes, and time out.
    let sns =
        Upstream::start(Reply::new(200, Some("text/xml"), PUBLISH_OK).then(Action::Hold)).await;
    let upstream =
        Upstream::start(Reply::new(500, Some("text/plain"), "broken").then(Action::Hold)).await;
    let mut env = base_env();
    env.insert("UPSTREAM_CALLBACK_URL".into(), upstream.url("/im"));
    env.insert("FORWARD_EXCEPTIONS".into(), "true".into());
    env.insert("UPSTREAM_TIMEOUT_MS".into(), "1900".into());
    env.insert("PUBLISH_TIMEOUT_MS".into(), "1900".into());
    let app = support::function(&env, &sns.url("")).await;
    let (logs, _guard) = Logs::capture();
    let event = chat(
        EXCEPTION_COMMAND,
        &support::callback(json!(10023), GROUP).to_string(),
    )
    .http_api();

    let release = async {
        let within = Duration::from_millis(1500);
        let both = tokio::time::timeout(within, async {
            let mut arrived = (false, false);
            while arrived != (true, true) {
                arrived = (!sns.requests().is_empty(), !upstream.requests().is_empty());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        sns.release();
        upstream.release();
        both.is_ok()
    };
    let (answer, concurrent) = tokio::join!(invoke(app, &event), release);

    assert!(
        concurrent,
        "the publish and the forward were not both in flight at once: SNS got {}, the \
         upstream {} requests",
        sns.requests().len(),
        upstream.requests().len()
    );
    answer.assert_acknowledged();
    let publish = sns.only_request();
    assert!(
        String::from_utf8_lossy(&publish.body).contains("Action=Publish"),
        "{publish:#?}"
    );
    assert_eq!(upstream.requests().len(), 1);
    let forwarded = logs.events("forward");
    assert_eq!(forwarded.len(), 1, "{}", logs.text());
    assert_eq!(forwarded[0]["status"], 500);

    // And a failed publish is Chat's 503, however well the upstream answers.
    sns.set(Reply::new(500, Some("text/plain"), "sns is down"));
    upstream.set(Reply::json(ACK));
    let answer = invoke(app, &event).await;
    assert_fail(&answer, 503, 5030);
    assert_eq!(upstream.requests().len(), 2);
}

// ----------------------------------------------------------------------------------------
// HTTPS: the real binary, SSL_CERT_FILE holding a test CA.
// ----------------------------------------------------------------------------------------

mod https {
    use super::*;
    use support::bootstrap::{Bootstrap, WEBHOOK, lambda_env};
    use support::runtime_api::RuntimeApi;

    /// The bootstrap as Lambda runs it, configured through its environment only: forwarding to
    /// `upstream`, trusting the CAs in `ca_file`.
    fn spawn(api: &RuntimeApi, upstream: &str, ca_file: &std::path::Path) -> Bootstrap {
        let mut env = base_env();
        env.extend(lambda_env(api, "im-exception-webhook", &closed_url()));
        env.insert("UPSTREAM_CALLBACK_URL".into(), upstream.into());
        env.insert("SSL_CERT_FILE".into(), ca_file.display().to_string());
        Bootstrap::spawn(WEBHOOK, &env)
    }

    #[tokio::test]
    async fn over_https_the_binary_trusts_the_ca_in_ssl_cert_file_and_keeps_the_connection() {
        let ca = TestCa::new("im-exception-webhook forward test CA");
        let bundle = ca.write_bundle("https-trusted");
        let verdict = r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}"#;
        let upstream = Upstream::start_tls(
            Reply::new(200, Some("application/json"), verdict),
            ca.server_config(),
        )
        .await;
        let mut api = RuntimeApi::start().await;
        let url = upstream.url(&format!("/im?key={UPSTREAM_KEY}"));
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        let mut bootstrap = spawn(&api, &url, bundle.path());

        let body = before_send_body();
        let mut queries = Vec::new();
        for command in [BEFORE_SEND, AFTER_SEND] {
            let query = signed(&TRICKY.replace("Group%2ECallbackBeforeSendMsg", command));
            let event = with_raw_query(Call::command(command, body.as_str()).http_api(), &query);
            let response = api.call(&event).await;
            assert_eq!(
                response["statusCode"],
                200,
                "{response:#}\n{}",
                bootstrap.text()
            );
            assert_eq!(response["body"], verdict);
            queries.push(query);
        }

        let requests = upstream.requests();
        assert_eq!(requests.len(), 2, "{}", bootstrap.text());
        for (request, query) in requests.iter().zip(&queries) {
            assert_forwarded(
                request,
                &format!("/im?key={UPSTREAM_KEY}&{query}"),
                body.as_bytes(),
                "application/json",
            );
        }
        assert_eq!(
            upstream.connections(),
            1,
            "one TLS connection, kept alive across invocations"
        );
        let forwarded = bootstrap.events("callback");
        assert_eq!(forwarded.len(), 2, "{}", bootstrap.text());
        assert!(forwarded.iter().all(|r| r["outcome"] == "forwarded"));
        assert_nothing_secret(&bootstrap.text(), Some(&sign_of(&queries[0])));
        bootstrap.kill().await;
        upstream.stop();
    }

    #[tokio::test]
    async fn over_https_a_certificate_from_an_untrusted_ca_is_502() {
        let trusted = TestCa::new("the CA in SSL_CERT_FILE");
        let bundle = trusted.write_bundle("https-untrusted");
        let stranger = TestCa::new("a CA nobody trusts");
        let upstream = Upstream::start_tls(Reply::json(ACK), stranger.server_config()).await;
        let mut api = RuntimeApi::start().await;
        let mut bootstrap = spawn(&api, &upstream.url("/im"), bundle.path());

        let event = chat(BEFORE_SEND, &before_send_body()).http_api();
        let response = api.call(&event).await;

        assert_eq!(
            response["statusCode"],
            502,
            "{response:#}\n{}",
            bootstrap.text()
        );
        let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["ActionStatus"], "FAIL");
        assert_eq!(body["ErrorCode"], 5020);
        assert!(
            upstream.requests().is_empty(),
            "no request over an untrusted connection"
        );
        assert!(upstream.connections() >= 1, "the handshake was tried");
        let failed = bootstrap.events("forward_failed");
        assert_eq!(failed.len(), 1, "{}", bootstrap.text());
        assert_eq!(failed[0]["reason"], "unreachable");
        assert_eq!(failed[0]["command"], BEFORE_SEND);
        assert_nothing_secret(&bootstrap.text(), None);
        bootstrap.kill().await;
        upstream.stop();
    }
}

// ----------------------------------------------------------------------------------------
// Properties: whatever the checks accept reaches the upstream byte for byte.
// ----------------------------------------------------------------------------------------

mod properties {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    const MAX_BODY: usize = 2048;

    fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    fn runner(default_cases: u32) -> TestRunner {
        TestRunner::new(Config {
            cases: cases(default_cases),
            failure_persistence: None,
            ..Config::default()
        })
    }

    /// Characters API Gateway and the `http` crate pass literally in a query value.
    const LITERAL: &[u8] = b"ABCXYZabcxyz0189-._~!$'()*,;:@/?=";

    /// One character of a query, as a client may write it: literal, `%XX` in either case of
    /// hex (any byte, so also invalid UTF-8 once decoded), or `+`.
    fn query_char() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(LITERAL).prop_map(|c| (c as char).to_string()),
            2 => any::<u8>().prop_map(|b| format!("%{b:02X}")),
            1 => any::<u8>().prop_map(|b| format!("%{b:02x}")),
            1 => Just("+".to_owned()),
        ]
    }

    fn query_text(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
        prop::collection::vec(query_char(), len).prop_map(|v| v.concat())
    }

    /// A parameter that is none of Chat's (its name starts with a literal `x`): `x…=…`,
    /// `x…=` or `x…`.
    fn extra_param() -> impl Strategy<Value = String> {
        (query_text(0..5), prop::option::of(query_text(0..12))).prop_map(
            |(name, value)| match value {
                Some(value) => format!("x{name}={value}"),
                None => format!("x{name}"),
            },
        )
    }

    /// Chat's parameters, each value written with a random mix of literal and
    /// percent-encoded characters, each name in a random mix of cases.
    #[derive(Debug, Clone)]
    enum Part {
        Chat(&'static str, Vec<bool>, Vec<bool>),
        Extra(String),
    }

    const CHAT_NAMES: [&str; 7] = [
        "SdkAppid",
        "CallbackCommand",
        "contenttype",
        "ClientIP",
        "OptPlatform",
        "Sign",
        "RequestTime",
    ];
    const COMMANDS: [&str; 4] = [
        BEFORE_SEND,
        AFTER_SEND,
        "C2C.CallbackBeforeSendMsg",
        "State.StateChange",
    ];

    fn parts() -> impl Strategy<Value = Vec<Part>> {
        let masks = || prop::collection::vec(any::<bool>(), 1..8);
        let chat = CHAT_NAMES.map(|name| {
            (masks(), masks()).prop_map(move |(case, encode)| Part::Chat(name, case, encode))
        });
        let extras = prop::collection::vec(extra_param().prop_map(Part::Extra), 0..6);
        (chat.to_vec(), extras, any::<bool>()).prop_flat_map(|(chat, extras, repeat)| {
            let mut all: Vec<Part> = chat;
            all.extend(extras.iter().cloned());
            // A parameter given twice.
            if let (true, Some(first)) = (repeat, extras.first()) {
                all.push(first.clone());
            }
            Just(all).prop_shuffle()
        })
    }

    fn write(value: &str, encode: &[bool]) -> String {
        value
            .bytes()
            .enumerate()
            .map(|(i, b)| {
                if encode[i % encode.len()] {
                    format!("%{b:02X}")
                } else {
                    (b as char).to_string()
                }
            })
            .collect()
    }

    fn recase(name: &str, case: &[bool]) -> String {
        name.chars()
            .enumerate()
            .map(|(i, c)| {
                if case[i % case.len()] {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    }

    /// The raw query of `parts` for `command`, signed now.
    fn raw_query(parts: &[Part], command: &str) -> String {
        let time = support::events::now_secs().to_string();
        let sign = hex::encode(im_exception_webhook::auth::sign(TOKEN, &time));
        parts
            .iter()
            .map(|part| match part {
                Part::Extra(text) => text.clone(),
                Part::Chat(name, case, encode) => {
                    let value = match *name {
                        "SdkAppid" => support::SDK_APP_ID,
                        "CallbackCommand" => command,
                        "contenttype" => "json",
                        "ClientIP" => support::CLIENT_IP,
                        "OptPlatform" => "RESTAPI",
                        "Sign" => &sign,
                        _ => &time,
                    };
                    format!("{}={}", recase(name, case), write(value, encode))
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    /// Bodies within MAX_BODY_BYTES: any bytes (sent base64), or text sent either way.
    fn body() -> impl Strategy<Value = (Vec<u8>, bool)> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..=MAX_BODY).prop_map(|b| (b, true)),
            ("\\PC{0,400}", any::<bool>()).prop_map(|(s, b64)| (s.into_bytes(), b64)),
            (0..MAX_BODY).prop_map(|n| (vec![b'x'; n], false)),
            Just((vec![b'y'; MAX_BODY], true)),
        ]
    }

    fn content_type() -> impl Strategy<Value = Option<&'static str>> {
        prop::option::of(prop::sample::select(vec![
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/octet-stream",
        ]))
    }

    fn call_with(command: &str, body: &[u8], base64: bool, ct: Option<&str>) -> Call {
        let call = Call::command(command, "").content_type(ct);
        if base64 {
            call.binary_body(body)
        } else {
            Call {
                body: Some(String::from_utf8(body.to_vec()).expect("text body")),
                ..call
            }
        }
    }

    struct Fixture {
        runtime: tokio::runtime::Runtime,
        upstream: Upstream,
        app: &'static LambdaApp,
    }

    const ANSWER: &str = r#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0,"From":"upstream"}"#;

    fn fixture() -> Fixture {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let upstream = runtime.block_on(Upstream::start(Reply::json(ANSWER)));
        let max = MAX_BODY.to_string();
        let app = runtime.block_on(app(
            Some(&upstream.url("/cb?via=test")),
            &[("MAX_BODY_BYTES", &max)],
        ));
        Fixture {
            runtime,
            upstream,
            app,
        }
    }

    #[test]
    fn any_query_and_body_the_checks_accept_reach_the_upstream_byte_for_byte() {
        let f = fixture();
        let strategy = (
            parts(),
            prop::sample::select(COMMANDS.to_vec()),
            body(),
            content_type(),
            any::<bool>(),
        );
        let mut runner = runner(96);
        let cases = runner.config().cases as usize;
        let result = runner.run(&strategy, |(parts, command, (body, base64), ct, url)| {
            let query = raw_query(&parts, command);
            let call = call_with(command, &body, base64, ct);
            let event = if url {
                call.function_url()
            } else {
                call.http_api()
            };
            let event = with_raw_query(event, &query);
            let before = f.upstream.requests().len();

            let answer = f.runtime.block_on(invoke(f.app, &event));

            prop_assert_eq!(answer.status, 200, "{:#}", answer.raw);
            prop_assert_eq!(answer.body.as_str(), ANSWER);
            let requests = f.upstream.requests();
            prop_assert_eq!(requests.len(), before + 1);
            let request = &requests[before];
            prop_assert_eq!(request.method.as_str(), "POST");
            let expected = format!("/cb?via=test&{query}");
            prop_assert_eq!(String::from_utf8_lossy(&request.target), expected.as_str());
            prop_assert!(request.target == expected.as_bytes());
            prop_assert!(request.body == body, "body differs");
            prop_assert_eq!(
                request.header_values("content-type"),
                vec![ct.unwrap_or("application/json").to_owned()]
            );
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        assert_eq!(f.upstream.requests().len(), cases, "one forward per case");
    }

    /// Decoded parameter names and values as a REST API event carries them.
    fn rest_params() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec(("x[a-zA-Z0-9_]{0,6}", "\\PC{0,12}"), 0..6)
    }

    #[test]
    fn a_rest_event_forwards_parameters_that_decode_to_those_received() {
        let f = fixture();
        let strategy = (
            rest_params(),
            prop::sample::select(COMMANDS.to_vec()),
            body(),
        );
        let mut runner = runner(48);
        let cases = runner.config().cases as usize;
        let result = runner.run(&strategy, |(extra, command, (body, base64))| {
            let mut call = call_with(command, &body, base64, Some("application/json"));
            for (name, value) in &extra {
                call = call.param(name, value);
            }
            let call = call.signed(TOKEN);
            let before = f.upstream.requests().len();

            let answer = f.runtime.block_on(invoke(f.app, &call.rest_api()));

            prop_assert_eq!(answer.status, 200, "{:#}", answer.raw);
            let requests = f.upstream.requests();
            prop_assert_eq!(requests.len(), before + 1);
            let request = &requests[before];
            let query = request.query().map(<[u8]>::to_vec).unwrap_or_default();
            let query = String::from_utf8_lossy(&query).into_owned();
            let own = "via=test&";
            prop_assert!(query.starts_with(own), "{}", query);
            let mut got = form_decode(&query.as_bytes()[own.len()..]);
            let mut sent = call.query.clone();
            got.sort();
            sent.sort();
            prop_assert_eq!(got, sent);
            if request.body != body {
                return Err(TestCaseError::fail("body differs"));
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        assert_eq!(f.upstream.requests().len(), cases, "one forward per case");
    }
}
