//! The webhook's binary on Lambda Managed Instances: with `AWS_LAMBDA_MAX_CONCURRENCY` set, the
//! runtime takes several invocations at once (`lambda_http::run_concurrent`). Under a local
//! Runtime API, with SNS slowed (the fault proxy holding each publish) so that invocations
//! overlap, every callback is answered once, published once and logged once, each line whole.
//!
//! Run with `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --all-features --test concurrency`.

mod support;

use im_exception_webhook::domain::classify::Category;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::fault_proxy::FaultProxy;
use support::{ACK, Call, Lambda, World, callback};

const CALLBACKS: usize = 16;
const IN_FLIGHT: usize = 8;

/// Chat's call for the `index`th exception: a group and a `Random` of its own.
fn event(index: usize) -> Value {
    let mut body = callback(json!(10023), &format!("@TGS#concurrent{index}"));
    body["Random"] = json!(index);
    Call::chat(body.to_string()).http_api()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_invocations_in_flight_are_each_answered_published_and_logged_once() {
    let world = World::standard("concurrency").await;
    let slow = FaultProxy::start(&world.endpoint).await;
    slow.set_delay(Duration::from_millis(50));
    let mut env = world.env();
    env.insert("AWS_ENDPOINT_URL_SNS".into(), slow.url());
    env.insert("AWS_LAMBDA_MAX_CONCURRENCY".into(), IN_FLIGHT.to_string());
    let mut lambda = Lambda::webhook(&world.endpoint, &env).await;

    let started = Instant::now();
    let mut ids: Vec<String> = (0..CALLBACKS)
        .map(|i| lambda.api.invoke(&event(i)))
        .collect();
    ids.sort();
    let mut answered = Vec::new();
    while answered.len() < CALLBACKS {
        let wait = Duration::from_secs(30);
        let Some(posted) = lambda.api.next_posted(wait).await else {
            panic!("answers for {} of {CALLBACKS}", answered.len());
        };
        let response: Value = serde_json::from_str(&posted.body).expect("a JSON response");
        let answer = (&response["statusCode"], &response["body"]);
        assert_eq!(answer, (&json!(200), &json!(ACK)), "{posted:?}");
        answered.push(posted.path);
    }
    let elapsed = started.elapsed();
    let late = lambda.api.next_posted(Duration::from_millis(300)).await;
    assert!(late.is_none(), "nothing is answered twice: {late:?}");
    answered.sort();
    let responses = ids
        .iter()
        .map(|id| format!("/2018-06-01/runtime/invocation/{id}/response"));
    assert_eq!(
        answered,
        responses.collect::<Vec<_>>(),
        "each answered once"
    );
    let overlap = slow.most_held();
    assert!(
        overlap > 1,
        "publishes overlapped: at most {overlap} held at once"
    );
    eprintln!(
        "{CALLBACKS} callbacks answered in {elapsed:?}; at most {overlap} publishes held at once"
    );

    let delivered = world.received(Category::FrequencyLimit, CALLBACKS).await;
    let keys: HashSet<Value> = delivered
        .iter()
        .map(|d| d.envelope()["dedupKey"].clone())
        .collect();
    // Each published: an attempt slower than its timeout (on a loaded machine) is retried, and
    // SNS may then deliver it twice, under one dedupKey, as the contract allows.
    assert_eq!(keys.len(), CALLBACKS, "each published");
    assert!(delivered.len() >= CALLBACKS);

    let lines = lambda.events("callback", CALLBACKS).await;
    lambda.process.kill().await;
    for line in lambda.process.lines() {
        let whole = serde_json::from_str::<Value>(&line).is_ok_and(|v| v.is_object());
        assert!(whole, "a line that is not one JSON object: {line}");
    }
    assert!(
        lines.iter().all(|l| l["outcome"] == "published"),
        "{lines:#?}"
    );
    let mut logged: Vec<&str> = lines
        .iter()
        .map(|l| l["requestId"].as_str().unwrap())
        .collect();
    logged.sort();
    assert_eq!(
        logged, ids,
        "one line per invocation, under its own request id"
    );
    assert_eq!(support::emf::assert_valid(&lines).len(), CALLBACKS);
}
