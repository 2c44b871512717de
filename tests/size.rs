//! The size rules against moto, from outside: nothing is accepted that SNS (262,144 bytes of
//! envelope and attributes) or CloudWatch Logs (262,144 bytes of one `publish_failed` record)
//! could not take, and the refusal (413, ErrorCode 4131) comes before any publish, with no
//! record. For each bound the largest body accepted and the smallest refused are found by a
//! search over real calls, checked against the crate's own size functions, and then sent to the
//! function in front of moto: the largest is delivered byte for byte, the smallest refused
//! leaves nothing. `MAX_BODY_BYTES` (65,536 by default) is checked at its edge too.
//!
//! Run with `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --test size`.

mod support;

use im_exception_webhook::classify::Category;
use im_exception_webhook::config::Config;
use im_exception_webhook::decision::{Decision, WebhookRequest, decide};
use im_exception_webhook::envelope::Message;
use im_exception_webhook::handler::LambdaApp;
use im_exception_webhook::publish::{self, SNS_MESSAGE_LIMIT, sns_size};
use im_exception_webhook::query::Query;
use im_exception_webhook::record::{RECORD_LIMIT, Record};
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{Answer, Call, Logs, World, invoke};

/// Raised well past both bounds, so that they, not the body limit, decide.
const RAISED_MAX_BODY: &str = "400000";
const GROUP: &str = "@TGS#size";
/// The publish error and request id a record can hold at most (src/record.rs).
const MAX_ERROR_BYTES: usize = 300;
const MAX_REQUEST_ID_BYTES: usize = 64;

/// Which limit a family of bodies runs into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// A long field found only in the envelope (`Pad`): the record, with its own fields around
    /// the envelope, reaches 262,144 bytes first.
    Record,
    /// A long `From_Account`: in the envelope and again as the `fromAccount` attribute, so the
    /// SNS message reaches 262,144 bytes first.
    Sns,
}

