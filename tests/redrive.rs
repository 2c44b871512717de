//! The redrive function as Lambda runs it, against moto: the real `im-exception-redrive`
//! binary under a local Lambda Runtime API, given CloudWatch Logs subscription events that hold
//! the webhook's own `publish_failed` records (the production handler, with SNS refusing
//! connections, writes them into a captured log) among the other lines of its log.
//!
//! It republishes each record exactly as the webhook would have published it, logs one line per
//! batch with its EMF metrics, and fails the invocation when a record could not be published;
//! the event Lambda then hands to the dead-letter queue is read back from a real SQS queue and
//! republished once SNS is back, each exception delivered once on FIFO topics.
//!
//! Run with `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --all-features --test redrive`.

mod support;

use im_exception_webhook::classify::Category;
use im_exception_webhook::config::Topics;
use im_exception_webhook::handler::LambdaApp;
use im_exception_webhook::publish::{self, SnsPublisher};
use im_exception_webhook::record_source::{self, Scan, subscription_event};
use im_exception_webhook::redrive::PUBLISH_DEADLINE;
use im_exception_webhook::republish::{self, Options};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::bootstrap::{Bootstrap, REDRIVE, lambda_env};
use support::fault_proxy::{FaultProxy, Mode};
use support::runtime_api::{Posted, RuntimeApi};
use support::world;
use support::{Call, Logs, World, invoke};

const LOG_GROUP: &str = "/aws/lambda/im-exception-webhook";
/// Longer than a batch with SNS down takes (one publish bounded by PUBLISH_DEADLINE).
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// A test's topics, the webhook publishing to them through a proxy, and what it logged for
/// `sent` while the proxy refused connections.
struct Scene {
    world: World,
    proxy: FaultProxy,
    sent: Vec<(Category, Value)>,
    /// The webhook's log, one line per log event: records and every other line.
    log: Vec<String>,
}

impl Scene {
    async fn new(world: World) -> Scene {
        let proxy = FaultProxy::start(&world.endpoint, Mode::Refuse).await;
        let mut env = world.env();
        env.insert("PUBLISH_TIMEOUT_MS".into(), "200".into());
        let webhook = support::function(&env, &proxy.url()).await;
        let sent = support::one_of_each("@TGS#rd");
        let (logs, guard) = Logs::capture();
        for (_, body) in &sent {
            let answer = invoke(webhook, &Call::chat(body.to_string()).http_api()).await;
            answer.assert_fail(503);
        }
        // Lines of the log that are not records: another command, a refusal.
        invoke(
            webhook,
            &Call::command("Group.CallbackAfterSendMsg", "{}").http_api(),
        )
        .await
        .assert_acknowledged();
        invoke(webhook, &Call::chat("not json").http_api())
            .await
            .assert_fail(400);
        drop(guard);
        assert_eq!(logs.events("publish_failed").len(), sent.len());
        let log = logs.text().lines().map(str::to_owned).collect();
        Scene {
            world,
            proxy,
            sent,
            log,
        }
    }

    /// The log events CloudWatch Logs would hand the subscription: Lambda's platform lines
    /// around the webhook's own.
    fn log_events(&self) -> Vec<String> {
        let mut events = vec!["START RequestId: 7f9c1a2b-test-request Version: $LATEST".into()];
        events.extend(self.log.iter().cloned());
        events.push("END RequestId: 7f9c1a2b-test-request".into());
        events.push(
            "REPORT RequestId: 7f9c1a2b-test-request\tDuration: 212.04 ms\tBilled Duration: 213 ms"
                .into(),
        );
        events
    }

    /// The subscription event of [`Scene::log_events`], as the redrive function receives it.
    fn event(&self) -> Value {
        let events = self.log_events();
        let messages: Vec<&str> = events.iter().map(String::as_str).collect();
        let event = subscription_event(LOG_GROUP, &messages);
        json!({"awslogs": {"data": event.awslogs.data}})
    }

    /// How many of the log events are not records.
    fn not_records(&self) -> usize {
        self.log_events().len() - self.sent.len()
    }

