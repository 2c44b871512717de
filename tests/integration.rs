//! End to end against a real SNS API (moto), with SQS queues subscribed to every topic, through
//! the production handler and `lambda_http`'s own event path: every category, FIFO topics and
//! every event source. (One call per class of refusal: tests/security.rs, which also looks for
//! secrets in each answer and line.)
//!
//! Run with `make test`, or `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --test integration`.

mod support;

use im_exception_webhook::domain::classify::Category;
use serde_json::json;
use std::collections::HashMap;
use support::{Call, Function, World, assert_envelope, callback};

const GROUP: &str = "@TGS#2J4SZEAEL";

async fn function(world: &World, tweak: impl FnOnce(&mut HashMap<String, String>)) -> Function {
    let mut env = world.env();
    tweak(&mut env);
    Function::new(&env, &world.endpoint).await
}

/// Every category, each sent as Chat does, and everything one subscriber of its topic receives
/// checked: the envelope, the subject and every message attribute; and the line it logs.
#[tokio::test]
async fn each_category_is_published_to_its_topic() {
    let world = World::standard("categories").await;
    let f = function(&world, |_| {}).await;
    // As in Chat's own sample: integers arrive as strings. The envelope's errorCode is a number,
    // the callback is kept as sent, and the dedup key hashes the decimal values.
    let mut numeric_strings = callback(json!("80001"), GROUP);
    numeric_strings["Random"] = json!("123456789");
    numeric_strings["EventTime"] = json!("1670574414123");
    let mut with_operator = callback(json!(10017), "@TGS#_muted_room");
    with_operator["Operator_Account"] = json!("admin");
    with_operator["Type"] = json!("Community");
    let sent = [
        (Category::InvalidGroup, callback(json!(10004), GROUP)),
        (Category::FrequencyLimit, callback(json!(10023), GROUP)),
        (Category::ContentFilter, numeric_strings),
        (Category::MutedSender, with_operator),
        (Category::Unclassified, callback(json!(12345), GROUP)),
    ];
    for (category, body) in sent {
        f.invoke(&Call::chat(body.to_string()).http_api())
            .await
            .assert_acknowledged();
        let delivery = world.only_delivery(category).await;
        let topic = &world.topic(category).topic_arn;
        assert_eq!(delivery.notification["TopicArn"], topic.as_str());
        let envelope = delivery.envelope();
        assert_envelope(&envelope, category, &body);
        let code = envelope["errorCode"].as_i64().unwrap();
        let group = body["GroupId"].as_str().unwrap();
        let subject = format!("{category}: error {code} in group {group}");
        assert_eq!(delivery.subject(), Some(subject.as_str()));

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
        let attributes = delivery.attributes();
        assert_eq!(attributes, expected, "an empty field makes no attribute");

        let lines = f.lines();
        let line = lines.last().unwrap();
        let metrics = support::emf::assert_valid(std::slice::from_ref(line));
        assert_eq!(metrics, [["Exceptions"]]);
        let logged = (line["outcome"].as_str(), line["Category"].as_str());
        assert_eq!(logged, (Some("published"), Some(category.as_str())));
    }
    // The harness checked each one read back against docs/schema/.
    let checked = support::schema::checked();
    assert!(checked >= 5, "{checked}");
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

/// Every way the same callback can arrive: each is published once, to the same topic. (Names
/// of parameters in any case, repeated or encoded: tests/security.rs.)
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
