//! The JSON Schemas of docs/schema/: the example beside them for each category conforms and is
//! exactly what the function makes of its callback; the schemas refuse what the contract
//! refuses; and real publishes read back from moto conform (the harness checks every message
//! any test reads back, through `schema::check_delivery`).
//!
//! Run with `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --test schemas`.

mod support;

use im_exception_webhook::domain::classify::Category;
use im_exception_webhook::domain::config::Config;
use im_exception_webhook::domain::decision::{Decision, WebhookRequest, decide};
use im_exception_webhook::domain::publish::QueuedPublish;
use im_exception_webhook::domain::query::Query;
use serde_json::{Value, json};
use support::schema::{self, attributes_schema, envelope_schema, queued_publish_schema};
use support::world::Delivery;
use support::{Call, Function, World};

const EXAMPLES: [(Category, &str); 5] = [
    (
        Category::InvalidGroup,
        include_str!("../docs/schema/examples/invalid_group.json"),
    ),
    (
        Category::FrequencyLimit,
        include_str!("../docs/schema/examples/frequency_limit.json"),
    ),
    (
        Category::ContentFilter,
        include_str!("../docs/schema/examples/content_filter.json"),
    ),
    (
        Category::MutedSender,
        include_str!("../docs/schema/examples/muted_sender.json"),
    ),
    (
        Category::Unclassified,
        include_str!("../docs/schema/examples/unclassified.json"),
    ),
];

/// Every topic configured, `content_filter`'s a FIFO one, so both shapes of publish occur.
fn config() -> Config {
    Config::from_lookup(|name| {
        let topic = |n: &str| Some(format!("arn:aws:sns:us-east-1:123456789012:{n}"));
        match name {
            "IM_SDK_APP_ID" => Some(support::SDK_APP_ID.into()),
            "TOPIC_ARN_INVALID_GROUP" => topic("ig"),
            "TOPIC_ARN_FREQUENCY_LIMIT" => topic("fl"),
            "TOPIC_ARN_CONTENT_FILTER" => topic("cf.fifo"),
            "TOPIC_ARN_MUTED_SENDER" => topic("ms"),
            "TOPIC_ARN_UNCLASSIFIED" => topic("un"),
            _ => None,
        }
    })
    .expect("the test configuration")
}

/// What the function publishes for the example's callback, sent with the example's query
/// parameters and received at its `receivedAt`: the envelope, and the queued publish as JSON.
fn made_from(example: &Value, config: &Config) -> (Value, Value) {
    let param = |name: &'static str, field: &str| example[field].as_str().map(|v| (name, v));
    let query = [
        param("SdkAppid", "sdkAppId"),
        Some(("CallbackCommand", "Group.CallbackSendMsgException")),
        param("ClientIP", "clientIp"),
        param("OptPlatform", "optPlatform"),
    ];
    let body = example["callback"].to_string();
    let request = WebhookRequest {
        method: "POST",
        query: Query::new(query.into_iter().flatten()),
        body: body.as_bytes(),
    };
    let at = humantime::parse_rfc3339(example["receivedAt"].as_str().unwrap()).unwrap();
    match decide(&request, config, &[], at) {
        Ok(Decision::Exception {
            message,
            topic: Some(topic),
            ..
        }) => (
            serde_json::from_str(&message.envelope).unwrap(),
            serde_json::from_str(&message.publish_to(topic).to_json()).unwrap(),
        ),
        other => panic!("not a published exception: {other:?}"),
    }
}

/// A queued publish's attributes as SNS delivers them in a notification.
fn as_delivered(publish: &Value) -> Value {
    let attributes = publish["MessageAttributes"].as_object().unwrap();
    attributes
        .iter()
        .map(|(name, a)| {
            let attribute = json!({"Type": a["DataType"], "Value": a["StringValue"]});
            (name.clone(), attribute)
        })
        .collect()
}

#[test]
fn every_example_conforms_and_is_what_the_function_makes_of_its_callback() {
    let config = config();
    for (category, text) in EXAMPLES {
        let example: Value = serde_json::from_str(text).unwrap();
        schema::check_envelope(&example);
        assert_eq!(example["category"], category.as_str());
        let (envelope, publish) = made_from(&example, &config);
        assert_eq!(envelope, example, "docs/schema/examples/{category}.json");
        schema::check_queued_publish(&publish);
        let delivered = as_delivered(&publish);
        let errors = schema::errors(attributes_schema(), &delivered);
        assert!(errors.is_empty(), "{category}: {errors}");
    }
}

