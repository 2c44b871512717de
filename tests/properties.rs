//! Property tests of the pure decision (no network): the envelope's `callback` is the body as
//! sent, `dedupKey` is stable, classification is total and honours the overrides, and
//! `decide` answers any request at all with a decision or a refusal from the table of docs/contract.md.
//!
//! `PROPTEST_CASES=N` runs N cases per property instead of each property's default.

use im_exception_webhook::EXCEPTION_COMMAND;
use im_exception_webhook::auth::sign;
use im_exception_webhook::classify::Category;
use im_exception_webhook::config::Config;
use im_exception_webhook::decision::{Decision, WebhookRequest, decide};
use im_exception_webhook::envelope::Message;
use im_exception_webhook::query::Query;
use im_exception_webhook::republish::message_from_envelope;
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const APP: &str = "1400000000";
const TOKEN: &str = "prop-token";
const NOW: u64 = 1_764_000_000;

fn config(extra: &[(&str, &str)]) -> Config {
    let base = [
        ("IM_SDK_APP_ID", "1400000000,1400000001"),
        ("TOPIC_ARN_INVALID_GROUP", "arn:aws:sns:us-east-1:1:ig"),
        ("TOPIC_ARN_FREQUENCY_LIMIT", "arn:aws:sns:us-east-1:1:fl"),
        (
            "TOPIC_ARN_CONTENT_FILTER",
            "arn:aws:sns:us-east-1:1:cf.fifo",
        ),
        ("TOPIC_ARN_MUTED_SENDER", "arn:aws:sns:us-east-1:1:ms"),
        ("TOPIC_ARN_UNCLASSIFIED", "arn:aws:sns:us-east-1:1:un"),
        ("MAX_BODY_BYTES", "1000000"),
    ];
    Config::from_lookup(|name| {
        extra
            .iter()
            .chain(base.iter())
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
    .expect("test configuration")
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

/// The message `decide` would publish for `body`, sent as Chat sends it.
fn message_for(config: &Config, body: &str, now: SystemTime) -> Message {
    let request = WebhookRequest {
        method: "POST",
        query: chat_query(),
        body: body.as_bytes(),
    };
    match decide(&request, config, now) {
        Ok(Decision::Exception { message, .. }) => message,
        other => panic!("expected an exception for {body}: {other:?}"),
    }
}

// ----------------------------------------------------------------------------------------
// Strategies.
// ----------------------------------------------------------------------------------------

/// The fields the callback model reads; anything else is an unknown field.
const DOCUMENTED: [&str; 12] = [
    "CallbackCommand",
    "GroupId",
    "Type",
    "From_Account",
    "Operator_Account",
    "Random",
    "OnlineOnlyFlag",
    "ErrorCode",
    "ErrorInfo",
    "EventTime",
    "MsgBody",
    "CloudCustomData",
];

/// Text with the characters that need escaping in JSON, and beyond the BMP.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        "[ -~]{0,12}",
        "\\PC{0,8}",
        Just("\"\\/\u{0}\u{1f}\n\t\u{7f}\u{2028}群😀".to_owned()),
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
fn lenient(n: i64) -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(n)),
        Just(json!(n.to_string())),
        "[ ]{0,2}".prop_map(move |pad| json!(format!("{pad}{n}{pad}"))),
    ]
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
        [
            optional_string(),
            optional_string(),
            optional_string(),
            optional_string(),
            optional_string(),
            optional_string(),
        ],
        [optional_int(), optional_int(), optional_int()],
        prop::option::of(prop::collection::vec(json_value(), 0..3).prop_map(Value::from)),
    );
    let unknown = prop::collection::btree_map(
        text().prop_filter("unknown", |k| !DOCUMENTED.contains(&k.as_str())),
        json_value(),
        0..5,
    );
    (documented, unknown)
        .prop_map(
            |((error_code, command, strings, ints, msg_body), unknown)| {
                let mut object: Map<String, Value> = unknown.into_iter().collect();
                object.insert("ErrorCode".into(), error_code);
                let named = [
                    ("CallbackCommand", command),
                    ("GroupId", strings[0].clone()),
                    ("Type", strings[1].clone()),
                    ("From_Account", strings[2].clone()),
                    ("Operator_Account", strings[3].clone()),
                    ("ErrorInfo", strings[4].clone()),
                    ("CloudCustomData", strings[5].clone()),
                    ("Random", ints[0].clone()),
                    ("OnlineOnlyFlag", ints[1].clone()),
                    ("EventTime", ints[2].clone()),
                    ("MsgBody", msg_body),
                ];
                for (name, value) in named {
                    if let Some(value) = value {
                        object.insert(name.into(), value);
                    }
                }
                object
            },
        )
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