/// A frequency-limit exception with a long field of `n` bytes and `spaces` spaces of
/// insignificant whitespace before its closing brace (the callback is kept as received, so
/// each space is one byte of envelope, message and record).
fn body(bound: Bound, n: usize, spaces: usize) -> String {
    let long = match bound {
        Bound::Record => format!(r#""From_Account":"jared","Pad":"{}""#, "p".repeat(n)),
        Bound::Sns => format!(r#""From_Account":"{}""#, "f".repeat(n)),
    };
    format!(
        r#"{{"CallbackCommand":"Group.CallbackSendMsgException","GroupId":"{GROUP}","Type":"Public",{long},"Random":7,"ErrorCode":10023,"EventTime":1670574414123{}}}"#,
        " ".repeat(spaces)
    )
}

/// The configuration of `env`, as the function reads it.
fn config(env: &HashMap<String, String>) -> Config {
    Config::from_lookup(|name| env.get(name).cloned()).expect("the test configuration")
}

/// The message and the record bound the function's own decision gives `body` at `now`, as
/// Chat's call (the query of [`Call::chat`]) brings it; `None` when the decision refuses it.
fn decided(config: &Config, body: &str, now: SystemTime) -> Option<(Message, usize)> {
    let call = Call::chat(body);
    let request = WebhookRequest {
        method: "POST",
        query: Query::new(call.query.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        body: body.as_bytes(),
    };
    match decide(&request, config, now) {
        Ok(Decision::Exception { message, topic, .. }) => {
            let record = Record::largest(&message, topic.map(|t| t.arn.as_str()), now);
            Some((message, record))
        }
        Ok(other) => panic!("not an exception: {other:?}"),
        Err(_) => None,
    }
}

/// The size `bound` measures, by the crate's functions.
fn measured(config: &Config, bound: Bound, body: &str) -> usize {
    let (message, record) = decided(config, body, SystemTime::now()).expect("accepted");
    match bound {
        Bound::Record => record,
        Bound::Sns => sns_size(&message),
    }
}

/// A 413 with ErrorCode 4131 naming the message size `bytes`.
#[track_caller]
fn assert_too_large(answer: &Answer, bytes: usize) {
    answer.assert_fail(413);
    let body = answer.json();
    assert_eq!(body["ErrorCode"], 4131, "{body}");
    let info = body["ErrorInfo"].as_str().unwrap();
    assert!(
        info.contains(&format!("message of {bytes} bytes"))
            && info.contains(&format!("{SNS_MESSAGE_LIMIT}-byte limit")),
        "{info}"
    );
}

/// The function with SNS unreachable and a short deadline: it answers an accepted callback
/// 503 at once, a refused one 413, and publishes nothing; what a search probes.
struct Probe {
    app: &'static LambdaApp,
}

impl Probe {
    async fn new(env: &HashMap<String, String>) -> Probe {
        let mut env = env.clone();
        env.insert("PUBLISH_TIMEOUT_MS".into(), "50".into());
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        Probe {
            app: support::function(&env, &endpoint).await,
        }
    }

    /// Whether the function accepts `body` (503: accepted, its publish failed) or refuses it
    /// as too large (413/4131); anything else fails the test.
    async fn accepts(&self, body: &str) -> bool {
        let answer = invoke(self.app, &Call::chat(body).http_api()).await;
        match answer.status {
            503 => true,
            413 => {
                assert_eq!(answer.json()["ErrorCode"], 4131, "{}", answer.body);
                false
            }
            _ => panic!("{answer:#?}"),
        }
    }

    /// The largest `n` in `accepted..refused` for which `body(n)` is accepted, by bisection:
    /// `body(accepted)` must be accepted and `body(refused)` refused.
    async fn largest_accepted(
        &self,
        body: impl Fn(usize) -> String,
        mut accepted: usize,
        mut refused: usize,
    ) -> usize {
        assert!(
            self.accepts(&body(accepted)).await,
            "the search starts accepted"
        );
        assert!(
            !self.accepts(&body(refused)).await,
            "the search ends refused"
        );
        while refused - accepted > 1 {
            let middle = accepted + (refused - accepted) / 2;
            if self.accepts(&body(middle)).await {
                accepted = middle;
            } else {
                refused = middle;
            }
        }
        accepted
    }
}

/// The boundary of `bound`, searched over real calls and checked against the crate's own
/// functions; then the largest accepted body is delivered through moto byte for byte, and the
/// smallest refused is refused before any publish, leaving no record.
async fn boundary(test: &str, bound: Bound) {
    let world = World::standard(test).await;
    let mut env = world.env();
    env.insert("MAX_BODY_BYTES".into(), RAISED_MAX_BODY.into());
    let config = config(&env);
    let limit = match bound {
        Bound::Record => RECORD_LIMIT,
        Bound::Sns => SNS_MESSAGE_LIMIT,
    };

    // Whitespace that makes the limit reachable exactly: a long From_Account grows the SNS
    // message by two bytes a character.
    let spaces = match bound {
        Bound::Record => 0,
        Bound::Sns => (limit - measured(&config, bound, &body(bound, 1000, 0))) % 2,
    };
    let probe = Probe::new(&env).await;
    let n = probe
        .largest_accepted(|n| body(bound, n, spaces), 1000, 300_000)
        .await;
    let largest = body(bound, n, spaces);
    let smallest_refused = body(bound, n, spaces + 1);
    assert!(!probe.accepts(&smallest_refused).await, "one byte more");

    // The crate's own functions put the bound exactly there.
    assert_eq!(measured(&config, bound, &largest), limit, "{bound:?}");
    let now = SystemTime::now();
    let (message, record) = decided(&config, &largest, now).unwrap();
    match bound {
        Bound::Record => assert!(sns_size(&message) < SNS_MESSAGE_LIMIT),
        Bound::Sns => assert!(record < RECORD_LIMIT),
    }
    assert!(decided(&config, &smallest_refused, now).is_none());
    eprintln!(
        "size boundary | {bound:?} bound | largest body accepted {} bytes (long field {n} bytes): \
         SNS message {} bytes, record at most {record} bytes | smallest refused {} bytes",
        largest.len(),
        sns_size(&message),
        smallest_refused.len()
    );

    // The record the function writes for the largest body, padded to the longest error and
    // request id it could hold, is the bound measured: at most 262,144 bytes with its line break.
    let (logs, guard) = Logs::capture();
    assert!(probe.accepts(&largest).await);
    drop(guard);
    let records = logs.events("publish_failed");
    assert_eq!(records.len(), 1);
    let line = logs
        .text()
        .lines()
        .find(|l| l.contains(r#""event":"publish_failed""#))
        .unwrap()
        .to_owned();
    let error = records[0]["error"].as_str().unwrap().len();
    let request_id = records[0]["requestId"].as_str().unwrap().len();
    let worst = line.len() + 1 + (MAX_ERROR_BYTES - error) + (MAX_REQUEST_ID_BYTES - request_id);
    assert!(worst <= RECORD_LIMIT, "{worst}");
    if bound == Bound::Record {
        assert_eq!(worst, RECORD_LIMIT, "the record bound is the record's size");
    }

    // The function in front of moto: the largest is published and read back byte for byte.
    // moto can take most of a second over a 256 KiB publish on a busy machine; an attempt
    // abandoned after SNS took it would deliver a second copy, so the deadline is raised here:
    // it is not what this test is about.
    env.insert("PUBLISH_TIMEOUT_MS".into(), "10000".into());
    let app = support::function(&env, &world.endpoint).await;
    let (logs, _guard) = Logs::capture();
    let started = std::time::Instant::now();
    invoke(app, &Call::chat(largest.clone()).http_api())
        .await
        .assert_acknowledged();
    eprintln!(
        "size boundary | {bound:?} bound | the largest published through moto in {:?}",
        started.elapsed()
    );
    let delivery = world.only_delivery(Category::FrequencyLimit).await;
    let delivered = delivery.notification["Message"].as_str().unwrap();
    let received_at = delivery.envelope()["receivedAt"]
        .as_str()
        .and_then(support::parse_rfc3339_millis)
        .expect("receivedAt");
    let at = UNIX_EPOCH + Duration::from_millis(received_at as u64);
    let (expected, _) = decided(&config, &largest, at).unwrap();
    assert!(
        delivered == expected.body,
        "the delivered Message ({} bytes) is the envelope the function made ({} bytes)",
        delivered.len(),
        expected.body.len()
    );
    assert!(delivered.ends_with(&format!(r#","callback":{largest}}}"#)));
    let attributes: HashMap<String, (String, String)> = publish::attributes(&expected)
        .into_iter()
        .map(|(name, kind, value)| (name.to_owned(), (kind.to_owned(), value.into_owned())))
        .collect();
    assert_eq!(delivery.attributes(), attributes);
    assert_eq!(sns_size(&expected), sns_size(&message));

    // The smallest refused: 413/4131 naming one byte over, nothing published, no record.
    let answer = invoke(app, &Call::chat(smallest_refused).http_api()).await;
    assert_too_large(&answer, limit + 1);
    world.assert_nothing_published().await;
    assert!(logs.events("publish_failed").is_empty(), "{}", logs.text());
    let rejected = logs.events("callback");
    assert_eq!(rejected.last().unwrap()["outcome"], "rejected");
    assert_eq!(rejected.last().unwrap()["reason"], "message_too_large");
    assert!(
        !logs.text().contains(r#""envelope""#),
        "no line keeps a refused exception"
    );
}

#[tokio::test]
async fn the_record_bound_flips_from_200_to_413_at_one_byte_and_the_largest_is_delivered_whole() {
    boundary("size-record", Bound::Record).await;
}

#[tokio::test]
async fn the_sns_bound_flips_from_200_to_413_at_one_byte_and_the_largest_is_delivered_whole() {
    boundary("size-sns", Bound::Sns).await;
}

/// moto holds SNS's limit on the message itself: 262,144 bytes are published, one more is
/// refused with InvalidParameter.
#[tokio::test]
async fn moto_refuses_an_sns_message_over_262144_bytes() {
    let world = World::standard("size-moto").await;
    let config = support::world::loader(&world.endpoint)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .load()
        .await;
    let sns = aws_sdk_sns::Client::new(&config);
    let topic = &world.topic(Category::InvalidGroup).topic_arn;

    let at_limit = "m".repeat(SNS_MESSAGE_LIMIT);
    sns.publish()
        .topic_arn(topic)
        .message(&at_limit)
        .send()
        .await
        .expect("262,144 bytes are published");
    let delivered = world.only_delivery(Category::InvalidGroup).await;
    assert_eq!(delivered.notification["Message"], at_limit.as_str());

    let error = sns
        .publish()
        .topic_arn(topic)
        .message(format!("{at_limit}m"))
        .send()
        .await
        .expect_err("262,145 bytes are refused");
    let text = format!("{}", aws_sdk_sns::error::DisplayErrorContext(&error));
    assert!(
        text.contains("InvalidParameter") && text.contains("Message too long"),
        "{text}"
    );
    world.assert_nothing_published().await;
}

/// A body of `len` bytes: an exception padded with a `Pad` field.
fn body_of(len: usize) -> String {
    let base = body(Bound::Record, 0, 0);
    body(Bound::Record, len - base.len(), 0)
}

#[tokio::test]
async fn a_body_of_65536_bytes_is_accepted_by_default_and_one_more_byte_is_413_4130() {
    let world = World::standard("size-body").await;
    let env = world.env();
    assert!(!env.contains_key("MAX_BODY_BYTES"), "the default limit");
    let app = support::function(&env, &world.endpoint).await;
    assert_eq!(app.config.max_body_bytes, 65_536);
    let (logs, _guard) = Logs::capture();

    let at_limit = body_of(65_536);
    assert_eq!(at_limit.len(), 65_536);
    invoke(app, &Call::chat(at_limit.clone()).http_api())
        .await
        .assert_acknowledged();
    let delivery = world.only_delivery(Category::FrequencyLimit).await;
    assert_eq!(
        delivery.envelope()["callback"],
        serde_json::from_str::<Value>(&at_limit).unwrap()
    );

    let over = body_of(65_537);
    assert_eq!(over.len(), 65_537);
    let answer = invoke(app, &Call::chat(over).http_api()).await;
    answer.assert_fail(413);
    assert_eq!(answer.json()["ErrorCode"], 4130, "{}", answer.body);
    world.assert_nothing_published().await;
    assert!(logs.events("publish_failed").is_empty());
}
