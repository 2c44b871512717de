//! The `Group.CallbackSendMsgException` body, parsed the lenient way real Chat traffic needs.
//!
//! Chat's own document sends `EventTime` as a string while its table says Integer, so every
//! integer field accepts a JSON number or a numeric string. Optional fields may be missing,
//! `null` or empty. Unknown fields are ignored here: the envelope carries the raw body, so
//! nothing the caller sent is dropped.

use crate::domain::bounded;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use std::borrow::Cow;
use std::fmt;

/// The fields of the callback this function reads. Strings borrow from the request body
/// unless they hold escapes.
#[derive(Debug, Default, Deserialize)]
pub struct Callback<'a> {
    #[serde(rename = "CallbackCommand", default, borrow)]
    pub callback_command: Option<Cow<'a, str>>,
    #[serde(rename = "GroupId", default, borrow)]
    pub group_id: Option<Cow<'a, str>>,
    #[serde(rename = "Type", default, borrow)]
    pub group_type: Option<Cow<'a, str>>,
    #[serde(rename = "From_Account", default, borrow)]
    pub from_account: Option<Cow<'a, str>>,
    #[serde(rename = "Operator_Account", default, borrow)]
    pub operator_account: Option<Cow<'a, str>>,
    #[serde(rename = "Random", default, deserialize_with = "lenient_int")]
    pub random: Option<i64>,
    #[serde(rename = "OnlineOnlyFlag", default, deserialize_with = "lenient_int")]
    pub online_only_flag: Option<i64>,
    #[serde(rename = "ErrorCode", default, deserialize_with = "lenient_int")]
    pub error_code: Option<i64>,
    #[serde(rename = "ErrorInfo", default, borrow)]
    pub error_info: Option<Cow<'a, str>>,
    #[serde(rename = "EventTime", default, deserialize_with = "lenient_int")]
    pub event_time: Option<i64>,
    /// Only its shape is checked (an array of message elements); its content travels raw.
    #[serde(rename = "MsgBody", default)]
    pub msg_body: Option<Vec<IgnoredAny>>,
    #[serde(rename = "CloudCustomData", default, borrow)]
    pub cloud_custom_data: Option<Cow<'a, str>>,
}

/// Why a body could not be read as a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    NotUtf8,
    NotJson(String),
    NotObject,
    WrongType { field: String, detail: String },
    MissingErrorCode,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::NotUtf8 => f.write_str("body is not UTF-8 text"),
            BodyError::NotJson(detail) => {
                write!(f, "body is not valid JSON: {}", bounded(detail))
            }
            BodyError::NotObject => f.write_str("body is not a JSON object"),
            // serde's detail quotes the value that was sent.
            BodyError::WrongType { field, detail } => write!(
                f,
                "field {} has the wrong type: {}",
                bounded(field),
                bounded(detail)
            ),
            BodyError::MissingErrorCode => f.write_str("field ErrorCode is missing"),
        }
    }
}

/// A parsed callback together with the body exactly as received (for the envelope).
#[derive(Debug)]
pub struct ParsedBody<'a> {
    /// The body without the JSON whitespace around it: a JSON object, byte for byte as sent.
    pub raw: &'a str,
    pub callback: Callback<'a>,
    /// `ErrorCode`, which the callback must carry.
    pub error_code: i64,
}

/// Parses a request body: valid UTF-8 JSON, an object, fields of the documented types,
/// and an `ErrorCode`.
pub fn parse(body: &[u8]) -> Result<ParsedBody<'_>, BodyError> {
    let raw = object_text(body)?;
    // One pass on the hot path; serde_json checks the whole document, unknown fields and
    // trailing characters included. Only a failure pays for a second pass that names the field.
    let callback: Callback<'_> = serde_json::from_str(raw).map_err(|e| body_error(raw, e))?;
    let error_code = callback.error_code.ok_or(BodyError::MissingErrorCode)?;
    Ok(ParsedBody {
        raw,
        callback,
        error_code,
    })
}

/// The body without the JSON whitespace around it, if it is UTF-8 and starts as an object
/// (a derived struct would also accept a JSON array, field by position).
fn object_text(body: &[u8]) -> Result<&str, BodyError> {
    let text = std::str::from_utf8(body).map_err(|_| BodyError::NotUtf8)?;
    let raw = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    if raw.starts_with('{') {
        return Ok(raw);
    }
    Err(match serde_json::from_str::<IgnoredAny>(text) {
        Ok(_) => BodyError::NotObject,
        Err(e) => BodyError::NotJson(e.to_string()),
    })
}

