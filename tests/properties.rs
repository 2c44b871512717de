//! Property tests of the pure decision (no network): the envelope's `callback` is the body as
//! sent, `dedupKey` is stable, classification is total and honours the overrides, `decide`
//! answers any request at all with a decision or a refusal from the table of docs/contract.md,
//! a numeric string is digits only, and no message holds a character SNS refuses. Every
//! envelope made conforms to docs/schema/.
//!
//! `PROPTEST_CASES=N` runs N cases per property instead of each property's default.

// Only the harness's pure parts are used here (configuration, decision, dedup key, schemas):
// none of its servers.
#[allow(unused_imports)]
mod support;

use im_exception_webhook::domain::EXCEPTION_COMMAND;
use im_exception_webhook::domain::auth::sign;
use im_exception_webhook::domain::callback::BodyError;
use im_exception_webhook::domain::classify::{Category, DEFAULT_TABLE};
use im_exception_webhook::domain::config::{Config, TokenSource, Topic};
use im_exception_webhook::domain::decision::{Decision, WebhookRequest, decide};
use im_exception_webhook::domain::message::Message;
use im_exception_webhook::domain::publish::QueuedPublish;
use im_exception_webhook::domain::query::Query;
use im_exception_webhook::domain::rejection::Rejection;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::schema::check_envelope;

const APP: &str = "1400000000";
const TOKEN: &str = "prop-token";
const NOW: u64 = 1_764_000_000;
/// What SNS and SQS refuse in a message, and a JSON string may hold raw.
const REFUSED: [char; 2] = ['\u{FFFE}', '\u{FFFF}'];

/// Every topic configured (`content_filter`'s a FIFO one), two app ids accepted, and `extra`.
fn config(extra: &[(&str, &str)]) -> Config {
    let apps = [("IM_SDK_APP_ID", "1400000000,1400000001")];
    let changes: Vec<_> = apps
        .iter()
        .chain(extra)
        .map(|(k, v)| (*k, Some(*v)))
        .collect();
    support::config(&support::made_up_env(&changes))
}

/// The tokens a `Sign` may be made with, as the webhook reads them from its configuration.
fn tokens(config: &Config) -> Vec<String> {
    match &config.tokens {
        TokenSource::Env(tokens) => tokens.clone(),
        _ => Vec::new(),
    }
}

fn chat_query() -> Query<'static> {
    Query::new([
        ("SdkAppid", APP),
        ("CallbackCommand", EXCEPTION_COMMAND),
        ("contenttype", "json"),
        ("ClientIP", "203.0.113.7"),
        ("OptPlatform", "RESTAPI"),
    ])
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn post<'a>(query: Query<'a>, body: &'a [u8]) -> WebhookRequest<'a> {
    WebhookRequest {
        method: "POST",
        query,
        body,
    }
}

/// The message `decide` would publish for `body`, sent as Chat sends it.
fn message_for(config: &Config, body: &str, now: SystemTime) -> Message {
    support::decided(config, chat_query(), body, now)
}

/// The text with U+FFFE and U+FFFF written as the JSON escapes the envelope uses.
fn escaped(text: &str) -> String {
    text.replace('\u{FFFE}', "\\ufffe")
        .replace('\u{FFFF}', "\\uffff")
}

/// The message's publish, to a standard or a FIFO topic: its JSON holds nothing SNS or SQS
/// refuses, it reads back as itself, and its Message is the envelope.
fn check_publish(message: &Message, fifo: bool) -> Result<(), TestCaseError> {
    let suffix = if fifo { ".fifo" } else { "" };
    let topic = Topic {
        arn: format!("arn:aws:sns:us-east-1:1:t{suffix}"),
        fifo,
    };
    let publish = message.clone().publish_to(&topic);
    let json = publish.to_json();
    prop_assert!(!json.contains(REFUSED), "{json}");
    prop_assert!(!message.envelope.contains(REFUSED), "{}", message.envelope);
    prop_assert_eq!(QueuedPublish::from_json(&json), Ok(publish.clone()));
    prop_assert_eq!(&publish.message, &message.envelope);
    Ok(())
}

