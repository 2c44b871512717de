//! Fault injection: a proxy in front of the moto server makes SNS answer 500, throttle, answer
//! later than the function waits, or refuse connections. For each, Chat gets 503 within
//! `PUBLISH_TIMEOUT_MS` plus a margin, the `publish_failed` record is written, and once SNS is
//! back, replaying the captured log (through the library, or the `im-exception-replay` binary)
//! delivers exactly the message the function would have published.
//!
//! Run with `make test`, or `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --test faults`.

mod support;

use im_exception_webhook::classify::Category;
use im_exception_webhook::handler::LambdaApp;
use im_exception_webhook::publish::{self, SnsPublisher};
use im_exception_webhook::republish;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::fault_proxy::{Arrival, Fault, FaultProxy, Kill, Met, Mode};
use support::world::{self, Delivery};
use support::{Call, Logs, World, callback, invoke, replay_bin};

const GROUP: &str = "@TGS#2J4SZEAEL";
const PUBLISH_TIMEOUT_MS: u64 = 800;
/// Scheduling slack on top of the deadline: a deadline check, not a benchmark.
const MARGIN: Duration = Duration::from_millis(1000);
/// Longer than the function waits for SNS.
const TOO_SLOW: Duration = Duration::from_millis(PUBLISH_TIMEOUT_MS + 400);

/// A test's topics (with their SQS queues), and the production function publishing to them
/// through a fault proxy.
struct Faulty {
    world: World,
    proxy: FaultProxy,
    /// The function's configuration, which the replay binary is given too.
    env: HashMap<String, String>,
    app: &'static LambdaApp,
    /// The function's publish deadline.
    timeout: Duration,
}

impl Faulty {
    async fn standard(test: &str, mode: Mode) -> Faulty {
        Faulty::new(World::standard(test).await, mode).await
    }

    async fn fifo(test: &str, mode: Mode) -> Faulty {
        Faulty::new(World::fifo(test).await, mode).await
    }

    async fn new(world: World, mode: Mode) -> Faulty {
        let proxy = FaultProxy::start(&world.endpoint, mode).await;
        Faulty::with(world, proxy, Some(PUBLISH_TIMEOUT_MS)).await
    }

    /// The function on `world`'s topics through `proxy`, with `PUBLISH_TIMEOUT_MS` set to
    /// `timeout_ms`, or left unset (the default, 1,500 ms).
    async fn with(world: World, proxy: FaultProxy, timeout_ms: Option<u64>) -> Faulty {
        let mut env = world.env();
        if let Some(ms) = timeout_ms {
            env.insert("PUBLISH_TIMEOUT_MS".into(), ms.to_string());
        }
        let app = support::function(&env, &proxy.url()).await;
        let timeout = app.config.publish_timeout;
        Faulty {
            world,
            proxy,
            env,
            app,
            timeout,
        }
    }

    /// Sends `body` as Chat does while SNS fails: 503 within the deadline plus the margin,
    /// one more `publish_failed` record, for this callback and its category's topic.
    async fn fails(&self, logs: &Logs, body: &Value, category: Category) -> Value {
        let before = logs.events("publish_failed").len();
        let started = Instant::now();
        let answer = invoke(self.app, &Call::chat(body.to_string()).http_api()).await;
        let elapsed = started.elapsed();

        answer.assert_fail(503);
        assert_eq!(answer.json()["ErrorCode"], 5030);
        let limit = self.timeout + MARGIN;
        assert!(
            elapsed < limit,
            "answered after {elapsed:?}, limit {limit:?}"
        );
        let records = logs.events("publish_failed");
        assert_eq!(records.len(), before + 1, "{}", logs.text());
        let record = records.last().unwrap().clone();
        assert_eq!(record["level"], "FATAL");
        assert_eq!(record["category"], category.as_str());
        assert_eq!(
            record["topicArn"],
            self.world.topic(category).topic_arn.as_str()
        );
        assert_eq!(support::logs::envelope(&record)["callback"], *body);
        record
    }

