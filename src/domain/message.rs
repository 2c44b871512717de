//! What subscribers receive: the JSON envelope, its message attributes, the e-mail subject, the
//! deduplication key and, on FIFO topics, the message group.

use crate::domain::callback::{Callback, non_empty};
use crate::domain::classify::Category;
use crate::domain::config::Topic;
use crate::domain::publish::{Attribute, QueuedPublish};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

/// One exception, as accepted: everything its message is made of.
#[derive(Debug, Clone, Copy)]
pub struct Accepted<'a> {
    pub category: Category,
    pub error_code: i64,
    pub sdk_app_id: &'a str,
    pub client_ip: Option<&'a str>,
    pub opt_platform: Option<&'a str>,
    pub received_at: SystemTime,
    pub callback: &'a Callback<'a>,
    /// The callback body as received: a JSON object.
    pub raw_callback: &'a str,
}

/// The publish of one exception, topic aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub category: Category,
    pub error_code: i64,
    pub dedup_key: String,
    pub group_id: Option<String>,
    pub from_account: Option<String>,
    /// The envelope JSON: the message body.
    pub envelope: String,
    pub subject: String,
    pub attributes: BTreeMap<String, Attribute>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeHead<'a> {
    category: Category,
    error_code: i64,
    sdk_app_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    opt_platform: Option<&'a str>,
    received_at: &'a str,
    dedup_key: &'a str,
}

impl Message {
    pub fn new(accepted: &Accepted<'_>) -> Message {
        let cb = accepted.callback;
        let dedup_key = dedup_key(
            accepted.sdk_app_id,
            cb.group_id.as_deref(),
            cb.from_account.as_deref(),
            cb.random,
            cb.event_time,
            accepted.error_code,
        );
        let opt_platform = accepted.opt_platform.filter(|v| !v.is_empty());
        let received_at = humantime::format_rfc3339_millis(accepted.received_at).to_string();
        let head = EnvelopeHead {
            category: accepted.category,
            error_code: accepted.error_code,
            sdk_app_id: accepted.sdk_app_id,
            client_ip: accepted.client_ip.filter(|v| !v.is_empty()),
            opt_platform,
            received_at: &received_at,
            dedup_key: &dedup_key,
        };
        let group_id = non_empty(&cb.group_id);
        let strings = [
            ("category", Some(accepted.category.as_str())),
            ("groupId", group_id),
            ("groupType", non_empty(&cb.group_type)),
            ("fromAccount", non_empty(&cb.from_account)),
            ("operatorAccount", non_empty(&cb.operator_account)),
            ("sdkAppId", Some(accepted.sdk_app_id)),
            ("optPlatform", opt_platform),
            ("dedupKey", Some(dedup_key.as_str())),
        ];
        // SNS refuses an empty attribute, and one holding a character outside its set: such
        // an attribute is left out, the envelope still carries the field.
        let mut attributes: BTreeMap<String, Attribute> = strings
            .into_iter()
            .filter_map(|(name, value)| {
                let value = value.filter(|v| !v.is_empty() && v.chars().all(sns_accepts))?;
                Some((name.to_owned(), attribute("String", value)))
            })
            .collect();
        attributes.insert(
            "errorCode".into(),
            attribute("Number", &accepted.error_code.to_string()),
        );
        Message {
            category: accepted.category,
            error_code: accepted.error_code,
            subject: subject(accepted.category, accepted.error_code, group_id),
            envelope: envelope(&head, accepted.raw_callback),
            dedup_key,
            group_id: group_id.map(str::to_owned),
            from_account: non_empty(&cb.from_account).map(str::to_owned),
            attributes,
        }
    }

    /// The publish of this message to `topic`; a FIFO topic orders by group and drops a
    /// second copy of the same exception by its `dedupKey`. It takes the message: the envelope
    /// (up to twice the body) moves into the publish instead of being copied on the hot path.
    pub fn publish_to(self, topic: &Topic) -> QueuedPublish {
        QueuedPublish {
            topic_arn: topic.arn.clone(),
            message_group_id: topic.fifo.then(|| fifo_group_id(self.group_id.as_deref())),
            message_deduplication_id: topic.fifo.then_some(self.dedup_key),
            message: self.envelope,
            subject: Some(self.subject),
            message_attributes: self.attributes,
        }
    }
}

fn attribute(data_type: &str, value: &str) -> Attribute {
    Attribute {
        data_type: data_type.to_owned(),
        string_value: value.to_owned(),
    }
}

