//! Faults of SNS alone, through the webhook's release binary under a local Runtime API: SNS
//! behind a fault proxy (`AWS_ENDPOINT_URL_SNS`), the retry queue and everything else on moto.
//! A fault the SDK's retries absorb is answered 200 and published once; SNS down with the queue
//! up is answered 200 and queued, exactly as a healthy webhook would have published it; with
//! the queue down too, 503 and the `publish_failed` record. The default PUBLISH_TIMEOUT_MS
//! throughout (1500 ms), counted from API Gateway's arrival.
//!
//! The only timings asserted are the contract's deadline with a margin and a generous bound on
//! the gap before a retry; `--nocapture` prints what was measured, one `fault |` line per case.

mod support;

use im_exception_webhook::domain::classify::Category;
use im_exception_webhook::domain::publish::QueuedPublish;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::fault_proxy::{Arrival, Fault, FaultProxy, Met};
use support::world::{RetryQueue, sqs_event};
use support::{Answer, Call, Lambda, World, bootstrap, callback, emf, one_of_each};

const GROUP: &str = "@TGS#2J4SZEAEL";
/// PUBLISH_TIMEOUT_MS's default.
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(1500);
/// What the harness may add to an answer (the Runtime API, the pipes) on a busy machine.
const MARGIN: Duration = Duration::from_millis(500);
/// A generous bound on the gap between a failed attempt and its retry, as the proxy sees them
/// (the contract's figure is 50 ms; the measured one is printed).
const RETRY_GAP_BOUND: Duration = Duration::from_millis(500);

/// The webhook's binary with SNS behind a fault proxy and a retry queue on moto.
struct Faulty {
    world: World,
    proxy: FaultProxy,
    queue: RetryQueue,
    webhook: Lambda,
}

impl Faulty {
    async fn new(world: World, tweak: impl FnOnce(&mut HashMap<String, String>)) -> Faulty {
        let proxy = FaultProxy::start(&world.endpoint).await;
        let queue = RetryQueue::create(&world.endpoint, "faults", 3).await;
        let mut env = world.env();
        env.insert("AWS_ENDPOINT_URL_SNS".into(), proxy.url());
        env.insert("RETRY_QUEUE_URL".into(), queue.url.clone());
        tweak(&mut env);
        let webhook = Lambda::webhook(&world.endpoint, &env).await;
        Faulty {
            world,
            proxy,
            queue,
            webhook,
        }
    }

    async fn standard(test: &str) -> Faulty {
        Faulty::new(World::standard(test).await, |_| {}).await
    }

    /// Sends `body` as Chat does: the answer and how long it took.
    async fn send(&mut self, body: &Value) -> (Answer, Duration) {
        let event = Call::chat(body.to_string()).http_api();
        let sent = Instant::now();
        let answer = self.webhook.invoke(&event).await;
        (answer, sent.elapsed())
    }

    /// The `n`th callback line (from 1), once written.
    async fn line(&self, n: usize) -> Value {
        let lines = self.webhook.events("callback", n).await;
        lines.get(n - 1).cloned().expect("the callback's line")
    }

    /// Every message of the retry queue, as queued publishes (each deleted as it is read).
    async fn queued(&self) -> Vec<(String, QueuedPublish)> {
        let drained = self.queue.drain(&self.queue.url).await;
        let publish = |body: &str| QueuedPublish::from_json(body).expect("a queued publish");
        drained
            .iter()
            .map(|m| (m.message_id.clone(), publish(&m.body)))
            .collect()
    }
}

/// One line of the closing note: the answer, its time, the attempts the proxy saw, and the gap
/// between the first failed attempt and the next one; returns that gap.
fn report(case: &str, answer: &Answer, took: Duration, arrivals: &[Arrival]) -> Option<Duration> {
    let failed = arrivals.iter().position(|a| a.met != Met::Passed);
    let gap = failed.and_then(|i| Some(arrivals.get(i + 1)?.at - arrivals[i].at));
    let attempts: Vec<String> = arrivals
        .iter()
        .map(|a| format!("{:?}@conn{}", a.met, a.connection))
        .collect();
    println!(
        "fault | {case:<22} | answer {} in {:7.1} ms | {} requests at the proxy: {} | gap before \
         the retry: {}",
        answer.status,
        took.as_secs_f64() * 1000.0,
        arrivals.len(),
        attempts.join(", "),
        gap.map_or("-".into(), |g| format!("{g:.1?}"))
    );
    gap
}

fn mets(arrivals: &[Arrival]) -> Vec<Met> {
    arrivals.iter().map(|a| a.met).collect()
}

