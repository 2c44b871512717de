//! The JSON Schemas of docs/schema/, applied to every message the tests read back: what
//! subscribers are promised is what they get.

use super::world::Delivery;
use jsonschema::Validator;
use serde_json::Value;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const ENVELOPE: &str = include_str!("../../docs/schema/envelope.schema.json");
pub const ATTRIBUTES: &str = include_str!("../../docs/schema/attributes.schema.json");
pub const QUEUED_PUBLISH: &str = include_str!("../../docs/schema/queued-publish.schema.json");

/// How many deliveries [`check_delivery`] has passed in this test binary.
static CHECKED: AtomicUsize = AtomicUsize::new(0);

/// A draft 2020-12 validator of `schema` (JSON text), formats asserted (`receivedAt` is a
/// `date-time`).
pub fn validator(schema: &str) -> Validator {
    let schema: Value = serde_json::from_str(schema).expect("a schema is JSON");
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("not a valid draft 2020-12 schema: {e}"))
}

pub fn envelope_schema() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| validator(ENVELOPE))
}

pub fn attributes_schema() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| validator(ATTRIBUTES))
}

pub fn queued_publish_schema() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| validator(QUEUED_PUBLISH))
}

/// Every way `instance` breaks `validator`, one per line; empty when it conforms.
pub fn errors(validator: &Validator, instance: &Value) -> String {
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}\n", e.instance_path()))
        .collect()
}

#[track_caller]
fn assert_valid(validator: &Validator, what: &str, instance: &Value) {
    let errors = errors(validator, instance);
    assert!(
        errors.is_empty(),
        "{what} does not conform to docs/schema/:\n{errors}{}",
        shortened(instance)
    );
}

/// The instance for a failure message: a 256 KiB message would bury the reason.
fn shortened(instance: &Value) -> String {
    let text = instance.to_string();
    match text.char_indices().nth(2000) {
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], text.len()),
        None => text,
    }
}

/// How a delivery breaks the schemas: its envelope envelope.schema.json, the notification's
/// `MessageAttributes` attributes.schema.json; empty when it conforms.
pub fn delivery_errors(delivery: &Delivery) -> String {
    let attributes = delivery.notification.get("MessageAttributes");
    let attributes = attributes.cloned().unwrap_or(Value::Null);
    errors(envelope_schema(), &delivery.envelope()) + &errors(attributes_schema(), &attributes)
}

/// Checks a delivery against the schemas, and counts it.
#[track_caller]
pub fn check_delivery(delivery: &Delivery) {
    let errors = delivery_errors(delivery);
    assert!(
        errors.is_empty(),
        "a delivery does not conform to docs/schema/:\n{errors}{}",
        shortened(&delivery.notification)
    );
    CHECKED.fetch_add(1, Ordering::Relaxed);
}

#[track_caller]
pub fn check_envelope(envelope: &Value) {
    assert_valid(envelope_schema(), "an envelope", envelope);
}

/// Checks a queued publish (a retry-queue message body, or a record's `publish`) against
/// queued-publish.schema.json, and the envelope it carries against envelope.schema.json.
#[track_caller]
pub fn check_queued_publish(publish: &Value) {
    assert_valid(queued_publish_schema(), "a queued publish", publish);
    let message = publish["Message"].as_str().expect("Message is a string");
    check_envelope(&serde_json::from_str(message).expect("the Message is JSON"));
}

/// How many deliveries have been checked so far in this test binary.
pub fn checked() -> usize {
    CHECKED.load(Ordering::Relaxed)
}