/// The body's `CallbackCommand` and nothing else of it: for a callback whose query string
/// names no command. The body must still be a JSON object, and the command a string.
pub fn command(body: &[u8]) -> Result<Option<Cow<'_, str>>, BodyError> {
    #[derive(Deserialize)]
    struct CommandOnly<'a> {
        #[serde(rename = "CallbackCommand", default, borrow)]
        callback_command: Option<Cow<'a, str>>,
    }
    let raw = object_text(body)?;
    let only: CommandOnly<'_> = serde_json::from_str(raw).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            BodyError::NotJson(e.to_string())
        } else {
            BodyError::WrongType {
                field: "CallbackCommand".into(),
                detail: e.to_string(),
            }
        }
    })?;
    Ok(only.callback_command.filter(|c| !c.is_empty()))
}

fn body_error(raw: &str, error: serde_json::Error) -> BodyError {
    if error.is_syntax() || error.is_eof() {
        return BodyError::NotJson(error.to_string());
    }
    let mut deserializer = serde_json::Deserializer::from_str(raw);
    match serde_path_to_error::deserialize::<_, Callback<'_>>(&mut deserializer) {
        Err(e) => BodyError::WrongType {
            field: e.path().to_string(),
            detail: e.into_inner().to_string(),
        },
        Ok(_) => BodyError::WrongType {
            field: ".".into(),
            detail: error.to_string(),
        },
    }
}

/// An integer sent as a JSON number or a numeric string; `null` and `""` mean absent.
fn lenient_int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    struct LenientInt;

    impl<'de> Visitor<'de> for LenientInt {
        type Value = Option<i64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer or a string of decimal digits")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let trimmed = v.trim();
            if trimmed.is_empty() {
                return Ok(None);
            }
            // Digits only: `i64::from_str` would also take a sign, and "+10023" is no number
            // Chat writes.
            trimmed
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| trimmed.parse::<i64>().ok())
                .flatten()
                .map(Some)
                .ok_or_else(|| E::invalid_value(de::Unexpected::Str(bounded(v).as_ref()), &self))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    deserializer.deserialize_option(LenientInt)
}

