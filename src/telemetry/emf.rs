//! CloudWatch metrics in Embedded Metric Format: the `_aws` metadata rides on a log line that is
//! written anyway, so a metric costs no AWS call and no extra line.

use serde::ser::{Serialize, SerializeMap, Serializer};
use std::time::{SystemTime, UNIX_EPOCH};

pub const NAMESPACE: &str = "ImExceptionWebhook";

/// The metrics of one line: each name with its value, and at most one dimension. A dimension
/// is declared as the sets `[[name], []]`, so that CloudWatch keeps both the metric by that
/// dimension and its total, which one alarm can watch whatever the values are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    pub at: SystemTime,
    pub dimension: Option<(&'static str, String)>,
    pub values: Vec<(&'static str, u64)>,
}

impl Metrics {
    pub fn new(
        at: SystemTime,
        dimension: Option<(&'static str, String)>,
        values: &[(&'static str, u64)],
    ) -> Metrics {
        Metrics {
            at,
            dimension,
            values: values.to_vec(),
        }
    }
}

/// The `Command` dimension: a name shaped like Chat's commands (letters, digits and dots, at
/// most 64 characters), else `other`, so a caller cannot mint custom metrics at will.
pub fn command_dimension(command: &str) -> String {
    let shaped = !command.is_empty()
        && command.len() <= 64
        && command
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.');
    if shaped {
        command.to_owned()
    } else {
        "other".to_owned()
    }
}

impl Serialize for Metrics {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Aws<'a> {
            timestamp: u64,
            cloud_watch_metrics: [Directive<'a>; 1],
        }
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Directive<'a> {
            namespace: &'static str,
            dimensions: &'a [&'a [&'a str]],
            metrics: Vec<Metric>,
        }
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Metric {
            name: &'static str,
            unit: &'static str,
        }
        let by_dimension;
        let dimensions: &[&[&str]] = match &self.dimension {
            Some((name, _)) => {
                by_dimension = [std::slice::from_ref(name), &[]];
                &by_dimension
            }
            None => &[&[]],
        };
        let aws = Aws {
            timestamp: self
                .at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            cloud_watch_metrics: [Directive {
                namespace: NAMESPACE,
                dimensions,
                metrics: self
                    .values
                    .iter()
                    .map(|(name, _)| Metric {
                        name,
                        unit: "Count",
                    })
                    .collect(),
            }],
        };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("_aws", &aws)?;
        if let Some((name, value)) = &self.dimension {
            map.serialize_entry(name, value)?;
        }
        for (name, value) in &self.values {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_metric_by_a_dimension_is_declared_with_its_total() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_636_800_123);
        let metrics = Metrics::new(at, Some(("Reason", "signature".into())), &[("Rejected", 1)]);
        assert_eq!(
            serde_json::to_string(&metrics).unwrap(),
            r#"{"_aws":{"Timestamp":1795636800123,"CloudWatchMetrics":[{"Namespace":"ImExceptionWebhook","Dimensions":[["Reason"],[]],"Metrics":[{"Name":"Rejected","Unit":"Count"}]}]},"Reason":"signature","Rejected":1}"#
        );
        let plain = Metrics::new(at, None, &[("Redriven", 3), ("RedriveFailures", 0)]);
        let v: serde_json::Value = serde_json::to_value(&plain).unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([[]])
        );
        assert_eq!(
            (v["Redriven"].as_u64(), v["RedriveFailures"].as_u64()),
            (Some(3), Some(0))
        );
    }

    #[test]
    fn only_command_shaped_names_become_a_dimension() {
        assert_eq!(
            command_dimension("Group.CallbackBeforeSendMsg"),
            "Group.CallbackBeforeSendMsg"
        );
        for odd in [
            "",
            "a b",
            "C2C.Callback/x",
            "State.StateChange\n",
            &"A".repeat(65),
            "群",
        ] {
            assert_eq!(command_dimension(odd), "other", "{odd:?}");
        }
    }
}
