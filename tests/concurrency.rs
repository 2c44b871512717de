//! The same binary on Lambda Managed Instances: with `AWS_LAMBDA_MAX_CONCURRENCY` set, the
//! runtime polls for several invocations at once (`lambda_http::run_concurrent`). Under a local
//! Runtime API, with SNS slowed so that invocations overlap, every callback is answered once,
//! published once, and logged as one whole JSON line.
//!
//! Run with `make test`, or `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --test concurrency`.

mod support;

use im_exception_webhook::classify::Category;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::bootstrap::{Bootstrap, WEBHOOK, lambda_env};
use support::runtime_api::RuntimeApi;
use support::{Call, World};
use tokio::net::{TcpListener, TcpStream};

const CALLBACKS: usize = 40;
const IN_FLIGHT: usize = 8;

/// A TCP relay to moto that holds each new connection's first bytes for `delay` (so that
/// publishes overlap) and counts how many connections are open at once.
struct SlowRelay {
    url: String,
    most_open: Arc<AtomicUsize>,
}

impl SlowRelay {
    async fn start(upstream: &str, delay: Duration) -> SlowRelay {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let open = Arc::new(AtomicUsize::new(0));
        let most_open = Arc::new(AtomicUsize::new(0));
        let (open_c, most_c) = (open.clone(), most_open.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (open, most, upstream) = (open_c.clone(), most_c.clone(), upstream.clone());
                tokio::spawn(async move {
                    let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now_open, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        SlowRelay { url, most_open }
    }
}

/// Chat's call for the `index`th exception, as an API Gateway HTTP API event.
fn event(index: usize) -> Value {
    let body = json!({
        "CallbackCommand": "Group.CallbackSendMsgException",
        "GroupId": format!("@TGS#concurrent{index}"),
        "From_Account": "jared",
        "Random": index,
        "ErrorCode": 10023,
        "EventTime": 1_670_574_414_123_i64 + index as i64,
    });
    Call::chat(body.to_string()).http_api()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_invocations_in_flight_are_each_answered_published_and_logged_once() {
    let world = World::standard("concurrency").await;
    let relay = SlowRelay::start(&world.endpoint, Duration::from_millis(150)).await;
    let mut api = RuntimeApi::start().await;

    let mut env = world.env();
    env.extend(lambda_env(&api, "im-exception-webhook", &relay.url));
    env.extend(
        [
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048".into()),
            ("AWS_LAMBDA_MAX_CONCURRENCY", IN_FLIGHT.to_string()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let mut bootstrap = Bootstrap::spawn(WEBHOOK, &env);

    let ids: Vec<String> = (0..CALLBACKS).map(|i| api.invoke(&event(i))).collect();
    let mut answered: HashMap<String, u64> = HashMap::new();
    while answered.len() < CALLBACKS {
        let posted = api
            .next_posted(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("answers for {} of {CALLBACKS}", answered.len()));
        let id = posted
            .path
            .strip_prefix("/2018-06-01/runtime/invocation/")
            .and_then(|p| p.strip_suffix("/response"))
            .unwrap_or_else(|| panic!("not a response: {posted:?}"))
            .to_owned();
        let response: Value = serde_json::from_str(&posted.body).unwrap();
        assert!(
            answered
                .insert(id.clone(), response["statusCode"].as_u64().unwrap())
                .is_none(),
            "{id} answered twice"
        );
    }
    assert!(
        api.next_posted(Duration::from_millis(300)).await.is_none(),
        "nothing is answered twice"
    );
    assert_eq!(
        answered.keys().cloned().collect::<HashSet<_>>(),
        ids.iter().cloned().collect()
    );
    assert!(answered.values().all(|s| *s == 200), "{answered:?}");
    let overlap = relay.most_open.load(Ordering::SeqCst);
    assert!(
        overlap > 1,
        "publishes overlapped: at most {overlap} connections open at once"
    );
    eprintln!("at most {overlap} SNS connections open at once");

    let delivered = world.received(Category::FrequencyLimit, CALLBACKS).await;
    let mut copies: HashMap<String, usize> = HashMap::new();
    for d in &delivered {
        let key = d.envelope()["dedupKey"].as_str().unwrap().to_owned();
        *copies.entry(key).or_default() += 1;
    }
    assert_eq!(copies.len(), CALLBACKS, "every callback published");

    bootstrap.kill().await;
    let lines = bootstrap.lines();
    let mut per_request: HashMap<String, usize> = HashMap::new();
    for line in &lines {
        let record: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not one JSON object ({e}): {line}"));
        if record["event"] == "callback" {
            let id = record["requestId"].as_str().unwrap().to_owned();
            *per_request.entry(id).or_default() += 1;
        }
    }
    assert_eq!(per_request.len(), CALLBACKS, "{lines:#?}");
    assert!(per_request.values().all(|n| *n == 1), "{per_request:?}");

    // A second copy only where an attempt was retried (its answer lost or late on a machine
    // this loaded): at least once, with the same dedupKey for subscribers to drop.
    let retried: HashSet<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["event"] == "publish_retry")
        .map(|r| r["dedupKey"].as_str().unwrap().to_owned())
        .collect();
    for (key, n) in &copies {
        assert!(
            *n == 1 || retried.contains(key),
            "{key} delivered {n} times without a retry"
        );
    }
    eprintln!(
        "{} deliveries for {CALLBACKS} callbacks, {} publishes retried",
        delivered.len(),
        retried.len()
    );
}
