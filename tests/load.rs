//! Load: `LOAD_CALLBACKS` callbacks (300 unless set) through the production handler against
//! the moto server, half to standard topics and half to FIFO topics. One callback in ten is
//! sent a second time a little later (Chat retrying), and SNS fails (HTTP 500, through the
//! fault proxy) for a tenth of the run in the middle. Then it counts what arrived:
//!
//! - every call is answered 200 (published) or 503 (a `publish_failed` record written);
//! - every callback is delivered or recorded for replay: none is lost;
//! - a callback sent twice has one `dedupKey`; a FIFO subscriber gets it once;
//! - replaying the records delivers the rest: afterwards every callback has arrived, once per
//!   call on a standard topic, once in all on a FIFO topic.
//!
//! The full run: `LOAD_CALLBACKS=10000 MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test
//! --test load -- --nocapture` (in batches of 1,000 calls, each against topics of its own).

mod support;

use im_exception_webhook::classify::Category;
use im_exception_webhook::{record_source, republish};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use support::fault_proxy::{FaultProxy, Mode};
use support::{Call, Logs, World, callback, invoke};
use tokio::task::JoinSet;

const DEFAULT_CALLBACKS: usize = 300;
/// Calls in flight at once, as concurrent Lambda instances would make them.
const IN_FLIGHT: usize = 16;
/// One callback in this many is sent twice.
const REPEAT_EVERY: usize = 10;
/// How many calls later the second copy goes.
const REPEAT_AFTER: usize = 7;

/// Error codes of every category.
const CODES: [(i64, Category); 5] = [
    (10004, Category::InvalidGroup),
    (10023, Category::FrequencyLimit),
    (80001, Category::ContentFilter),
    (10017, Category::MutedSender),
    (12345, Category::Unclassified),
];

fn callbacks_from_env() -> usize {
    std::env::var("LOAD_CALLBACKS")
        .ok()
        .filter(|v| !v.is_empty())
        .map_or(DEFAULT_CALLBACKS, |v| {
            v.parse().expect("LOAD_CALLBACKS is a whole number")
        })
}

/// One distinct callback and what became of it.
struct Unique {
    body: Value,
    category: Category,
    key: String,
    /// Answers to its calls, in order.
    answers: Vec<u16>,
}

impl Unique {
    fn calls(&self) -> usize {
        self.answers.len()
    }
    fn published(&self) -> usize {
        self.answers.iter().filter(|s| **s == 200).count()
    }
}

/// The order of calls: callback `i`, and every tenth one again a few calls later.
fn schedule(calls: usize) -> Vec<usize> {
    let mut order = Vec::with_capacity(calls);
    let mut i = 0;
    while order.len() < calls {
        order.push(i);
        if i >= REPEAT_AFTER
            && (i - REPEAT_AFTER).is_multiple_of(REPEAT_EVERY)
            && order.len() < calls
        {
            order.push(i - REPEAT_AFTER);
        }
        i += 1;
    }
    order
}