// ----------------------------------------------------------------------------------------
// Strategies.
// ----------------------------------------------------------------------------------------

/// Text with the characters that need escaping in JSON, beyond the BMP, and the two that SNS
/// refuses.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        "[ -~]{0,12}",
        "\\PC{0,8}",
        "[a\"\\\\\u{FFFE}\u{FFFF}群]{1,8}",
        Just("\"\\/\u{0}\u{1f}\n\t\u{7f}\u{2028}群😀\u{FFFE}".to_owned()),
    ]
    .boxed()
}

/// Any JSON value, nested a few levels.
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// An integer as Chat may send it: a JSON number, or a string of its digits (with blanks).
/// A negative one only as a number: a numeric string is digits only.
fn lenient(n: i64) -> BoxedStrategy<Value> {
    if n < 0 {
        return Just(json!(n)).boxed();
    }
    prop_oneof![
        Just(json!(n)),
        Just(json!(n.to_string())),
        "[ ]{0,2}".prop_map(move |pad| json!(format!("{pad}{n}{pad}"))),
    ]
    .boxed()
}

/// A missing value as Chat may send it: absent, null, or the empty string.
fn missing() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![Just(None), Just(Some(Value::Null)), Just(Some(json!("")))]
}

fn optional_int() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        any::<i64>().prop_flat_map(lenient).prop_map(Some),
        missing()
    ]
    .boxed()
}

fn optional_string() -> BoxedStrategy<Option<Value>> {
    prop_oneof![text().prop_map(|s| Some(json!(s))), missing()].boxed()
}

/// A callback body: documented fields of the right types (some missing), `ErrorCode`
/// always there, and unknown fields of any JSON.
fn callback_object() -> BoxedStrategy<Map<String, Value>> {
    let documented = (
        any::<i64>().prop_flat_map(lenient),
        prop::option::of(Just(json!(EXCEPTION_COMMAND))),
        prop::array::uniform6(optional_string()),
        prop::array::uniform3(optional_int()),
        prop::option::of(prop::collection::vec(json_value(), 0..3).prop_map(Value::from)),
    );
    let unknown = prop::collection::btree_map(text(), json_value(), 0..5);
    (documented, unknown)
        .prop_map(|((code, command, strings, ints, msg_body), unknown)| {
            let mut object: Map<String, Value> = unknown.into_iter().collect();
            object.insert("ErrorCode".into(), code);
            let [group, kind, from, operator, info, custom] = strings;
            let [random, online_only, event_time] = ints;
            let named = [
                ("CallbackCommand", command),
                ("GroupId", group),
                ("Type", kind),
                ("From_Account", from),
                ("Operator_Account", operator),
                ("ErrorInfo", info),
                ("CloudCustomData", custom),
                ("Random", random),
                ("OnlineOnlyFlag", online_only),
                ("EventTime", event_time),
                ("MsgBody", msg_body),
            ];
            // A documented field left out is not there under an unknown field's name either.
            for (name, value) in named {
                match value {
                    Some(value) => object.insert(name.into(), value),
                    None => object.remove(name),
                };
            }
            object
        })
        .boxed()
}

/// The object as text: compact or pretty, with JSON whitespace around it.
fn as_sent(object: Map<String, Value>) -> impl Strategy<Value = (Value, String)> {
    let value = Value::Object(object);
    (any::<bool>(), "[ \t\r\n]{0,3}", "[ \t\r\n]{0,3}").prop_map(move |(pretty, before, after)| {
        let text = if pretty {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            value.to_string()
        };
        (value.clone(), format!("{before}{text}{after}"))
    })
}

