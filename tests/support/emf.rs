//! The Embedded Metric Format rules CloudWatch applies before it extracts a metric, checked on
//! the real lines of the functions.

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

/// Every data line of a function (a JSON object with an `event`) that carries `_aws` is valid
/// EMF; returns the metric names of each, in order.
#[track_caller]
pub fn assert_valid(lines: &[serde_json::Value]) -> Vec<Vec<String>> {
    lines
        .iter()
        .filter(|l| l.get("_aws").is_some())
        .map(|l| validate_emf(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}