/// The characters SNS and SQS accept in a message: #x9, #xA, #xD, #x20 to #xD7FF, #xE000 to
/// #xFFFD and #x10000 to #x10FFFF.
fn sns_accepts(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The envelope with `callback` last, spliced in as received (the body is already valid JSON,
/// and copying it saves a second parse), except that a character SNS and SQS refuse is written
/// as its JSON escape, in the head (whose `clientIp` and `optPlatform` come from the query
/// string) and in the callback alike. In valid UTF-8 JSON the only such characters left are
/// U+FFFE and U+FFFF, and only inside strings, where the escape means the same.
fn envelope(head: &EnvelopeHead<'_>, raw_callback: &str) -> String {
    let head = serde_json::to_string(head).expect("the envelope head always serializes");
    let mut json = String::with_capacity(head.len() + raw_callback.len() + 14);
    push_escaped(&mut json, &head[..head.len() - 1]); // without the head's closing brace
    json.push_str(",\"callback\":");
    push_escaped(&mut json, raw_callback);
    json.push('}');
    json
}

/// Appends `text` with its U+FFFE and U+FFFF written as JSON escapes.
fn push_escaped(json: &mut String, text: &str) {
    for piece in text.split_inclusive(['\u{FFFE}', '\u{FFFF}']) {
        match piece.strip_suffix(['\u{FFFE}', '\u{FFFF}']) {
            Some(before) => {
                json.push_str(before);
                let c = piece[before.len()..].chars().next().unwrap_or_default();
                let _ = write!(json, "\\u{:04x}", c as u32);
            }
            None => json.push_str(piece),
        }
    }
}

/// SHA-256 of `sdkAppId|GroupId|From_Account|Random|EventTime|ErrorCode`, lowercase hex;
/// numbers in decimal, a missing field as the empty string.
pub fn dedup_key(
    sdk_app_id: &str,
    group_id: Option<&str>,
    from_account: Option<&str>,
    random: Option<i64>,
    event_time: Option<i64>,
    error_code: i64,
) -> String {
    let decimal = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    let preimage = format!(
        "{sdk_app_id}|{}|{}|{}|{}|{error_code}",
        group_id.unwrap_or(""),
        from_account.unwrap_or(""),
        decimal(random),
        decimal(event_time),
    );
    hex::encode(Sha256::digest(preimage.as_bytes()))
}

/// The subject e-mail subscribers see. SNS takes only printable ASCII and fewer than 100
/// characters, so anything else in a group id becomes `?` and the end is cut.
pub fn subject(category: Category, error_code: i64, group_id: Option<&str>) -> String {
    let mut s = format!("{category}: error {error_code}");
    if let Some(group) = group_id {
        s.push_str(" in group ");
        s.extend(
            group
                .chars()
                .map(|c| if (' '..='~').contains(&c) { c } else { '?' }),
        );
    }
    s.truncate(99);
    s
}

/// `MessageGroupId` on a FIFO topic: the group id, `-` when there is none. A group id SNS
/// would refuse as a group (over 128 characters, or not printable ASCII) is replaced by its
/// SHA-256, so the publish still succeeds and one group still keeps its order.
pub fn fifo_group_id(group_id: Option<&str>) -> String {
    match group_id {
        None => "-".to_owned(),
        Some(g) if g.len() <= 128 && g.bytes().all(|b| b.is_ascii_graphic()) => g.to_owned(),
        Some(g) => hex::encode(Sha256::digest(g.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::callback::parse;
    use std::time::{Duration, UNIX_EPOCH};

    const BODY: &str = r#"{"CallbackCommand":"Group.CallbackSendMsgException","GroupId":"@TGS#2J4SZEAEL","Type":"Public","From_Account":"jared","Operator_Account":"","Random":"123456789","ErrorCode":10023,"EventTime":1670574414123,"Extra":[1,2]}"#;

    fn message(body: &str, client_ip: Option<&str>) -> (Message, serde_json::Value) {
        let parsed = parse(body.as_bytes()).unwrap();
        let m = Message::new(&Accepted {
            category: Category::FrequencyLimit,
            error_code: parsed.error_code,
            sdk_app_id: "1400000000",
            client_ip,
            opt_platform: Some("RESTAPI"),
            received_at: UNIX_EPOCH + Duration::from_millis(1_795_636_800_123),
            callback: &parsed.callback,
            raw_callback: parsed.raw,
        });
        let v = serde_json::from_str(&m.envelope).unwrap();
        (m, v)
    }

    #[test]
    fn the_envelope_has_the_documented_fields_and_the_callback_as_sent() {
        let (m, v) = message(BODY, Some("10.0.0.1"));
        assert_eq!(v["category"], "frequency_limit");
        assert_eq!(v["errorCode"], 10023);
        assert_eq!(v["sdkAppId"], "1400000000");
        assert_eq!(v["clientIp"], "10.0.0.1");
        assert_eq!(v["optPlatform"], "RESTAPI");
        assert_eq!(v["receivedAt"], "2026-11-25T20:00:00.123Z");
        assert_eq!(v["dedupKey"], m.dedup_key.as_str());
        assert!(m.envelope.ends_with(&format!("\"callback\":{BODY}}}")));
        let (_, v) = message(BODY, Some(""));
        assert!(v.get("clientIp").is_none());
    }

    #[test]
    fn characters_sns_refuses_are_written_as_json_escapes() {
        let body =
            "{\"ErrorCode\":1,\"GroupId\":\"a\u{FFFE}b\",\"X\":\"\u{FFFF}\u{FFFE}\u{FFFD}\"}";
        let (m, v) = message(body, Some("10.0.0.1\u{FFFF}"));
        assert!(!m.envelope.contains(['\u{FFFE}', '\u{FFFF}']));
        assert_eq!(
            v["clientIp"], "10.0.0.1\u{FFFF}",
            "the head, from the query, too"
        );
        assert!(
            m.envelope.ends_with(
                r#""callback":{"ErrorCode":1,"GroupId":"a\ufffeb","X":"\uffff\ufffe�"}}"#
            )
        );
        assert_eq!(
            v["callback"],
            serde_json::from_str::<serde_json::Value>(body).unwrap()
        );
        assert!(!m.attributes.contains_key("groupId"), "SNS would refuse it");
    }

    #[test]
    fn dedup_key_hashes_the_documented_fields_whatever_their_json_type() {
        let expected = hex::encode(Sha256::digest(
            b"1400000000|@TGS#2J4SZEAEL|jared|123456789|1670574414123|10023",
        ));
        assert_eq!(message(BODY, None).0.dedup_key, expected);
        let as_numbers = BODY
            .replace(r#""123456789""#, "123456789")
            .replace("10023", r#""10023""#);
        assert_eq!(message(&as_numbers, None).0.dedup_key, expected);
        let missing = hex::encode(Sha256::digest(b"1400000000|||||1"));
        assert_eq!(
            message(r#"{"ErrorCode":1,"GroupId":null}"#, None)
                .0
                .dedup_key,
            missing
        );
    }

    #[test]
    fn the_publish_carries_attributes_subject_and_fifo_ids() {
        let (m, _) = message(BODY, None);
        let standard = m.clone().publish_to(&Topic {
            arn: "arn:t".into(),
            fifo: false,
        });
        let names: Vec<&str> = standard
            .message_attributes
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            names,
            [
                "category",
                "dedupKey",
                "errorCode",
                "fromAccount",
                "groupId",
                "groupType",
                "optPlatform",
                "sdkAppId"
            ],
            "operatorAccount is empty in the body"
        );
        assert_eq!(
            standard.message_attributes["errorCode"],
            attribute("Number", "10023")
        );
        assert_eq!(
            standard.subject.as_deref(),
            Some("frequency_limit: error 10023 in group @TGS#2J4SZEAEL")
        );
        assert_eq!(
            (standard.message_group_id, standard.message_deduplication_id),
            (None, None)
        );
        let fifo = m.clone().publish_to(&Topic {
            arn: "arn:t.fifo".into(),
            fifo: true,
        });
        assert_eq!(fifo.message_group_id.as_deref(), Some("@TGS#2J4SZEAEL"));
        assert_eq!(fifo.message_deduplication_id, Some(m.dedup_key.clone()));
        assert_eq!(fifo.message, m.envelope);
    }

    #[test]
    fn subject_and_group_stay_within_what_sns_takes() {
        let long = subject(Category::Unclassified, 1, Some(&"群\n".repeat(200)));
        assert!(long.len() < 100 && long.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        assert_eq!(
            subject(Category::MutedSender, 10017, None),
            "muted_sender: error 10017"
        );
        assert_eq!(fifo_group_id(None), "-");
        assert_eq!(fifo_group_id(Some("群 1")).len(), 64);
    }
}
