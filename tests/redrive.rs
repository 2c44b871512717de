//! `im-exception-redrive` as Lambda runs it (a local Runtime API), fed SQS events built from
//! real messages of a retry queue on moto, which the webhook's binary put there with SNS
//! unreachable (`AWS_ENDPOINT_URL_SNS` on a closed port, SQS on moto). The test plays the event
//! source mapping: it receives from the queue, hands the batch over, and leaves in the queue
//! what the function reports as failed. (FIFO topics delivering each exception once after a
//! redrive, a batch handed over twice included: tests/faults.rs.)
//!
//! Run with `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --all-features --test redrive`.

mod support;

use im_exception_webhook::domain::classify::Category;
use im_exception_webhook::domain::publish::QueuedPublish;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use support::bootstrap::REDRIVE;
use support::moto::closed_url;
use support::world::{Delivery, Queued, RetryQueue, queue_arn, sqs_event};
use support::{Call, Lambda, World, assert_envelope, callback};

const GROUP: &str = "@TGS#2J4SZEAEL";

/// The webhook on `world`'s topics (and `topic` instead of one), SNS unreachable and the retry
/// queue up: every exception it accepts is queued. Each of `bodies` is sent and checked queued.
async fn queued_by_the_webhook(
    world: &World,
    retry: &RetryQueue,
    topic: Option<(&str, &str)>,
    bodies: &[&Value],
) {
    let mut env = world.env();
    env.insert("RETRY_QUEUE_URL".into(), retry.url.clone());
    env.insert("AWS_ENDPOINT_URL_SNS".into(), closed_url());
    env.insert("PUBLISH_TIMEOUT_MS".into(), "800".into());
    env.extend(topic.map(|(k, v)| (k.to_owned(), v.to_owned())));
    let mut webhook = Lambda::webhook(&world.endpoint, &env).await;
    for body in bodies {
        let call = Call::chat(body.to_string()).http_api();
        webhook.invoke(&call).await.assert_acknowledged();
    }
    let lines = webhook.events("callback", bodies.len()).await;
    let queued = lines.iter().filter(|l| l["outcome"] == "queued").count();
    assert_eq!(queued, bodies.len(), "{lines:#?}");
}

/// The redrive function, its SNS at `sns` (moto unless given).
async fn redrive(sns: Option<&str>) -> Lambda {
    let env = sns.map(|sns| ("AWS_ENDPOINT_URL_SNS".to_owned(), sns.to_owned()));
    Lambda::start(REDRIVE, support::moto::url(), &env.into_iter().collect()).await
}

/// Hands `messages` to the function as one batch; the ids it reports as failed.
async fn hand(function: &mut Lambda, messages: &[Queued]) -> BTreeSet<String> {
    let response = function.api.call(&sqs_event(messages)).await;
    let failures = response["batchItemFailures"]
        .as_array()
        .expect("a batch response");
    let id = |f: &Value| f["itemIdentifier"].as_str().unwrap().to_owned();
    failures.iter().map(id).collect()
}

async fn send(retry: &RetryQueue, url: &str, body: &str) {
    let send = retry.sqs.send_message().queue_url(url).message_body(body);
    send.send().await.expect("send a message");
}

/// What SNS delivered is the queued publish `body`, byte for byte.
#[track_caller]
fn assert_republished(delivery: &Delivery, body: &str) {
    delivery.assert_delivers(&QueuedPublish::from_json(body).expect("a queued publish"));
}

