//! The pure decision alone (`domain::decision::decide`): no Lambda runtime, no tokio, no
//! `lambda_http` conversion. Structured input: a method; query pairs whose names are often
//! Chat's own in any case, repeated or empty, and whose values are often good or bad app ids,
//! commands, RequestTimes in and out of the skew and Signs made with the current, the previous
//! or another token; Chat's own signed parameters, perhaps; a body that is often an exception
//! callback with mutated fields (raw U+FFFE and U+FFFF in its strings among them), sometimes
//! another command's, any JSON or any bytes, sometimes padded to just under or over the body
//! limit; and one of 48 fixed configurations (token: none, one, one with a previous one, one
//! with a 1-second skew; upstream: none, one, one with FORWARD_EXCEPTIONS; MAX_BODY_BYTES 1024
//! or the default; an unclassified topic or not), built once.
//!
//! Beyond "no panic", each run checks:
//!
//! - the early checks in their order, against a model written here: a non-POST is 405 whatever
//!   else; then a body over the limit is 413/4130; then the SdkAppid (403), then, with a token,
//!   Sign and RequestTime (401), each exactly the refusal the model expects; and a call the
//!   model lets through is never refused by one of those checks;
//! - with a token, nothing is forwarded, acknowledged or published unless the Sign is over the
//!   sent RequestTime with a configured token;
//! - a query command other than the exception's is forwarded when an upstream is configured and
//!   acknowledged when not, with that command; a command read from the body is the body's;
//! - every refusal is a status of the table of docs/contract.md with ErrorCode / 10 == status,
//!   an ErrorInfo of bounded length that quotes no more than 100 characters of any caller
//!   string, and never the token, the previous token or the expected Sign;
//! - an exception: its envelope is JSON with the documented fields and ends with the body's JSON
//!   text, trimmed, verbatim but for U+FFFE and U+FFFF, written as escapes; its category is the
//!   configured classification of the body's ErrorCode, its topic the configured one, `forward`
//!   the configured FORWARD_EXCEPTIONS; its publish (to its topic, or a FIFO one) holds no
//!   character SNS or SQS refuses, reads back as itself, and carries what SNS takes (a printable
//!   subject under 100 characters, non-empty attributes, FIFO ids on FIFO topics);
//! - a callback built well-formed here is never refused as a bad body;
//! - at the body limit (bodies padded to limit - 2 ..= limit + 2), 413/4130 exactly when over.
//!
//! The inputs (fuzz_targets/inputs.rs) are shared with `request`.
//!
//! `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run decision -- -max_total_time=60`; `FUZZ_STATS=1`
//! prints the outcome counts every 1,000,000 runs and at exit.

#![no_main]

mod inputs;
mod stats;

use im_exception_webhook::domain::EXCEPTION_COMMAND;
use im_exception_webhook::domain::auth::sign;
use im_exception_webhook::domain::config::{Config, TokenSource, Topic};
use im_exception_webhook::domain::decision::{Decision, WebhookRequest, decide};
use im_exception_webhook::domain::message::{Message, fifo_group_id};
use im_exception_webhook::domain::publish::QueuedPublish;
use im_exception_webhook::domain::query::Query;
use im_exception_webhook::domain::rejection::Rejection;
use inputs::{BodyInput, PREVIOUS, QueryInput, TOKEN, as_carried, spells};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NOW_SECS: u64 = 1_764_000_000;
/// `now` as the envelope writes it.
const RECEIVED_AT: &str = "2025-11-24T16:00:00.123Z";
const UPSTREAM_URL: &str = "https://backend.example/im?key=upstream-secret";
/// What SNS and SQS refuse in a message, and a JSON string may hold raw.
const REFUSED: [char; 2] = ['\u{FFFE}', '\u{FFFF}'];
const ATTRIBUTES: [&str; 9] = [
    "category",
    "errorCode",
    "groupId",
    "groupType",
    "fromAccount",
    "operatorAccount",
    "sdkAppId",
    "optPlatform",
    "dedupKey",
];

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(NOW_SECS * 1000 + 123)
}

/// A configuration, and the tokens the webhook reads from it.
struct Fixture {
    config: Config,
    tokens: Vec<String>,
}

