//! Sizes at the limit (docs/contract.md, "Sizes"). A body of exactly `MAX_BODY_BYTES` (65,536
//! by default), the worst there is: its four attribute fields full of quotes and backslashes
//! (each in the envelope, again in its attribute, and escaped once more where the envelope
//! becomes a JSON string), and its text full of control characters as `\u` escapes and raw
//! U+FFFE and U+FFFF. It is published whole, queued whole when SNS is down, and recorded whole
//! when the retry queue is down too, each read back from moto or the function's output; none of
//! these holds a raw U+FFFE or U+FFFF (moto does not enforce SNS's character set, so the bytes
//! are tested). One byte more is 413/4130.
//!
//! Run with `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --test size -- --nocapture`
//! for the sizes measured.

mod support;

use im_exception_webhook::domain::classify::Category;
use im_exception_webhook::domain::publish::QueuedPublish;
use serde::Deserialize;
use serde_json::{Value, json};
use support::world::RetryQueue;
use support::{Call, Function, Lambda, World, schema};

const LIMIT: usize = 65_536;
/// SNS's and SQS's limit on a message, and CloudWatch Logs' on an event.
const AWS_LIMIT: usize = 262_144;
const REFUSED: [char; 2] = ['\u{FFFE}', '\u{FFFF}'];

/// The worst frequency-limit exception of exactly `len` bytes.
fn worst_body(len: usize) -> String {
    let attribute = "\"\\".repeat(3000);
    let escapes = |text: &str| {
        json!({
            "CallbackCommand": "Group.CallbackSendMsgException", "GroupId": attribute,
            "Type": attribute, "From_Account": attribute, "Operator_Account": attribute,
            "Random": 123456789, "OnlineOnlyFlag": 0, "ErrorCode": 10023,
            "ErrorInfo": "\u{1}\u{FFFF}", "EventTime": 1670574414123_i64,
            "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": text}}],
        })
        .to_string()
    };
    let unit = "\u{1}\u{1f}\u{FFFE}\"\\\u{FFFF}\n";
    let bare = escapes("").len();
    let unit_bytes = escapes(unit).len() - bare;
    let units = (len - bare) / unit_bytes;
    let filler = unit.repeat(units) + &"x".repeat(len - bare - units * unit_bytes);
    let body = escapes(&filler);
    assert_eq!(body.len(), len);
    body
}

/// Nothing SNS or SQS would refuse in `text`, `what` of the worst body.
#[track_caller]
fn assert_deliverable(what: &str, text: &str) {
    assert!(
        !text.contains(REFUSED),
        "{what} holds a raw U+FFFE or U+FFFF"
    );
    eprintln!("size | {what}: {} bytes", text.len());
}

#[tokio::test]
async fn the_worst_body_at_the_limit_is_published_whole_and_one_byte_more_is_413() {
    let world = World::standard("size-published").await;
    let mut env = world.env();
    // moto takes a while over a publish this large on a busy machine: the most time there is.
    env.insert("PUBLISH_TIMEOUT_MS".into(), "1900".into());
    let f = Function::new(&env, &world.endpoint).await;
    let body = worst_body(LIMIT);
    f.invoke(&Call::chat(body.clone()).http_api())
        .await
        .assert_acknowledged();
    // The harness checks it against docs/schema/ as it reads it back.
    let delivery = world.only_delivery(Category::FrequencyLimit).await;
    let message = delivery.notification["Message"].as_str().unwrap();
    delivery.assert_delivers(&support::expected_publish(&env, &body, message));
    let attributes = delivery.attributes();
    assert_eq!(
        attributes["groupId"].1.len(),
        6000,
        "the long fields are attributes"
    );
    assert_deliverable("the envelope", message);
    let sns_size: usize = message.len()
        + attributes
            .iter()
            .map(|(k, (t, v))| k.len() + t.len() + v.len())
            .sum::<usize>();
    assert!(sns_size <= AWS_LIMIT, "{sns_size}");
    eprintln!("size | SNS message with its attributes: {sns_size} bytes");

    f.invoke(&Call::chat(worst_body(LIMIT + 1)).http_api())
        .await
        .assert_fail(413, 4130);
    world.assert_nothing_published().await;
}

#[tokio::test]
async fn with_sns_down_the_worst_body_is_queued_whole_and_with_the_queue_down_too_recorded_whole() {
    let world = World::standard("size-kept").await;
    let queue = RetryQueue::create(&world.endpoint, "size-kept", 5).await;
    let closed = support::moto::closed_url;
    let mut env = world.env();
    env.insert("RETRY_QUEUE_URL".into(), queue.url.clone());
    env.insert("AWS_ENDPOINT_URL_SNS".into(), closed());
    let body = worst_body(LIMIT);

    let mut lambda = Lambda::webhook(&world.endpoint, &env).await;
    lambda
        .invoke(&Call::chat(body.clone()).http_api())
        .await
        .assert_acknowledged();
    let queued = queue.drain(&queue.url).await;
    assert_eq!(queued.len(), 1, "one queued publish");
    let text = &queued[0].body;
    let publish = QueuedPublish::from_json(text).expect("a queued publish");
    assert!(*text == support::expected_publish(&env, &body, &publish.message).to_json());
    assert!(text.len() <= AWS_LIMIT, "{}", text.len());
    assert_deliverable("the queued publish", text);
    schema::check_queued_publish(&serde_json::from_str(text).unwrap());

    env.insert("AWS_ENDPOINT_URL_SQS".into(), closed());
    let mut lambda = Lambda::webhook(&world.endpoint, &env).await;
    lambda
        .invoke(&Call::chat(body.clone()).http_api())
        .await
        .assert_fail(503, 5030);
    let is_record = |l: &String| l.contains(r#""event":"publish_failed""#);
    let lines = lambda
        .process
        .stdout_when(|l| l.iter().any(is_record))
        .await;
    let line = lines
        .iter()
        .find(|l| is_record(l))
        .expect("a publish_failed record");
    assert!(line.len() <= AWS_LIMIT, "{}", line.len());
    assert_deliverable("the publish_failed record", line);
    let record: Value = serde_json::from_str(line).expect("the record is JSON");
    schema::check_queued_publish(&record["publish"]);
    let kept = QueuedPublish::deserialize(&record["publish"]).unwrap();
    assert_eq!(kept, support::expected_publish(&env, &body, &kept.message));
    assert!(queue.drain(&queue.url).await.is_empty());
    world.assert_nothing_published().await;
}