    /// The function's configuration of topics.
    fn topic_env(&self) -> Vec<(String, String)> {
        self.world
            .env()
            .into_iter()
            .filter(|(k, _)| k.starts_with("TOPIC_ARN_"))
            .collect()
    }

    fn topics(&self) -> Topics {
        let env: HashMap<String, String> = self.topic_env().into_iter().collect();
        Topics::from_lookup(|name| env.get(name).cloned()).unwrap()
    }
}

/// The webhook on topics of their own, of the same kind as `world`'s, with SNS healthy.
async fn fresh_like(world: &World, test: &str) -> (World, &'static LambdaApp) {
    let fifo = world.topics[0].topic_arn.ends_with(".fifo");
    let fresh = if fifo {
        World::fifo(test).await
    } else {
        World::standard(test).await
    };
    let app = support::function(&fresh.env(), &fresh.endpoint).await;
    (fresh, app)
}

/// The redrive binary as Lambda runs it, with the topics `topics` and AWS at `sns`.
fn spawn_redrive(api: &RuntimeApi, sns: &str, topics: &[(String, String)]) -> Bootstrap {
    let mut env = lambda_env(api, "im-exception-redrive", sns);
    env.extend(topics.iter().cloned());
    Bootstrap::spawn(REDRIVE, &env)
}

/// The `event: redrive` lines on `redrive`'s standard output, once there are `expected` of them.
async fn batch_lines(redrive: &Bootstrap, expected: usize) -> Vec<Value> {
    let batches = |stdout: &[String]| -> Vec<Value> {
        stdout
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == "redrive")
            .collect()
    };
    batches(
        &redrive
            .stdout_when(|stdout| batches(stdout).len() >= expected)
            .await,
    )
}

/// What the function posted for invocation `id`.
async fn posted_for(api: &mut RuntimeApi, id: &str) -> Posted {
    let posted = api
        .next_posted(ANSWER_WITHIN)
        .await
        .expect("the redrive function answers");
    assert!(
        posted.is_response_of(id) || posted.is_error_of(id),
        "{posted:?}"
    );
    posted
}

/// The batch's log line: one JSON object with the EMF metrics Redriven and RedriveFailures.
#[track_caller]
fn assert_batch_line(line: &Value, outcome: &str, redriven: usize, failures: usize) {
    assert_eq!(line["outcome"], outcome, "{line}");
    assert_eq!(line["Redriven"], redriven, "{line}");
    assert_eq!(line["RedriveFailures"], failures, "{line}");
    assert_eq!(
        im_exception_webhook::metrics::validate_emf(line).unwrap(),
        ["Redriven", "RedriveFailures"],
        "{line}"
    );
}