    /// Replays `log` through the library, with the function's configuration and publisher.
    async fn replay(&self, log: &str) -> String {
        // The replay tool's own deadline (10 s a record), not Chat's: on a loaded machine an
        // attempt abandoned at the webhook's deadline may reach SNS all the same, and be sent
        // again.
        let client = publish::sns_client(support::world::loader(&self.proxy.url())).await;
        let publisher = SnsPublisher::new(client, Duration::from_secs(10));
        let mut report = Vec::new();
        let summary =
            republish::republish_text("log", log, &self.app.config.topics, &publisher, &mut report)
                .await;
        let report = String::from_utf8(report).unwrap();
        assert_eq!(summary.failed, 0, "{report}");
        summary.to_string()
    }

    /// Checks that `delivery`, the replay of a record of `log`, is what the function publishes
    /// (SNS healthy again for a fresh publish of the same callback).
    async fn assert_published_as_the_function_would(
        &self,
        log: &str,
        delivery: &Delivery,
        body: &Value,
        category: Category,
    ) {
        self.proxy.set(Mode::PassThrough).await;
        support::assert_published_as_the_function_would(
            &self.world,
            delivery,
            log,
            body,
            category,
            (&self.world, self.app),
        )
        .await;
    }
}

/// One callback through a fault, then SNS back and the log replayed through the library.
async fn fault_then_replay(test: &str, fault: Mode) -> Faulty {
    let f = Faulty::standard(test, fault).await;
    let body = callback(json!(10023), GROUP);
    let (logs, _guard) = Logs::capture();

    f.fails(&logs, &body, Category::FrequencyLimit).await;
    if fault != Mode::Refuse {
        assert!(f.proxy.requests_in(fault) >= 1, "the publish met the fault");
    }
    f.world.assert_nothing_published().await;

    f.proxy.set(Mode::PassThrough).await;
    let log = logs.text();
    assert_eq!(f.replay(&log).await, "replayed 1, failed 0");
    let delivery = f.world.only_delivery(Category::FrequencyLimit).await;
    f.assert_published_as_the_function_would(&log, &delivery, &body, Category::FrequencyLimit)
        .await;
    f
}

#[tokio::test]
async fn sns_answering_500_gives_503_and_the_replayed_log_delivers_the_message() {
    fault_then_replay("fault-500", Mode::ServerError).await;
}

#[tokio::test]
async fn sns_refusing_connections_gives_503_and_the_replayed_log_delivers_the_message() {
    let f = fault_then_replay("fault-refused", Mode::Refuse).await;
    // Refused at the TCP level: nothing reached the proxy's HTTP side while refusing.
    assert_eq!(f.proxy.requests_in(Mode::Refuse), 0);
}

#[tokio::test]
async fn sns_answering_later_than_the_deadline_gives_503_and_the_replay_delivers_once() {
    let f = Faulty::standard("fault-slow", Mode::Slow(TOO_SLOW)).await;
    let body = callback(json!(10017), GROUP);
    let (logs, _guard) = Logs::capture();

    f.fails(&logs, &body, Category::MutedSender).await;
    assert!(f.proxy.requests_in(Mode::Slow(TOO_SLOW)) >= 1);

    f.proxy.set(Mode::PassThrough).await;
    let log = logs.text();
    assert_eq!(f.replay(&log).await, "replayed 1, failed 0");
    // The held requests were dropped when the function hung up: past their delay, still only
    // the replay has arrived.
    tokio::time::sleep(TOO_SLOW).await;
    assert_eq!(f.proxy.forwarded(), 1, "only the replay reached SNS");
    let delivery = f.world.only_delivery(Category::MutedSender).await;
    f.assert_published_as_the_function_would(&log, &delivery, &body, Category::MutedSender)
        .await;
}