/// `instance` with `change` made to it, refused by `validator`.
#[track_caller]
fn refused(validator: &jsonschema::Validator, instance: &Value, change: impl Fn(&mut Value)) {
    let mut changed = instance.clone();
    change(&mut changed);
    assert!(!validator.is_valid(&changed), "accepted: {changed:#}");
}

#[test]
fn the_schemas_refuse_what_the_contract_refuses() {
    let example: Value = serde_json::from_str(EXAMPLES[1].1).unwrap();
    let envelope = envelope_schema();
    refused(envelope, &example, |e| {
        e.as_object_mut().unwrap().remove("dedupKey");
    });
    refused(envelope, &example, |e| e["category"] = json!("spam"));
    refused(envelope, &example, |e| e["errorCode"] = json!("10023"));
    refused(envelope, &example, |e| e["extra"] = json!(1));
    refused(envelope, &example, |e| {
        e["dedupKey"] = json!("AB".repeat(32))
    });
    refused(envelope, &example, |e| {
        e["receivedAt"] = json!("2025-11-24T16:02:41Z");
    });
    refused(envelope, &example, |e| e["callback"] = json!("{}"));
    refused(envelope, &example, |e| {
        e["callback"].as_object_mut().unwrap().remove("ErrorCode");
    });
    refused(envelope, &example, |e| e["callback"]["GroupId"] = json!(7));
    refused(envelope, &example, |e| {
        e["callback"]["Random"] = json!("+7")
    });
    // The callback is open: Chat adds fields, and they are kept.
    let mut open = example.clone();
    open["callback"]["SomethingNew"] = json!({"kept": [true, null]});
    schema::check_envelope(&open);

    let (_, publish) = made_from(&example, &config());
    let delivered = as_delivered(&publish);
    let attributes = attributes_schema();
    refused(attributes, &delivered, |a| {
        a["priority"] = a["category"].clone()
    });
    refused(attributes, &delivered, |a| {
        a["errorCode"]["Type"] = json!("String")
    });
    refused(attributes, &delivered, |a| {
        a["groupId"]["Value"] = json!("")
    });
    refused(attributes, &delivered, |a| {
        a.as_object_mut().unwrap().remove("category");
    });

    // A queued publish the CLI would not take is refused by the schema and by the crate alike.
    let queued = queued_publish_schema();
    for change in [
        |p: &mut Value| p["QueueUrl"] = json!("https://sqs.example/q"),
        |p: &mut Value| p["MessageAttributes"]["errorCode"]["Type"] = json!("Number"),
    ] {
        refused(queued, &publish, change);
        let mut changed = publish.clone();
        change(&mut changed);
        assert!(QueuedPublish::from_json(&changed.to_string()).is_err());
    }
    refused(queued, &publish, |p| {
        p.as_object_mut().unwrap().remove("Message");
    });
    refused(queued, &publish, |p| p["Subject"] = json!("x".repeat(100)));
    // MessageGroupId and MessageDeduplicationId on FIFO topics only, and always there.
    refused(queued, &publish, |p| p["MessageGroupId"] = json!("g"));
    let fifo = made_from(&serde_json::from_str(EXAMPLES[2].1).unwrap(), &config()).1;
    schema::check_queued_publish(&fifo);
    refused(queued, &fifo, |p| {
        p.as_object_mut().unwrap().remove("MessageDeduplicationId");
    });
}

#[tokio::test]
async fn real_publishes_read_back_from_moto_conform() {
    let world = World::standard("schemas").await;
    let f = Function::new(&world.env(), &world.endpoint).await;
    let before = schema::checked();
    for (category, body) in support::one_of_each("@TGS#schema_") {
        f.invoke(&Call::chat(body.to_string()).http_api())
            .await
            .assert_acknowledged();
        // Read back through the harness, which checks the envelope and the attributes.
        world.only_delivery(category).await;
    }
    assert!(schema::checked() >= before + 5, "{}", schema::checked());

    // And the check can fail: a delivery whose envelope lacks its dedupKey is refused.
    let mut envelope: Value = serde_json::from_str(EXAMPLES[0].1).unwrap();
    envelope.as_object_mut().unwrap().remove("dedupKey");
    let forged = Delivery {
        notification: json!({
            "Message": envelope.to_string(),
            "MessageAttributes": {"category": {"Type": "String", "Value": "invalid_group"}},
        }),
        system_attributes: Default::default(),
    };
    let errors = schema::delivery_errors(&forged);
    assert!(errors.contains("dedupKey"), "{errors}");
}