/// A string field's value, with `""` counted as absent.
pub fn non_empty<'s>(value: &'s Option<Cow<'_, str>>) -> Option<&'s str> {
    value.as_deref().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_SAMPLE: &str = r#"{
        "CallbackCommand": "Group.CallbackSendMsgException",
        "GroupId": "@TGS#2J4SZEAEL",
        "Type": "Public",
        "From_Account": "jared",
        "Operator_Account": "admin",
        "Random": 123456789,
        "OnlineOnlyFlag": 1,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "red packet"}}],
        "CloudCustomData": "your cloud custom data",
        "ErrorCode": 10016,
        "ErrorInfo": "Message is rejected by the before-send webhook",
        "EventTime": "1670574414123",
        "SomethingNew": {"kept": true}
    }"#;

    #[test]
    fn parses_the_documented_fields() {
        let parsed = parse(DOC_SAMPLE.as_bytes()).unwrap();
        let cb = &parsed.callback;
        assert_eq!(parsed.error_code, 10016);
        assert_eq!(cb.group_id.as_deref(), Some("@TGS#2J4SZEAEL"));
        assert_eq!(cb.group_type.as_deref(), Some("Public"));
        assert_eq!(cb.from_account.as_deref(), Some("jared"));
        assert_eq!(cb.operator_account.as_deref(), Some("admin"));
        assert_eq!(cb.random, Some(123456789));
        assert_eq!(cb.online_only_flag, Some(1));
        assert_eq!(cb.event_time, Some(1670574414123));
        assert_eq!(cb.msg_body.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            cb.callback_command.as_deref(),
            Some("Group.CallbackSendMsgException")
        );
    }

    #[test]
    fn strings_with_escapes_are_decoded() {
        let p =
            parse(r#"{"ErrorCode":1,"GroupId":"g\"1\u4e2d","From_Account":"\u00e9"}"#.as_bytes())
                .unwrap();
        assert_eq!(p.callback.group_id.as_deref(), Some("g\"1中"));
        assert_eq!(p.callback.from_account.as_deref(), Some("é"));
    }

    #[test]
    fn keeps_the_body_exactly_as_received() {
        let parsed = parse(DOC_SAMPLE.as_bytes()).unwrap();
        assert_eq!(parsed.raw, DOC_SAMPLE.trim());
        assert!(parsed.raw.contains("SomethingNew"));
    }

    #[test]
    fn integers_arrive_as_numbers_or_numeric_strings() {
        let p =
            parse(br#"{"ErrorCode":"10023","Random":" 42 ","EventTime":1,"OnlineOnlyFlag":"0"}"#)
                .unwrap();
        assert_eq!(p.error_code, 10023);
        assert_eq!(p.callback.random, Some(42));
        assert_eq!(p.callback.event_time, Some(1));
        assert_eq!(p.callback.online_only_flag, Some(0));
    }

    #[test]
    fn a_numeric_string_is_digits_only() {
        for body in [
            r#"{"ErrorCode":"+10023"}"#,
            r#"{"ErrorCode":"-10023"}"#,
            r#"{"ErrorCode":10023,"EventTime":"+1"}"#,
            r#"{"ErrorCode":10023,"Random":"1e3"}"#,
            r#"{"ErrorCode":"99999999999999999999"}"#,
        ] {
            assert!(
                matches!(parse(body.as_bytes()), Err(BodyError::WrongType { .. })),
                "{body}"
            );
        }
        assert_eq!(parse(br#"{"ErrorCode":-1}"#).unwrap().error_code, -1);
    }

    #[test]
    fn optional_fields_may_be_missing_null_or_empty() {
        let p =
            parse(br#"{"ErrorCode":10004,"GroupId":null,"Random":"","EventTime":null}"#).unwrap();
        assert_eq!(p.callback.group_id, None);
        assert_eq!(p.callback.random, None);
        assert_eq!(p.callback.event_time, None);
        assert_eq!(p.callback.from_account, None);
    }

    #[test]
    fn refuses_what_is_not_a_callback() {
        assert_eq!(parse(b"\xff\xfe").unwrap_err(), BodyError::NotUtf8);
        assert!(matches!(
            parse(b"{\"ErrorCode\": 1 // x\n}"),
            Err(BodyError::NotJson(_))
        ));
        assert!(matches!(parse(b""), Err(BodyError::NotJson(_))));
        assert_eq!(parse(b"[10023]").unwrap_err(), BodyError::NotObject);
        assert_eq!(parse(b"10023").unwrap_err(), BodyError::NotObject);
        assert_eq!(parse(b"{}").unwrap_err(), BodyError::MissingErrorCode);
        assert_eq!(
            parse(br#"{"ErrorCode":null}"#).unwrap_err(),
            BodyError::MissingErrorCode
        );
    }

    #[test]
    fn wrong_types_name_the_field() {
        for (body, field) in [
            (r#"{"ErrorCode":"abc"}"#, "ErrorCode"),
            (r#"{"ErrorCode":1.5}"#, "ErrorCode"),
            (r#"{"ErrorCode":true}"#, "ErrorCode"),
            (r#"{"ErrorCode":1,"GroupId":12}"#, "GroupId"),
            (r#"{"ErrorCode":1,"MsgBody":{}}"#, "MsgBody"),
            (r#"{"ErrorCode":1,"Random":[1]}"#, "Random"),
            (r#"{"ErrorCode":99999999999999999999}"#, "ErrorCode"),
        ] {
            match parse(body.as_bytes()) {
                Err(BodyError::WrongType { field: f, .. }) => assert_eq!(f, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_command_alone_can_be_read() {
        let before_send =
            br#"{"CallbackCommand":"Group.CallbackBeforeSendMsg","MsgBody":{"not":"an array"}}"#;
        assert_eq!(
            command(before_send).unwrap().as_deref(),
            Some("Group.CallbackBeforeSendMsg")
        );
        assert_eq!(command(br#"{"ErrorCode":1}"#).unwrap(), None);
        assert_eq!(command(br#"{"CallbackCommand":""}"#).unwrap(), None);
        assert_eq!(command(b"[1]").unwrap_err(), BodyError::NotObject);
        assert!(matches!(command(b"{nope"), Err(BodyError::NotJson(_))));
        assert!(matches!(
            command(br#"{"CallbackCommand":7}"#),
            Err(BodyError::WrongType { .. })
        ));
    }

    #[test]
    fn a_repeated_field_is_refused_rather_than_guessed() {
        assert!(matches!(
            parse(br#"{"ErrorCode":10023,"ErrorCode":80001}"#),
            Err(BodyError::WrongType { .. })
        ));
    }
}
