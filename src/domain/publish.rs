//! The queued publish: one SNS `Publish`, as data. It is what the webhook sends to SNS, keeps in
//! the retry queue when SNS fails, and writes in a `publish_failed` record when the queue fails
//! too; the redrive function and the replay tool send it again unchanged. Its JSON is the
//! input `aws sns publish --cli-input-json` takes, so a person with only the AWS CLI can send
//! it too, and what they send is what the webhook would have sent, byte for byte.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct QueuedPublish {
    pub topic_arn: String,
    /// The envelope, a JSON document, as a string.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub message_attributes: BTreeMap<String, Attribute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_deduplication_id: Option<String>,
}

/// A message attribute for subscription filter policies: `String` or `Number`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Attribute {
    pub data_type: String,
    pub string_value: String,
}

impl QueuedPublish {
    /// Reads a queued publish; anything else (another JSON document, a field the CLI would not
    /// take) is refused with serde's reason.
    pub fn from_json(text: &str) -> Result<QueuedPublish, String> {
        serde_json::from_str(text).map_err(|e| format!("not a queued publish: {e}"))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings and maps always serialize")
    }

    /// The `dedupKey` attribute: the same exception, however often it is sent, has one.
    pub fn dedup_key(&self) -> Option<&str> {
        self.message_attributes
            .get("dedupKey")
            .map(|a| a.string_value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_json_is_the_cli_input_of_sns_publish() {
        let text = r#"{"TopicArn":"arn:aws:sns:us-east-1:1:t.fifo","Message":"{\"a\":1}","Subject":"s","MessageAttributes":{"errorCode":{"DataType":"Number","StringValue":"10023"}},"MessageGroupId":"g","MessageDeduplicationId":"d"}"#;
        let publish = QueuedPublish::from_json(text).unwrap();
        assert_eq!(publish.to_json(), text);
        assert_eq!(publish.message_attributes["errorCode"].data_type, "Number");
        let bare = QueuedPublish::from_json(r#"{"TopicArn":"t","Message":"m"}"#).unwrap();
        assert_eq!(bare.to_json(), r#"{"TopicArn":"t","Message":"m"}"#);
    }

    #[test]
    fn anything_else_is_refused() {
        for text in [
            "",
            "[]",
            r#"{"Message":"m"}"#,
            r#"{"TopicArn":"t","Message":"m","Extra":1}"#,
            r#"{"event":"publish_failed"}"#,
        ] {
            assert!(QueuedPublish::from_json(text).is_err(), "{text}");
        }
    }
}
