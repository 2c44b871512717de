//! Is this callback accepted, and where does it go: a pure function of the request, the
//! configuration and the clock, so it is tested and fuzzed without any network.

use crate::EXCEPTION_COMMAND;
use crate::auth;
use crate::callback;
use crate::config::{Config, Topic};
use crate::envelope::{Exception, Message};
use crate::publish::{SNS_MESSAGE_LIMIT, sns_size};
use crate::query::{Param, Query};
use crate::record::{RECORD_LIMIT, Record};
use crate::rejection::Rejection;
use std::time::{SystemTime, UNIX_EPOCH};

/// The parts of an HTTP request the decision reads.
#[derive(Debug, Clone)]
pub struct WebhookRequest<'a> {
    pub method: &'a str,
    pub query: Query<'a>,
    pub body: &'a [u8],
}

// One decision per request, moved once into the handler: boxing the message would only add an
// allocation to the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decision<'c> {
    /// Another callback command switched on in the Chat console, with no upstream configured:
    /// acknowledged, not published.
    Acknowledge { command: String },
    /// Another callback command: sent on to the upstream exactly as received, and Chat gets
    /// the upstream's answer. Its body is not read.
    Forward { command: String },
    /// An exception: published to `topic`, or only logged when its category has none; also
    /// forwarded to the upstream when `forward` (`FORWARD_EXCEPTIONS`).
    Exception {
        message: Message,
        topic: Option<&'c Topic>,
        forward: bool,
    },
}

/// Runs the checks in their documented order; the first that fails decides the answer.
pub fn decide<'c>(
    request: &WebhookRequest<'_>,
    config: &'c Config,
    now: SystemTime,
) -> Result<Decision<'c>, Rejection> {
    if request.method != "POST" {
        return Err(Rejection::MethodNotAllowed);
    }
    if request.body.len() > config.max_body_bytes {
        return Err(Rejection::BodyTooLarge {
            limit: config.max_body_bytes,
        });
    }
    let query = &request.query;
    let sdk_app_id = auth::check_app_id(query, &config.app_ids)?;
    if !config.tokens.is_empty() {
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        auth::check_sign(query, &config.tokens, config.max_skew_secs, now_secs)?;
    }

    // The command comes from the query string; only when the query has none is the body's
    // CallbackCommand read, and nothing else of a body that is not an exception's.
    let query_command = match query.get_non_empty("CallbackCommand") {
        Param::Conflicting => return Err(Rejection::CommandConflicting),
        Param::One(command) => Some(command),
        Param::Missing => None,
    };
    let other = match query_command {
        Some(command) => (command != EXCEPTION_COMMAND).then(|| command.to_owned()),
        None => match callback::command(request.body)? {
            Some(command) if command != EXCEPTION_COMMAND => Some(command.into_owned()),
            Some(_) => None,
            None => return Err(Rejection::CommandMissing),
        },
    };
    if let Some(command) = other {
        return Ok(match config.upstream {
            Some(_) => Decision::Forward { command },
            None => Decision::Acknowledge { command },
        });
    }

    let parsed = callback::parse(request.body)?;
    let body_command = callback::non_empty(&parsed.callback.callback_command);
    if let (Some(q), Some(b)) = (query_command, body_command)
        && q != b
    {
        return Err(Rejection::CommandMismatch {
            query: q.to_owned(),
            body: b.to_owned(),
        });
    }

    let category = config.classifier.classify(parsed.error_code);
    let message = Message::new(&Exception {
        category,
        error_code: parsed.error_code,
        sdk_app_id,
        client_ip: param(query, "ClientIP"),
        opt_platform: param(query, "OptPlatform"),
        received_at: now,
        callback: &parsed.callback,
        raw_callback: parsed.raw,
    });
    let topic = config.topic(category);
    check_size(&message, topic, now)?;
    Ok(Decision::Exception {
        message,
        topic,
        forward: config
            .upstream
            .as_ref()
            .is_some_and(|u| u.forward_exceptions),
    })
}