/// Configuration `v` of 48: token (none, one, one with a previous one, one with a 1-second
/// skew), upstream (none, one, one with FORWARD_EXCEPTIONS), MAX_BODY_BYTES (1024 or the
/// default) and an unclassified topic or not.
fn fixture(v: u8) -> &'static Fixture {
    static ALL: OnceLock<Vec<Fixture>> = OnceLock::new();
    let all = ALL.get_or_init(|| (0..48).map(build).collect());
    &all[usize::from(v % 48)]
}

fn build(v: u8) -> Fixture {
    let (auth, upstream, small, unclassified) = (v % 4, (v / 4) % 3, (v / 12) % 2, v / 24);
    let topic = |n: &str| Some(format!("arn:aws:sns:us-east-1:123456789012:{n}"));
    let config = Config::from_lookup(|name| match name {
        "IM_SDK_APP_ID" => Some(inputs::APP_IDS.into()),
        "IM_CALLBACK_TOKEN" if auth > 0 => Some(TOKEN.into()),
        "IM_CALLBACK_TOKEN_PREVIOUS" if auth == 2 => Some(PREVIOUS.into()),
        "IM_SIGN_MAX_SKEW_SECS" if auth == 3 => Some("1".into()),
        "MAX_BODY_BYTES" if small == 1 => Some("1024".into()),
        "UPSTREAM_CALLBACK_URL" if upstream > 0 => Some(UPSTREAM_URL.into()),
        "FORWARD_EXCEPTIONS" if upstream == 2 => Some("true".into()),
        "TOPIC_ARN_INVALID_GROUP" => topic("ig"),
        "TOPIC_ARN_FREQUENCY_LIMIT" => topic("fl"),
        "TOPIC_ARN_CONTENT_FILTER" => topic("cf.fifo"),
        "TOPIC_ARN_MUTED_SENDER" => topic("ms"),
        "TOPIC_ARN_UNCLASSIFIED" if unclassified == 1 => topic("un"),
        "ERROR_CODE_OVERRIDES" => {
            Some("80005=content_filter,10004=unclassified,-1=muted_sender".into())
        }
        _ => None,
    })
    .expect("a fuzz configuration");
    // The tokens as the webhook holds them, and what this target believes they are.
    let tokens = match &config.tokens {
        TokenSource::Env(tokens) => tokens.clone(),
        _ => Vec::new(),
    };
    let expected: &[&str] = match auth {
        0 => &[],
        2 => &[TOKEN, PREVIOUS],
        _ => &[TOKEN],
    };
    assert_eq!(tokens, expected);
    assert_eq!(config.max_skew_secs, if auth == 3 { 1 } else { 60 });
    Fixture { config, tokens }
}

// ----------------------------------------------------------------------------------------
// The model of the early checks.
// ----------------------------------------------------------------------------------------

/// What the query says of a parameter: every value of the name, in any ASCII case, must be the
/// same; an empty value is a missing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum P<'a> {
    Missing,
    One(&'a str),
    Conflicting,
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> P<'a> {
    let mut values = (pairs.iter())
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str());
    let Some(first) = values.next() else {
        return P::Missing;
    };
    match first {
        _ if !values.all(|v| v == first) => P::Conflicting,
        "" => P::Missing,
        _ => P::One(first),
    }
}

/// The refusal the early checks owe this request, in their documented order, or None.
fn early(method: &str, body: &[u8], pairs: &[(String, String)], f: &Fixture) -> Option<Rejection> {
    let config = &f.config;
    if method != "POST" {
        return Some(Rejection::MethodNotAllowed);
    }
    if body.len() > config.max_body_bytes {
        return Some(Rejection::BodyTooLarge {
            limit: config.max_body_bytes,
        });
    }
    match param(pairs, "SdkAppid") {
        P::Missing => return Some(Rejection::AppIdMissing),
        P::Conflicting => return Some(Rejection::AppIdConflicting),
        P::One(app) if !config.app_ids.iter().any(|a| a == app) => {
            return Some(Rejection::AppIdNotAccepted);
        }
        P::One(_) => {}
    }
    if f.tokens.is_empty() {
        return None;
    }
    let given = match param(pairs, "Sign") {
        P::Missing => return Some(Rejection::SignMissing),
        P::Conflicting => return Some(Rejection::SignConflicting),
        P::One(s) => s,
    };
    let time = match param(pairs, "RequestTime") {
        P::Missing => return Some(Rejection::RequestTimeMissing),
        P::Conflicting => return Some(Rejection::SignConflicting),
        P::One(t) => t,
    };
    if time.len() > 19 || !time.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Rejection::RequestTimeMalformed);
    }
    let sent: u64 = time.parse().expect("at most 19 digits");
    let max_skew_secs = config.max_skew_secs;
    if sent.abs_diff(NOW_SECS) > max_skew_secs {
        return Some(Rejection::RequestTimeOutsideSkew { max_skew_secs });
    }
    (!signed_by_a_token(given, time, f)).then_some(Rejection::SignMismatch)
}