fn sent_callback() -> BoxedStrategy<(Value, String)> {
    callback_object().prop_flat_map(as_sent).boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The envelope's `callback` is the body: equal as JSON, and the very bytes as text but
    /// for U+FFFE and U+FFFF, written as escapes. Its publish holds neither, and reads back as
    /// itself.
    #[test]
    fn the_envelope_callback_is_the_body_as_sent((_, text) in sent_callback(), fifo in any::<bool>()) {
        let message = message_for(&config(&[]), &text, at(NOW));
        let envelope: Value = serde_json::from_str(&message.envelope).unwrap();
        // As parsed from the text: serde_json's own float parsing is not the inverse of its
        // printing for every f64, so the generated value itself may differ in a last digit.
        let sent: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&envelope["callback"], &sent);
        let trimmed = text.trim_matches([' ', '\t', '\r', '\n']);
        let tail = format!(",\"callback\":{}}}", escaped(trimmed));
        prop_assert!(message.envelope.ends_with(&tail), "{}", message.envelope);
        prop_assert!(envelope["errorCode"].is_i64());
        check_envelope(&envelope);
        check_publish(&message, fifo)?;
    }

    /// U+FFFE and U+FFFF raw inside the body's strings (values, names, attribute fields): the
    /// envelope and the queued publish write them as escapes, hold no such raw character, and
    /// the envelope still parses to the same callback.
    #[test]
    fn characters_sns_refuses_never_reach_a_message(
        object in callback_object(),
        refused in prop::collection::vec("[a\"\\\\\u{FFFE}\u{FFFF}群]{0,6}[\u{FFFE}\u{FFFF}]", 4),
        fifo in any::<bool>(),
    ) {
        let mut object = object;
        for (field, value) in ["GroupId", "From_Account", "Type"].iter().zip(&refused) {
            object.insert((*field).into(), json!(value));
        }
        object.insert(refused[3].clone(), json!(refused[3]));
        let text = Value::Object(object).to_string();
        prop_assert!(text.contains(REFUSED));
        let message = message_for(&config(&[]), &text, at(NOW));
        let envelope: Value = serde_json::from_str(&message.envelope).unwrap();
        prop_assert_eq!(&envelope["callback"], &serde_json::from_str::<Value>(&text).unwrap());
        check_publish(&message, fifo)?;
        // An attribute SNS would refuse is left out; the envelope keeps the field.
        prop_assert!(!message.attributes.contains_key("groupId"));
    }
}

/// The query's ClientIP and OptPlatform, carried in the envelope, may hold them too (percent-
/// encoded, `%EF%BF%BE`): written as escapes as well. (The fuzz target `decision` found it.)
#[test]
fn query_parameters_with_characters_sns_refuses_never_reach_a_message() {
    let query = Query::new([
        ("SdkAppid", APP),
        ("CallbackCommand", EXCEPTION_COMMAND),
        ("ClientIP", "203.0.113.7\u{FFFE}"),
        ("OptPlatform", "\u{FFFF}RESTAPI"),
    ]);
    let body = r#"{"ErrorCode":10023,"GroupId":"@TGS#1"}"#;
    let message = support::decided(&config(&[]), query, body, at(NOW));
    let envelope: Value = serde_json::from_str(&message.envelope).unwrap();
    assert_eq!(
        envelope["clientIp"], "203.0.113.7\u{FFFE}",
        "the same value"
    );
    assert!(!message.envelope.contains(REFUSED), "{}", message.envelope);
    check_publish(&message, false).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A numeric string is digits only: a sign, which `i64::from_str` would take, makes a
    /// string no number Chat writes, in any integer field: 400, naming the field. The same
    /// value as a JSON number is taken.
    #[test]
    fn a_numeric_string_with_a_sign_is_refused(
        n in 0..=i64::MAX,
        sign in prop_oneof![Just('+'), Just('-')],
        field in prop::sample::select(vec!["ErrorCode", "Random", "OnlineOnlyFlag", "EventTime"]),
        pad in "[ ]{0,2}",
    ) {
        let mut body = json!({"ErrorCode": 10023, "GroupId": "@TGS#1"});
        body[field] = json!(format!("{pad}{sign}{n}{pad}"));
        let text = body.to_string();
        let config = config(&[]);
        match decide(&post(chat_query(), text.as_bytes()), &config, &[], at(NOW)) {
            Err(rejection @ Rejection::BadBody(BodyError::WrongType { .. })) => {
                let answer = rejection.answer();
                prop_assert_eq!((answer.status, answer.error_code), (400, 4003));
                prop_assert!(answer.error_info.contains(field), "{}", answer.error_info);
            }
            other => prop_assert!(false, "{text}: {other:?}"),
        }
        body[field] = if sign == '-' { json!(-n) } else { json!(n) };
        let message = message_for(&config, &body.to_string(), at(NOW));
        if field == "ErrorCode" {
            prop_assert_eq!(message.error_code, if sign == '-' { -n } else { n });
        }
    }
}

