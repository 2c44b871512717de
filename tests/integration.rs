//! End-to-end tests against a real SNS API: a moto server started by the harness, SQS queues
//! subscribed to every topic, and the production handler driven through `lambda_http`'s
//! `Adapter` with API Gateway events. See `support/` for the harness.
//!
//! Run with `make test`, or `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --test integration`.

mod support;

use im_exception_webhook::classify::Category;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::{Call, Logs, World, assert_envelope, callback, invoke, now_millis, setup};

const GROUP: &str = "@TGS#2J4SZEAEL";
const TOKEN: &str = "s3cr3t-Token-xyz";

// ----------------------------------------------------------------------------------------
// One exception per category: acknowledged, published once to its topic, envelope exact.
// ----------------------------------------------------------------------------------------

/// Sends `body` as Chat does and checks everything one subscriber of `category` receives.
async fn publishes_to_its_topic(test: &str, category: Category, body: Value, error_code: i64) {
    let world = World::standard(test).await;
    let app = setup(&world, |_| {}).await;

    let before = now_millis();
    let answer = invoke(app, &Call::chat(body.to_string()).http_api()).await;
    let after = now_millis();

    answer.assert_acknowledged();
    let delivery = world.only_delivery(category).await;
    assert_eq!(delivery.notification["Type"], "Notification");
    assert_eq!(
        delivery.notification["TopicArn"],
        world.topic(category).topic_arn.as_str()
    );
    let envelope = delivery.envelope();
    assert_envelope(
        &envelope,
        category.as_str(),
        error_code,
        &body,
        (before, after),
    );

    let group = body["GroupId"].as_str().unwrap();
    assert_eq!(
        delivery.subject(),
        Some(format!("{category}: error {error_code} in group {group}").as_str())
    );
    assert_eq!(
        delivery.attributes(),
        expected_attributes(category, error_code, &body, &envelope)
    );
}

/// Every message attribute docs/contract.md lists, with its SNS type; one whose value would be empty
/// is absent.
fn expected_attributes(
    category: Category,
    error_code: i64,
    body: &Value,
    envelope: &Value,
) -> HashMap<String, (String, String)> {
    let string = |v: &str| ("String".to_owned(), v.to_owned());
    let mut expected = HashMap::from([
        ("category".to_owned(), string(category.as_str())),
        (
            "errorCode".to_owned(),
            ("Number".to_owned(), error_code.to_string()),
        ),
        ("sdkAppId".to_owned(), string(support::SDK_APP_ID)),
        ("optPlatform".to_owned(), string("RESTAPI")),
        (
            "dedupKey".to_owned(),
            string(envelope["dedupKey"].as_str().unwrap()),
        ),
    ]);
    for (attribute, field) in [
        ("groupId", "GroupId"),
        ("groupType", "Type"),
        ("fromAccount", "From_Account"),
        ("operatorAccount", "Operator_Account"),
    ] {
        match body[field].as_str() {
            Some(v) if !v.is_empty() => {
                expected.insert(attribute.to_owned(), string(v));
            }
            _ => {}
        }
    }
    expected
}

#[tokio::test]
async fn invalid_group_is_published_to_its_topic() {
    let body = callback(json!(10004), GROUP);
    publishes_to_its_topic("invalid-group", Category::InvalidGroup, body, 10004).await;
}

#[tokio::test]
async fn frequency_limit_is_published_to_its_topic() {
    let body = callback(json!(10023), GROUP);
    publishes_to_its_topic("frequency-limit", Category::FrequencyLimit, body, 10023).await;
}

#[tokio::test]
async fn content_filter_sent_with_numeric_strings_is_published_with_a_numeric_error_code() {
    // As in Chat's own sample: integers arrive as strings. The envelope's errorCode is a
    // number, the callback is kept as sent, and the dedup key hashes the decimal values.
    let mut body = callback(json!("80001"), GROUP);
    body["Random"] = json!("123456789");
    body["EventTime"] = json!("1670574414123");
    publishes_to_its_topic("content-filter", Category::ContentFilter, body, 80001).await;
}

