//! The webhook's binary on Lambda Managed Instances: with `AWS_LAMBDA_MAX_CONCURRENCY` set, the
//! runtime takes several invocations at once (`lambda_http::run_concurrent`). Under a local
//! Runtime API, with SNS slowed so that invocations overlap, every callback is answered once,
//! published once and logged once, each line whole.
//!
//! Run with `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --all-features --test concurrency`.

mod support;

use im_exception_webhook::domain::classify::Category;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{ACK, Call, Lambda, World, callback};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CALLBACKS: usize = 16;
const IN_FLIGHT: usize = 8;

/// A TCP relay to moto that holds every chunk the caller sends for `delay` before passing it
/// on, so that each publish is slow, and keeps the most chunks held at once: publishes of
/// several invocations waiting together. The support fault proxy has faults but no delay.
struct SlowRelay {
    url: String,
    most_held: Arc<AtomicUsize>,
}

impl SlowRelay {
    async fn start(upstream: &str, delay: Duration) -> SlowRelay {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let held = Arc::new(AtomicUsize::new(0));
        let most_held = Arc::new(AtomicUsize::new(0));
        let (held_c, most_c) = (held.clone(), most_held.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (held, most) = (held_c.clone(), most_c.clone());
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                tokio::spawn(async move {
                    let mut chunk = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = client_read.read(&mut chunk).await {
                        most.fetch_max(held.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        held.fetch_sub(1, Ordering::SeqCst);
                        if server_write.write_all(&chunk[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        SlowRelay { url, most_held }
    }
}

/// Chat's call for the `index`th exception: a group and a `Random` of its own.
fn event(index: usize) -> Value {
    let mut body = callback(json!(10023), &format!("@TGS#concurrent{index}"));
    body["Random"] = json!(index);
    Call::chat(body.to_string()).http_api()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_invocations_in_flight_are_each_answered_published_and_logged_once() {
    let world = World::standard("concurrency").await;
    let relay = SlowRelay::start(&world.endpoint, Duration::from_millis(50)).await;
    let mut env = world.env();
    env.insert("AWS_ENDPOINT_URL_SNS".into(), relay.url.clone());
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
    let overlap = relay.most_held.load(Ordering::SeqCst);
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
