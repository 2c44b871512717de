//! Security, through the real handler and API Gateway events: the body limit holds before any
//! parsing; the SdkAppid and Sign checks cannot be got round by the case, repetition or
//! percent-encoding of parameters; neither the token nor a Sign ever reaches a log line or an
//! answer.
//!
//! Run with `make test`, or `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --test security`.

mod support;

use im_exception_webhook::classify::Category;
use im_exception_webhook::handler::LambdaApp;
use serde_json::{Value, json};
use std::collections::HashMap;
use support::{Answer, Call, Logs, World, callback, invoke};

const GROUP: &str = "@TGS#2J4SZEAEL";
const TOKEN: &str = "s3cr3t-Token-for-security-tests";
const GOOD_APP: &str = support::SDK_APP_ID;
const OTHER_APP: &str = "1400000001";

/// A test's topics and function (with a callback token when `signed`).
struct Site {
    world: World,
    app: &'static LambdaApp,
}

impl Site {
    async fn new(test: &str, tweak: impl FnOnce(&mut HashMap<String, String>)) -> Site {
        let world = World::standard(test).await;
        let app = support::setup(&world, tweak).await;
        Site { world, app }
    }

    async fn signed(test: &str) -> Site {
        Site::new(test, |env| {
            env.insert("IM_CALLBACK_TOKEN".into(), TOKEN.into());
        })
        .await
    }

    /// Sends `event` and checks the answer: `status`, and for 200 exactly one delivery of the
    /// frequency-limit callback, else nothing published. Neither the token nor any Sign sent
    /// shows in the answer or the logs.
    async fn expect(&self, call: &Call, event: Value, status: u16) -> (Answer, Logs) {
        let (logs, _guard) = Logs::capture();
        let answer = invoke(self.app, &event).await;
        if status == 200 {
            answer.assert_acknowledged();
            let delivery = self.world.only_delivery(Category::FrequencyLimit).await;
            assert_eq!(delivery.envelope()["sdkAppId"], GOOD_APP);
        } else {
            answer.assert_fail(status);
            self.world.assert_nothing_published().await;
        }
        assert_no_secret(&answer, &logs.text(), call);
        (answer, logs)
    }

    /// As [`Site::expect`], for the call as an HTTP API event (which carries the raw query
    /// string, percent-encoding and all).
    async fn http_api(&self, call: Call, status: u16) -> Answer {
        self.expect(&call, call.http_api(), status).await.0
    }

    /// As [`Site::expect`], for the call as an HTTP API event and as a REST API event (whose
    /// repeated parameters come as multi-value lists).
    async fn both(&self, call: Call, status: u16) {
        self.expect(&call, call.http_api(), status).await;
        self.expect(&call, call.rest_api(), status).await;
    }
}

/// Neither the token nor a Sign that was sent (in either case, or half of one) is in the
/// answer or the log text.
#[track_caller]
fn assert_no_secret(answer: &Answer, logs: &str, call: &Call) {
    let mut secrets = vec![TOKEN.to_owned()];
    for (_, sign) in call
        .query
        .iter()
        .filter(|(k, v)| k.to_ascii_lowercase().ends_with("ign") && v.len() >= 32)
    {
        let half = sign.len() / 2;
        secrets.extend([
            sign.clone(),
            sign.to_ascii_lowercase(),
            sign[..half].to_owned(),
            sign[half..].to_owned(),
        ]);
    }
    let answer = answer.raw.to_string();
    for secret in &secrets {
        assert!(
            !answer.contains(secret),
            "the answer has {secret}: {answer}"
        );
        assert!(!logs.contains(secret), "the logs have {secret}: {logs}");
    }
}

fn body() -> String {
    callback(json!(10023), GROUP).to_string()
}

/// Chat's call without SdkAppid; each test adds its own.
fn chat_without_app_id() -> Call {
    Call::chat(body()).without_param("SdkAppid")
}

fn good_sign(time: u64) -> String {
    hex::encode(im_exception_webhook::auth::sign(TOKEN, &time.to_string()))
}

// ----------------------------------------------------------------------------------------
// The body limit comes before any parsing.
// ----------------------------------------------------------------------------------------