#[tokio::test]
async fn sns_throttling_gives_503_and_the_replay_binary_delivers_the_message() {
    let f = Faulty::standard("fault-throttling", Mode::Throttling).await;
    let body = callback(json!(80001), GROUP);
    let (logs, _guard) = Logs::capture();

    f.fails(&logs, &body, Category::ContentFilter).await;
    assert!(f.proxy.requests_in(Mode::Throttling) >= 1);
    f.world.assert_nothing_published().await;

    f.proxy.set(Mode::PassThrough).await;
    let log = logs.text();
    let run = replay_bin::run(&f.env, &f.proxy.url(), &[], Some(&log)).await;
    run.assert_summary(1, 0);
    let delivery = f.world.only_delivery(Category::ContentFilter).await;
    f.assert_published_as_the_function_would(&log, &delivery, &body, Category::ContentFilter)
        .await;
}

/// SNS takes the publish but answers after the deadline: the function answers 503 and logs the
/// record although SNS has the message. The replay then publishes it again.
async fn published_late_then_replayed(f: &Faulty, category: Category) -> Vec<Delivery> {
    let body = callback(json!(10004), GROUP);
    let (logs, _guard) = Logs::capture();
    f.fails(&logs, &body, category).await;
    let late = f.proxy.requests_in(Mode::Late(TOO_SLOW));
    assert!(late >= 1);

    f.proxy.set(Mode::PassThrough).await;
    assert_eq!(f.replay(&logs.text()).await, "replayed 1, failed 0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.proxy.forwarded() < late + 1 {
        assert!(Instant::now() < deadline, "the late publishes reach SNS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.world.received(category, late + 1).await
}

#[tokio::test]
async fn a_publish_sns_took_after_the_deadline_is_delivered_once_on_fifo_after_replay() {
    let f = Faulty::fifo("late-fifo", Mode::Late(TOO_SLOW)).await;
    let deliveries = published_late_then_replayed(&f, Category::InvalidGroup).await;
    assert_eq!(
        deliveries.len(),
        1,
        "the FIFO queue drops the copies by MessageDeduplicationId: {deliveries:#?}"
    );
    f.world.assert_nothing_published().await;
}

#[tokio::test]
async fn a_publish_sns_took_after_the_deadline_arrives_again_with_the_same_dedup_key_on_standard() {
    let f = Faulty::standard("late-standard", Mode::Late(TOO_SLOW)).await;
    let deliveries = published_late_then_replayed(&f, Category::InvalidGroup).await;
    // At least once: the late copies and the replay, one Message (the logged envelope, same
    // receivedAt, same dedupKey) for a subscriber to drop by dedupKey.
    assert!(deliveries.len() >= 2, "{deliveries:#?}");
    let first = &deliveries[0].notification["Message"];
    assert!(
        deliveries
            .iter()
            .all(|d| d.notification["Message"] == *first),
        "{deliveries:#?}"
    );
}

#[tokio::test]
async fn a_log_from_a_run_with_sns_unreachable_is_replayed_in_full_once_sns_is_back() {
    let f = Faulty::standard("unreachable-run", Mode::Refuse).await;
    let (logs, _guard) = Logs::capture();
    let sent = support::one_of_each("@TGS#");

    for (category, body) in &sent {
        f.fails(&logs, body, *category).await;
    }
    // Lines that are not publish_failed records are in the log too, and skipped.
    invoke(
        f.app,
        &Call::command("Group.CallbackAfterSendMsg", "{}").http_api(),
    )
    .await
    .assert_acknowledged();
    invoke(f.app, &Call::chat("not json").http_api())
        .await
        .assert_fail(400);
    let log = logs.text();
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("unreachable-run-{}.log", std::process::id()));
    std::fs::write(
        &file,
        format!("START RequestId: 1 Version: $LATEST\n{log}END RequestId: 1\n"),
    )
    .unwrap();
    let file = file.to_str().unwrap();

    // SNS still down: every record fails, the exit status says so, nothing is delivered.
    let run = replay_bin::run(&f.env, &f.proxy.url(), &[file], None).await;
    run.assert_summary(0, sent.len());
    assert_eq!(
        run.stderr
            .lines()
            .filter(|l| l.starts_with("failed "))
            .count(),
        sent.len(),
        "{}",
        run.stderr
    );
    f.world.assert_nothing_published().await;

    f.proxy.set(Mode::PassThrough).await;
    let run = replay_bin::run(&f.env, &f.proxy.url(), &[file], None).await;
    run.assert_summary(sent.len(), 0);
    for (category, body) in &sent {
        let delivery = f.world.received(*category, 1).await;
        assert_eq!(delivery.len(), 1, "{category}: {delivery:#?}");
        support::assert_logged_envelope(&delivery[0], &log, body);
        assert_eq!(delivery[0].envelope()["category"], category.as_str());
    }
    f.world.assert_nothing_published().await;
    let _ = std::fs::remove_file(file);
}

/// The log as `aws logs filter-log-events` prints it, pretty-printed, in pages of `per_page`
/// events concatenated (as `--no-paginate` pages saved one after the other are).
fn filter_log_events_pages(log: &str, per_page: usize) -> String {
    let events: Vec<Value> = log
        .lines()
        .enumerate()
        .map(|(i, line)| {
            json!({
                "logStreamName": "2026/11/25/[$LATEST]0123456789abcdef",
                "timestamp": 1_795_636_800_000_u64 + i as u64,
                "message": format!("{line}\n"),
                "ingestionTime": 1_795_636_801_000_u64 + i as u64,
                "eventId": format!("{i:056}")
            })
        })
        .collect();
    events
        .chunks(per_page)
        .map(|page| {
            serde_json::to_string_pretty(&json!({
                "events": page,
                "searchedLogStreams": [],
                "nextToken": "Bxkq6kVGFtq2y_MoigeqscPOdhXVbhiVtLoAmXb5jCrI7fXLrCUjSBF7"
            }))
            .unwrap()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn replaying_filter_log_events_output_into_a_fifo_topic_twice_delivers_once() {
    let f = Faulty::fifo("replay-fifo-twice", Mode::ServerError).await;
    let (logs, _guard) = Logs::capture();
    let first = callback(json!(80001), GROUP);
    let mut second = first.clone();
    second["Random"] = json!(987654321);
    f.fails(&logs, &first, Category::ContentFilter).await;
    f.fails(&logs, &second, Category::ContentFilter).await;
    let pages = filter_log_events_pages(&logs.text(), 1);
    assert!(pages.contains("\n}\n{"), "several pages, concatenated");

    f.proxy.set(Mode::PassThrough).await;
    for _ in 0..2 {
        let run = replay_bin::run(&f.env, &f.proxy.url(), &[], Some(&pages)).await;
        run.assert_summary(2, 0);
    }

    let deliveries = f.world.received(Category::ContentFilter, 2).await;
    assert_eq!(
        world::callbacks(&deliveries),
        [first, second],
        "each once, in order"
    );
    for delivery in &deliveries {
        delivery.assert_fifo_ids(GROUP);
    }
    f.world.assert_nothing_published().await;
}

/// A body with line breaks (Chat's own sample body is pretty-printed) must still give a
/// one-line `publish_failed` record: Lambda stores each line of standard output as its own
/// CloudWatch log event, so a record in pieces could be neither queried nor replayed.
#[tokio::test]
async fn a_callback_with_line_breaks_is_recorded_on_one_line_and_replayed_from_cloudwatch() {
    let f = Faulty::standard("multi-line-body", Mode::ServerError).await;
    let body = callback(json!(10023), GROUP);
    let (logs, _guard) = Logs::capture();

    let answer = invoke(
        f.app,
        &Call::chat(serde_json::to_string_pretty(&body).unwrap()).http_api(),
    )
    .await;
    answer.assert_fail(503);

    let log = logs.text();
    for line in log.lines() {
        assert!(
            serde_json::from_str::<serde::de::IgnoredAny>(line).is_ok(),
            "every log line is one JSON record: {line}"
        );
    }
    f.proxy.set(Mode::PassThrough).await;
    let run = replay_bin::run(
        &f.env,
        &f.proxy.url(),
        &[],
        Some(&filter_log_events_pages(&log, 50)),
    )
    .await;
    run.assert_summary(1, 0);
    let delivery = f.world.only_delivery(Category::FrequencyLimit).await;
    assert_eq!(delivery.envelope()["callback"], body);
}

// The retry rules, from outside: a fast failure of one attempt is retried at once and the
// callback answered 200; one attempt never takes the whole deadline; a fault that lasts ends in
// 503 and the record, before the deadline. These run with the default PUBLISH_TIMEOUT_MS (the
// rules are stated for it) and print what they measured; the only timing they assert is a
// deadline with a margin and a generous bound on the gap before a retry. The rule that the
// first retry starts within 50 ms is proven on tokio's paused clock (src/retry.rs).

/// A generous bound on the gap between a failed attempt and its retry as the proxy sees them.
const RETRY_GAP_BOUND: Duration = Duration::from_millis(500);

impl Faulty {
    /// The function with the default deadline, through a proxy in `mode`, on the caller's
    /// runtime or (`detached`) on a thread of its own.
    async fn default_deadline(test: &str, mode: Mode, detached: bool) -> Faulty {
        let world = World::standard(test).await;
        let proxy = if detached {
            FaultProxy::start_detached(&world.endpoint, mode).await
        } else {
            FaultProxy::start(&world.endpoint, mode).await
        };
        let f = Faulty::with(world, proxy, None).await;
        assert_eq!(
            f.timeout,
            Duration::from_millis(1500),
            "the default deadline"
        );
        f
    }

    /// Sends `body` as Chat does through a fault SNS recovers from: 200 with the
    /// acknowledgement within the deadline plus the margin, delivered once to `category`'s
    /// queue (and nowhere else), and no `publish_failed` record. Returns when the call began and
    /// how long its answer took.
    async fn recovers(&self, logs: &Logs, body: &Value, category: Category) -> (Instant, Duration) {
        let started = Instant::now();
        let answer = invoke(self.app, &Call::chat(body.to_string()).http_api()).await;
        let elapsed = started.elapsed();
        answer.assert_acknowledged();
        let limit = self.timeout + MARGIN;
        assert!(
            elapsed < limit,
            "answered after {elapsed:?}, limit {limit:?}"
        );
        assert!(
            logs.events("publish_failed").is_empty(),
            "no record for a callback answered 200:\n{}",
            logs.text()
        );
        let delivery = self.world.only_delivery(category).await;
        assert_eq!(delivery.envelope()["callback"], *body);
        assert_eq!(
            delivery.notification["TopicArn"],
            self.world.topic(category).topic_arn.as_str()
        );
        (started, elapsed)
    }
}

/// The errors of the retries the function logged (`publish_retry`, one per retry) after the
/// first `from` such lines.
fn retries_logged(logs: &Logs, from: usize) -> Vec<String> {
    logs.events("publish_retry")
        .iter()
        .skip(from)
        .map(|r| r["error"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The pauses the function chose before those retries, in milliseconds.
fn pauses_logged(logs: &Logs, from: usize) -> Vec<u64> {
    logs.events("publish_retry")
        .iter()
        .skip(from)
        .map(|r| r["pauseMs"].as_u64().expect("pauseMs"))
        .collect()
}

/// An SDK error as displayed, without the debug form of the error that follows it.
fn cause(error: &str) -> String {
    let debug = [
        " (DispatchFailure(",
        " (ServiceError(",
        " (ResponseError(",
        " (TimeoutError(",
    ];
    let end = debug
        .iter()
        .filter_map(|d| error.find(d))
        .min()
        .unwrap_or(error.len());
    error[..end].chars().take(160).collect()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// One line of the closing note: what a fault cost.
fn report(fault: &str, answer: &str, elapsed: Duration, gap: &str, arrivals: &[Arrival]) {
    let met: Vec<String> = arrivals
        .iter()
        .map(|a| format!("{:?}@conn{}", a.met, a.connection))
        .collect();
    eprintln!(
        "retry timing | {fault} | answer {answer} in {} | retry gap {gap} | {} requests: {}",
        ms(elapsed),
        arrivals.len(),
        met.join(", ")
    );
}

/// `fault` for the first attempt only, then a healthy SNS: the retry comes at once and the
/// callback is answered 200.
async fn fast_fault_once_then_healthy(test: &str, fault: Fault) {
    let f = Faulty::default_deadline(test, Mode::PassThrough, false).await;
    let body = callback(json!(10023), GROUP);
    let (logs, _guard) = Logs::capture();

    f.proxy.fault_next(1, fault);
    let (_, elapsed) = f.recovers(&logs, &body, Category::FrequencyLimit).await;
    let arrivals = f.proxy.arrivals();
    assert_eq!(
        arrivals.len(),
        2,
        "one failed attempt, one retry: {arrivals:#?}"
    );
    assert_eq!(arrivals[0].met, Met::Fault(fault));
    assert_eq!(arrivals[1].met, Met::Mode(Mode::PassThrough));
    assert_eq!(f.proxy.forwarded(), 1);
    let retries = retries_logged(&logs, 0);
    assert_eq!(retries.len(), 1, "one retry, logged: {retries:#?}");
    let gap = arrivals[1].at - arrivals[0].at;
    report(test, "200", elapsed, &ms(gap), &arrivals);
    eprintln!(
        "retry timing | {test} | retried after a pause of {} ms: {}",
        pauses_logged(&logs, 0)[0],
        cause(&retries[0])
    );
    assert!(
        gap < RETRY_GAP_BOUND,
        "the retry came {gap:?} after the failure"
    );
}

#[tokio::test]
async fn a_500_once_is_retried_at_once_and_the_callback_answered_200() {
    fast_fault_once_then_healthy("500-once", Fault::ServerError).await;
}

#[tokio::test]
async fn throttling_once_is_retried_at_once_and_the_callback_answered_200() {
    fast_fault_once_then_healthy("throttling-once", Fault::Throttling).await;
}

#[tokio::test]
async fn a_reset_connection_once_is_retried_at_once_and_the_callback_answered_200() {
    fast_fault_once_then_healthy("reset-once", Fault::Reset).await;
}

/// `AttemptFails` of /proc/net/snmp: connection attempts refused (SYN-SENT to CLOSED), counted
/// for the whole network namespace; `None` where there is no such file.
fn refused_attempts() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let at = names.split_whitespace().position(|n| n == "AttemptFails")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

#[tokio::test]
async fn a_refused_connection_once_is_retried_at_once_and_the_callback_answered_200() {
    let f = Faulty::default_deadline("refused-once", Mode::PassThrough, false).await;
    let body = callback(json!(10023), GROUP);
    let (logs, _guard) = Logs::capture();

    let refused_before = refused_attempts();
    f.proxy.refuse_next_attempt().await;
    let (started, elapsed) = f.recovers(&logs, &body, Category::FrequencyLimit).await;
    let refused = refused_attempts()
        .zip(refused_before)
        .map(|(after, before)| after - before);
    let arrivals = f.proxy.arrivals();
    // A refused connection never reaches the proxy's HTTP side: only the retry arrived.
    assert_eq!(arrivals.len(), 1, "{arrivals:#?}");
    assert_eq!(arrivals[0].met, Met::Mode(Mode::PassThrough));
    let reopened = f.proxy.reopened();
    assert_eq!(reopened.len(), 1);
    assert!(
        reopened[0] <= arrivals[0].at,
        "the request came once the port was open"
    );
    if let Some(refused) = refused {
        assert!(refused >= 1, "a connection attempt was refused meanwhile");
    }
    // The function's own account: one retry, after a refused connection.
    let retries = retries_logged(&logs, 0);
    assert_eq!(retries.len(), 1, "{retries:#?}");
    assert!(
        retries[0]
            .to_ascii_lowercase()
            .contains("connection refused"),
        "{retries:#?}"
    );
    eprintln!(
        "retry timing | refused-once | retried after a pause of {} ms: {}",
        pauses_logged(&logs, 0)[0],
        cause(&retries[0])
    );
    // The refused attempt began after `started`: the gap is at most this.
    let gap = arrivals[0].at - started;
    report(
        "refused-once",
        "200",
        elapsed,
        &format!(
            "<= {} (the call's start to the retry's arrival; {} after the port reopened; \
             refused connection attempts in the namespace meanwhile: {})",
            ms(gap),
            ms(arrivals[0].at - reopened[0]),
            refused.map_or("unknown".into(), |r| r.to_string())
        ),
        &arrivals,
    );
    assert!(
        gap < RETRY_GAP_BOUND,
        "the retry came {gap:?} after the call began"
    );
}

/// A first publish leaves its keep-alive connection in the SDK's pool; the proxy then kills it
/// with `kill` (while the function's runtime is blocked, as Lambda freezes it between
/// invocations, when `frozen`), and the next callback's publish meets the dead connection.
async fn after_a_pooled_connection_died(test: &str, kill: Kill, frozen: bool) {
    let f = Faulty::default_deadline(test, Mode::KeepAlive, frozen).await;
    let first = callback(json!(10023), GROUP);
    let (logs, _guard) = Logs::capture();
    f.recovers(&logs, &first, Category::FrequencyLimit).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.proxy.idle_connections() == 0 {
        assert!(Instant::now() < deadline, "the SDK pools the connection");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed = if frozen {
        f.proxy.kill_idle_frozen(kill)
    } else {
        f.proxy.kill_idle(kill).await
    };
    assert_eq!(killed, 1, "the one pooled connection");

    let mut second = first.clone();
    second["Random"] = json!(2);
    let retried_before = logs.events("publish_retry").len();
    let (_, elapsed) = f.recovers(&logs, &second, Category::FrequencyLimit).await;
    let retries = retries_logged(&logs, retried_before);
    let arrivals = f.proxy.arrivals();
    let pooled = arrivals[0].connection;
    let last = arrivals.last().unwrap();
    assert_eq!(last.met, Met::Mode(Mode::KeepAlive));
    assert!(
        last.connection != pooled && !last.reused,
        "the publish went out on a new connection: {arrivals:#?}"
    );
    let dead: Vec<&Arrival> = arrivals
        .iter()
        .filter(|a| a.met == Met::DeadConnection)
        .collect();
    if kill != Kill::Reset {
        // A reset connection is gone; a closed one still shows what was written on it.
        assert_eq!(
            dead.len(),
            1,
            "the publish met the dead connection: {arrivals:#?}"
        );
    }
    // The publish met the dead connection (the function's runtime could not notice its death
    // before it picked it from the pool), failed that attempt, and retried on a new one.
    assert_eq!(retries.len(), 1, "one retry, logged: {retries:#?}");
    eprintln!(
        "retry timing | {test} | retried after a pause of {} ms: {}",
        pauses_logged(&logs, retried_before)[0],
        retries
            .iter()
            .map(|e| cause(e))
            .collect::<Vec<_>>()
            .join("; ")
    );
    assert_eq!(f.proxy.forwarded(), 2);
    let gap = match dead.first() {
        Some(d) => ms(last.at - d.at),
        None => "not seen by the proxy (a reset connection leaves it nothing to see)".into(),
    };
    report(test, "200", elapsed, &gap, &arrivals);
    if let Some(d) = dead.first() {
        assert!(last.at - d.at < RETRY_GAP_BOUND);
    }
}

#[tokio::test]
async fn a_pooled_connection_reset_on_its_next_use_is_retried_and_the_callback_answered_200() {
    after_a_pooled_connection_died("pooled-reset-on-use", Kill::ResetOnUse, false).await;
}

#[tokio::test]
async fn a_pooled_connection_closed_while_frozen_is_met_retried_and_the_callback_answered_200() {
    after_a_pooled_connection_died("pooled-closed-frozen", Kill::Close, true).await;
}

#[tokio::test]
async fn a_pooled_connection_reset_while_frozen_is_met_retried_and_the_callback_answered_200() {
    after_a_pooled_connection_died("pooled-reset-frozen", Kill::Reset, true).await;
}

#[tokio::test]
async fn one_stalled_attempt_then_a_healthy_sns_gives_200_within_the_default_deadline() {
    let f = Faulty::default_deadline("stall-once", Mode::PassThrough, false).await;
    let body = callback(json!(10017), GROUP);
    let (logs, _guard) = Logs::capture();

    f.proxy.fault_next(1, Fault::Stall);
    let (_, elapsed) = f.recovers(&logs, &body, Category::MutedSender).await;
    let arrivals = f.proxy.arrivals();
    assert_eq!(arrivals.len(), 2, "{arrivals:#?}");
    assert_eq!(arrivals[0].met, Met::Fault(Fault::Stall));
    assert_eq!(arrivals[1].met, Met::Mode(Mode::PassThrough));
    assert_eq!(retries_logged(&logs, 0), ["stalled"]);
    let gap = arrivals[1].at - arrivals[0].at;
    report("stall-once", "200", elapsed, &ms(gap), &arrivals);
    // The stalled attempt was abandoned with room left for the retry.
    assert!(
        gap < f.timeout,
        "the retry came {gap:?} after the stalled attempt"
    );
}

#[tokio::test]
async fn two_stalled_attempts_give_503_and_the_record_by_the_default_deadline() {
    let f = Faulty::default_deadline("stall-twice", Mode::PassThrough, false).await;
    let body = callback(json!(10017), GROUP);
    let (logs, _guard) = Logs::capture();

    f.proxy.fault_next(2, Fault::Stall);
    let started = Instant::now();
    let record = f.fails(&logs, &body, Category::MutedSender).await;
    let elapsed = started.elapsed();
    let arrivals = f.proxy.arrivals();
    assert_eq!(
        f.proxy.count(Met::Fault(Fault::Stall)),
        2,
        "two attempts, both stalled: {arrivals:#?}"
    );
    assert_eq!(arrivals.len(), 2, "no third attempt fits: {arrivals:#?}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("2 attempts"), "{error}");
    f.world.assert_nothing_published().await;
    report(
        "stall-twice",
        "503",
        elapsed,
        &ms(arrivals[1].at - arrivals[0].at),
        &arrivals,
    );
}

/// A fast fault that lasts: 503 and the record before the default deadline (plus the margin),
/// after several attempts, each of which the proxy counts.
async fn a_lasting_fast_fault(test: &str, mode: Mode, fault: Option<Fault>) {
    let f = Faulty::default_deadline(test, mode, false).await;
    let body = callback(json!(80001), GROUP);
    let (logs, _guard) = Logs::capture();

    if let Some(fault) = fault {
        f.proxy.fault_next(usize::MAX, fault);
    }
    let started = Instant::now();
    let record = f.fails(&logs, &body, Category::ContentFilter).await;
    let elapsed = started.elapsed();
    let arrivals = f.proxy.arrivals();
    let attempts = arrivals.len();
    assert!(
        attempts >= 5,
        "several attempts within the deadline: {arrivals:#?}"
    );
    let error = record["error"].as_str().unwrap();
    assert!(error.contains(&format!("{attempts} attempts")), "{error}");
    assert_eq!(
        retries_logged(&logs, 0).len(),
        attempts - 1,
        "each retry logged"
    );
    f.world.assert_nothing_published().await;
    let gaps: Vec<String> = arrivals
        .windows(2)
        .map(|w| format!("{:.0}", (w[1].at - w[0].at).as_secs_f64() * 1000.0))
        .collect();
    eprintln!(
        "retry timing | {test} | answer 503 in {} | {attempts} attempts, gaps in ms: {}",
        ms(elapsed),
        gaps.join(" ")
    );
}

#[tokio::test]
async fn a_lasting_500_gives_503_and_the_record_after_several_attempts_by_the_deadline() {
    a_lasting_fast_fault("lasting-500", Mode::ServerError, None).await;
}

#[tokio::test]
async fn lasting_resets_give_503_and_the_record_after_several_attempts_by_the_deadline() {
    a_lasting_fast_fault("lasting-reset", Mode::PassThrough, Some(Fault::Reset)).await;
}