/// Equal, but for floats, which may differ in their last bit after printing and parsing
/// (and subnormals in more).
fn values_match(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            // Subnormals keep only a few significant digits: any two count as equal.
            let subnormal = |f: f64| f != 0.0 && f.abs() < f64::MIN_POSITIVE;
            x == y || ((x - y) / x).abs() < 1e-15 || (subnormal(x) && subnormal(y))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| values_match(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_match(v, w)))
        }
        _ => a == b,
    }
}

#[derive(Deserialize)]
struct RawCallback<'a> {
    #[serde(borrow)]
    callback: &'a RawValue,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The envelope's `callback` is the body: equal as JSON, and the very bytes as text.
    /// Replay derives from the envelope exactly the message the function published.
    #[test]
    fn the_envelope_callback_is_the_body_as_sent(
        (value, text) in callback_object().prop_flat_map(as_sent),
    ) {
        let config = config(&[]);
        let message = message_for(&config, &text, at(NOW));
        let envelope: Value = serde_json::from_str(&message.body).unwrap();
        // As parsed from the text: serde_json's own float parsing is not the inverse of its
        // printing for every f64, so `value` itself may differ in a last digit.
        let sent: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&envelope["callback"], &sent);
        prop_assert!(values_match(&sent, &value));
        let raw: RawCallback<'_> = serde_json::from_str(&message.body).unwrap();
        prop_assert_eq!(raw.callback.get(), text.trim_matches([' ', '\t', '\r', '\n']));
        prop_assert!(envelope["errorCode"].is_i64());
        prop_assert_eq!(message_from_envelope(&message.body).unwrap(), message);
    }
}

// ----------------------------------------------------------------------------------------
// dedupKey.
// ----------------------------------------------------------------------------------------

/// The fields the key hashes, as values.
#[derive(Debug, Clone)]
struct KeyFields {
    app: &'static str,
    group: Option<String>,
    from: Option<String>,
    random: Option<i64>,
    event_time: Option<i64>,
    error_code: i64,
}

fn key_fields() -> BoxedStrategy<KeyFields> {
    (
        prop_oneof![Just("1400000000"), Just("1400000001")],
        prop::option::of(text().prop_filter("non-empty", |s| !s.is_empty())),
        prop::option::of(text().prop_filter("non-empty", |s| !s.is_empty())),
        prop::option::of(any::<i64>()),
        prop::option::of(any::<i64>()),
        any::<i64>(),
    )
        .prop_map(
            |(app, group, from, random, event_time, error_code)| KeyFields {
                app,
                group,
                from,
                random,
                event_time,
                error_code,
            },
        )
        .boxed()
}

