//! The in-process path of one callback (query + body → decision, envelope, the queued publish) beside
//! a bare `serde_json` parse of the same body: what the function adds to the least any JSON
//! webhook must do.

use criterion::{Criterion, criterion_group, criterion_main};
use im_exception_webhook::domain::auth::sign;
use im_exception_webhook::domain::config::Config;
use im_exception_webhook::domain::decision::{Decision, WebhookRequest, decide};
use im_exception_webhook::domain::query::Query;
use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

/// A callback as Chat sends it, the size of a typical text message.
const BODY: &str = r#"{"CallbackCommand":"Group.CallbackSendMsgException","GroupId":"@TGS#2J4SZEAEL","Type":"Public","From_Account":"jared","Operator_Account":"admin","Random":123456789,"OnlineOnlyFlag":1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"red packet"}}],"CloudCustomData":"your cloud custom data","ErrorCode":10023,"ErrorInfo":"send message too frequently","EventTime":"1670574414123"}"#;
const TOKEN: &str = "bench-token";
const NOW: u64 = 1_795_636_800;

fn config() -> Config {
    let env = [
        ("IM_SDK_APP_ID", "1400000000"),
        ("IM_CALLBACK_TOKEN", TOKEN),
        (
            "TOPIC_ARN_INVALID_GROUP",
            "arn:aws:sns:us-east-1:123456789012:ig",
        ),
        (
            "TOPIC_ARN_FREQUENCY_LIMIT",
            "arn:aws:sns:us-east-1:123456789012:fl",
        ),
        (
            "TOPIC_ARN_CONTENT_FILTER",
            "arn:aws:sns:us-east-1:123456789012:cf",
        ),
        (
            "TOPIC_ARN_MUTED_SENDER",
            "arn:aws:sns:us-east-1:123456789012:ms",
        ),
    ];
    Config::from_lookup(|k| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap()
}

fn benches(c: &mut Criterion) {
    let config = config();
    let time = NOW.to_string();
    let signature = hex::encode(sign(TOKEN, &time));
    let pairs = [
        ("SdkAppid", "1400000000"),
        ("CallbackCommand", "Group.CallbackSendMsgException"),
        ("contenttype", "json"),
        ("ClientIP", "203.0.113.5"),
        ("OptPlatform", "RESTAPI"),
        ("RequestTime", time.as_str()),
        ("Sign", signature.as_str()),
    ];
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let tokens = [TOKEN.to_owned()];
    let mut group = c.benchmark_group("one callback");

    group.bench_function("bare serde_json parse of the body", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(BODY)).unwrap())
    });

    group.bench_function("webhook: decision + envelope + queued publish", |b| {
        b.iter(|| {
            let request = WebhookRequest {
                method: "POST",
                query: Query::new(black_box(pairs)),
                body: black_box(BODY.as_bytes()),
            };
            match decide(&request, &config, &tokens, black_box(now)).unwrap() {
                Decision::Exception { message, topic, .. } => message.publish_to(topic.unwrap()),
                _ => unreachable!("an exception callback"),
            }
        })
    });
    group.finish();
}

criterion_group!(in_process, benches);
criterion_main!(in_process);
