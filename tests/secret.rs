//! The callback token in Secrets Manager (`IM_CALLBACK_TOKEN_SECRET`), against moto's: read by
//! the webhook's binary at cold start, both tokens of a rotation's `{"current", "previous"}`
//! signing; a secret that cannot be read stops the cold start; and, in process with a shortened
//! interval, a plain token read, a rotation seen without a deploy and an outage that keeps the
//! tokens.
//!
//! Run with `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --all-features --test secret`.

mod support;

use im_exception_webhook::adapters::aws;
use im_exception_webhook::adapters::secret::Tokens;
use im_exception_webhook::domain::classify::Category;
use im_exception_webhook::domain::config::TokenSource;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use support::moto::closed_url;
use support::{Call, Lambda, World, callback};

const GROUP: &str = "@TGS#2J4SZEAEL";

/// Secrets Manager on this binary's moto server.
async fn secrets() -> aws_sdk_secretsmanager::Client {
    let sdk = aws::sdk_config(support::world::loader(support::moto::url())).await;
    aws_sdk_secretsmanager::Client::new(&sdk)
}

/// A new secret holding `value`; its name.
async fn secret(test: &str, value: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("im/{test}-{}-{n}", std::process::id());
    let create = secrets()
        .await
        .create_secret()
        .name(&name)
        .secret_string(value);
    create.send().await.expect("create the secret");
    name
}

/// `world`'s configuration, the token in the secret `id`.
fn env_with_secret(world: &World, id: &str) -> HashMap<String, String> {
    let mut env = world.env();
    env.insert("IM_CALLBACK_TOKEN_SECRET".into(), id.into());
    env
}

/// The secret is read at cold start through `AWS_ENDPOINT_URL_SECRETS_MANAGER` (every service
/// but SNS and Secrets Manager at a closed port); during a rotation, `{"current", "previous"}`,
/// both of its tokens sign, and any other does not. (A plain token in the secret: the refresh
/// test below, and the unit tests of the secret's two forms.)
#[tokio::test]
async fn the_secret_is_read_at_cold_start_and_during_a_rotation_both_of_its_tokens_sign() {
    let world = World::standard("secret-rotation").await;
    let rotation = json!({"current": "new-token", "previous": "old-token"}).to_string();
    let mut env = env_with_secret(&world, &secret("rotation", &rotation).await);
    for service in ["SNS", "SECRETS_MANAGER"] {
        env.insert(
            format!("AWS_ENDPOINT_URL_{service}"),
            world.endpoint.clone(),
        );
    }
    let mut lambda = Lambda::webhook(&closed_url(), &env).await;

    let body = callback(json!(10023), GROUP);
    for token in ["new-token", "old-token"] {
        let signed = Call::chat(body.to_string()).signed(token).http_api();
        lambda.invoke(&signed).await.assert_acknowledged();
        let delivery = world.only_delivery(Category::FrequencyLimit).await;
        assert_eq!(delivery.envelope()["callback"], body);
    }
    let forged = Call::chat(body.to_string())
        .signed("other-token")
        .http_api();
    lambda.invoke(&forged).await.assert_fail(401, 4014);
    world.assert_nothing_published().await;
    let all = lambda.process.lines();
    let warned = all.iter().any(|l| l.contains("auth_disabled"));
    assert!(!warned, "a token is configured: {all:#?}");
}

/// A token secret that cannot be read at cold start (missing, holding no token, or Secrets
/// Manager unreachable) is an initialisation error: one line that says which secret and why,
/// and the process ends before taking any call.
#[tokio::test]
async fn a_secret_that_cannot_be_read_at_cold_start_stops_it_with_one_clear_line() {
    let world = World::standard("secret-unreadable").await;
    let empty = secret("empty-token", r#"{"current": ""}"#).await;
    let closed = closed_url();
    let cases = [
        (
            "im/no-such-secret",
            world.endpoint.as_str(),
            "ResourceNotFound",
        ),
        (empty.as_str(), world.endpoint.as_str(), "empty token"),
        ("im/unreachable", closed.as_str(), "cannot read"),
    ];
    for (id, endpoint, why) in cases {
        let mut lambda = Lambda::webhook(endpoint, &env_with_secret(&world, id)).await;
        let status = lambda.process.exit(Duration::from_secs(30)).await;
        assert!(!status.success(), "{id}");
        let lines = lambda.process.lines();
        assert_eq!(lines.len(), 1, "{id}: one line: {lines:#?}");
        let line = &lines[0];
        let clear = line.contains(id) && line.contains(why) && line.contains("ERROR");
        assert!(clear, "{id}: names the secret and says why: {line}");
        let taken = lambda.api.next_posted(Duration::ZERO).await;
        assert!(taken.is_none(), "no call was taken: {taken:?}");
    }
}

/// The refresh, in process with the interval shortened: a `put-secret-value` is seen on the
/// first call after the interval, never before it, and a secret that becomes unreadable leaves
/// the tokens read before in use (the warning it logs goes through `tracing`, not asserted).
#[tokio::test]
async fn a_rotation_is_seen_after_the_interval_and_an_unreadable_secret_keeps_the_tokens() {
    let id = secret("refresh", "first-token").await;
    let sdk = aws::sdk_config(support::world::loader(support::moto::url())).await;
    let source = TokenSource::Secret(id.clone());
    let interval = Duration::from_millis(200);
    let load = |every| Tokens::load_refreshing(&source, &sdk, every);
    let refreshing = load(interval).await.expect("the secret is read");
    // An interval no test outlasts: what a rotation changes only after the interval.
    let cached = load(Duration::from_secs(3600))
        .await
        .expect("the secret is read");
    assert_eq!(&*refreshing.current().await, ["first-token"]);

    let client = secrets().await;
    let rotation = r#"{"current": "second-token", "previous": "first-token"}"#;
    let put = client
        .put_secret_value()
        .secret_id(&id)
        .secret_string(rotation);
    put.send().await.expect("put-secret-value");
    let before = cached.current().await;
    assert_eq!(
        &*before,
        ["first-token"],
        "not read again before the interval"
    );
    tokio::time::sleep(interval + Duration::from_millis(50)).await;
    let after = refreshing.current().await;
    assert_eq!(
        &*after,
        ["second-token", "first-token"],
        "read after the interval"
    );

    let delete = client
        .delete_secret()
        .secret_id(&id)
        .force_delete_without_recovery(true);
    delete.send().await.expect("delete the secret");
    for _ in 0..2 {
        tokio::time::sleep(interval + Duration::from_millis(50)).await;
        let kept = refreshing.current().await;
        assert_eq!(
            &*kept,
            ["second-token", "first-token"],
            "a failed refresh keeps them"
        );
    }
}