/// `fault` for the first attempt only, then a healthy SNS: 200, published once, the retry at
/// once.
async fn once_then_healthy(test: &str, fault: Fault) {
    let mut f = Faulty::standard(test).await;
    f.proxy.fault_next(1, fault);
    let body = callback(json!(10023), GROUP);
    let (answer, took) = f.send(&body).await;
    answer.assert_acknowledged();
    let delivery = f.world.only_delivery(Category::FrequencyLimit).await;
    assert_eq!(delivery.envelope()["callback"], body);
    assert_eq!(f.line(1).await["outcome"], "published");
    let arrivals = f.proxy.arrivals();
    assert_eq!(mets(&arrivals), [Met::Fault(fault), Met::Passed]);
    let gap = report(test, &answer, took, &arrivals).unwrap();
    assert!(
        gap < RETRY_GAP_BOUND,
        "the retry came {gap:?} after the fault"
    );
}

#[tokio::test]
async fn sns_500_once_is_retried_at_once_and_answered_200() {
    once_then_healthy("500 once", Fault::ServerError).await;
}

#[tokio::test]
async fn a_reset_connection_once_is_retried_at_once_and_answered_200() {
    once_then_healthy("reset once", Fault::Reset).await;
}

#[tokio::test]
async fn throttling_once_is_retried_and_answered_200() {
    once_then_healthy("throttling once", Fault::Throttling).await;
}

/// A first publish leaves its connection in the SDK's pool; the far end then forgets it without
/// a word (an idle timeout while Lambda froze the environment), so the next publish is written
/// on a dead connection, reset, and retried on a new one.
#[tokio::test]
async fn a_pooled_connection_that_died_while_idle_is_retried_and_answered_200() {
    let mut f = Faulty::standard("pooled-dead").await;
    let first = callback(json!(10023), GROUP);
    f.send(&first).await.0.assert_acknowledged();
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.proxy.idle_connections() == 0 {
        assert!(Instant::now() < deadline, "the SDK pools the connection");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(f.proxy.kill_idle(), 1, "the one pooled connection");

    let mut second = first.clone();
    second["Random"] = json!(2);
    let (answer, took) = f.send(&second).await;
    answer.assert_acknowledged();
    let delivered = f.world.received(Category::FrequencyLimit, 2).await;
    assert_eq!(support::world::callbacks(&delivered), [first, second]);
    let arrivals = f.proxy.arrivals();
    assert_eq!(
        mets(&arrivals),
        [Met::Passed, Met::DeadConnection, Met::Passed]
    );
    let on: Vec<u64> = arrivals.iter().map(|a| a.connection).collect();
    assert!(
        on[1] == on[0] && on[2] > on[1],
        "pooled, then a new one: {on:?}"
    );
    let gap = report("pooled connection dead", &answer, took, &arrivals).unwrap();
    assert!(
        gap < RETRY_GAP_BOUND,
        "the retry came {gap:?} after the reset"
    );
}

#[tokio::test]
async fn one_stalled_attempt_gives_way_to_another_and_is_answered_200() {
    let mut f = Faulty::standard("stall-once").await;
    f.proxy.fault_next(1, Fault::Stall);
    let body = callback(json!(10017), GROUP);
    let (answer, took) = f.send(&body).await;
    answer.assert_acknowledged();
    assert!(took < PUBLISH_TIMEOUT + MARGIN, "answered after {took:?}");
    let delivery = f.world.only_delivery(Category::MutedSender).await;
    assert_eq!(delivery.envelope()["callback"], body);
    let arrivals = f.proxy.arrivals();
    assert_eq!(mets(&arrivals), [Met::Fault(Fault::Stall), Met::Passed]);
    report("one stall", &answer, took, &arrivals);
    assert!(f.queued().await.is_empty());
}

/// SNS gets the budget up to its last 250 ms: ten fast failures in a row (about 0.7 s of
/// resets and backoff) leave it time for an eleventh attempt, which publishes.
#[tokio::test]
async fn ten_fast_failures_in_a_row_still_leave_sns_the_rest_of_its_budget() {
    let mut f = Faulty::standard("ten-resets").await;
    f.proxy.fault_next(10, Fault::Reset);
    let body = callback(json!(10023), GROUP);
    let (answer, took) = f.send(&body).await;
    answer.assert_acknowledged();
    report("ten resets, then up", &answer, took, &f.proxy.arrivals());
    let line = f.line(1).await;
    assert_eq!(line["outcome"], "published", "{line}");
    assert_eq!(f.proxy.arrivals().last().map(|a| a.met), Some(Met::Passed));
}

/// `publish` is exactly what a healthy webhook on `f`'s topics publishes for `body`, received
/// when it was: the publish the decision makes of it, which tests/size.rs reads back from SNS
/// byte for byte (topic, Message, subject, attributes, FIFO ids).
#[track_caller]
fn assert_what_a_healthy_webhook_publishes(f: &Faulty, body: &Value, publish: &QueuedPublish) {
    let healthy = support::expected_publish(&f.world.env(), &body.to_string(), &publish.message);
    assert_eq!(*publish, healthy);
}

#[tokio::test]
async fn sns_down_with_the_queue_up_queues_exactly_what_a_healthy_webhook_publishes() {
    let mut f = Faulty::new(World::fifo("down-queue-up").await, |_| {}).await;
    f.proxy.set_down(true);
    let body = callback(json!(80001), GROUP);
    let (answer, took) = f.send(&body).await;
    answer.assert_acknowledged();
    assert!(took < PUBLISH_TIMEOUT + MARGIN, "answered after {took:?}");
    let line = f.line(1).await;
    assert_eq!(
        (line["outcome"].as_str(), line["level"].as_str()),
        (Some("queued"), Some("WARN"))
    );
    let metrics = emf::assert_valid(std::slice::from_ref(&line)).concat();
    assert!(metrics.contains(&"Queued".to_owned()), "{line}");
    let arrivals = f.proxy.arrivals();
    assert!(arrivals.iter().all(|a| a.met == Met::Down) && arrivals.len() > 1);
    report("SNS down, queue up", &answer, took, &arrivals);

    let mut queued = f.queued().await;
    assert_eq!(queued.len(), 1, "exactly one message: {queued:#?}");
    let (message_id, publish) = queued.pop().unwrap();
    assert_eq!(line["messageId"], message_id);
    assert!(publish.message_group_id.is_some(), "a FIFO topic's publish");
    f.world.assert_nothing_published().await;
    assert_what_a_healthy_webhook_publishes(&f, &body, &publish);
}

/// SNS down and the retry queue down (or none): 503/5030 by the deadline, and exactly one
/// `publish_failed` record holding the publish a healthy webhook makes.
async fn sns_and_queue_down(test: &str, tweak: impl FnOnce(&mut HashMap<String, String>, &str)) {
    let world = World::standard(test).await;
    let mut f = Faulty::new(world, |env| {
        let queue = env["RETRY_QUEUE_URL"].clone();
        tweak(env, &queue)
    })
    .await;
    f.proxy.set_down(true);
    let body = callback(json!(10004), GROUP);
    let (answer, took) = f.send(&body).await;
    answer.assert_fail(503, 5030);
    assert!(took < PUBLISH_TIMEOUT + MARGIN, "answered after {took:?}");
    report(test, &answer, took, &f.proxy.arrivals());
    let records = f.webhook.events("publish_failed", 1).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["level"], "FATAL");
    let publish = QueuedPublish::from_json(&records[0]["publish"].to_string()).unwrap();
    assert!(f.webhook.events("callback", 0).await.is_empty());
    assert!(f.queued().await.is_empty());
    f.world.assert_nothing_published().await;
    assert_what_a_healthy_webhook_publishes(&f, &body, &publish);
}