#[tokio::test]
async fn muted_sender_is_published_with_the_operator_account() {
    let mut body = callback(json!(10017), "@TGS#_muted_room");
    body["Operator_Account"] = json!("admin");
    body["Type"] = json!("Community");
    publishes_to_its_topic("muted-sender", Category::MutedSender, body, 10017).await;
}

#[tokio::test]
async fn unclassified_is_published_when_its_topic_is_configured() {
    let body = callback(json!(12345), GROUP);
    publishes_to_its_topic("unclassified", Category::Unclassified, body, 12345).await;
}

#[tokio::test]
async fn unclassified_without_a_topic_is_logged_and_acknowledged() {
    let world = World::standard("unclassified-logged").await;
    let app = setup(&world, |env| {
        env.remove("TOPIC_ARN_UNCLASSIFIED");
    })
    .await;
    let body = callback(json!(12345), GROUP);
    let (logs, _guard) = Logs::capture();

    let answer = invoke(app, &Call::chat(body.to_string()).http_api()).await;

    answer.assert_acknowledged();
    world.assert_nothing_published().await;
    let records = logs.events("callback");
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = &records[0];
    assert_eq!(record["outcome"], "logged");
    assert_eq!(record["category"], "unclassified");
    let envelope = support::logs::envelope(record);
    assert_eq!(envelope["category"], "unclassified");
    assert_eq!(envelope["errorCode"], 12345);
    assert_eq!(envelope["callback"], body);
    assert_eq!(
        record["dedupKey"],
        support::expected_dedup_key(support::SDK_APP_ID, &body)
    );
}

// ----------------------------------------------------------------------------------------
// FIFO topics.
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn fifo_topic_gets_the_group_id_and_the_dedup_key() {
    let world = World::fifo("fifo-ids").await;
    let app = setup(&world, |_| {}).await;
    let body = callback(json!(10023), GROUP);

    let before = now_millis();
    invoke(app, &Call::chat(body.to_string()).http_api())
        .await
        .assert_acknowledged();
    let after = now_millis();

    let delivery = world.only_delivery(Category::FrequencyLimit).await;
    let envelope = delivery.envelope();
    assert_envelope(&envelope, "frequency_limit", 10023, &body, (before, after));
    delivery.assert_fifo_ids(GROUP);
}

#[tokio::test]
async fn fifo_topic_delivers_a_repeated_callback_once() {
    // Chat may retry on timeout. moto's SNS FIFO topic accepts both publishes (two message
    // ids), and the FIFO queue drops the second by MessageDeduplicationId = dedupKey.
    let world = World::fifo("fifo-dedup").await;
    let app = setup(&world, |_| {}).await;
    let body = callback(json!(80001), GROUP);
    let call = Call::chat(body.to_string()).http_api();

    invoke(app, &call).await.assert_acknowledged();
    invoke(app, &call).await.assert_acknowledged();
    let mut other = body.clone();
    other["Random"] = json!(987654321);
    invoke(app, &Call::chat(other.to_string()).http_api())
        .await
        .assert_acknowledged();

    // Waits for the two expected; a third (the repeat) would already be queued and show up.
    let deliveries = world.received(Category::ContentFilter, 2).await;
    assert_eq!(
        support::world::callbacks(&deliveries),
        [body, other],
        "the repeat is dropped, the rest kept"
    );
    world.assert_nothing_published().await;
}

#[tokio::test]
async fn fifo_topic_uses_dash_as_the_group_of_an_empty_group_id() {
    let world = World::fifo("fifo-no-group").await;
    let app = setup(&world, |_| {}).await;
    let body = callback(json!(10017), "");

    invoke(app, &Call::chat(body.to_string()).http_api())
        .await
        .assert_acknowledged();

    let delivery = world.only_delivery(Category::MutedSender).await;
    assert_eq!(
        delivery
            .system_attributes
            .get("MessageGroupId")
            .map(String::as_str),
        Some("-")
    );
    assert_eq!(delivery.subject(), Some("muted_sender: error 10017"));
    let attributes = delivery.attributes();
    assert!(!attributes.contains_key("groupId"), "{attributes:?}");
    assert_eq!(delivery.envelope()["callback"], body);
}

// ----------------------------------------------------------------------------------------
// Refusals, in the order of docs/contract.md: nothing is published, and the answer is a FAIL body.
// ----------------------------------------------------------------------------------------