/// A batch of the webhook's records among its other lines is republished by the real redrive
/// binary: each exception once, to its category's topic, exactly as the webhook would have
/// published it; one log line for the batch. The same batch again (Lambda's retry of an event
/// whose invocation failed late) republishes each record with the same dedupKey: a FIFO topic
/// delivers it once, a standard one the same Message twice. (Both batches go out before the
/// queues are read: moto's FIFO queues deduplicate only against messages not yet deleted,
/// where SQS keeps a five-minute window.)
async fn a_batch_is_redriven(world: World, test: &str) {
    let fifo = world.topics[0].topic_arn.ends_with(".fifo");
    let scene = Scene::new(world).await;
    scene.proxy.set(Mode::PassThrough).await;
    let fresh = fresh_like(&scene.world, &format!("{test}-fresh")).await;

    let mut api = RuntimeApi::start().await;
    api.set_timeout(Duration::from_secs(60));
    let redrive = spawn_redrive(&api, &scene.proxy.url(), &scene.topic_env());
    for batch in 1..=2 {
        let id = api.invoke(&scene.event());
        let posted = posted_for(&mut api, &id).await;
        assert!(
            posted.is_response_of(&id),
            "{posted:?}\n{:#?}",
            redrive.lines()
        );
        let answer: Value = serde_json::from_str(&posted.body).unwrap();
        assert_eq!(
            answer,
            json!({"redriven": 5, "repeated": 0, "skipped": scene.not_records()}),
            "{:#?}",
            redrive.lines()
        );
        let lines = batch_lines(&redrive, batch).await;
        assert_eq!(
            lines.len(),
            batch,
            "one line per batch: {:#?}",
            redrive.lines()
        );
        let line = &lines[batch - 1];
        assert_batch_line(line, "redriven", 5, 0);
        assert_eq!(line["records"], 5);
        assert_eq!(line["skipped"], scene.not_records());
        assert_eq!(line["requestId"], id.as_str());
    }

    for (category, body) in &scene.sent {
        let deliveries = scene.world.received(*category, 2).await;
        let copies = if fifo { 1 } else { 2 };
        assert_eq!(deliveries.len(), copies, "{category}: {deliveries:#?}");
        // Exactly as the webhook publishes it: a fresh publish on `fresh`'s topics (a FIFO
        // topic would drop a second copy) delivers the same.
        support::assert_published_as_the_function_would(
            &scene.world,
            &deliveries[0],
            &scene.log.join("\n"),
            body,
            *category,
            (&fresh.0, fresh.1),
        )
        .await;
        for copy in &deliveries[1..] {
            assert_eq!(
                copy.notification["Message"], deliveries[0].notification["Message"],
                "the same envelope, with the same dedupKey"
            );
            assert_eq!(
                copy.attributes().get("dedupKey"),
                deliveries[0].attributes().get("dedupKey")
            );
        }
    }
    scene.world.assert_nothing_published().await;
    eprintln!(
        "redrive | {test} | {} log events, 5 records, {} other lines skipped; the batch \
         redriven twice: {}",
        scene.log_events().len(),
        scene.not_records(),
        if fifo {
            "each exception delivered once (FIFO deduplication by dedupKey)"
        } else {
            "each exception delivered twice, the same Message and dedupKey"
        }
    );
}

#[tokio::test]
async fn a_batch_on_standard_topics_is_republished_as_the_webhook_would_have() {
    a_batch_is_redriven(World::standard("rd-standard").await, "rd-standard").await;
}

#[tokio::test]
async fn a_batch_on_fifo_topics_is_republished_as_the_webhook_would_have() {
    a_batch_is_redriven(World::fifo("rd-fifo").await, "rd-fifo").await;
}

/// An SQS queue of the test's own on moto: the redrive dead-letter queue.
async fn dead_letter_queue(world: &World, test: &str) -> String {
    world
        .sqs
        .create_queue()
        .queue_name(format!("{test}-dlq-{}", std::process::id()))
        .send()
        .await
        .expect("create the dead-letter queue")
        .queue_url
        .expect("queue URL")
}

/// What Lambda puts into the on-failure destination after the last retry of `event` failed.
fn destination_record(event: &Value, request_id: &str, error_message: &str) -> Value {
    json!({
        "version": "1.0",
        "timestamp": "2026-12-01T10:00:00.000Z",
        "requestContext": {
            "requestId": request_id,
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:im-exception-redrive:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3
        },
        "requestPayload": event,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled"
        },
        "responsePayload": {"errorMessage": error_message}
    })
}

