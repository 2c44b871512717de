//! Is this callback accepted, and where does it go: a pure function of the request, the
//! configuration and the clock, so it is tested and fuzzed without any network.

use crate::EXCEPTION_COMMAND;
use crate::auth;
use crate::callback;
use crate::config::{Config, Topic};
use crate::envelope::{Exception, Message};
use crate::query::{Param, Query};
use crate::rejection::Rejection;
use std::time::{SystemTime, UNIX_EPOCH};

/// The parts of an HTTP request the decision reads.
#[derive(Debug, Clone)]
pub struct WebhookRequest<'a> {
    pub method: &'a str,
    pub query: Query<'a>,
    pub body: &'a [u8],
}

#[derive(Debug)]
pub enum Decision<'c> {
    /// Another callback command switched on in the Chat console: acknowledged, not published.
    OtherCommand(String),
    /// An exception: published to `topic`, or only logged when its category has none.
    Exception {
        message: Message,
        topic: Option<&'c Topic>,
        error_code: i64,
    },
}

/// Runs DESIGN.md's checks in order; the first that fails decides the answer.
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
    if let Some(token) = &config.token {
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        auth::check_sign(query, token, config.max_skew_secs, now_secs)?;
    }
    let query_command = match query.get_non_empty("CallbackCommand") {
        Param::Conflicting => return Err(Rejection::CommandConflicting),
        Param::One(command) if command != EXCEPTION_COMMAND => {
            return Ok(Decision::OtherCommand(command.to_owned()));
        }
        Param::One(command) => Some(command),
        Param::Missing => None,
    };

    let parsed = callback::parse(request.body)?;
    let body_command = callback::non_empty(&parsed.callback.callback_command);
    match (query_command, body_command) {
        (Some(q), Some(b)) if q != b => {
            return Err(Rejection::CommandMismatch {
                query: q.to_owned(),
                body: b.to_owned(),
            });
        }
        (None, Some(b)) if b != EXCEPTION_COMMAND => {
            return Ok(Decision::OtherCommand(b.to_owned()));
        }
        (None, None) => return Err(Rejection::CommandMissing),
        _ => {}
    }

    let category = config.classifier.classify(parsed.error_code);
    let exception = Exception {
        category,
        error_code: parsed.error_code,
        sdk_app_id,
        client_ip: param(query, "ClientIP"),
        opt_platform: param(query, "OptPlatform"),
        received_at: now,
        callback: &parsed.callback,
        raw_callback: parsed.raw,
    };
    Ok(Decision::Exception {
        message: exception.to_message(),
        topic: config.topic(category),
        error_code: parsed.error_code,
    })
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
    use std::time::Duration;

    const NOW: u64 = 1_764_000_000;
    const BODY: &str = r#"{"CallbackCommand":"Group.CallbackSendMsgException","GroupId":"@TGS#1","ErrorCode":10023}"#;

    fn config(token: Option<&str>) -> Config {
        let env = [
            ("IM_SDK_APP_ID", "1400000000"),
            ("IM_CALLBACK_TOKEN", token.unwrap_or("")),
            ("MAX_BODY_BYTES", "512"),
            ("TOPIC_ARN_INVALID_GROUP", "arn:aws:sns:us-east-1:1:ig"),
            ("TOPIC_ARN_FREQUENCY_LIMIT", "arn:aws:sns:us-east-1:1:fl"),
            ("TOPIC_ARN_CONTENT_FILTER", "arn:aws:sns:us-east-1:1:cf"),
            ("TOPIC_ARN_MUTED_SENDER", "arn:aws:sns:us-east-1:1:ms"),
        ];
        Config::from_lookup(|k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    fn run(
        config: &Config,
        method: &str,
        pairs: &[(&str, &str)],
        body: &str,
    ) -> Result<(Option<Category>, Option<String>), Rejection> {
        let request = WebhookRequest {
            method,
            query: Query::new(pairs.iter().copied()),
            body: body.as_bytes(),
        };
        decide(&request, config, UNIX_EPOCH + Duration::from_secs(NOW)).map(|d| match d {
            Decision::OtherCommand(c) => (None, Some(c)),
            Decision::Exception { message, topic, .. } => {
                (Some(message.category), topic.map(|t| t.arn.clone()))
            }
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
            Ok((
                Some(Category::FrequencyLimit),
                Some("arn:aws:sns:us-east-1:1:fl".into())
            ))
        );
        let unclassified = BODY.replace("10023", "12345");
        assert_eq!(
            run(&c, "POST", CHAT, &unclassified),
            Ok((Some(Category::Unclassified), None))
        );
    }

    #[test]
    fn checks_run_in_the_designed_order() {
        let c = config(Some("xxxxyyyy"));
        let huge = "x".repeat(513);
        // Each request fails several checks; the first in DESIGN.md's order decides.
        assert_eq!(run(&c, "GET", &[], &huge), Err(Rejection::MethodNotAllowed));
        assert_eq!(
            run(&c, "POST", &[], &huge),
            Err(Rejection::BodyTooLarge { limit: 512 })
        );
        assert_eq!(run(&c, "POST", &[], "nope"), Err(Rejection::AppIdMissing));
        assert_eq!(run(&c, "POST", CHAT, "nope"), Err(Rejection::SignMissing));
        let time = NOW.to_string();
        let good_sign = hex::encode(sign("xxxxyyyy", &time));
        let signed: Vec<(&str, &str)> = CHAT
            .iter()
            .copied()
            .chain([("Sign", good_sign.as_str()), ("RequestTime", time.as_str())])
            .collect();
        assert!(matches!(
            run(&c, "POST", &signed, "nope"),
            Err(Rejection::BadBody(_))
        ));
        assert!(run(&c, "POST", &signed, BODY).is_ok());
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
            Ok((None, Some("Group.CallbackAfterSendMsg".into())))
        );
    }

    #[test]
    fn the_command_may_come_from_the_body_alone_but_must_agree() {
        let c = config(None);
        let no_command = [("SdkAppid", "1400000000")];
        assert!(matches!(
            run(&c, "POST", &no_command, BODY),
            Ok((Some(_), _))
        ));
        let other = r#"{"CallbackCommand":"Group.CallbackAfterSendMsg","ErrorCode":1}"#;
        assert_eq!(
            run(&c, "POST", &no_command, other),
            Ok((None, Some("Group.CallbackAfterSendMsg".into())))
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
}
