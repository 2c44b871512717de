//! What subscribers receive: the JSON envelope, its message attributes, the e-mail subject,
//! the deduplication key and, for FIFO topics, the message group.

use crate::callback::{Callback, non_empty};
use crate::classify::Category;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::time::SystemTime;

/// One exception, as accepted: everything the envelope is made of.
#[derive(Debug, Clone, Copy)]
pub struct Exception<'a> {
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    category: Category,
    error_code: i64,
    sdk_app_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    opt_platform: Option<&'a str>,
    #[serde(serialize_with = "serialize_display")]
    received_at: Rfc3339Millis,
    dedup_key: &'a str,
}

fn serialize_display<S: serde::Serializer>(
    value: &impl std::fmt::Display,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// The SNS data type of a message attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    String,
    Number,
}

impl AttributeType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeType::String => "String",
            AttributeType::Number => "Number",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: &'static str,
    pub data_type: AttributeType,
    pub value: String,
}

/// One SNS publish, topic aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub category: Category,
    /// The envelope JSON.
    pub body: String,
    pub subject: String,
    pub attributes: Vec<Attribute>,
    pub dedup_key: String,
    /// `MessageGroupId` on a FIFO topic.
    pub group_id: String,
}

impl Message {
    /// The value of the message attribute `name`, if the message carries it.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }
}

impl Exception<'_> {
    pub fn to_message(&self) -> Message {
        let cb = self.callback;
        let dedup_key = dedup_key(
            self.sdk_app_id,
            cb.group_id.as_deref(),
            cb.from_account.as_deref(),
            cb.random,
            cb.event_time,
            self.error_code,
        );
        let opt_platform = self.opt_platform.filter(|v| !v.is_empty());
        let envelope = Envelope {
            category: self.category,
            error_code: self.error_code,
            sdk_app_id: self.sdk_app_id,
            client_ip: self.client_ip.filter(|v| !v.is_empty()),
            opt_platform,
            received_at: Rfc3339Millis(self.received_at),
            dedup_key: &dedup_key,
        };
        let body = envelope_json(&envelope, self.raw_callback);
        MessageParts {
            category: self.category,
            error_code: self.error_code,
            sdk_app_id: self.sdk_app_id,
            opt_platform,
            callback: cb,
            dedup_key,
            body,
        }
        .into_message()
    }
}

/// What a publish is derived from, whether fresh from Chat or read back from an envelope
/// (replay): one derivation, so a replayed message is the message the function would have sent.
#[derive(Debug)]
pub struct MessageParts<'a> {
    pub category: Category,
    pub error_code: i64,
    pub sdk_app_id: &'a str,
    pub opt_platform: Option<&'a str>,
    pub callback: &'a Callback<'a>,
    pub dedup_key: String,
    /// The envelope JSON: the message body.
    pub body: String,
}

impl MessageParts<'_> {
    pub fn into_message(self) -> Message {
        let cb = self.callback;
        let group_id = non_empty(&cb.group_id);
        let strings = [
            ("category", Some(self.category.as_str())),
            ("groupId", group_id),
            ("groupType", non_empty(&cb.group_type)),
            ("fromAccount", non_empty(&cb.from_account)),
            ("operatorAccount", non_empty(&cb.operator_account)),
            ("sdkAppId", Some(self.sdk_app_id)),
            ("optPlatform", self.opt_platform.filter(|v| !v.is_empty())),
            ("dedupKey", Some(self.dedup_key.as_str())),
        ];
        let mut attributes = Vec::with_capacity(strings.len() + 1);
        attributes.extend(strings.into_iter().filter_map(|(name, value)| {
            value.filter(|v| sns_accepts(v)).map(|v| Attribute {
                name,
                data_type: AttributeType::String,
                value: v.to_owned(),
            })
        }));
        attributes.push(Attribute {
            name: "errorCode",
            data_type: AttributeType::Number,
            value: self.error_code.to_string(),
        });

        Message {
            category: self.category,
            subject: subject(self.category, self.error_code, group_id),
            group_id: fifo_group_id(group_id),
            body: self.body,
            attributes,
            dedup_key: self.dedup_key,
        }
    }
}

