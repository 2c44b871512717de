//! The end-to-end loss count. `LOAD_CALLBACKS` exception callbacks (200 unless set; the full
//! run is `LOAD_CALLBACKS=2000`) go through the webhook's binary, half to standard topics and
//! half to FIFO topics, one in ten sent twice as Chat retries, while SNS fails about one attempt
//! in ten at random behind the fault proxy (resets, 500s, stalls, answers lost after SNS took
//! the publish). The retry queue lives on a moto server of its own (moto slows as its queues
//! fill), and the redrive function drains it as its event source mapping would, batches of up
//! to ten, against a healthy SNS. Then every subscriber queue is read back: every callback is
//! delivered (standard topics at least once per acknowledged call, FIFO topics exactly once).
//!
//! Asserted: nothing lost, nothing duplicated on FIFO. Printed (`--nocapture`): answers, queued,
//! redriven, the faults met, and the times to the answer.
//!
//! `LOAD_CALLBACKS=2000 MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --all-features --test
//! load -- --nocapture`

mod support;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::fault_proxy::FaultProxy;
use support::world::{Delivery, RetryQueue, sqs_event};
use support::{Call, Lambda, World, bootstrap, callback, moto};

/// Webhook processes per world: as many calls at once as Lambda would run environments.
const INSTANCES: usize = 4;
/// About one SNS attempt in this many fails.
const ONE_IN: u64 = 10;
/// How long a message the redrive function reported as failed stays hidden before it returns.
const VISIBILITY_SECS: i32 = 5;

fn from_env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |v| {
        v.parse().unwrap_or_else(|_| panic!("{name} is a number"))
    })
}

/// Callback `i`: every category in turn, forty groups, its index as `Random`, so each is unique.
fn body(i: usize) -> Value {
    let codes = [10004, 10023, 80001, 10017, 12345];
    let mut body = callback(
        json!(codes[(i / 2) % codes.len()]),
        &format!("@TGS#load{}", i % 40),
    );
    body["Random"] = json!(i);
    body
}

/// What one call got: the callback's index, the HTTP status and the time to the answer.
type Answered = (usize, u16, Duration);

/// One webhook process sending `indices`, each once, or twice when Chat retries it; what each
/// call got, and the process's line for each call.
async fn send_all(mut webhook: Lambda, indices: Vec<usize>) -> (Vec<Answered>, Vec<Value>) {
    let mut answered = Vec::new();
    for i in indices {
        let times = if i % 10 == 3 { 2 } else { 1 };
        for _ in 0..times {
            let event = Call::chat(body(i).to_string()).http_api();
            let sent = Instant::now();
            let answer = webhook.invoke(&event).await;
            let status = answer.status;
            assert!(status == 200 || status == 503, "{answer:#?}");
            answered.push((i, status, sent.elapsed()));
        }
    }
    // A line written before its answer may still be on its way through the pipe.
    let lines = webhook
        .lines_when(|l| l.iter().filter(|l| l.get("outcome").is_some()).count() >= answered.len())
        .await;
    (answered, lines)
}