/// Nothing is accepted that could never be delivered: a message over SNS's limit, or one
/// whose `publish_failed` record (or, without a topic, whose log line) CloudWatch Logs would
/// cut, is refused before any publish, so that a 503 always means "try again later".
fn check_size(message: &Message, topic: Option<&Topic>, now: SystemTime) -> Result<(), Rejection> {
    let record = Record::largest(message, topic.map(|t| t.arn.as_str()), now);
    if record > RECORD_LIMIT {
        return Err(Rejection::MessageTooLarge {
            bytes: record,
            limit: RECORD_LIMIT,
        });
    }
    if topic.is_some() {
        let sns = sns_size(message);
        if sns > SNS_MESSAGE_LIMIT {
            return Err(Rejection::MessageTooLarge {
                bytes: sns,
                limit: SNS_MESSAGE_LIMIT,
            });
        }
    }
    Ok(())
}

/// An informational parameter: a conflicting one is dropped rather than refused.
fn param<'a>(query: &Query<'a>, name: &str) -> Option<&'a str> {
    match query.get_non_empty(name) {
        Param::One(v) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::sign;
    use crate::classify::Category;
    use crate::test_support::config_with;
    use std::time::Duration;

    const NOW: u64 = 1_764_000_000;
    const BODY: &str = r#"{"CallbackCommand":"Group.CallbackSendMsgException","GroupId":"@TGS#1","ErrorCode":10023}"#;
    const FL: &str = "arn:aws:sns:us-east-1:123456789012:fl";
    const UPSTREAM: (&str, &str) = ("UPSTREAM_CALLBACK_URL", "https://backend.example/im");

    fn config(token: Option<&str>) -> Config {
        config_with(&[
            ("IM_CALLBACK_TOKEN", token.unwrap_or("")),
            ("MAX_BODY_BYTES", "512"),
        ])
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        Exception(Category, Option<String>, bool),
        Acknowledged(String),
        Forwarded(String),
    }
    use Outcome::*;

    fn run(
        config: &Config,
        method: &str,
        pairs: &[(&str, &str)],
        body: &str,
    ) -> Result<Outcome, Rejection> {
        let request = WebhookRequest {
            method,
            query: Query::new(pairs.iter().copied()),
            body: body.as_bytes(),
        };
        decide(&request, config, UNIX_EPOCH + Duration::from_secs(NOW)).map(|d| match d {
            Decision::Acknowledge { command } => Acknowledged(command),
            Decision::Forward { command } => Forwarded(command),
            Decision::Exception {
                message,
                topic,
                forward,
            } => Exception(message.category, topic.map(|t| t.arn.clone()), forward),
        })
    }

    const CHAT: &[(&str, &str)] = &[
        ("SdkAppid", "1400000000"),
        ("CallbackCommand", "Group.CallbackSendMsgException"),
        ("contenttype", "json"),
        ("ClientIP", "10.0.0.1"),
        ("OptPlatform", "RESTAPI"),
    ];

    #[test]
    fn an_exception_goes_to_its_categorys_topic() {
        let c = config(None);
        assert_eq!(
            run(&c, "POST", CHAT, BODY),
            Ok(Exception(Category::FrequencyLimit, Some(FL.into()), false))
        );
        let unclassified = BODY.replace("10023", "12345");
        assert_eq!(
            run(&c, "POST", CHAT, &unclassified),
            Ok(Exception(Category::Unclassified, None, false))
        );
    }

    fn signed(time: &str, sign_hex: &str) -> Vec<(&'static str, String)> {
        CHAT.iter()
            .map(|(k, v)| (*k, v.to_string()))
            .chain([
                ("Sign", sign_hex.to_owned()),
                ("RequestTime", time.to_owned()),
            ])
            .collect()
    }

    fn pairs<'a>(owned: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        owned.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    #[test]
    fn checks_run_in_the_designed_order() {
        let c = config(Some("xxxxyyyy"));
        let huge = "x".repeat(513);
        // Each request fails several checks; the first in the documented order decides.
        assert_eq!(run(&c, "GET", &[], &huge), Err(Rejection::MethodNotAllowed));
        assert_eq!(
            run(&c, "POST", &[], &huge),
            Err(Rejection::BodyTooLarge { limit: 512 })
        );
        assert_eq!(run(&c, "POST", &[], "nope"), Err(Rejection::AppIdMissing));
        assert_eq!(run(&c, "POST", CHAT, "nope"), Err(Rejection::SignMissing));
        let time = NOW.to_string();
        let good = signed(&time, &hex::encode(sign("xxxxyyyy", &time)));
        assert!(matches!(
            run(&c, "POST", &pairs(&good), "nope"),
            Err(Rejection::BadBody(_))
        ));
        assert!(run(&c, "POST", &pairs(&good), BODY).is_ok());
    }

    #[test]
    fn during_a_rotation_both_tokens_sign_and_no_other() {
        let c = config_with(&[
            ("IM_CALLBACK_TOKEN", "new-token"),
            ("IM_CALLBACK_TOKEN_PREVIOUS", "old-token"),
        ]);
        let time = NOW.to_string();
        for token in ["new-token", "old-token"] {
            let q = signed(&time, &hex::encode(sign(token, &time)));
            assert!(run(&c, "POST", &pairs(&q), BODY).is_ok(), "{token}");
        }
        let q = signed(&time, &hex::encode(sign("neither", &time)));
        assert_eq!(
            run(&c, "POST", &pairs(&q), BODY),
            Err(Rejection::SignMismatch)
        );
    }

    #[test]
    fn body_at_the_limit_is_accepted() {
        let c = config(None);
        let padded = format!("{}{}", BODY, " ".repeat(512 - BODY.len()));
        assert!(run(&c, "POST", CHAT, &padded).is_ok());
        assert_eq!(
            run(&c, "POST", CHAT, &format!("{padded} ")),
            Err(Rejection::BodyTooLarge { limit: 512 })
        );
    }

    #[test]
    fn other_commands_are_acknowledged_without_reading_the_body() {
        let c = config(None);
        let pairs = [
            ("SdkAppid", "1400000000"),
            ("CallbackCommand", "Group.CallbackAfterSendMsg"),
        ];
        assert_eq!(
            run(&c, "POST", &pairs, "not json"),
            Ok(Acknowledged("Group.CallbackAfterSendMsg".into()))
        );
    }

    #[test]
    fn with_an_upstream_other_commands_are_forwarded_after_the_checks() {
        let c = config_with(&[UPSTREAM, ("IM_CALLBACK_TOKEN", "xxxxyyyy")]);
        let time = NOW.to_string();
        let mut q = signed(&time, &hex::encode(sign("xxxxyyyy", &time)));
        q[1].1 = "Group.CallbackBeforeSendMsg".into();
        assert_eq!(
            run(&c, "POST", &pairs(&q), "not json, not read"),
            Ok(Forwarded("Group.CallbackBeforeSendMsg".into()))
        );
        // A forged call never reaches the upstream.
        let mut forged = q.clone();
        forged[5].1 = hex::encode(sign("guess", &time));
        assert_eq!(
            run(&c, "POST", &pairs(&forged), "{}"),
            Err(Rejection::SignMismatch)
        );
        let mut stranger = q.clone();
        stranger[0].1 = "1400000009".into();
        assert_eq!(
            run(&c, "POST", &pairs(&stranger), "{}"),
            Err(Rejection::AppIdNotAccepted)
        );
        assert_eq!(
            run(&c, "PUT", &pairs(&q), "{}"),
            Err(Rejection::MethodNotAllowed)
        );
    }

    #[test]
    fn without_a_query_command_only_the_bodys_command_is_read() {
        let c = config_with(&[UPSTREAM]);
        let no_command = [("SdkAppid", "1400000000")];
        let before_send = r#"{"CallbackCommand":"Group.CallbackBeforeSendMsg","MsgBody":"not an array","ErrorCode":"x"}"#;
        assert_eq!(
            run(&c, "POST", &no_command, before_send),
            Ok(Forwarded("Group.CallbackBeforeSendMsg".into()))
        );
        assert_eq!(
            run(&config(None), "POST", &no_command, before_send),
            Ok(Acknowledged("Group.CallbackBeforeSendMsg".into()))
        );
        assert!(matches!(
            run(&c, "POST", &no_command, "not json"),
            Err(Rejection::BadBody(_))
        ));
        assert!(matches!(
            run(&c, "POST", &no_command, BODY),
            Ok(Exception(Category::FrequencyLimit, _, false))
        ));
    }

    #[test]
    fn exceptions_are_forwarded_only_when_asked() {
        let c = config_with(&[UPSTREAM, ("FORWARD_EXCEPTIONS", "true")]);
        assert_eq!(
            run(&c, "POST", CHAT, BODY),
            Ok(Exception(Category::FrequencyLimit, Some(FL.into()), true))
        );
        let c = config_with(&[UPSTREAM]);
        assert_eq!(
            run(&c, "POST", CHAT, BODY),
            Ok(Exception(Category::FrequencyLimit, Some(FL.into()), false))
        );
    }

    #[test]
    fn the_command_may_come_from_the_body_alone_but_must_agree() {
        let c = config(None);
        let no_command = [("SdkAppid", "1400000000")];
        assert!(matches!(
            run(&c, "POST", &no_command, BODY),
            Ok(Exception(..))
        ));
        let other = r#"{"CallbackCommand":"Group.CallbackAfterSendMsg","ErrorCode":1}"#;
        assert_eq!(
            run(&c, "POST", &no_command, other),
            Ok(Acknowledged("Group.CallbackAfterSendMsg".into()))
        );
        assert_eq!(
            run(&c, "POST", &no_command, r#"{"ErrorCode":1}"#),
            Err(Rejection::CommandMissing)
        );
        assert!(matches!(
            run(&c, "POST", CHAT, other),
            Err(Rejection::CommandMismatch { .. })
        ));
        let conflicting = [
            ("SdkAppid", "1400000000"),
            ("CallbackCommand", "a"),
            ("callbackcommand", "b"),
        ];
        assert_eq!(
            run(&c, "POST", &conflicting, BODY),
            Err(Rejection::CommandConflicting)
        );
    }

    /// The body whose exception makes a `publish_failed` record of exactly `record_bytes`.
    fn body_for_record(c: &Config, record_bytes: usize) -> String {
        let body = |pad: usize| {
            format!(
                r#"{{"CallbackCommand":"Group.CallbackSendMsgException","GroupId":"@TGS#1","ErrorCode":10023,"Pad":"{}"}}"#,
                "p".repeat(pad)
            )
        };
        let base = body(0);
        let request = WebhookRequest {
            method: "POST",
            query: Query::new(CHAT.iter().copied()),
            body: base.as_bytes(),
        };
        let now = UNIX_EPOCH + Duration::from_secs(NOW);
        let Ok(Decision::Exception { message, topic, .. }) = decide(&request, c, now) else {
            panic!("the base body is an exception");
        };
        let size = Record::largest(&message, topic.map(|t| t.arn.as_str()), now);
        body(record_bytes - size)
    }

    #[test]
    fn nothing_is_accepted_that_its_record_could_not_keep() {
        let c = config_with(&[("MAX_BODY_BYTES", "300000")]);
        let largest = body_for_record(&c, RECORD_LIMIT);
        assert!(matches!(run(&c, "POST", CHAT, &largest), Ok(Exception(..))));
        let smallest_refused = body_for_record(&c, RECORD_LIMIT + 1);
        assert_eq!(
            run(&c, "POST", CHAT, &smallest_refused),
            Err(Rejection::MessageTooLarge {
                bytes: RECORD_LIMIT + 1,
                limit: RECORD_LIMIT
            })
        );
    }

    #[test]
    fn nothing_is_accepted_that_sns_would_refuse() {
        // A long sender is one copy in the envelope's callback and one in the attributes, but
        // not in the record outside the envelope: SNS's limit is met before the record's.
        let c = config_with(&[("MAX_BODY_BYTES", "300000")]);
        let body = |from: usize| {
            format!(
                r#"{{"CallbackCommand":"Group.CallbackSendMsgException","From_Account":"{}","ErrorCode":10023}}"#,
                "f".repeat(from)
            )
        };
        let accepted = run(&c, "POST", CHAT, &body(120_000));
        assert!(matches!(accepted, Ok(Exception(..))), "{accepted:?}");
        match run(&c, "POST", CHAT, &body(131_000)) {
            Err(Rejection::MessageTooLarge { bytes, limit }) => {
                assert_eq!(limit, SNS_MESSAGE_LIMIT);
                assert!(bytes > SNS_MESSAGE_LIMIT);
            }
            other => panic!("{other:?}"),
        }
    }
}