fn signed_by_a_token(given: &str, time: &str, f: &Fixture) -> bool {
    let by = |t: &String| given.eq_ignore_ascii_case(&hex::encode(sign(t, time)));
    given.len() == 64 && f.tokens.iter().any(by)
}

fn is_early(r: &Rejection) -> bool {
    matches!(
        r.reason(),
        "method_not_allowed" | "body_too_large" | "sdk_app_id" | "signature" | "request_time_skew"
    )
}

// ----------------------------------------------------------------------------------------
// The checks of a refusal and of an exception.
// ----------------------------------------------------------------------------------------

/// Whether the caller sent `secret` in the body, or in a query name or value other than a
/// Sign's: then a refusal or an envelope may quote it.
fn sent_outside_sign(secret: &str, pairs: &[(String, String)], body: &[u8]) -> bool {
    let in_body = body.windows(secret.len()).any(|w| w == secret.as_bytes());
    let in_query = |(k, v): &(String, String)| {
        spells(k, secret) || (!k.eq_ignore_ascii_case("Sign") && spells(v, secret))
    };
    in_body || pairs.iter().any(in_query)
}

fn check_refusal(
    r: &Rejection,
    pairs: &[(String, String)],
    body: &[u8],
    f: &Fixture,
    long: &[String],
) {
    let answer = r.answer();
    let status = answer.status;
    assert!(
        [400, 401, 403, 405, 413].contains(&status),
        "{r:?}: status {status}"
    );
    assert_eq!(answer.error_code / 10, u32::from(status), "{r:?}");
    let info = &answer.error_info;
    assert!(!info.is_empty());
    // The fixed texts are under 80 characters; at most two quotes of caller input, of at most
    // 103 characters each, each character at most 10 once escaped by `{:?}`.
    let chars = info.chars().count();
    let per_char = if matches!(r, Rejection::CommandMismatch { .. }) {
        10
    } else {
        1
    };
    assert!(
        chars <= 80 + 2 * 103 * per_char,
        "{chars} characters: {info:?}"
    );
    // No more than 100 characters of anything the caller sent.
    for text in pairs.iter().flat_map(|(k, v)| [k, v]).chain(long) {
        if let Some((cut, _)) = text.char_indices().nth(101) {
            assert!(
                !info.contains(&text[..cut]),
                "{info:?} quotes 101 characters"
            );
        }
    }
    // Never a secret: the tokens, the upstream, or the Sign the sent RequestTime calls for.
    let mut secrets = vec![TOKEN.to_owned(), PREVIOUS.into(), UPSTREAM_URL.into()];
    if let P::One(time) = param(pairs, "RequestTime") {
        for token in &f.tokens {
            let expected = hex::encode(sign(token, time));
            secrets.extend([expected.to_ascii_uppercase(), expected]);
        }
    }
    for secret in &secrets {
        let leaked = info.contains(secret.as_str()) && !sent_outside_sign(secret, pairs, body);
        assert!(!leaked, "{info:?} holds a secret");
    }
    // A refusal over the Sign does not repeat the Sign sent.
    if matches!(r.reason(), "signature" | "request_time_skew")
        && let P::One(given) = param(pairs, "Sign")
        && given.len() >= 8
    {
        assert!(!info.contains(given), "{info:?} repeats the Sign");
    }
}