/// Messages waiting or in flight in the queue.
async fn messages_left(queue: &RetryQueue) -> u64 {
    let attributes = queue
        .sqs
        .get_queue_attributes()
        .queue_url(&queue.url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default();
    let count = |name: QueueAttributeName| -> u64 {
        attributes.get(&name).map_or(0, |v| v.parse().unwrap())
    };
    count(QueueAttributeName::ApproximateNumberOfMessages)
        + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
}

/// The event source mapping: batches of up to ten to the redrive function, each message
/// deleted unless reported as a batch item failure, until the load is over and the queue empty.
/// Returns how many were redriven.
async fn redrive(
    queue: Arc<RetryQueue>,
    mut function: Lambda,
    load_over: Arc<AtomicBool>,
) -> usize {
    let mut redriven = 0;
    loop {
        let batch = queue.receive(&queue.url, VISIBILITY_SECS).await;
        if batch.is_empty() {
            if load_over.load(Ordering::SeqCst) && messages_left(&queue).await == 0 {
                return redriven;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let response = function.api.call(&sqs_event(&batch)).await;
        let failed: HashSet<&str> = response["batchItemFailures"]
            .as_array()
            .expect("a batch response")
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap())
            .collect();
        for message in batch
            .iter()
            .filter(|m| !failed.contains(m.message_id.as_str()))
        {
            queue.delete(&queue.url, message).await;
            redriven += 1;
        }
    }
}

/// Everything `world`'s subscriber queues hold, read until they are empty.
async fn read_back(world: &World) -> Vec<Delivery> {
    let mut all = Vec::new();
    loop {
        let got = world.received_anywhere().await;
        if got.is_empty() {
            return all;
        }
        all.extend(got.into_iter().map(|(_, d)| d));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exception_is_delivered_with_sns_failing_at_random() {
    let started = Instant::now();
    let callbacks = from_env("LOAD_CALLBACKS", 200) as usize;
    let seed = from_env("LOAD_SEED", 20_261_125);
    let worlds = [World::standard("load").await, World::fifo("load").await];
    let queue_endpoint = tokio::task::spawn_blocking(moto::separate).await.unwrap();
    let queue = Arc::new(RetryQueue::create(queue_endpoint, "load", 5).await);
    let proxy = FaultProxy::start(&worlds[0].endpoint).await;
    proxy.set_random(Some(ONE_IN), seed);

    // Even callbacks go to the standard topics, odd ones to the FIFO topics, each world's
    // share spread over its webhook processes.
    let mut senders = Vec::new();
    for (w, world) in worlds.iter().enumerate() {
        let mut env = world.env();
        env.insert("AWS_ENDPOINT_URL_SNS".into(), proxy.url());
        env.insert("AWS_ENDPOINT_URL_SQS".into(), queue_endpoint.into());
        env.insert("RETRY_QUEUE_URL".into(), queue.url.clone());
        for k in 0..INSTANCES {
            let webhook = Lambda::webhook(&world.endpoint, &env).await;
            let mine = (0..callbacks)
                .filter(|i| i % 2 == w && (i / 2) % INSTANCES == k)
                .collect();
            senders.push(tokio::spawn(send_all(webhook, mine)));
        }
    }
    let load_over = Arc::new(AtomicBool::new(false));
    let function = Lambda::start(bootstrap::REDRIVE, &worlds[0].endpoint, &HashMap::new()).await;
    let draining = tokio::spawn(redrive(queue.clone(), function, load_over.clone()));

    let mut answered: Vec<Answered> = Vec::new();
    let mut lines = Vec::new();
    for sender in senders {
        let (got, written) = sender.await.expect("a sender");
        answered.extend(got);
        lines.extend(written);
    }
    let load_time = started.elapsed();
    load_over.store(true, Ordering::SeqCst);
    let redriven = draining.await.expect("the redrive");

    // Read back every subscriber queue, and count.
    let mut delivered: HashMap<usize, usize> = HashMap::new();
    for world in &worlds {
        for delivery in read_back(world).await {
            let callback = delivery.envelope()["callback"].clone();
            let i = callback["Random"].as_u64().expect("Random") as usize;
            assert_eq!(callback, body(i), "the callback as sent");
            *delivered.entry(i).or_default() += 1;
        }
    }
    let mut acknowledged = vec![0usize; callbacks];
    for (i, status, _) in &answered {
        acknowledged[*i] += usize::from(*status == 200);
    }
    let got = |i: &usize| delivered.get(i).copied().unwrap_or(0);
    let lost: Vec<usize> = (0..callbacks).filter(|i| got(i) == 0).collect();
    let short: Vec<usize> = (0..callbacks)
        .filter(|i| i % 2 == 0 && got(i) < acknowledged[*i])
        .collect();
    let duplicated: Vec<usize> = (0..callbacks)
        .filter(|i| i % 2 == 1 && got(i) > 1)
        .collect();
    let extra_standard: usize = (0..callbacks)
        .filter(|i| i % 2 == 0)
        .map(|i| got(&i).saturating_sub(acknowledged[i]))
        .sum();

    let outcome = |o: &str| lines.iter().filter(|l| l["outcome"] == o).count();
    let status = |s: u16| answered.iter().filter(|a| a.1 == s).count();
    let mut times: Vec<Duration> = answered.iter().map(|a| a.2).collect();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let mut met: BTreeMap<String, usize> = BTreeMap::new();
    let arrivals = proxy.arrivals();
    for arrival in &arrivals {
        *met.entry(format!("{:?}", arrival.met)).or_default() += 1;
    }
    println!(
        "load | {callbacks} callbacks, {} calls (seed {seed}) | answers 200: {}, 503: {} | \
         queued {}, published {}, publish_failed {} | redriven {redriven}",
        answered.len(),
        status(200),
        status(503),
        outcome("queued"),
        outcome("published"),
        outcome("publish_failed"),
    );
    println!(
        "load | SNS attempts at the proxy: {} ({met:?}) | time to the answer p50 {} ms, p99 {} ms, max {} ms",
        arrivals.len(),
        at(0.5).as_millis(),
        at(0.99).as_millis(),
        at(1.0).as_millis(),
    );
    println!(
        "load | lost {} | FIFO duplicated {} | standard short of its calls {} | standard \
         extra deliveries {extra_standard} (at-least-once) | load {:.1} s, wall {:.1} s",
        lost.len(),
        duplicated.len(),
        short.len(),
        load_time.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    let none: Vec<usize> = Vec::new();
    assert_eq!(lost, none, "lost callbacks");
    assert_eq!(duplicated, none, "callbacks duplicated on FIFO");
    assert_eq!(short, none, "acknowledged standard calls not delivered");
    assert_eq!(redriven, outcome("queued"), "every queued publish redriven");
    assert_eq!(messages_left(&queue).await, 0);
    assert!(
        queue.receive(&queue.dead_letter_url, 0).await.is_empty(),
        "nothing dead-lettered"
    );
}
