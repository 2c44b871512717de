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

/// One SNS publish, topic aside: the envelope and the typed fields the message attributes,
/// the subject and the FIFO ids are made of. [`crate::publish`] turns these into attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub category: Category,
    pub error_code: i64,
    /// The envelope JSON: the message body.
    pub body: String,
    pub subject: String,
    pub dedup_key: String,
    pub sdk_app_id: String,
    /// The callback's fields, each `None` when absent or empty.
    pub group_id: Option<String>,
    pub group_type: Option<String>,
    pub from_account: Option<String>,
    pub operator_account: Option<String>,
    pub opt_platform: Option<String>,
}

impl Message {
    /// The message of an exception fresh from Chat: a new envelope around the body received.
    pub fn new(exception: &Exception<'_>) -> Message {
        let cb = exception.callback;
        let dedup_key = dedup_key(
            exception.sdk_app_id,
            cb.group_id.as_deref(),
            cb.from_account.as_deref(),
            cb.random,
            cb.event_time,
            exception.error_code,
        );
        let opt_platform = exception.opt_platform.filter(|v| !v.is_empty());
        let head = Envelope {
            category: exception.category,
            error_code: exception.error_code,
            sdk_app_id: exception.sdk_app_id,
            client_ip: exception.client_ip.filter(|v| !v.is_empty()),
            opt_platform,
            received_at: Rfc3339Millis(exception.received_at),
            dedup_key: &dedup_key,
        };
        let body = envelope_json(&head, exception.raw_callback);
        Message::derive(
            exception.category,
            exception.error_code,
            exception.sdk_app_id,
            opt_platform,
            cb,
            dedup_key,
            body,
        )
    }

    /// The one derivation of a message from its parts, whether fresh from Chat or read back
    /// from a logged envelope (`body`), so a republished message is the message the function
    /// would have sent.
    pub(crate) fn derive(
        category: Category,
        error_code: i64,
        sdk_app_id: &str,
        opt_platform: Option<&str>,
        callback: &Callback<'_>,
        dedup_key: String,
        body: String,
    ) -> Message {
        let owned = |v: &Option<std::borrow::Cow<'_, str>>| non_empty(v).map(str::to_owned);
        let group_id = non_empty(&callback.group_id);
        Message {
            category,
            error_code,
            subject: subject(category, error_code, group_id),
            body,
            dedup_key,
            sdk_app_id: sdk_app_id.to_owned(),
            group_id: group_id.map(str::to_owned),
            group_type: owned(&callback.group_type),
            from_account: owned(&callback.from_account),
            operator_account: owned(&callback.operator_account),
            opt_platform: opt_platform.filter(|v| !v.is_empty()).map(str::to_owned),
        }
    }

    /// `MessageGroupId` on a FIFO topic.
    pub fn fifo_group_id(&self) -> String {
        fifo_group_id(self.group_id.as_deref())
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
        let m = Message::new(&ex);
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
    fn the_message_carries_the_callbacks_fields_without_empty_ones() {
        let (m, _) = message(BODY, None);
        assert_eq!(m.category, Category::FrequencyLimit);
        assert_eq!(m.error_code, 10023);
        assert_eq!(m.sdk_app_id, "1400000000");
        assert_eq!(m.group_id.as_deref(), Some("@TGS#2J4SZEAEL"));
        assert_eq!(m.group_type.as_deref(), Some("Public"));
        assert_eq!(m.from_account.as_deref(), Some("jared"));
        assert_eq!(m.operator_account, None, "empty in the body");
        assert_eq!(m.opt_platform.as_deref(), Some("RESTAPI"));
        assert_eq!(m.fifo_group_id(), "@TGS#2J4SZEAEL");
        assert_eq!(
            m.subject,
            "frequency_limit: error 10023 in group @TGS#2J4SZEAEL"
        );
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