/// The envelope as the function writes it: these fields and no other.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    category: Cow<'a, str>,
    error_code: i64,
    #[serde(borrow)]
    sdk_app_id: Cow<'a, str>,
    #[serde(borrow, default)]
    client_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    opt_platform: Option<Cow<'a, str>>,
    #[serde(borrow)]
    received_at: Cow<'a, str>,
    #[serde(borrow)]
    dedup_key: Cow<'a, str>,
    #[serde(borrow)]
    callback: &'a RawValue,
}

/// The publish of `message` to `topic`: nothing SNS or SQS refuses, what SNS takes, and it
/// reads back as itself.
fn check_publish(message: &Message, topic: &Topic) {
    let publish = message.clone().publish_to(topic);
    let json = publish.to_json();
    assert!(!json.contains(REFUSED), "a publish holds U+FFFE or U+FFFF");
    assert_eq!(QueuedPublish::from_json(&json).as_ref(), Ok(&publish));
    assert_eq!(
        (&publish.message, &publish.topic_arn),
        (&message.envelope, &topic.arn)
    );
    let subject = publish.subject.as_deref().expect("a subject");
    assert!(subject.len() < 100 && subject.bytes().all(|b| (b' '..=b'~').contains(&b)));
    assert!(subject.starts_with(message.category.as_str()));
    for (name, a) in &publish.message_attributes {
        assert!(ATTRIBUTES.contains(&name.as_str()), "{name}");
        let numeric = name == "errorCode";
        assert_eq!(
            a.data_type,
            if numeric { "Number" } else { "String" },
            "{name}"
        );
        assert!(!a.string_value.is_empty(), "{name} is empty");
    }
    assert_eq!(publish.dedup_key(), Some(message.dedup_key.as_str()));
    let fifo_ids = (publish.message_group_id, publish.message_deduplication_id);
    if topic.fifo {
        let group = fifo_group_id(message.group_id.as_deref());
        assert!(group.len() <= 128 && group.bytes().all(|b| b.is_ascii_graphic()));
        assert_eq!(fifo_ids, (Some(group), Some(message.dedup_key.clone())));
    } else {
        assert_eq!(fifo_ids, (None, None));
    }
}