// ----------------------------------------------------------------------------------------
// dedupKey.
// ----------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// The key is the hash of the values alone: however they are written (numbers or numeric
    /// strings, absent, null or empty, other unknown fields, other formatting) and whenever
    /// the callback arrives, so the same callback delivered twice has one key.
    #[test]
    fn the_dedup_key_depends_on_the_values_only(
        (value, text) in sent_callback(),
        app in prop_oneof![Just("1400000000"), Just("1400000001")],
        later in 0u64..1_000_000,
    ) {
        let query = Query::new([("SdkAppid", app), ("CallbackCommand", EXCEPTION_COMMAND)]);
        let message = support::decided(&config(&[]), query, &text, at(NOW + later));
        prop_assert_eq!(message.dedup_key, support::expected_dedup_key(app, &value));
    }
}

// ----------------------------------------------------------------------------------------
// Classification.
// ----------------------------------------------------------------------------------------

/// The table of docs/contract.md, written out here rather than taken from the crate (whose
/// own unit test holds its table to the same one).
fn design_category(code: i64) -> Category {
    match code {
        10004 | 10007 | 10010 | 10015 | 80002 => Category::InvalidGroup,
        10023 | 10006 => Category::FrequencyLimit,
        80001 | 80003 | 80004 | 10016 => Category::ContentFilter,
        10017 | 20012 => Category::MutedSender,
        _ => Category::Unclassified,
    }
}

/// Codes from the table, near it, and anywhere.
fn code() -> BoxedStrategy<i64> {
    let table: Vec<i64> = DEFAULT_TABLE.iter().flat_map(|(_, c)| c.to_vec()).collect();
    prop_oneof![prop::sample::select(table), 9_990i64..80_010, any::<i64>()].boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Every i64 has a category: the override when there is one, else the table of
    /// docs/contract.md, and the decision sends it to that category's topic.
    #[test]
    fn classification_is_total_and_overrides_win(
        overrides in prop::collection::btree_map(code(), prop::sample::select(Category::ALL.to_vec()), 0..6),
        code in code(),
    ) {
        let spec: Vec<String> = overrides.iter().map(|(code, c)| format!("{code}={c}")).collect();
        let config = config(&[("ERROR_CODE_OVERRIDES", spec.join(",").as_str())]);
        let expected = overrides.get(&code).copied().unwrap_or_else(|| design_category(code));
        prop_assert_eq!(config.classifier.classify(code), expected);

        let body = json!({"ErrorCode": code}).to_string();
        match decide(&post(chat_query(), body.as_bytes()), &config, &[], at(NOW)) {
            Ok(Decision::Exception { message, topic, .. }) => {
                prop_assert_eq!(message.category, expected);
                prop_assert_eq!(message.error_code, code);
                prop_assert_eq!(topic, config.topics.get(expected));
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }
}

// ----------------------------------------------------------------------------------------
// decide, on anything.
// ----------------------------------------------------------------------------------------

/// The refusal statuses `decide` can give (the others come from I/O).
const REFUSALS: [u16; 5] = [405, 413, 403, 401, 400];

/// A name in the case `mask` gives each letter.
fn in_case(name: &str, mask: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| match (mask >> (i % 64)) & 1 {
            1 => c.to_ascii_uppercase(),
            _ => c.to_ascii_lowercase(),
        })
        .collect()
}

/// A query parameter name: one Chat sends (those of the harness's signed call), in any case, or
/// anything.
fn name() -> BoxedStrategy<String> {
    let chats = support::Call::chat("").signed(TOKEN).query;
    let known = prop::sample::select(chats.into_iter().map(|(k, _)| k).collect::<Vec<_>>());
    prop_oneof![
        3 => (known, any::<u64>()).prop_map(|(name, mask)| in_case(&name, mask)),
        1 => text(),
    ]
    .boxed()
}

/// A query parameter value: a good app id, a command, a time near now and a Sign over it,
/// or anything.
fn value() -> BoxedStrategy<String> {
    prop_oneof![
        Just(APP.to_owned()),
        Just(EXCEPTION_COMMAND.to_owned()),
        (NOW - 100..NOW + 100).prop_map(|t| t.to_string()),
        (NOW - 100..NOW + 100).prop_map(|t| hex::encode(sign(TOKEN, &t.to_string()))),
        text(),
    ]
    .boxed()
}

fn body_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        sent_callback().prop_map(|(_, text)| text.into_bytes()),
        (sent_callback(), any::<prop::sample::Index>(), any::<u8>()).prop_map(
            |((_, text), at, byte)| {
                let mut bytes = text.into_bytes();
                let i = at.index(bytes.len());
                bytes[i] = byte;
                bytes
            }
        ),
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ]
    .boxed()
}