#[tokio::test]
async fn sns_down_and_the_queue_unreachable_give_503_and_one_record() {
    sns_and_queue_down("SNS+queue down", |env, _| {
        env.insert("AWS_ENDPOINT_URL_SQS".into(), support::moto::closed_url());
    })
    .await;
}

#[tokio::test]
async fn sns_down_and_the_queue_missing_give_503_and_one_record() {
    sns_and_queue_down("SNS down, queue missing", |env, queue| {
        env.insert("RETRY_QUEUE_URL".into(), format!("{queue}-missing"));
    })
    .await;
}

#[tokio::test]
async fn sns_down_without_a_retry_queue_gives_503_and_one_record() {
    sns_and_queue_down("SNS down, no queue", |env, _| {
        env.remove("RETRY_QUEUE_URL");
    })
    .await;
}

/// A callback that reached API Gateway 1,200 ms before the test sends it has 300 ms left of
/// the 1,500: with SNS stalled it is queued and answered by then, not 1,500 ms after the send.
#[tokio::test]
async fn the_budget_counts_from_the_arrival() {
    const AGE: Duration = Duration::from_millis(1200);
    let mut f = Faulty::standard("arrival-budget").await;
    f.proxy.fault_next(usize::MAX, Fault::Stall);
    let body = callback(json!(10023), GROUP);
    let event = Call::chat(body.to_string()).arrived_ago(AGE).http_api();
    let sent = Instant::now();
    let answer = f.webhook.invoke(&event).await;
    let took = sent.elapsed();
    answer.assert_acknowledged();
    assert_eq!(f.line(1).await["outcome"], "queued");
    report("arrived 1200 ms ago", &answer, took, &f.proxy.arrivals());
    let deadline = PUBLISH_TIMEOUT - AGE;
    let limit = deadline + Duration::from_millis(300);
    assert!(
        took < limit,
        "answered {took:?} after the send, limit {limit:?}"
    );
    assert_eq!(f.queued().await.len(), 1);
}