/// The envelope with `callback` last, spliced in as received: the body is already valid JSON,
/// and copying it saves a second parse on the hot path.
fn envelope_json(head: &Envelope<'_>, raw_callback: &str) -> String {
    // Sized once: the head's fields are a few hundred bytes at most.
    let mut json = Vec::with_capacity(raw_callback.len() + 320);
    serde_json::to_writer(&mut json, head).expect("the envelope is always serializable");
    json.pop(); // the head's closing brace
    json.extend_from_slice(b",\"callback\":");
    json.extend_from_slice(raw_callback.as_bytes());
    json.push(b'}');
    String::from_utf8(json).expect("JSON text and a &str are UTF-8")
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
    // Written straight into the hash: no buffer, no allocation.
    let mut hasher = HashWriter(Sha256::new());
    let decimal = |n: Option<i64>| DecimalOrEmpty(n);
    let _ = write!(
        hasher,
        "{sdk_app_id}|{}|{}|{}|{}|{error_code}",
        group_id.unwrap_or(""),
        from_account.unwrap_or(""),
        decimal(random),
        decimal(event_time),
    );
    hex::encode(hasher.0.finalize())
}

struct HashWriter(Sha256);

impl std::fmt::Write for HashWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

/// A number in decimal, or nothing when absent.
struct DecimalOrEmpty(Option<i64>);

impl std::fmt::Display for DecimalOrEmpty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => Ok(()),
        }
    }
}

/// The subject e-mail subscribers see. SNS takes only printable ASCII and fewer than 100
/// characters, so anything else in a group id becomes `?` and the end is cut.
pub fn subject(category: Category, error_code: i64, group_id: Option<&str>) -> String {
    const MAX: usize = 99;
    let mut s = String::with_capacity(MAX + 1);
    let _ = write!(s, "{category}: error {error_code}");
    if let Some(group) = group_id {
        s.push_str(" in group ");
        s.extend(
            group
                .chars()
                .map(|c| if (' '..='~').contains(&c) { c } else { '?' }),
        );
    }
    s.truncate(MAX);
    s
}

/// `MessageGroupId` for FIFO topics: the group id, `-` when there is none. A group id that
/// SNS would refuse as a group (over 128 characters, or other than printable ASCII) is replaced
/// by its SHA-256, so the publish still succeeds and one group still keeps its order.
pub fn fifo_group_id(group_id: Option<&str>) -> String {
    match group_id {
        None => "-".to_owned(),
        Some(g) if g.len() <= 128 && g.bytes().all(|b| b.is_ascii_graphic()) => g.to_owned(),
        Some(g) => hex::encode(Sha256::digest(g.as_bytes())),
    }
}

/// Whether SNS takes this as a message attribute value: the XML 1.0 character set.
fn sns_accepts(value: &str) -> bool {
    value.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
    })
}

/// A time as RFC 3339 in UTC with milliseconds (`2026-11-25T20:00:00.123Z`), written without
/// an intermediate string.
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339Millis(pub SystemTime);