/// Sends `call` to a fresh function configured by `tweak` and checks that it is refused with
/// `status` and that no queue received anything. Returns the answer and the captured logs.
async fn refused(
    test: &str,
    tweak: impl FnOnce(&mut HashMap<String, String>),
    call: impl FnOnce() -> Call,
    status: u16,
) -> (support::Answer, Logs) {
    let world = World::standard(test).await;
    let app = setup(&world, tweak).await;
    let (logs, _guard) = Logs::capture();
    let answer = invoke(app, &call().http_api()).await;
    answer.assert_fail(status);
    world.assert_nothing_published().await;
    logs.rejection();
    (answer, logs)
}

fn body() -> String {
    callback(json!(10023), GROUP).to_string()
}

fn no_change(_: &mut HashMap<String, String>) {}

#[tokio::test]
async fn a_get_is_refused_with_405() {
    refused("get", no_change, || Call::chat(body()).method("GET"), 405).await;
}

#[tokio::test]
async fn a_body_over_max_body_bytes_is_refused_with_413() {
    let mut big = callback(json!(10023), GROUP);
    big["CloudCustomData"] = json!("x".repeat(1024));
    let big = big.to_string();
    assert!(big.len() > 1024);
    refused(
        "too-large",
        |env| {
            env.insert("MAX_BODY_BYTES".into(), "1024".into());
        },
        || Call::chat(big),
        413,
    )
    .await;
}

#[tokio::test]
async fn a_body_within_max_body_bytes_is_published() {
    let world = World::standard("within-limit").await;
    let app = setup(&world, |env| {
        env.insert("MAX_BODY_BYTES".into(), "1024".into());
    })
    .await;
    let body = body();
    assert!(body.len() <= 1024);
    invoke(app, &Call::chat(body).http_api())
        .await
        .assert_acknowledged();
    world.only_delivery(Category::FrequencyLimit).await;
}

#[tokio::test]
async fn a_missing_sdk_app_id_is_refused_with_403() {
    refused(
        "no-app-id",
        no_change,
        || Call::chat(body()).without_param("SdkAppid"),
        403,
    )
    .await;
}

#[tokio::test]
async fn another_sdk_app_id_is_refused_with_403() {
    refused(
        "other-app-id",
        no_change,
        || {
            Call::chat(body())
                .without_param("SdkAppid")
                .param("SdkAppid", "1400000001")
        },
        403,
    )
    .await;
}

fn with_token(env: &mut HashMap<String, String>) {
    env.insert("IM_CALLBACK_TOKEN".into(), TOKEN.into());
    env.insert("IM_SIGN_MAX_SKEW_SECS".into(), "60".into());
}

/// Neither the token nor any `Sign` that was sent appears in the answer or in any log line.
#[track_caller]
fn assert_no_secret(answer: &support::Answer, logs: &Logs, call: &Call) {
    let mut secrets = vec![TOKEN.to_owned()];
    secrets.extend(
        call.query
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("Sign"))
            .map(|(_, v)| v.clone()),
    );
    let raw = answer.raw.to_string();
    let text = logs.text();
    for secret in &secrets {
        assert!(!raw.contains(secret.as_str()), "answer has {secret}: {raw}");
        assert!(
            !text.contains(secret.as_str()),
            "logs have {secret}: {text}"
        );
    }
}

async fn refused_signature(test: &str, call: Call) {
    let sent = call.clone();
    let (answer, logs) = refused(test, with_token, move || call, 401).await;
    assert_no_secret(&answer, &logs, &sent);
}

#[tokio::test]
async fn a_missing_sign_is_refused_with_401() {
    let now = support::events::now_secs().to_string();
    let call = Call::chat(body()).param("RequestTime", &now);
    refused_signature("no-sign", call).await;
}

#[tokio::test]
async fn a_missing_request_time_is_refused_with_401() {
    let call = Call::chat(body())
        .signed(TOKEN)
        .without_param("RequestTime");
    refused_signature("no-request-time", call).await;
}

#[tokio::test]
async fn a_wrong_sign_is_refused_with_401() {
    let call = Call::chat(body()).signed("not-the-token");
    refused_signature("wrong-sign", call).await;
}