/// The AWS CLI next to the moto server the tests use (`.venv/bin/aws`).
fn aws_cli() -> std::path::PathBuf {
    let moto = std::env::var("MOTO_SERVER").unwrap_or_default();
    let moto = if moto.is_empty() {
        concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/moto_server").into()
    } else {
        moto
    };
    std::path::Path::new(&moto).with_file_name("aws")
}

/// The last-resort procedure of docs/operations.md: a person with only the AWS CLI sends a
/// queued publish with `aws sns publish --cli-input-json`, and subscribers get what the webhook
/// would have published.
#[tokio::test]
async fn a_person_with_the_aws_cli_republishes_a_queued_publish() {
    let mut f = Faulty::new(World::fifo("aws-cli").await, |_| {}).await;
    f.proxy.set_down(true);
    let body = callback(json!(10023), GROUP);
    f.send(&body).await.0.assert_acknowledged();
    let drained = f.queue.drain(&f.queue.url).await;
    assert_eq!(drained.len(), 1);
    let publish = QueuedPublish::from_json(&drained[0].body).unwrap();

    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("queued-publish-{}.json", std::process::id()));
    std::fs::write(&file, &drained[0].body).expect("write the queued publish");
    let output = tokio::process::Command::new(aws_cli())
        .args(["sns", "publish", "--output", "json", "--cli-input-json"])
        .arg(format!("file://{}", file.display()))
        .env_clear()
        .envs(support::aws_env(&f.world.endpoint))
        // Version 1 of the CLI reads its region only from AWS_DEFAULT_REGION.
        .env("AWS_DEFAULT_REGION", support::world::REGION)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .await
        .expect("run the AWS CLI");
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("MessageId"), "{stdout}");

    let delivery = f.world.only_delivery(Category::FrequencyLimit).await;
    delivery.assert_delivers(&publish);
}

/// With SNS down for a while, every exception is queued (one of them sent twice, as Chat
/// retries; one whose first attempt reached SNS but whose answer was lost); once SNS is back,
/// the redrive function republishes the queue (part of it handed over twice, as SQS may), and
/// the FIFO topics deliver each exactly once.
#[tokio::test]
async fn fifo_delivers_each_exception_exactly_once_after_the_queue_and_a_redrive() {
    let mut f = Faulty::new(World::fifo("fifo-redrive").await, |_| {}).await;
    let exceptions = one_of_each("@TGS#fifo-");
    f.proxy.set_down(true);
    f.proxy.fault_next(1, Fault::LostAnswer);
    let mut calls = 0;
    for (i, (_, body)) in exceptions.iter().enumerate() {
        for _ in 0..if i == 1 { 2 } else { 1 } {
            let (answer, took) = f.send(body).await;
            answer.assert_acknowledged();
            calls += 1;
            assert_eq!(f.line(calls).await["outcome"], "queued");
            if i == 0 {
                report("answer lost, then down", &answer, took, &f.proxy.arrivals());
            }
        }
    }
    assert_eq!(f.proxy.forwarded(), 1, "only the lost answer reached SNS");
    f.proxy.set_down(false);

    let messages = f.queue.receive_n(&f.queue.url, calls, 30).await;
    let more = f.queue.receive(&f.queue.url, 30).await;
    assert!(more.is_empty(), "one message a call: {more:#?}");
    let mut env = HashMap::new();
    env.insert("AWS_ENDPOINT_URL_SNS".to_owned(), f.proxy.url());
    let mut redrive = Lambda::start(bootstrap::REDRIVE, &f.world.endpoint, &env).await;
    for batch in [&messages[..], &messages[..2]] {
        let response = redrive.api.call(&sqs_event(batch)).await;
        assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    }
    for message in &messages {
        f.queue.delete(&f.queue.url, message).await;
    }
    let line = redrive.events("redrive", 1).await;
    assert_eq!(line[0]["Redriven"], calls, "{line:#?}");

    for (category, body) in &exceptions {
        let got = f.world.received(*category, 1).await;
        assert_eq!(got.len(), 1, "{category}: {got:#?}");
        assert_eq!(got[0].envelope()["callback"], *body);
        got[0].assert_fifo_ids(body["GroupId"].as_str().unwrap());
    }
    f.world.assert_nothing_published().await;
}