/// One way of sending `fields` as a body: each number a number or a string, each missing
/// field absent, null or empty, and unknown fields besides.
fn one_rendering(fields: KeyFields) -> impl Strategy<Value = String> {
    let string = |v: Option<String>| -> BoxedStrategy<Option<Value>> {
        match v {
            Some(s) => Just(Some(json!(s))).boxed(),
            None => missing().boxed(),
        }
    };
    let int = |v: Option<i64>| -> BoxedStrategy<Option<Value>> {
        match v {
            Some(n) => lenient(n).prop_map(Some).boxed(),
            None => missing().boxed(),
        }
    };
    (
        string(fields.group.clone()),
        string(fields.from.clone()),
        int(fields.random),
        int(fields.event_time),
        lenient(fields.error_code),
        prop::collection::btree_map("X[a-z]{1,4}", json_value(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(group, from, random, event_time, code, unknown, pretty)| {
            let mut object: Map<String, Value> = unknown.into_iter().collect();
            object.insert("ErrorCode".into(), code);
            for (name, value) in [
                ("GroupId", group),
                ("From_Account", from),
                ("Random", random),
                ("EventTime", event_time),
            ] {
                if let Some(value) = value {
                    object.insert(name.into(), value);
                }
            }
            let value = Value::Object(object);
            if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                value.to_string()
            }
        })
}

/// The key of docs/contract.md, computed here from the values.
fn expected_key(f: &KeyFields) -> String {
    let decimal = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    let preimage = [
        f.app.to_owned(),
        f.group.clone().unwrap_or_default(),
        f.from.clone().unwrap_or_default(),
        decimal(f.random),
        decimal(f.event_time),
        f.error_code.to_string(),
    ]
    .join("|");
    hex::encode(Sha256::digest(preimage.as_bytes()))
}

fn key_of(app: &'static str, body: &str, now: SystemTime) -> String {
    let request = WebhookRequest {
        method: "POST",
        query: Query::new([("SdkAppid", app), ("CallbackCommand", EXCEPTION_COMMAND)]),
        body: body.as_bytes(),
    };
    match decide(&request, &config(&[]), now) {
        Ok(Decision::Exception { message, .. }) => message.dedup_key,
        other => panic!("expected an exception for {body}: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Two renderings of the same callback (numbers vs numeric strings, absent vs null vs
    /// empty, other unknown fields, other formatting), received at different times, have one
    /// key: the hash of docs/contract.md of the values.
    #[test]
    fn the_dedup_key_depends_on_the_values_only(
        (fields, first, second) in key_fields().prop_flat_map(|f| {
            (Just(f.clone()), one_rendering(f.clone()), one_rendering(f))
        }),
        later in 0u64..1_000_000,
    ) {
        let expected = expected_key(&fields);
        prop_assert_eq!(key_of(fields.app, &first, at(NOW)), expected.clone());
        prop_assert_eq!(key_of(fields.app, &second, at(NOW + later)), expected.clone());
    }

    /// Another value in any one hashed field gives another key.
    #[test]
    fn the_dedup_key_changes_with_each_hashed_value(fields in key_fields(), which in 0..6usize) {
        let mut other = fields.clone();
        match which {
            0 => other.app = if fields.app == "1400000000" { "1400000001" } else { "1400000000" },
            1 => other.group = Some(format!("{}x", fields.group.clone().unwrap_or_default())),
            2 => other.from = Some(format!("{}x", fields.from.clone().unwrap_or_default())),
            3 => other.random = Some(fields.random.map_or(0, |n| n.wrapping_add(1))),
            4 => other.event_time = Some(fields.event_time.map_or(0, |n| n.wrapping_add(1))),
            _ => other.error_code = fields.error_code.wrapping_add(1),
        }
        prop_assert_ne!(expected_key(&fields), expected_key(&other));
    }
}

// ----------------------------------------------------------------------------------------
// Classification.
// ----------------------------------------------------------------------------------------

/// The table of docs/contract.md, written out here rather than taken from the crate.
fn design_category(code: i64) -> Category {
    match code {
        10004 | 10007 | 10010 | 10015 | 80002 => Category::InvalidGroup,
        10023 | 10006 => Category::FrequencyLimit,
        80001 | 80003 | 80004 | 10016 => Category::ContentFilter,
        10017 | 20012 => Category::MutedSender,
        _ => Category::Unclassified,
    }
}

fn category() -> BoxedStrategy<Category> {
    prop::sample::select(Category::ALL.to_vec()).boxed()
}

/// Codes from the table, near it, and anywhere.
fn code() -> BoxedStrategy<i64> {
    prop_oneof![
        prop::sample::select(vec![
            10004, 10007, 10010, 10015, 80002, 10023, 10006, 80001, 80003, 80004, 10016, 10017,
            20012
        ]),
        9_990i64..80_010,
        any::<i64>(),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Every i64 has a category: the override when there is one, else the table of docs/contract.md, and
    /// the decision sends it to that category's topic.
    #[test]
    fn classification_is_total_and_overrides_win(
        overrides in prop::collection::btree_map(code(), category(), 0..6),
        code in code(),
    ) {
        let spec = overrides
            .iter()
            .map(|(code, category)| format!("{code}={category}"))
            .collect::<Vec<_>>()
            .join(",");
        let config = config(&[("ERROR_CODE_OVERRIDES", spec.as_str())]);
        let expected = overrides.get(&code).copied().unwrap_or_else(|| design_category(code));
        prop_assert_eq!(config.classifier.classify(code), expected);

        let body = json!({"ErrorCode": code}).to_string();
        let request = WebhookRequest { method: "POST", query: chat_query(), body: body.as_bytes() };
        match decide(&request, &config, at(NOW)) {
            Ok(Decision::Exception { message, topic, .. }) => {
                let error_code = message.error_code;
                prop_assert_eq!(message.category, expected);
                prop_assert_eq!(error_code, code);
                prop_assert_eq!(topic, config.topic(expected));
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }
}

// ----------------------------------------------------------------------------------------
// decide, on anything.
// ----------------------------------------------------------------------------------------

/// The refusal statuses of docs/contract.md, and the ErrorCode range of each.
const REFUSALS: [u16; 5] = [405, 413, 403, 401, 400];

/// A query parameter name: one Chat sends, in any case or percent-decoded, or anything.
fn name() -> BoxedStrategy<String> {
    let known = prop::sample::select(vec![
        "SdkAppid",
        "Sign",
        "RequestTime",
        "CallbackCommand",
        "ClientIP",
        "OptPlatform",
        "contenttype",
    ]);
    prop_oneof![
        3 => (known, any::<u64>()).prop_map(|(name, mask)| in_case(name, mask)),
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
        callback_object()
            .prop_flat_map(as_sent)
            .prop_map(|(_, text)| text.into_bytes()),
        (
            callback_object().prop_flat_map(as_sent),
            any::<prop::sample::Index>(),
            any::<u8>()
        )
            .prop_map(|((_, text), at, byte)| {
                let mut bytes = text.into_bytes();
                let i = at.index(bytes.len());
                bytes[i] = byte;
                bytes
            }),
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ]
    .boxed()
}

/// The pairs' `Sign` (any case) when they all agree, and that it signs their `RequestTime`.
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
    /// from the table of docs/contract.md, its ErrorCode in that status's range, and a message naming the
    /// problem without the token. A published exception passed every check.
    #[test]
    fn decide_answers_anything_with_a_decision_or_a_designed_refusal(
        method in prop_oneof![4 => Just("POST".to_owned()), 1 => Just("GET".to_owned()), 1 => "[A-Za-z]{0,7}"],
        pairs in prop::collection::vec((name(), value()), 0..8),
        body in body_bytes(),
        signed in any::<bool>(),
        small_limit in any::<bool>(),
    ) {
        let mut extra = vec![];
        if signed {
            extra.push(("IM_CALLBACK_TOKEN", TOKEN));
        }
        if small_limit {
            extra.push(("MAX_BODY_BYTES", "48"));
        }
        let config = config(&extra);
        let request = WebhookRequest {
            method: &method,
            query: Query::new(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            body: &body,
        };
        match decide(&request, &config, at(NOW)) {
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
                let envelope: Value = serde_json::from_str(&message.body).unwrap();
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
                prop_assert_eq!(message_from_envelope(&message.body).unwrap(), message);
            }
        }
    }
}

#[test]
fn the_design_table_here_is_the_crates_table() {
    // If the crate's table changed, the properties above would test against a stale copy.
    let classifier = config(&[]).classifier;
    let codes: BTreeMap<i64, Category> = im_exception_webhook::classify::DEFAULT_TABLE
        .iter()
        .flat_map(|(category, codes)| codes.iter().map(move |c| (*c, *category)))
        .collect();
    for (code, category) in codes {
        assert_eq!(design_category(code), category, "{code}");
        assert_eq!(classifier.classify(code), category);
    }
}

/// A name in the case `mask` gives each letter.
fn in_case(name: &str, mask: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if (mask >> (i % 64)) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Chat's signed call, its parameters in any case and order among unrelated ones: accepted
    /// exactly when RequestTime is within the skew and the Sign is over the configured token.
    #[test]
    fn a_signed_call_is_accepted_exactly_when_its_sign_is_good(
        masks in any::<[u64; 4]>(),
        skew in -120i64..120,
        signer in prop_oneof![3 => Just(TOKEN), 1 => Just("another-token")],
        junk in prop::collection::vec(("[a-z]{1,6}", "[ -~]{0,8}"), 0..4),
        order in any::<prop::sample::Index>(),
        (_, body) in callback_object().prop_flat_map(as_sent),
    ) {
        let time = NOW.saturating_add_signed(skew).to_string();
        let sign = hex::encode(sign(signer, &time));
        let mut pairs: Vec<(String, String)> = vec![
            (in_case("SdkAppid", masks[0]), APP.into()),
            (in_case("Sign", masks[1]), sign),
            (in_case("RequestTime", masks[2]), time),
            (in_case("CallbackCommand", masks[3]), EXCEPTION_COMMAND.into()),
        ];
        pairs.extend(junk.into_iter().filter(|(k, _)| {
            !["sdkappid", "sign", "requesttime", "callbackcommand"].contains(&k.as_str())
        }));
        let len = pairs.len();
        pairs.rotate_left(order.index(len));
        let config = config(&[("IM_CALLBACK_TOKEN", TOKEN)]);
        let request = WebhookRequest {
            method: "POST",
            query: Query::new(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            body: body.as_bytes(),
        };
        let decision = decide(&request, &config, at(NOW));
        let good = signer == TOKEN && skew.unsigned_abs() <= config.max_skew_secs;
        match decision {
            Ok(Decision::Exception { .. }) => prop_assert!(good, "{pairs:?}"),
            Err(rejection) => {
                prop_assert!(!good, "{rejection:?} for {pairs:?}");
                prop_assert_eq!(rejection.answer().status, 401);
            }
            Ok(other) => prop_assert!(false, "{other:?}"),
        }
    }
}