#[tokio::test]
async fn a_mixed_batch_reports_exactly_its_failing_and_foreign_messages() {
    let world = World::standard("redrive-mixed").await;
    let retry = RetryQueue::create(&world.endpoint, "redrive-mixed", 5).await;
    // A topic that does not exist: SNS refuses its publish when it is redriven.
    let missing = format!("{}-deleted", world.topic(Category::ContentFilter).topic_arn);
    let sent = [
        (Category::FrequencyLimit, callback(json!(10023), GROUP)),
        (Category::MutedSender, callback(json!(20012), GROUP)),
        (Category::ContentFilter, callback(json!(80004), GROUP)),
    ];
    let bodies: Vec<&Value> = sent.iter().map(|(_, b)| b).collect();
    let topic = ("TOPIC_ARN_CONTENT_FILTER", missing.as_str());
    queued_by_the_webhook(&world, &retry, Some(topic), &bodies).await;
    // What else can land in a queue: S3's test notification, not a queued publish.
    let foreign = json!({"Service": "Amazon S3", "Event": "s3:TestEvent"}).to_string();
    send(&retry, &retry.url, &foreign).await;

    let messages = retry.receive_n(&retry.url, 4, 30).await;
    let id_of = |text: &str| {
        let m = messages.iter().find(|m| m.body.contains(text)).unwrap();
        m.message_id.clone()
    };
    let expected = BTreeSet::from([id_of(&missing), id_of(&foreign)]);
    let mut function = redrive(None).await;
    assert_eq!(hand(&mut function, &messages).await, expected);

    for (category, body) in &sent[..2] {
        let delivered = world.received(*category, 1).await;
        assert_eq!(delivered.len(), 1, "{category}: {delivered:#?}");
        let queued = id_of(&world.topic(*category).topic_arn);
        let queued = messages.iter().find(|m| m.message_id == queued).unwrap();
        assert_republished(&delivered[0], &queued.body);
        assert_envelope(&delivered[0].envelope(), *category, body);
    }
    world.assert_nothing_published().await;

    // The batch line's fields are the unit tests' (src/handlers/redrive.rs); here: one line per
    // batch, valid EMF, and SNS's own reason for the publish it refused.
    let lines = function.events("redrive", 1).await;
    assert_eq!(lines.len(), 1, "one line per batch: {lines:#?}");
    let metrics = support::emf::assert_valid(&lines);
    assert_eq!(metrics, [["Redriven", "RedriveFailures"]]);
    let line = &lines[0];
    let failures = line["failures"].as_array().expect("the failures");
    assert_eq!(failures.len(), 2, "{line}");
    let refused = failures.iter().find(|f| f["messageId"] == id_of(&missing));
    let reason = refused.map(|f| f["reason"].to_string()).unwrap_or_default();
    assert!(
        reason.contains("NotFound"),
        "SNS refused a missing topic: {line}"
    );
}

/// SNS down: every message fails and stays; after the queue's maxReceiveCount receives SQS
/// (moto enforces redrive policies on ReceiveMessage) moves it to the dead-letter queue. The
/// operator's recovery, SQS's own DLQ redrive, brings it back, and it is published unchanged.
#[tokio::test]
async fn with_sns_down_a_message_ends_in_the_dlq_and_redriven_from_there_publishes_unchanged() {
    const MAX_RECEIVE_COUNT: usize = 2;
    let world = World::standard("redrive-dlq").await;
    let retry = RetryQueue::create(&world.endpoint, "redrive-dlq", MAX_RECEIVE_COUNT as u32).await;
    let body = callback(json!(10023), GROUP);
    queued_by_the_webhook(&world, &retry, None, &[&body]).await;

    let mut down = redrive(Some(&closed_url())).await;
    let mut received = Vec::new();
    for _ in 0..MAX_RECEIVE_COUNT {
        let batch = retry.receive_n(&retry.url, 1, 0).await;
        let id = batch[0].message_id.clone();
        assert_eq!(hand(&mut down, &batch).await, BTreeSet::from([id.clone()]));
        received.push((id, batch[0].body.clone()));
    }
    assert!(
        received.iter().all(|r| *r == received[0]),
        "it stays: {received:#?}"
    );
    let original = received[0].1.clone();
    let left = retry.receive(&retry.url, 0).await;
    assert!(
        left.is_empty(),
        "past maxReceiveCount it left the retry queue"
    );
    let dead = retry.receive_n(&retry.dead_letter_url, 1, 30).await;
    assert_eq!(
        dead[0].body, original,
        "the dead-letter queue keeps it unchanged"
    );
    let lines = down.events("redrive", MAX_RECEIVE_COUNT).await;
    assert!(
        lines.iter().all(|l| l["RedriveFailures"] == 1),
        "{lines:#?}"
    );
    world.assert_nothing_published().await;

    // "Start DLQ redrive" is StartMessageMoveTask, which moto 5.2 does not implement (it
    // answers HTTP 500): then the move is done here as SQS does it, the same body sent to the
    // source queue and deleted from the dead-letter queue.
    let task = retry
        .sqs
        .start_message_move_task()
        .source_arn(queue_arn(&retry.sqs, &retry.dead_letter_url).await);
    let destination = queue_arn(&retry.sqs, &retry.url).await;
    match task.destination_arn(destination).send().await {
        Ok(_) => eprintln!("moto answers StartMessageMoveTask"),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            eprintln!("StartMessageMoveTask: HTTP {status:?} from moto; the move is emulated");
            retry.delete(&retry.dead_letter_url, &dead[0]).await;
            send(&retry, &retry.url, &original).await;
        }
    }
    let moved = retry.receive_n(&retry.url, 1, 30).await;
    assert_eq!(moved[0].body, original);
    let mut up = redrive(None).await;
    assert!(hand(&mut up, &moved).await.is_empty());
    let delivery = world.only_delivery(Category::FrequencyLimit).await;
    assert_republished(&delivery, &original);
    let line = &up.events("redrive", 1).await[0];
    assert_eq!(
        (&line["outcome"], &line["Redriven"]),
        (&json!("redriven"), &json!(1))
    );
}