/// Every `Sign` and every `RequestTime` (any case) agree, and the Sign is over the time.
fn signed_correctly(pairs: &[(String, String)]) -> bool {
    let all = |name: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let (signs, times) = (all("Sign"), all("RequestTime"));
    let (Some(sign_value), Some(time)) = (signs.first(), times.first()) else {
        return false;
    };
    signs.iter().all(|s| s == sign_value)
        && times.iter().all(|t| t == time)
        && hex::decode(sign_value).is_ok_and(|s| s == sign(TOKEN, time))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Any method, query and body: never a panic; either a decision, or a refusal with a status
    /// from the table of docs/contract.md, its ErrorCode in that status's range, and a message
    /// naming the problem without the token. A published exception passed every check, and its
    /// messages hold nothing SNS refuses.
    #[test]
    fn decide_answers_anything_with_a_decision_or_a_designed_refusal(
        method in prop_oneof![4 => Just("POST".to_owned()), 1 => Just("GET".to_owned()), 1 => "[A-Za-z]{0,7}"],
        pairs in prop::collection::vec((name(), value()), 0..8),
        body in body_bytes(),
        signed in any::<bool>(),
        small_limit in any::<bool>(),
        fifo in any::<bool>(),
    ) {
        let mut extra = vec![];
        if signed {
            extra.push(("IM_CALLBACK_TOKEN", TOKEN));
        }
        if small_limit {
            extra.push(("MAX_BODY_BYTES", "1024"));
        }
        let config = config(&extra);
        let request = WebhookRequest {
            method: &method,
            query: Query::new(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            body: &body,
        };
        match decide(&request, &config, &tokens(&config), at(NOW)) {
            Err(rejection) => {
                let answer = rejection.answer();
                prop_assert!(REFUSALS.contains(&answer.status), "{rejection:?}");
                prop_assert_eq!(answer.error_code / 10, u32::from(answer.status));
                prop_assert!(!answer.error_info.is_empty());
                prop_assert!(!answer.error_info.contains(TOKEN));
            }
            Ok(Decision::Acknowledge { command } | Decision::Forward { command }) => {
                prop_assert_ne!(command, EXCEPTION_COMMAND);
            }
            Ok(Decision::Exception { message, .. }) => {
                prop_assert_eq!(method.as_str(), "POST");
                prop_assert!(body.len() <= config.max_body_bytes);
                let envelope: Value = serde_json::from_str(&message.envelope).unwrap();
                let app = envelope["sdkAppId"].as_str().unwrap();
                prop_assert!(config.app_ids.iter().any(|a| a == app));
                let sent_app: Vec<&str> = pairs
                    .iter()
                    .filter(|(k, v)| k.eq_ignore_ascii_case("SdkAppid") && !v.is_empty())
                    .map(|(_, v)| v.as_str())
                    .collect();
                prop_assert!(!sent_app.is_empty() && sent_app.iter().all(|a| *a == app));
                if signed {
                    prop_assert!(signed_correctly(&pairs), "{pairs:?}");
                }
                check_envelope(&envelope);
                check_publish(&message, fifo)?;
            }
        }
    }
}
