//! CloudWatch metrics as Embedded Metric Format: the `_aws` metadata rides on the callback's
//! own log line, so metrics cost no extra AWS call and no extra line.
//!
//! The metric values are the line's own top-level fields: `Exceptions` with dimension
//! `Category`, `Rejected` with dimension `Reason`, `Forwarded` with dimension `Command`, and
//! `PublishFailures`, `ForwardFailures`, `Redriven` and `RedriveFailures` with none.

use std::time::{SystemTime, UNIX_EPOCH};

pub const NAMESPACE: &str = "ImExceptionWebhook";

/// What a callback line counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// An accepted exception: `Exceptions` by `Category`.
    Exception,
    /// A refused call: `Rejected` by `Reason`.
    Rejected,
    /// An accepted exception that could not be published: `Exceptions` by `Category`, and
    /// `PublishFailures`.
    PublishFailure,
    /// A callback passed on to the upstream: `Forwarded` by `Command`.
    Forwarded,
    /// A forward that got no answer: `ForwardFailures`.
    ForwardFailure,
    /// A batch of the redrive function: `Redriven` and `RedriveFailures`.
    Redrive,
}

/// The `_aws` object for a line that counts `counted` at `at`.
pub fn emf_metadata(counted: Counted, at: SystemTime) -> String {
    const EXCEPTIONS: &str = r#"{"Namespace":"ImExceptionWebhook","Dimensions":[["Category"]],"Metrics":[{"Name":"Exceptions","Unit":"Count"}]}"#;
    const REJECTED: &str = r#"{"Namespace":"ImExceptionWebhook","Dimensions":[["Reason"]],"Metrics":[{"Name":"Rejected","Unit":"Count"}]}"#;
    const PUBLISH_FAILURES: &str = r#"{"Namespace":"ImExceptionWebhook","Dimensions":[[]],"Metrics":[{"Name":"PublishFailures","Unit":"Count"}]}"#;
    const FORWARDED: &str = r#"{"Namespace":"ImExceptionWebhook","Dimensions":[["Command"]],"Metrics":[{"Name":"Forwarded","Unit":"Count"}]}"#;
    const FORWARD_FAILURES: &str = r#"{"Namespace":"ImExceptionWebhook","Dimensions":[[]],"Metrics":[{"Name":"ForwardFailures","Unit":"Count"}]}"#;
    const REDRIVE: &str = r#"{"Namespace":"ImExceptionWebhook","Dimensions":[[]],"Metrics":[{"Name":"Redriven","Unit":"Count"},{"Name":"RedriveFailures","Unit":"Count"}]}"#;
    let directives = match counted {
        Counted::Exception => EXCEPTIONS.to_owned(),
        Counted::Rejected => REJECTED.to_owned(),
        Counted::PublishFailure => format!("{EXCEPTIONS},{PUBLISH_FAILURES}"),
        Counted::Forwarded => FORWARDED.to_owned(),
        Counted::ForwardFailure => FORWARD_FAILURES.to_owned(),
        Counted::Redrive => REDRIVE.to_owned(),
    };
    let millis = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!(r#"{{"Timestamp":{millis},"CloudWatchMetrics":[{directives}]}}"#)
}

/// Checks a log record against the Embedded Metric Format specification: the rules
/// CloudWatch applies before it extracts a metric. Returns the metric names it carries.
pub fn validate_emf(record: &serde_json::Value) -> Result<Vec<String>, String> {
    const UNITS: [&str; 2] = ["Count", "None"];
    let aws = record.get("_aws").ok_or("no _aws object")?;
    aws.get("Timestamp")
        .and_then(serde_json::Value::as_u64)
        .ok_or("_aws.Timestamp is not a whole number of milliseconds")?;
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(serde_json::Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or("_aws.CloudWatchMetrics is not a non-empty array")?;
    let mut names = Vec::new();
    for directive in directives {
        let namespace = directive["Namespace"]
            .as_str()
            .ok_or("Namespace is not a string")?;
        if namespace.is_empty() || namespace.len() > 256 {
            return Err(format!("bad Namespace {namespace:?}"));
        }
        let dimension_sets = directive["Dimensions"]
            .as_array()
            .ok_or("Dimensions is not an array")?;
        for set in dimension_sets {
            let set = set.as_array().ok_or("a dimension set is not an array")?;
            if set.len() > 30 {
                return Err("more than 30 dimensions".into());
            }
            for key in set {
                let key = key.as_str().ok_or("a dimension key is not a string")?;
                match record.get(key).and_then(serde_json::Value::as_str) {
                    Some(value) if !value.is_empty() => {}
                    _ => return Err(format!("dimension {key} has no string value in the record")),
                }
            }
        }
        let metrics = directive["Metrics"]
            .as_array()
            .ok_or("Metrics is not an array")?;
        for metric in metrics {
            let name = metric["Name"].as_str().ok_or("a metric has no Name")?;
            if let Some(unit) = metric.get("Unit") {
                let unit = unit.as_str().ok_or("Unit is not a string")?;
                if !UNITS.contains(&unit) {
                    return Err(format!("unexpected unit {unit}"));
                }
            }
            if !record.get(name).is_some_and(serde_json::Value::is_number) {
                return Err(format!("metric {name} has no numeric value in the record"));
            }
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(counted: Counted, fields: serde_json::Value) -> serde_json::Value {
        let mut record = fields;
        record["_aws"] = serde_json::from_str(&emf_metadata(counted, UNIX_EPOCH)).unwrap();
        record
    }

    #[test]
    fn each_kind_of_line_is_valid_emf_when_it_carries_its_values() {
        let exception = record(
            Counted::Exception,
            json!({"Category": "muted_sender", "Exceptions": 1}),
        );
        assert_eq!(validate_emf(&exception).unwrap(), ["Exceptions"]);
        let rejected = record(
            Counted::Rejected,
            json!({"Reason": "signature", "Rejected": 1}),
        );
        assert_eq!(validate_emf(&rejected).unwrap(), ["Rejected"]);
        let failed = record(
            Counted::PublishFailure,
            json!({"Category": "invalid_group", "Exceptions": 1, "PublishFailures": 1}),
        );
        assert_eq!(
            validate_emf(&failed).unwrap(),
            ["Exceptions", "PublishFailures"]
        );
        let forwarded = record(
            Counted::Forwarded,
            json!({"Command": "Group.CallbackBeforeSendMsg", "Forwarded": 1}),
        );
        assert_eq!(validate_emf(&forwarded).unwrap(), ["Forwarded"]);
        let forward_failed = record(Counted::ForwardFailure, json!({"ForwardFailures": 1}));
        assert_eq!(validate_emf(&forward_failed).unwrap(), ["ForwardFailures"]);
        let redrive = record(
            Counted::Redrive,
            json!({"Redriven": 3, "RedriveFailures": 0}),
        );
        assert_eq!(
            validate_emf(&redrive).unwrap(),
            ["Redriven", "RedriveFailures"]
        );
    }

    #[test]
    fn the_validator_refuses_lines_cloudwatch_would_not_extract() {
        let missing_value = record(Counted::Exception, json!({"Category": "muted_sender"}));
        assert!(validate_emf(&missing_value).is_err());
        let missing_dimension = record(Counted::Rejected, json!({"Rejected": 1}));
        assert!(validate_emf(&missing_dimension).is_err());
        assert!(validate_emf(&json!({"Exceptions": 1})).is_err());
        let mut bad_time = record(
            Counted::Exception,
            json!({"Category": "x", "Exceptions": 1}),
        );
        bad_time["_aws"]["Timestamp"] = json!("now");
        assert!(validate_emf(&bad_time).is_err());
    }

    #[test]
    fn the_timestamp_is_milliseconds() {
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1_795_636_800_123);
        let aws: serde_json::Value =
            serde_json::from_str(&emf_metadata(Counted::Exception, at)).unwrap();
        assert_eq!(aws["Timestamp"], 1_795_636_800_123u64);
        assert_eq!(aws["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
    }
}
