//! End to end against a real SNS API (moto), with SQS queues subscribed to every topic, through
//! the production handler and `lambda_http`'s own event path: every category, FIFO topics, every
//! event source, and one call per class of answer.
//!
//! Run with `make test`, or `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --test integration`.

mod support;

use im_exception_webhook::domain::classify::Category;
use serde_json::{Value, json};
use std::collections::HashMap;
use support::{Call, Function, TOKEN, World, assert_envelope, callback};

const GROUP: &str = "@TGS#2J4SZEAEL";

async fn function(world: &World, tweak: impl FnOnce(&mut HashMap<String, String>)) -> Function {
    let mut env = world.env();
    tweak(&mut env);
    Function::new(&env, &world.endpoint).await
}

/// Sends `body` as Chat does and checks everything one subscriber of `category` receives: the
/// envelope, the subject and every message attribute.
async fn publishes_to_its_topic(test: &str, category: Category, body: Value) {
    let world = World::standard(test).await;
    let f = function(&world, |_| {}).await;
    f.invoke(&Call::chat(body.to_string()).http_api())
        .await
        .assert_acknowledged();

    let delivery = world.only_delivery(category).await;
    assert_eq!(
        delivery.notification["TopicArn"],
        world.topic(category).topic_arn.as_str()
    );
    let envelope = delivery.envelope();
    assert_envelope(&envelope, category, &body);
    let code = envelope["errorCode"].as_i64().unwrap();
    let group = body["GroupId"].as_str().unwrap();
    assert_eq!(
        delivery.subject(),
        Some(format!("{category}: error {code} in group {group}").as_str())
    );

    let string = |v: &str| ("String".to_owned(), v.to_owned());
    let mut expected = HashMap::from([
        ("category".to_owned(), string(category.as_str())),
        (
            "errorCode".to_owned(),
            ("Number".to_owned(), code.to_string()),
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
        if let Some(v) = body[field].as_str().filter(|v| !v.is_empty()) {
            expected.insert(attribute.to_owned(), string(v));
        }
    }
    assert_eq!(
        delivery.attributes(),
        expected,
        "an empty field makes no attribute"
    );

    let lines = f.lines();
    assert_eq!(support::emf::assert_valid(&lines), [["Exceptions"]]);
    assert_eq!(
        (lines[0]["outcome"].as_str(), lines[0]["Category"].as_str()),
        (Some("published"), Some(category.as_str()))
    );
}

#[tokio::test]
async fn invalid_group_is_published_to_its_topic() {
    publishes_to_its_topic(
        "invalid-group",
        Category::InvalidGroup,
        callback(json!(10004), GROUP),
    )
    .await;
}

#[tokio::test]
async fn frequency_limit_is_published_to_its_topic() {
    publishes_to_its_topic(
        "frequency-limit",
        Category::FrequencyLimit,
        callback(json!(10023), GROUP),
    )
    .await;
}

#[tokio::test]
async fn content_filter_sent_with_numeric_strings_is_published_with_a_numeric_error_code() {
    // As in Chat's own sample: integers arrive as strings. The envelope's errorCode is a number,
    // the callback is kept as sent, and the dedup key hashes the decimal values.
    let mut body = callback(json!("80001"), GROUP);
    body["Random"] = json!("123456789");
    body["EventTime"] = json!("1670574414123");
    publishes_to_its_topic("content-filter", Category::ContentFilter, body).await;
}

#[tokio::test]
async fn muted_sender_is_published_with_the_operator_account() {
    let mut body = callback(json!(10017), "@TGS#_muted_room");
    body["Operator_Account"] = json!("admin");
    body["Type"] = json!("Community");
    publishes_to_its_topic("muted-sender", Category::MutedSender, body).await;
}

#[tokio::test]
async fn unclassified_is_published_when_its_topic_is_configured() {
    publishes_to_its_topic(
        "unclassified",
        Category::Unclassified,
        callback(json!(12345), GROUP),
    )
    .await;
}

#[tokio::test]
async fn unclassified_without_a_topic_is_logged_and_acknowledged() {
    let world = World::standard("unclassified-logged").await;
    let f = function(&world, |env| {
        env.remove("TOPIC_ARN_UNCLASSIFIED");
    })
    .await;
    let body = callback(json!(12345), GROUP);
    f.invoke(&Call::chat(body.to_string()).http_api())
        .await
        .assert_acknowledged();
    world.assert_nothing_published().await;
    let line = &f.lines()[0];
    assert_eq!(
        (line["outcome"].as_str(), line["Exceptions"].as_u64()),
        (Some("logged"), Some(1))
    );
    assert_envelope(&line["envelope"], Category::Unclassified, &body);
}

#[tokio::test]
async fn a_fifo_topic_gets_the_group_and_delivers_a_repeated_callback_once() {
    let world = World::fifo("fifo").await;
    let f = function(&world, |_| {}).await;
    let body = callback(json!(80001), GROUP);
    for _ in 0..2 {
        // Chat retrying: the same callback twice, one dedupKey.
        f.invoke(&Call::chat(body.to_string()).http_api())
            .await
            .assert_acknowledged();
    }
    world
        .only_delivery(Category::ContentFilter)
        .await
        .assert_fifo_ids(GROUP);

    let mut groupless = callback(json!(10004), "");
    groupless["Random"] = json!(7);
    f.invoke(&Call::chat(groupless.to_string()).http_api())
        .await
        .assert_acknowledged();
    world
        .only_delivery(Category::InvalidGroup)
        .await
        .assert_fifo_ids("-");
}

/// One call per class of answer, end to end (every row of the table is checked at `decide`):
/// nothing is published for any of them.
#[tokio::test]
async fn each_class_of_refusal_is_answered_and_publishes_nothing() {
    let world = World::standard("refusals").await;
    let f = function(&world, |env| {
        env.insert("IM_CALLBACK_TOKEN".into(), TOKEN.into());
        env.insert("MAX_BODY_BYTES".into(), "1024".into());
    })
    .await;
    let good = || Call::chat(callback(json!(10023), GROUP).to_string()).signed(TOKEN);
    let cases = [
        (good().method("GET"), 405, 4050),
        (Call::chat("x".repeat(1025)).signed(TOKEN), 413, 4130),
        (good().set_param("SdkAppid", "1400000001"), 403, 4031),
        (
            Call::chat(callback(json!(10023), GROUP).to_string()).signed("wrong-token"),
            401,
            4014,
        ),
        (Call::chat("[]").signed(TOKEN), 400, 4003),
    ];
    for (call, status, code) in cases {
        f.invoke(&call.http_api()).await.assert_fail(status, code);
    }
    world.assert_nothing_published().await;
    let lines = f.lines();
    let reasons: Vec<&str> = lines
        .iter()
        .map(|l| l["Reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "method_not_allowed",
            "body_too_large",
            "sdk_app_id",
            "signature",
            "bad_body"
        ]
    );
    assert!(
        lines
            .iter()
            .all(|l| l["sourceIp"] == support::CLIENT_IP && l["level"] == "WARN")
    );
    assert_eq!(support::emf::assert_valid(&lines).concat(), ["Rejected"; 5]);
}

#[tokio::test]
async fn another_command_is_acknowledged_without_publishing() {
    let world = World::standard("other-command").await;
    let f = function(&world, |_| {}).await;
    let call = Call::command("Group.CallbackAfterSendMsg", "not even json");
    f.invoke(&call.http_api()).await.assert_acknowledged();
    world.assert_nothing_published().await;
    assert_eq!(f.lines()[0]["outcome"], "other_command");
}

/// Every way the same callback can arrive: each is published once, to the same topic.
#[tokio::test]
async fn every_event_source_and_spelling_of_a_call_is_published() {
    let world = World::standard("event-sources").await;
    let f = function(&world, |_| {}).await;
    let body = callback(json!(10017), GROUP);
    let chat = || Call::chat(body.to_string());
    let events = [
        ("REST API (payload 1.0)", chat().rest_api()),
        ("function URL", chat().function_url()),
        ("base64 body", chat().base64_body().http_api()),
        (
            "names in other cases",
            chat()
                .rename_param("SdkAppid", "SDKAPPID")
                .rename_param("CallbackCommand", "callbackcommand")
                .http_api(),
        ),
        (
            "text/plain",
            chat().content_type(Some("text/plain")).http_api(),
        ),
        ("no content type", chat().content_type(None).http_api()),
    ];
    for (what, event) in events {
        f.invoke(&event).await.assert_acknowledged();
        let delivery = world.only_delivery(Category::MutedSender).await;
        assert_eq!(delivery.envelope()["callback"], body, "{what}");
    }
}