#[tokio::test]
async fn a_request_time_outside_the_skew_is_refused_with_401() {
    // Correctly signed, but sent two minutes ago with a 60 s window.
    let stale = support::events::now_secs() - 120;
    let call = Call::chat(body()).signed_at(TOKEN, stale);
    refused_signature("stale-sign", call).await;
    let future = support::events::now_secs() + 120;
    let call = Call::chat(body()).signed_at(TOKEN, future);
    refused_signature("future-sign", call).await;
}

#[tokio::test]
async fn a_correct_fresh_signature_is_published() {
    let world = World::standard("good-sign").await;
    let app = setup(&world, with_token).await;
    let body = callback(json!(10004), GROUP);
    let call = Call::chat(body.to_string()).signed(TOKEN);
    let (logs, _guard) = Logs::capture();

    let answer = invoke(app, &call.http_api()).await;

    answer.assert_acknowledged();
    let delivery = world.only_delivery(Category::InvalidGroup).await;
    assert_eq!(delivery.envelope()["callback"], body);
    let published = logs.events("callback");
    assert_eq!(published.len(), 1, "{}", logs.text());
    assert_eq!(published[0]["outcome"], "published");
    assert_no_secret(&answer, &logs, &call);
}

#[tokio::test]
async fn another_callback_command_is_acknowledged_without_publishing() {
    let world = World::standard("other-command").await;
    let app = setup(&world, |_| {}).await;
    let call = Call::command("Group.CallbackAfterSendMsg", "this is not JSON {");

    invoke(app, &call.http_api()).await.assert_acknowledged();

    world.assert_nothing_published().await;
}