/// The reason of the one `rejected` record in `logs`.
fn rejection_reason(logs: &Logs) -> String {
    logs.rejection()["reason"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_huge_body_that_is_not_json_gets_413_not_400() {
    let site = Site::new("huge-invalid", |_| {}).await;
    // 1 MiB, four times the default limit: not JSON, and not even UTF-8 (sent base64-encoded
    // as API Gateway sends binary bodies). Parsing first would give 400.
    let not_utf8: Vec<u8> = (0..1 << 20).map(|i| [0xff, b'{', 0xfe][i % 3]).collect();
    let mut call = Call::chat(String::new());
    call.body = Some(aws_smithy_types::base64::encode(&not_utf8));
    call.base64 = true;
    let (answer, logs) = site.expect(&call, call.http_api(), 413).await;
    assert_eq!(answer.json()["ErrorCode"], 4130);
    assert_eq!(rejection_reason(&logs), "body_too_large");

    let call = Call::chat("{".repeat(1 << 20));
    let (_, logs) = site.expect(&call, call.http_api(), 413).await;
    assert_eq!(rejection_reason(&logs), "body_too_large");
}

#[tokio::test]
async fn a_huge_body_is_refused_before_the_sdk_app_id_and_sign_are_looked_at() {
    let site = Site::signed("huge-before-auth").await;
    let huge = "x".repeat(262_145);
    // Neither SdkAppid nor Sign: the size decides first, as docs/contract.md orders the checks.
    site.both(chat_without_app_id().tap_body(&huge), 413).await;
}

#[tokio::test]
async fn the_limit_counts_the_bytes_of_the_decoded_body() {
    let site = Site::new("limit-boundary", |env| {
        env.insert("MAX_BODY_BYTES".into(), "1000".into());
    })
    .await;
    // At the limit the body is read (and refused as not JSON); one byte more is not read.
    site.http_api(Call::chat("x".repeat(1000)), 400).await;
    site.http_api(Call::chat("x".repeat(1001)), 413).await;
    // base64 makes the event larger, not the body: 999 bytes decoded pass the size check.
    let padded = format!("{}{}", body(), " ".repeat(999 - body().len()));
    site.http_api(Call::chat(padded).base64_body(), 200).await;
}

#[tokio::test]
async fn deeply_nested_json_within_the_limit_is_published_as_sent_without_crashing() {
    // serde_json skips nested values without recursion (no stack to exhaust) and puts no depth
    // limit on what it skips: the callback is valid JSON, so it is published as received. A
    // subscriber whose parser limits depth (serde_json::Value: 128) cannot read such an
    // envelope: see docs/security.md.
    // A 200 kB publish can take moto longer than the default attempt timeout on a loaded
    // machine, and an abandoned attempt that reached moto is delivered twice: this test is
    // about nesting, so it gives the publish room.
    let site = Site::new("deep-nesting", |env| {
        env.insert("MAX_BODY_BYTES".into(), "262144".into());
        env.insert("PUBLISH_TIMEOUT_MS".into(), "10000".into());
    })
    .await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for field in ["MsgBody", "SomethingNew"] {
        let text = format!(r#"{{"ErrorCode":10023,"GroupId":"{GROUP}","{field}":{deep}}}"#);
        assert!(text.len() < 262_144);
        let answer = invoke(site.app, &Call::chat(text.clone()).http_api()).await;
        answer.assert_acknowledged();
        let delivered = site.world.received(Category::FrequencyLimit, 1).await;
        assert_eq!(delivered.len(), 1, "{field}");
        let message = delivered[0].notification["Message"].as_str().unwrap();
        assert!(
            message.ends_with(&format!(r#""callback":{text}}}"#)),
            "{field}: the callback is the body as sent"
        );
    }
}

// ----------------------------------------------------------------------------------------
// SdkAppid: case, repetition, percent-encoding.
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn sdk_app_id_is_one_parameter_whatever_the_case_of_its_name() {
    let site = Site::new("app-id-case", |_| {}).await;
    for name in ["SdkAppid", "sdkappid", "SDKAPPID", "sDkApPiD"] {
        site.both(chat_without_app_id().param(name, GOOD_APP), 200)
            .await;
        site.both(chat_without_app_id().param(name, OTHER_APP), 403)
            .await;
    }
    // Not the name in another guise: a different parameter, so SdkAppid is missing. (A raw
    // space or non-ASCII byte cannot be on the request line; they arrive percent-encoded.)
    for name in [
        "SdkAppid%20",
        "Sdk_Appid",
        "SdkAppId2",
        "%C5%BFdkappid",
        "SdkAppid%00",
    ] {
        let answer = site
            .http_api(chat_without_app_id().param(name, GOOD_APP), 403)
            .await;
        assert_eq!(answer.json()["ErrorCode"], 4030, "{name:?}");
    }
}

#[tokio::test]
async fn a_repeated_sdk_app_id_with_one_bad_value_is_refused_in_either_order() {
    let site = Site::new("app-id-repeated", |_| {}).await;
    for (first, second) in [("SdkAppid", "SdkAppid"), ("SdkAppid", "sdkappid")] {
        for (a, b) in [(GOOD_APP, OTHER_APP), (OTHER_APP, GOOD_APP)] {
            site.both(chat_without_app_id().param(first, a).param(second, b), 403)
                .await;
        }
        // The same value twice is one parameter.
        site.both(
            chat_without_app_id()
                .param(first, GOOD_APP)
                .param(second, GOOD_APP),
            200,
        )
        .await;
    }
    // An empty copy does not make a good one count twice, nor hide a bad one.
    site.both(
        chat_without_app_id()
            .param("SdkAppid", OTHER_APP)
            .param("SdkAppid", ""),
        403,
    )
    .await;
}

#[tokio::test]
async fn a_percent_encoded_sdk_app_id_is_decoded_before_it_is_checked() {
    let site = Site::new("app-id-encoded", |_| {}).await;
    // `Sdk%41ppid` is `SdkAppid`: it is checked like it, and conflicts with it.
    site.http_api(chat_without_app_id().param("Sdk%41ppid", GOOD_APP), 200)
        .await;
    site.http_api(chat_without_app_id().param("Sdk%41ppid", OTHER_APP), 403)
        .await;
    site.http_api(
        chat_without_app_id().param("%53%44%4B%41%50%50%49%44", OTHER_APP),
        403,
    )
    .await;
    for (a, b) in [("SdkAppid", "Sdk%41ppid"), ("Sdk%41ppid", "SdkAppid")] {
        site.http_api(
            chat_without_app_id().param(a, GOOD_APP).param(b, OTHER_APP),
            403,
        )
        .await;
        site.http_api(
            chat_without_app_id().param(a, OTHER_APP).param(b, GOOD_APP),
            403,
        )
        .await;
    }
    // Encoded values are compared decoded, byte for byte.
    site.http_api(
        chat_without_app_id().param("SdkAppid", "14000000%30%30"),
        200,
    )
    .await;
    for value in [
        "1400000000%00",
        "1400000000%20",
        "%201400000000",
        "1400000000%2C1400000001",
        "1400000000+",
        "%EF%BC%91400000000",
    ] {
        site.http_api(chat_without_app_id().param("SdkAppid", value), 403)
            .await;
    }
}

// ----------------------------------------------------------------------------------------
// Sign and RequestTime: case, repetition, percent-encoding.
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn sign_and_request_time_are_checked_whatever_the_case_of_their_names() {
    let site = Site::signed("sign-case").await;
    let now = support::events::now_secs();
    let sign = good_sign(now);
    for (s, t) in [
        ("sign", "requesttime"),
        ("SIGN", "REQUESTTIME"),
        ("sIgN", "rEqUeStTiMe"),
    ] {
        site.both(
            Call::chat(body())
                .param(s, &sign)
                .param(t, &now.to_string()),
            200,
        )
        .await;
        site.both(
            Call::chat(body())
                .param(s, &good_sign(now + 1))
                .param(t, &now.to_string()),
            401,
        )
        .await;
    }
}

#[tokio::test]
async fn a_repeated_sign_with_one_bad_value_is_refused_in_either_order() {
    let site = Site::signed("sign-repeated").await;
    let now = support::events::now_secs();
    let time = now.to_string();
    let good = good_sign(now);
    let bad = good_sign(now - 1);
    for (first, second) in [("Sign", "Sign"), ("Sign", "sign")] {
        for (a, b) in [(&good, &bad), (&bad, &good)] {
            let call = Call::chat(body())
                .param(first, a)
                .param(second, b)
                .param("RequestTime", &time);
            let (answer, _) = site.expect(&call, call.http_api(), 401).await;
            assert_eq!(answer.json()["ErrorCode"], 4015);
            site.expect(&call, call.rest_api(), 401).await;
        }
        // Upper- and lower-case hex of one signature are one value to the check, but two to
        // the query: refused rather than guessed.
        let call = Call::chat(body())
            .param(first, &good)
            .param(second, &good.to_ascii_uppercase())
            .param("RequestTime", &time);
        site.both(call, 401).await;
        let call = Call::chat(body())
            .param(first, &good)
            .param(second, &good)
            .param("RequestTime", &time);
        site.both(call, 200).await;
    }
    // A second RequestTime cannot pair the good Sign with another time.
    for (a, b) in [(now, now + 5), (now + 5, now)] {
        let call = Call::chat(body())
            .param("Sign", &good)
            .param("RequestTime", &a.to_string())
            .param("requesttime", &b.to_string());
        site.both(call, 401).await;
    }
}

#[tokio::test]
async fn a_percent_encoded_sign_is_decoded_before_it_is_checked() {
    let site = Site::signed("sign-encoded").await;
    let now = support::events::now_secs();
    let time = now.to_string();
    let good = good_sign(now);
    let bad = good_sign(now - 1);
    site.http_api(
        Call::chat(body())
            .param("%53ign", &good)
            .param("Request%54ime", &time),
        200,
    )
    .await;
    site.http_api(
        Call::chat(body())
            .param("%53ign", &bad)
            .param("RequestTime", &time),
        401,
    )
    .await;
    for (a, b) in [
        ("Sign", "%53ign"),
        ("%53ign", "Sign"),
        ("%73%69%67%6e", "Sign"),
    ] {
        for (x, y) in [(&good, &bad), (&bad, &good)] {
            site.http_api(
                Call::chat(body())
                    .param(a, x)
                    .param(b, y)
                    .param("RequestTime", &time),
                401,
            )
            .await;
        }
    }
    // The signed text is the decoded RequestTime: an encoded copy of the same digits is the
    // same time, and anything that decodes to other text is not signed by Chat.
    let encoded_time: String = time.bytes().map(|b| format!("%{b:02X}")).collect();
    site.http_api(
        Call::chat(body())
            .param("Sign", &good)
            .param("RequestTime", &encoded_time),
        200,
    )
    .await;
    for (sign, request_time) in [
        (good.clone(), format!("{time}%00")),
        (good.clone(), format!("%2B{time}")),
        (good.clone(), format!("{time}+")),
        (format!("{good}%00"), time.clone()),
        (format!("{good}00"), time.clone()),
        (format!("%20{good}"), time.clone()),
        (good[..63].to_owned(), time.clone()),
    ] {
        site.http_api(
            Call::chat(body())
                .param("Sign", &sign)
                .param("RequestTime", &request_time),
            401,
        )
        .await;
    }
}

// ----------------------------------------------------------------------------------------
// Secrets in logs and answers, on every path.
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn the_token_and_the_sign_reach_no_log_line_or_answer_on_any_path() {
    let site = Site::signed("secrets-every-path").await;
    let now = support::events::now_secs();
    let signed = || Call::chat(body()).signed(TOKEN);
    let cases: Vec<(Call, u16)> = vec![
        (signed(), 200),
        (signed().method("GET"), 405),
        (Call::chat("x".repeat(262_145)).signed(TOKEN), 413),
        (signed().without_param("SdkAppid"), 403),
        (Call::chat(body()).signed("wrong-token"), 401),
        (Call::chat(body()).signed_at(TOKEN, now - 600), 401),
        (signed().param("Sign", &good_sign(now - 1)), 401),
        (signed().param("RequestTime", "soon"), 401),
        (Call::chat("not json").signed(TOKEN), 400),
        (
            Call::command("Group.CallbackAfterSendMsg", "{}").signed(TOKEN),
            200,
        ),
    ];
    for (call, status) in cases {
        let (logs, _guard) = Logs::capture();
        let answer = invoke(site.app, &call.http_api()).await;
        assert_eq!(answer.status, status, "{}", answer.body);
        assert_no_secret(&answer, &logs.text(), &call);
        let _ = site.world.received_anywhere().await;
    }
}

#[tokio::test]
async fn the_publish_failed_record_of_a_signed_call_carries_no_secret() {
    let mut env = World::standard("secrets-publish-failed").await.env();
    env.insert("IM_CALLBACK_TOKEN".into(), TOKEN.into());
    env.insert("PUBLISH_TIMEOUT_MS".into(), "500".into());
    let unreachable = format!("http://127.0.0.1:{}", support::moto::free_port());
    let app = support::function(&env, &unreachable).await;
    let call = Call::chat(body()).signed(TOKEN);
    let (logs, _guard) = Logs::capture();

    let answer = invoke(app, &call.http_api()).await;

    answer.assert_fail(503);
    assert_eq!(logs.events("publish_failed").len(), 1, "{}", logs.text());
    assert_no_secret(&answer, &logs.text(), &call);
}

/// A call with its body replaced (builder style, for the tables above).
trait TapBody {
    fn tap_body(self, body: &str) -> Self;
}

impl TapBody for Call {
    fn tap_body(mut self, body: &str) -> Call {
        self.body = Some(body.to_owned());
        self
    }
}