/// With SNS down, the redrive fails the invocation (Lambda retries it, then hands it to the
/// dead-letter queue) and delivers nothing. After recovery the dead-letter record, sent to and
/// received from a real SQS queue, is read and republished through the library the replay tool
/// uses, after part of the batch was already published: on FIFO topics each exception arrives
/// exactly once.
#[tokio::test]
async fn with_sns_down_the_batch_fails_and_its_dead_letter_record_is_replayed_once_on_fifo() {
    let scene = Scene::new(World::fifo("rd-down").await).await;
    let mut api = RuntimeApi::start().await;
    api.set_timeout(Duration::from_secs(60));
    let redrive = spawn_redrive(&api, &scene.proxy.url(), &scene.topic_env());

    let event = scene.event();
    let started = Instant::now();
    let id = api.invoke(&event);
    let posted = posted_for(&mut api, &id).await;
    let took = started.elapsed();
    assert!(posted.is_error_of(&id), "the invocation fails: {posted:?}");
    assert!(posted.error_type.is_some(), "{posted:?}");
    let error: Value = serde_json::from_str(&posted.body).unwrap();
    let message = error["errorMessage"].as_str().unwrap().to_owned();
    assert!(
        message.contains("5 of 5 records not published"),
        "{message}"
    );
    let lines = batch_lines(&redrive, 1).await;
    assert_eq!(lines.len(), 1, "{:#?}", redrive.lines());
    assert_batch_line(&lines[0], "failed", 0, 5);
    scene.world.assert_nothing_published().await;
    eprintln!(
        "redrive | rd-down | SNS refused: the invocation failed after {took:?} ({:?} per \
         publish at most): {message}",
        PUBLISH_DEADLINE
    );

    // Lambda's last retry failed too: the event goes to the dead-letter queue.
    let queue = dead_letter_queue(&scene.world, "rd-down").await;
    let sqs = &scene.world.sqs;
    sqs.send_message()
        .queue_url(&queue)
        .message_body(destination_record(&event, &id, &message).to_string())
        .send()
        .await
        .expect("send to the dead-letter queue");
    let received = sqs
        .receive_message()
        .queue_url(&queue)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive from the dead-letter queue")
        .messages
        .unwrap_or_default();
    assert_eq!(received.len(), 1);
    let body = received[0].body.as_deref().unwrap();
    let found = record_source::from_destination("dlq", body).expect("a destination record");
    assert_eq!(found.records.len(), 5);
    assert_eq!(found.skipped, scene.not_records());

    // SNS is back. Part of the batch was published before (a retry that got that far).
    scene.proxy.set(Mode::PassThrough).await;
    let publisher = SnsPublisher::new(
        publish::sns_client(world::loader(&scene.proxy.url())).await,
        PUBLISH_DEADLINE,
    );
    let topics = scene.topics();
    let part = Scan {
        records: found.records[..2].to_vec(),
        skipped: 0,
    };
    let mut report = Vec::new();
    let summary =
        republish::republish(&part, &topics, &publisher, Options::default(), &mut report).await;
    assert_eq!(summary.to_string(), "replayed 2, failed 0");

    let mut report = Vec::new();
    let summary =
        republish::republish(&found, &topics, &publisher, Options::default(), &mut report).await;
    let report = String::from_utf8(report).unwrap();
    assert_eq!(summary.to_string(), "replayed 5, failed 0", "{report}");
    assert_eq!(summary.skipped, scene.not_records());

    for (category, body) in &scene.sent {
        let deliveries = scene.world.received(*category, 1).await;
        assert_eq!(
            deliveries.len(),
            1,
            "{category}: exactly once: {deliveries:#?}"
        );
        let delivery = &deliveries[0];
        support::assert_logged_envelope(delivery, &scene.log.join("\n"), body);
        delivery.assert_fifo_ids(body["GroupId"].as_str().unwrap());
    }
    scene.world.assert_nothing_published().await;
    drop(redrive);
}

#[tokio::test]
async fn a_missing_or_malformed_topic_variable_stops_the_redrives_cold_start_naming_it() {
    let topic = |name: &str| format!("arn:aws:sns:us-east-1:123456789012:{name}");
    let all = [
        ("TOPIC_ARN_INVALID_GROUP", topic("ig")),
        ("TOPIC_ARN_FREQUENCY_LIMIT", topic("fl")),
        ("TOPIC_ARN_CONTENT_FILTER", topic("cf")),
        ("TOPIC_ARN_MUTED_SENDER", topic("ms")),
    ];
    for (variable, value) in [
        ("TOPIC_ARN_MUTED_SENDER", None),
        ("TOPIC_ARN_INVALID_GROUP", None),
        ("TOPIC_ARN_FREQUENCY_LIMIT", Some("frequency-limit-topic")),
    ] {
        let mut api = RuntimeApi::start().await;
        let mut env: Vec<(String, String)> = all
            .iter()
            .filter(|(k, _)| *k != variable)
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        if let Some(value) = value {
            env.push((variable.into(), value.into()));
        }
        let mut redrive = spawn_redrive(&api, "http://127.0.0.1:9", &env);
        let line = redrive.assert_configuration_error(variable).await;
        let line: Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(line["variable"], variable);
        // It never asked for an event.
        let id = api.invoke(&json!({"awslogs": {"data": ""}}));
        assert!(
            api.next_posted(Duration::from_millis(200)).await.is_none(),
            "{id}"
        );
    }
}