/// Receives until the queues stay empty: each delivered Message (the envelope text) by
/// dedupKey, checked against the queue it came from.
async fn drain(world: &World, into: &mut HashMap<String, Vec<String>>) -> usize {
    let mut count = 0;
    let mut empty_rounds = 0;
    while empty_rounds < 3 {
        let round = world.received_anywhere().await;
        if round.is_empty() {
            empty_rounds += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        empty_rounds = 0;
        for (category, delivery) in round {
            let envelope = delivery.envelope();
            assert_eq!(envelope["category"], category.as_str(), "{envelope}");
            let key = envelope["dedupKey"].as_str().unwrap().to_owned();
            let message = delivery.notification["Message"].as_str().unwrap();
            into.entry(key).or_default().push(message.to_owned());
            count += 1;
        }
    }
    count
}

/// How many different Messages: a copy of one publish (an SDK retry after an attempt timed
/// out while SNS had taken it) is byte-identical; two calls differ in `receivedAt`.
fn different_messages(messages: &[String]) -> usize {
    messages.iter().collect::<HashSet<_>>().len()
}

/// Runs `calls` calls against `world` and checks the accounting; returns a summary line.
async fn run(world: World, calls: usize) -> String {
    let fifo = world.topics[0].topic_arn.ends_with(".fifo");
    let started = Instant::now();
    let proxy = FaultProxy::start(&world.endpoint, Mode::PassThrough).await;
    let mut env = world.env();
    env.insert("PUBLISH_TIMEOUT_MS".into(), "1000".into());
    let app = support::function(&env, &proxy.url()).await;
    let (logs, _guard) = Logs::capture();

    let order = schedule(calls);
    let distinct = order.iter().max().map_or(0, |m| m + 1);
    let mut uniques: Vec<Unique> = (0..distinct)
        .map(|i| {
            let (code, category) = CODES[i % CODES.len()];
            let mut body = callback(json!(code), &format!("@TGS#load{}", i % 37));
            body["Random"] = json!(i);
            body["EventTime"] = json!(1_795_636_800_000_u64 + i as u64);
            let key = support::expected_dedup_key(support::SDK_APP_ID, &body);
            Unique {
                body,
                category,
                key,
                answers: Vec::new(),
            }
        })
        .collect();

    // SNS answers 500 for the calls in this stretch of the run.
    let failing = calls * 4 / 10..calls / 2;
    let mut in_flight: JoinSet<(usize, u16)> = JoinSet::new();
    for (position, &i) in order.iter().enumerate() {
        // The mode changes only with nothing in flight, so that every call of the stretch (SDK
        // retries included) meets the fault and no call outside it does, however fast the run.
        if !failing.is_empty() && (position == failing.start || position == failing.end) {
            while let Some(done) = in_flight.join_next().await {
                let (i, status) = done.unwrap();
                uniques[i].answers.push(status);
            }
            proxy
                .set(if position == failing.start {
                    Mode::ServerError
                } else {
                    Mode::PassThrough
                })
                .await;
        }
        if in_flight.len() >= IN_FLIGHT {
            let (i, status) = in_flight.join_next().await.unwrap().unwrap();
            uniques[i].answers.push(status);
        }
        let event = Call::chat(uniques[i].body.to_string()).http_api();
        in_flight.spawn(async move {
            let answer = invoke(app, &event).await;
            match answer.status {
                200 => answer.assert_acknowledged(),
                _ => {
                    answer.assert_fail(503);
                    assert_eq!(answer.json()["ErrorCode"], 5030);
                }
            }
            (i, answer.status)
        });
    }
    while let Some(done) = in_flight.join_next().await {
        let (i, status) = done.unwrap();
        uniques[i].answers.push(status);
    }
    proxy.set(Mode::PassThrough).await;
    let sending = started.elapsed();

    // Every call was answered, and every 503 left its record.
    let answered: usize = uniques.iter().map(Unique::calls).sum();
    assert_eq!(answered, calls);
    let published: usize = uniques.iter().map(Unique::published).sum();
    let failed = calls - published;
    let log = logs.text();
    let records = record_source::scan("load", &log).records;
    assert_eq!(records.len(), failed, "one publish_failed record per 503");
    let mut recorded: HashMap<String, Vec<String>> = HashMap::new();
    for record in records {
        let record = record.expect("a readable record");
        let key = serde_json::from_str::<Value>(&record.envelope).unwrap()["dedupKey"]
            .as_str()
            .unwrap()
            .to_owned();
        recorded.entry(key).or_default().push(record.envelope);
    }
    if calls >= 20 {
        assert!(failed > 0, "the fault stretch made some publishes fail");
    }

    let mut delivered: HashMap<String, Vec<String>> = HashMap::new();
    let (mut arrived, mut late, mut copies) = (0, 0, 0);
    for u in &uniques {
        let failed_calls = u.calls() - u.published();
        assert_eq!(
            recorded.get(&u.key).map_or(0, Vec::len),
            failed_calls,
            "records of {}",
            u.key
        );
    }
    // Before the replay, on standard topics: what arrived, against the answers. (Not on FIFO:
    // moto's FIFO queue drops a duplicate only while the first copy is still in the queue,
    // where SQS remembers the id for five minutes, so reading the queue now would let the
    // replay of a callback already delivered through.)
    if !fifo {
        arrived = drain(&world, &mut delivered).await;
        for u in &uniques {
            let got = delivered.get(&u.key).map_or(&[][..], Vec::as_slice);
            assert!(
                !got.is_empty() || u.published() < u.calls(),
                "callback {} was neither delivered nor recorded: lost",
                u.body
            );
            // Each published call arrived; no more different Messages than calls.
            let different = different_messages(got);
            assert!(
                got.len() >= u.published() && different <= u.calls(),
                "{} deliveries ({different} different) of {} for {:?}",
                got.len(),
                u.body,
                u.answers
            );
            late += different.saturating_sub(u.published());
            copies += got.len() - different;
        }
    }

    // SNS is back: replaying the log delivers the rest.
    let mut report = Vec::new();
    let summary = republish::republish_text(
        "load",
        &logs.text(),
        &app.config.topics,
        &app.publisher,
        &mut report,
    )
    .await;
    assert_eq!(
        (summary.replayed, summary.failed),
        (failed, 0),
        "{}",
        String::from_utf8_lossy(&report)
    );
    let replayed_arrived = drain(&world, &mut delivered).await;
    for u in &uniques {
        let got = delivered.get(&u.key).map_or(&[][..], Vec::as_slice);
        for message in got {
            let envelope: Value = serde_json::from_str(message).unwrap();
            assert_eq!(envelope["callback"], u.body);
            assert_eq!(envelope["category"], u.category.as_str());
        }
        if fifo {
            // Exactly once, whether from a call or from the replay of one of its records.
            assert_eq!(
                got.len(),
                1,
                "FIFO: every callback exactly once, {} {:?}",
                u.body,
                u.answers
            );
        } else {
            // Every record was replayed, byte for byte; no more different Messages than calls.
            for envelope in recorded.get(&u.key).into_iter().flatten() {
                assert!(got.contains(envelope), "the replay of {envelope} arrived");
            }
            assert!(!got.is_empty() && different_messages(got) <= u.calls());
        }
    }
    let repeated = uniques.iter().filter(|u| u.calls() > 1).count();
    let before_replay = if fifo {
        "read after the replay".to_owned()
    } else {
        format!(
            "delivered {arrived} before the replay ({copies} SDK-retry copies, {late} from 503s \
             SNS took late)"
        )
    };
    format!(
        "{}: {calls} calls of {distinct} callbacks ({repeated} sent twice, one dedupKey each); \
         answered 200: {published}, 503: {failed} (each recorded); {before_replay}; replayed {} \
         and delivered {replayed_arrived} more; lost 0; SNS requests {}; sending took {:.1} s, \
         all {:.1} s",
        if fifo { "FIFO" } else { "standard" },
        summary.replayed,
        proxy.forwarded(),
        sending.as_secs_f64(),
        started.elapsed().as_secs_f64()
    )
}

#[tokio::test]
async fn every_callback_is_delivered_or_recorded_and_none_is_lost() {
    let calls = callbacks_from_env();
    let started = Instant::now();
    let mut reports = Vec::new();
    for (fifo, share) in [(false, calls / 2), (true, calls - calls / 2)] {
        for batch in batches(share) {
            let world = if fifo {
                World::fifo("load-fifo").await
            } else {
                World::standard("load-standard").await
            };
            reports.push(run(world, batch).await);
        }
    }
    eprintln!("load, {calls} calls:\n  {}", reports.join("\n  "));
    eprintln!("load: {:.1} s in all", started.elapsed().as_secs_f64());
}

/// moto slows down as messages pile up in a queue (a run of 10,000 calls into one set of
/// queues did not finish in 35 minutes), so a large run is split into batches of at most
/// `BATCH` calls, each against topics and queues of its own. Repeats stay within a batch.
const BATCH: usize = 1_000;

fn batches(calls: usize) -> Vec<usize> {
    let mut sizes = vec![BATCH; calls / BATCH];
    if !calls.is_multiple_of(BATCH) {
        sizes.push(calls % BATCH);
    }
    sizes
}