async fn bad_request(test: &str, body: &str) {
    let body = body.to_owned();
    refused(test, no_change, || Call::chat(body), 400).await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_with_400() {
    // Chat's documented sample: `//` comments and a missing comma.
    let sample = "{\n  \"CallbackCommand\": \"Group.CallbackSendMsgException\", // command\n  \"ErrorCode\": 10023\n  \"GroupId\": \"@TGS#1\"\n}";
    bad_request("not-json", sample).await;
}

#[tokio::test]
async fn a_json_array_body_is_refused_with_400() {
    bad_request("array", r#"[{"ErrorCode":10023}]"#).await;
}

#[tokio::test]
async fn a_body_without_error_code_is_refused_with_400() {
    let mut body = callback(json!(10023), GROUP);
    body.as_object_mut().unwrap().remove("ErrorCode");
    bad_request("no-error-code", &body.to_string()).await;
}

#[tokio::test]
async fn a_non_numeric_error_code_is_refused_with_400() {
    bad_request("error-code-abc", &callback(json!("abc"), GROUP).to_string()).await;
}

#[tokio::test]
async fn a_body_command_disagreeing_with_the_query_is_refused_with_400() {
    let mut body = callback(json!(10023), GROUP);
    body["CallbackCommand"] = json!("Group.CallbackAfterSendMsg");
    bad_request("command-mismatch", &body.to_string()).await;
}

// ----------------------------------------------------------------------------------------
// Encodings and event sources.
// ----------------------------------------------------------------------------------------

/// Sends `event` (built from a call carrying `body`) and checks it is published as usual.
async fn accepted(test: &str, body: &Value, event: impl FnOnce(Call) -> Value) -> support::Answer {
    let world = World::standard(test).await;
    let app = setup(&world, |_| {}).await;
    let answer = invoke(app, &event(Call::chat(body.to_string()))).await;
    answer.assert_acknowledged();
    let delivery = world.only_delivery(Category::FrequencyLimit).await;
    let envelope = delivery.envelope();
    assert_eq!(envelope["callback"], *body);
    assert_eq!(envelope["sdkAppId"], support::SDK_APP_ID);
    answer
}

#[tokio::test]
async fn a_base64_encoded_body_is_published() {
    let body = callback(json!(10023), "@TGS#群聊");
    accepted("base64", &body, |call| call.base64_body().http_api()).await;
}

#[tokio::test]
async fn a_rest_api_event_is_published() {
    let body = callback(json!(10023), GROUP);
    let answer = accepted("rest-api", &body, |call| call.rest_api()).await;
    // Answered in the REST API (payload 1.0) shape.
    assert_eq!(
        answer.raw["multiValueHeaders"]["content-type"],
        json!(["application/json"]),
        "{:#}",
        answer.raw
    );
}

#[tokio::test]
async fn a_function_url_event_is_published() {
    let body = callback(json!(10023), GROUP);
    let answer = accepted("function-url", &body, |call| call.function_url()).await;
    assert_eq!(answer.raw["headers"]["content-type"], "application/json");
}

#[tokio::test]
async fn query_parameter_names_match_in_any_case() {
    let body = callback(json!(10023), GROUP);
    accepted("lowercase-query", &body, |call| {
        call.rename_param("SdkAppid", "sdkappid")
            .rename_param("CallbackCommand", "callbackcommand")
            .rename_param("ClientIP", "clientip")
            .http_api()
    })
    .await;
}

#[tokio::test]
async fn a_text_plain_body_is_parsed_as_json() {
    let body = callback(json!(10023), GROUP);
    accepted("text-plain", &body, |call| {
        call.content_type(Some("text/plain; charset=utf-8"))
            .http_api()
    })
    .await;
}

#[tokio::test]
async fn a_body_without_content_type_is_parsed_as_json() {
    let body = callback(json!(10023), GROUP);
    accepted("no-content-type", &body, |call| {
        call.content_type(None).http_api()
    })
    .await;
}

// ----------------------------------------------------------------------------------------
// SNS unreachable: 503 within the deadline, and the envelope logged for replay.
// ----------------------------------------------------------------------------------------

const PUBLISH_TIMEOUT_MS: u64 = 800;
/// Scheduling and set-up slack on top of the deadline: a deadline check, not a benchmark.
const MARGIN: Duration = Duration::from_millis(1500);

async fn publish_fails_within_the_deadline(endpoint: &str) {
    let topic_arn = "arn:aws:sns:us-east-1:123456789012:unreachable-frequency-limit";
    let env: HashMap<String, String> = [
        ("IM_SDK_APP_ID", support::SDK_APP_ID),
        (
            "TOPIC_ARN_INVALID_GROUP",
            "arn:aws:sns:us-east-1:123456789012:ig",
        ),
        ("TOPIC_ARN_FREQUENCY_LIMIT", topic_arn),
        (
            "TOPIC_ARN_CONTENT_FILTER",
            "arn:aws:sns:us-east-1:123456789012:cf",
        ),
        (
            "TOPIC_ARN_MUTED_SENDER",
            "arn:aws:sns:us-east-1:123456789012:ms",
        ),
        ("PUBLISH_TIMEOUT_MS", "800"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let app = support::function(&env, endpoint).await;
    let body = callback(json!(10023), GROUP);
    let event = Call::chat(body.to_string()).http_api();
    let (logs, _guard) = Logs::capture();

    let started = Instant::now();
    let answer = invoke(app, &event).await;
    let elapsed = started.elapsed();

    answer.assert_fail(503);
    let limit = Duration::from_millis(PUBLISH_TIMEOUT_MS) + MARGIN;
    assert!(
        elapsed < limit,
        "answered after {elapsed:?}, limit {limit:?}"
    );
    let failed = logs.events("publish_failed");
    assert_eq!(failed.len(), 1, "{}", logs.text());
    let record = &failed[0];
    assert_eq!(record["level"], "FATAL");
    assert_eq!(record["category"], "frequency_limit");
    assert_eq!(record["topicArn"], topic_arn);
    assert_eq!(
        record["dedupKey"],
        support::expected_dedup_key(support::SDK_APP_ID, &body)
    );
    let envelope = support::logs::envelope(record);
    assert_eq!(envelope["category"], "frequency_limit");
    assert_eq!(envelope["errorCode"], 10023);
    assert_eq!(envelope["callback"], body);
}

#[tokio::test]
async fn sns_refusing_connections_gives_503_and_a_replayable_record() {
    let port = support::moto::free_port();
    publish_fails_within_the_deadline(&format!("http://127.0.0.1:{port}")).await;
}

#[tokio::test]
async fn sns_that_never_answers_gives_503_within_the_deadline() {
    // A black hole: accepts connections, reads nothing, answers nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hole = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    publish_fails_within_the_deadline(&format!("http://{addr}")).await;
    hole.abort();
}
