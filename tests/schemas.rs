//! The JSON Schemas of docs/schema/: the example beside them for each category conforms and is
//! exactly what the function makes of its callback; the schemas refuse what the contract
//! refuses; and the check the harness makes of every message any test reads back from moto
//! (`schema::check_delivery`) refuses what breaks them. No moto here.
//!
//! Run with `cargo test --test schemas`.

mod support;

use im_exception_webhook::domain::classify::Category;
use im_exception_webhook::domain::publish::QueuedPublish;
use im_exception_webhook::domain::query::Query;
use serde_json::{Value, json};
use support::schema::{self, attributes_schema, envelope_schema, queued_publish_schema};
use support::world::Delivery;

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

/// What the function publishes for the example's callback, sent with the example's query
/// parameters and received at its `receivedAt`, with every topic configured (`content_filter`'s
/// a FIFO one, so both shapes of publish occur): the envelope, and the queued publish as JSON.
fn made_from(example: &Value) -> (Value, Value) {
    let param = |name: &'static str, field: &str| example[field].as_str().map(|v| (name, v));
    let query = [
        param("SdkAppid", "sdkAppId"),
        Some(("CallbackCommand", "Group.CallbackSendMsgException")),
        param("ClientIP", "clientIp"),
        param("OptPlatform", "optPlatform"),
    ];
    let config = support::config(&support::made_up_env(&[]));
    let at = humantime::parse_rfc3339(example["receivedAt"].as_str().unwrap()).unwrap();
    let body = example["callback"].to_string();
    let message = support::decided(&config, Query::new(query.into_iter().flatten()), &body, at);
    let publish = message
        .clone()
        .publish_to(config.topics.get(message.category).unwrap());
    let envelope = serde_json::from_str(&message.envelope).unwrap();
    (envelope, serde_json::from_str(&publish.to_json()).unwrap())
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
    for (category, text) in EXAMPLES {
        let example: Value = serde_json::from_str(text).unwrap();
        schema::check_envelope(&example);
        assert_eq!(example["category"], category.as_str());
        let (envelope, publish) = made_from(&example);
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

    let (_, publish) = made_from(&example);
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
    let fifo = made_from(&serde_json::from_str(EXAMPLES[2].1).unwrap()).1;
    schema::check_queued_publish(&fifo);
    refused(queued, &fifo, |p| {
        p.as_object_mut().unwrap().remove("MessageDeduplicationId");
    });
}

/// The harness checks every message any test reads back from moto against the schemas (the
/// categories' in tests/integration.rs), and that check can fail: a delivery whose envelope
/// lacks its dedupKey is refused.
#[test]
fn the_check_of_what_is_read_back_refuses_a_delivery_that_breaks_the_schemas() {
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