/// The body's ErrorCode, read as the contract says (a number or a string of digits).
fn body_error_code(body: Option<&Value>) -> Option<i64> {
    match body?.get("ErrorCode")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn check_exception(
    (message, topic, forward): (&Message, Option<&Topic>, bool),
    body: &[u8],
    pairs: &[(String, String)],
    config: &Config,
) {
    // The envelope ends with the body's JSON text as carried.
    let carried = as_carried(body);
    assert!(message.envelope.starts_with("{\"category\":\""));
    let tail = format!(",\"callback\":{carried}}}");
    assert!(
        message.envelope.ends_with(&tail),
        "the envelope does not end with the body"
    );
    let envelope: Envelope<'_> =
        serde_json::from_str(&message.envelope).expect("the envelope is the documented JSON");
    assert_eq!(envelope.callback.get(), carried);
    assert_eq!(envelope.category, message.category.as_str());
    assert_eq!(envelope.error_code, message.error_code);
    assert_eq!(envelope.received_at, RECEIVED_AT);
    assert_eq!(envelope.dedup_key, message.dedup_key);
    let key = &message.dedup_key;
    assert!(key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    let informational = |name| match param(pairs, name) {
        P::One(v) => Some(v),
        _ => None,
    };
    assert_eq!(
        Some(envelope.sdk_app_id.as_ref()),
        informational("SdkAppid")
    );
    assert_eq!(envelope.client_ip.as_deref(), informational("ClientIP"));
    assert_eq!(
        envelope.opt_platform.as_deref(),
        informational("OptPlatform")
    );
    if let Some(code) = body_error_code(serde_json::from_slice(body).ok().as_ref()) {
        assert_eq!(message.error_code, code);
    }
    // The configured classification, topic and forwarding.
    let category = config.classifier.classify(message.error_code);
    assert_eq!(message.category, category);
    assert_eq!(topic, config.topics.get(category));
    assert!(topic.is_none_or(|t| std::ptr::eq(t, config.topics.get(category).unwrap())));
    assert_eq!(
        forward,
        config
            .upstream
            .as_ref()
            .is_some_and(|u| u.forward_exceptions)
    );
    // Its publish, to its own topic, and to a topic of each kind.
    let other = |fifo: bool| Topic {
        arn: format!(
            "arn:aws:sns:us-east-1:1:other{}",
            if fifo { ".fifo" } else { "" }
        ),
        fifo,
    };
    for topic in topic
        .cloned()
        .into_iter()
        .chain([other(false), other(true)])
    {
        check_publish(message, &topic);
    }
    for secret in [TOKEN, PREVIOUS] {
        let leaked = message.envelope.contains(secret) && !sent_outside_sign(secret, pairs, body);
        assert!(!leaked, "the envelope holds a secret");
    }
}

// ----------------------------------------------------------------------------------------
// The target.
// ----------------------------------------------------------------------------------------

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    config: u8,
    /// Another method than POST when the number is 7 modulo 8.
    method: (u8, &'a str),
    body: BodyInput<'a>,
    query: QueryInput<'a>,
}

/// One input in 8, by a hash of the whole input: padding to 65,536 bytes costs time in
/// proportion, and inputs that reach rare coverage are favoured with their mutants; without
/// this most of the time would go to padding. A mutant is sampled again only by chance.
fn sampled(input: &Input<'_>) -> bool {
    let fnv = |h: u64, b: u8| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    format!("{input:?}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, fnv)
        % 8
        == 0
}

/// The body's CallbackCommand as serde_json's Value reads it: Some(None) when absent, empty
/// or null; None when the body is not a JSON object Value takes.
fn body_command(body: &[u8]) -> Option<Option<String>> {
    let body: Value = serde_json::from_slice(body).ok()?;
    Some(match body.as_object()?.get("CallbackCommand") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    })
}

fn run(input: &Input<'_>) {
    let f = fixture(input.config);
    let config = &f.config;
    let method = match input.method {
        (n, _) if n % 8 != 7 => "POST",
        (_, m) => m,
    };
    let pairs = input.query.pairs(NOW_SECS);
    let mut rendered = input.body.render();
    let mut padded = false;
    if let BodyInput::Callback(callback) = &input.body
        && let Some(delta) = callback.pad
        && (config.max_body_bytes <= 1024 || sampled(input))
    {
        let target = config
            .max_body_bytes
            .saturating_add_signed(isize::from(delta % 3));
        padded = rendered.bytes.len() < target;
        rendered
            .bytes
            .resize(rendered.bytes.len().max(target), b' ');
    }
    let body = &rendered.bytes;
    let request = WebhookRequest {
        method,
        query: Query::new(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        body,
    };
    let result = decide(&request, config, &f.tokens, now());
    let mut outcomes = vec![];

    // The early checks, in their order.
    let expected_early = early(method, body, &pairs, f);
    match (&expected_early, &result) {
        (Some(expected), Err(got)) => assert_eq!(got, expected),
        (Some(expected), Ok(_)) => panic!("accepted; the model expects {expected:?}"),
        (None, Err(got)) => assert!(!is_early(got), "{got:?}; the model expects none"),
        (None, Ok(_)) => {}
    }
    // Nothing goes anywhere without a good Sign, when a token is configured.
    if result.is_ok() && !f.tokens.is_empty() {
        let (P::One(given), P::One(time)) = (param(&pairs, "Sign"), param(&pairs, "RequestTime"))
        else {
            panic!("accepted without one Sign and one RequestTime")
        };
        assert!(
            signed_by_a_token(given, time, f),
            "a forged Sign was accepted"
        );
        if !given.eq_ignore_ascii_case(&hex::encode(sign(TOKEN, time))) {
            outcomes.push("(accepted with the previous token)");
        }
    }

    // The command: the query's; only when it has none, the body's.
    let query_command = param(&pairs, "CallbackCommand");
    let from_body = body_command(body);
    if expected_early.is_none() {
        match query_command {
            P::Conflicting => {
                assert_eq!(result.as_ref().err(), Some(&Rejection::CommandConflicting))
            }
            P::One(c) if c != EXCEPTION_COMMAND => match &result {
                Ok(Decision::Forward { command } | Decision::Acknowledge { command }) => {
                    assert_eq!(command, c);
                }
                other => panic!("{other:?} for the query command {c:?}"),
            },
            _ => {}
        }
    }
    match &result {
        Ok(Decision::Forward { command } | Decision::Acknowledge { command }) => {
            assert!(!command.is_empty() && command != EXCEPTION_COMMAND);
            let forwarded = matches!(result, Ok(Decision::Forward { .. }));
            assert_eq!(
                forwarded,
                config.upstream.is_some(),
                "forwarded exactly with an upstream"
            );
            if query_command == P::Missing
                && let Some(in_body) = &from_body
            {
                assert_eq!(in_body.as_deref(), Some(command.as_str()));
            }
            outcomes.push(if forwarded { "Forward" } else { "Acknowledge" });
        }
        Ok(Decision::Exception {
            message,
            topic,
            forward,
        }) => {
            assert!(matches!(
                query_command,
                P::One(EXCEPTION_COMMAND) | P::Missing
            ));
            let in_body = from_body.as_ref().and_then(Option::as_deref);
            assert!(
                in_body.is_none_or(|c| c == EXCEPTION_COMMAND),
                "{in_body:?}"
            );
            if query_command == P::Missing && from_body.is_some() {
                assert_eq!(in_body, Some(EXCEPTION_COMMAND));
            }
            check_exception((message, *topic, *forward), body, &pairs, config);
            outcomes.push(match (topic.is_some(), forward) {
                (true, false) => "Exception to a topic",
                (true, true) => "Exception to a topic, forwarded too",
                (false, false) => "Exception without a topic",
                (false, true) => "Exception without a topic, forwarded too",
            });
            if message.envelope.contains("\\ufffe") || message.envelope.contains("\\uffff") {
                outcomes.push("(an exception with U+FFFE or U+FFFF escaped)");
            }
        }
        Err(r) => {
            check_refusal(r, &pairs, body, f, &rendered.long_strings);
            match r {
                Rejection::CommandMissing => {
                    assert_eq!(query_command, P::Missing);
                    assert!(from_body.as_ref().is_none_or(Option::is_none));
                }
                Rejection::CommandMismatch {
                    query,
                    body: in_body,
                } => {
                    assert_eq!(query_command, P::One(EXCEPTION_COMMAND));
                    assert_eq!(query, EXCEPTION_COMMAND);
                    assert!(!in_body.is_empty() && in_body != query);
                    if let Some(from_body) = &from_body {
                        assert_eq!(from_body.as_ref(), Some(in_body));
                    }
                }
                Rejection::PublishFailed
                | Rejection::UpstreamFailed
                | Rejection::UpstreamTimedOut { .. } => panic!("an I/O refusal: {r:?}"),
                _ => {}
            }
            outcomes.push(r.reason());
        }
    }

    // A callback built well-formed here is read as one: its command decides.
    if let Some(built) = rendered.command.as_deref()
        && rendered.well_formed
        && expected_early.is_none()
    {
        let got = result.as_ref();
        match (query_command, built) {
            (P::One(EXCEPTION_COMMAND), "" | EXCEPTION_COMMAND)
            | (P::Missing, EXCEPTION_COMMAND) => {
                let exception = matches!(got, Ok(Decision::Exception { .. }));
                assert!(exception, "a well-formed exception was refused: {got:?}");
            }
            (P::Missing, "") => assert_eq!(got.err(), Some(&Rejection::CommandMissing)),
            (P::Missing, c) => match got {
                Ok(Decision::Forward { command } | Decision::Acknowledge { command }) => {
                    assert_eq!(command, c);
                }
                other => panic!("{other:?} for the body command {c:?}"),
            },
            (P::One(EXCEPTION_COMMAND), c) => {
                let mismatch = Rejection::CommandMismatch {
                    query: EXCEPTION_COMMAND.into(),
                    body: c.into(),
                };
                assert_eq!(got.err(), Some(&mismatch));
            }
            _ => {}
        }
    }

    // At the body limit, 413/4130 exactly when over.
    if padded {
        let over = body.len() > config.max_body_bytes;
        if method == "POST" {
            let refused = matches!(result, Err(Rejection::BodyTooLarge { .. }));
            assert_eq!(over, refused, "{} bytes: {result:?}", body.len());
        }
        outcomes.push(if over {
            "(padded over the limit)"
        } else {
            "(padded to the limit or under)"
        });
    }
    stats::count(&outcomes, 1_000_000);
}

fuzz_target!(|input: Input<'_>| run(&input));