impl std::fmt::Display for Rfc3339Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = time::OffsetDateTime::from(self.0);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callback::parse;
    use std::time::{Duration, UNIX_EPOCH};

    const BODY: &str = r#"{"CallbackCommand":"Group.CallbackSendMsgException","GroupId":"@TGS#2J4SZEAEL","Type":"Public","From_Account":"jared","Operator_Account":"","Random":"123456789","ErrorCode":10023,"EventTime":1670574414123,"Extra":[1,2]}"#;

    fn message(body: &str, client_ip: Option<&str>) -> (Message, serde_json::Value) {
        let parsed = parse(body.as_bytes()).unwrap();
        let ex = Exception {
            category: Category::FrequencyLimit,
            error_code: parsed.error_code,
            sdk_app_id: "1400000000",
            client_ip,
            opt_platform: Some("RESTAPI"),
            received_at: UNIX_EPOCH + Duration::from_millis(1_795_636_800_123),
            callback: &parsed.callback,
            raw_callback: parsed.raw,
        };
        let m = ex.to_message();
        let v = serde_json::from_str(&m.body).unwrap();
        (m, v)
    }

    #[test]
    fn envelope_has_the_documented_fields() {
        let (m, v) = message(BODY, Some("10.0.0.1"));
        assert_eq!(v["category"], "frequency_limit");
        assert_eq!(v["errorCode"], 10023);
        assert_eq!(v["sdkAppId"], "1400000000");
        assert_eq!(v["clientIp"], "10.0.0.1");
        assert_eq!(v["optPlatform"], "RESTAPI");
        assert_eq!(v["receivedAt"], "2026-11-25T20:00:00.123Z");
        assert_eq!(v["dedupKey"], m.dedup_key.as_str());
        assert_eq!(
            v["callback"],
            serde_json::from_str::<serde_json::Value>(BODY).unwrap()
        );
        assert!(
            m.body.ends_with(&format!("\"callback\":{BODY}}}")),
            "callback is embedded verbatim"
        );
    }

    #[test]
    fn absent_client_ip_is_left_out() {
        let (_, v) = message(BODY, None);
        assert!(v.get("clientIp").is_none());
        let (_, v) = message(BODY, Some(""));
        assert!(v.get("clientIp").is_none());
    }

    #[test]
    fn dedup_key_hashes_the_documented_fields_whatever_their_json_type() {
        let expected = hex::encode(Sha256::digest(
            b"1400000000|@TGS#2J4SZEAEL|jared|123456789|1670574414123|10023",
        ));
        let (m, _) = message(BODY, None);
        assert_eq!(m.dedup_key, expected);
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
    fn attributes_skip_empty_values() {
        let (m, _) = message(BODY, None);
        let get = |n: &str| {
            m.attributes
                .iter()
                .find(|a| a.name == n)
                .map(|a| (a.data_type, a.value.as_str()))
        };
        assert_eq!(
            get("category"),
            Some((AttributeType::String, "frequency_limit"))
        );
        assert_eq!(get("errorCode"), Some((AttributeType::Number, "10023")));
        assert_eq!(
            get("groupId"),
            Some((AttributeType::String, "@TGS#2J4SZEAEL"))
        );
        assert_eq!(get("groupType"), Some((AttributeType::String, "Public")));
        assert_eq!(get("fromAccount"), Some((AttributeType::String, "jared")));
        assert_eq!(get("operatorAccount"), None, "empty in the body");
        assert_eq!(get("sdkAppId"), Some((AttributeType::String, "1400000000")));
        assert_eq!(get("optPlatform"), Some((AttributeType::String, "RESTAPI")));
        assert_eq!(get("dedupKey").map(|(_, v)| v.len()), Some(64));
        assert!(m.attributes.iter().all(|a| !a.value.is_empty()));
    }

    #[test]
    fn attributes_sns_would_refuse_are_left_out() {
        let (m, _) = message(r#"{"ErrorCode":1,"From_Account":"a\u0001b"}"#, None);
        assert!(m.attributes.iter().all(|a| a.name != "fromAccount"));
    }

    #[test]
    fn subject_is_short_printable_ascii() {
        assert_eq!(
            subject(Category::FrequencyLimit, 10023, Some("@TGS#2J4SZEAEL")),
            "frequency_limit: error 10023 in group @TGS#2J4SZEAEL"
        );
        assert_eq!(
            subject(Category::MutedSender, 10017, None),
            "muted_sender: error 10017"
        );
        let long = subject(Category::Unclassified, 1, Some(&"群\n".repeat(200)));
        assert!(long.len() < 100);
        assert!(long.bytes().all(|b| (0x20..=0x7e).contains(&b)));
    }

    #[test]
    fn fifo_group_falls_back_when_sns_would_refuse_the_group_id() {
        assert_eq!(fifo_group_id(Some("@TGS#2J4SZEAEL")), "@TGS#2J4SZEAEL");
        assert_eq!(fifo_group_id(None), "-");
        let odd = fifo_group_id(Some("群 1"));
        assert_eq!(odd.len(), 64);
        assert_eq!(odd, fifo_group_id(Some("群 1")));
    }

    #[test]
    fn received_at_has_milliseconds() {
        assert_eq!(
            Rfc3339Millis(UNIX_EPOCH).to_string(),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
