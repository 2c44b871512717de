//! Is this callback accepted, and where does it go: a pure function of the request, the
//! configuration, the tokens and the clock, so it is tested and fuzzed without any network.

use crate::domain::EXCEPTION_COMMAND;
use crate::domain::auth;
use crate::domain::callback;
use crate::domain::config::{Config, Topic};
use crate::domain::message::{Accepted, Message};
use crate::domain::query::{Param, Query};
use crate::domain::rejection::Rejection;
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
    /// Another callback command switched on in the Chat console, with no upstream configured:
    /// acknowledged, not published.
    Acknowledge { command: String },
    /// Another callback command: sent on to the upstream exactly as received, and Chat gets the
    /// upstream's answer. Its body is not read.
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
/// `tokens` are those a `Sign` may be made with; none: `Sign` is not checked.
pub fn decide<'c>(
    request: &WebhookRequest<'_>,
    config: &'c Config,
    tokens: &[String],
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
    if !tokens.is_empty() {
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        auth::check_sign(query, tokens, config.max_skew_secs, now_secs)?;
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
    if let (Some(q), Some(b)) = (
        query_command,
        callback::non_empty(&parsed.callback.callback_command),
    ) && q != b
    {
        return Err(Rejection::CommandMismatch {
            query: q.to_owned(),
            body: b.to_owned(),
        });
    }
    let category = config.classifier.classify(parsed.error_code);
    let message = Message::new(&Accepted {
        category,
        error_code: parsed.error_code,
        sdk_app_id,
        client_ip: informational(query, "ClientIP"),
        opt_platform: informational(query, "OptPlatform"),
        received_at: now,
        callback: &parsed.callback,
        raw_callback: parsed.raw,
    });
    Ok(Decision::Exception {
        message,
        topic: config.topics.get(category),
        forward: config
            .upstream
            .as_ref()
            .is_some_and(|u| u.forward_exceptions),
    })
}

/// A parameter only carried along: a conflicting one is dropped rather than refused.
fn informational<'a>(query: &Query<'a>, name: &str) -> Option<&'a str> {
    match query.get_non_empty(name) {
        Param::One(v) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::auth::sign;
    use crate::domain::classify::Category;
    use crate::domain::config::test_config;
    use std::time::Duration;

    const NOW: u64 = 1_764_000_000;
    const BODY: &str = r#"{"CallbackCommand":"Group.CallbackSendMsgException","GroupId":"@TGS#1","ErrorCode":10023}"#;
    const TOKEN: &str = "xxxxyyyy";
    const UPSTREAM: (&str, &str) = ("UPSTREAM_CALLBACK_URL", "https://backend.example/im");
    const CHAT: &[(&str, &str)] = &[
        ("SdkAppid", "1400000000"),
        ("CallbackCommand", "Group.CallbackSendMsgException"),
        ("contenttype", "json"),
        ("ClientIP", "10.0.0.1"),
        ("OptPlatform", "RESTAPI"),
    ];

    fn config(overrides: &[(&str, &str)]) -> Config {
        let base = [("MAX_BODY_BYTES", "1024")];
        let env: Vec<_> = base.iter().chain(overrides).copied().collect();
        test_config(&env).unwrap()
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        Exception(Category, Option<String>, bool),
        Acknowledged(String),
        Forwarded(String),
    }
    use Outcome::*;

    fn run(
        c: &Config,
        tokens: &[&str],
        method: &str,
        pairs: &[(&str, &str)],
        body: &str,
    ) -> Result<Outcome, Rejection> {
        let request = WebhookRequest {
            method,
            query: Query::new(pairs.iter().copied()),
            body: body.as_bytes(),
        };
        let tokens: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        decide(&request, c, &tokens, UNIX_EPOCH + Duration::from_secs(NOW)).map(|d| match d {
            Decision::Acknowledge { command } => Acknowledged(command),
            Decision::Forward { command } => Forwarded(command),
            Decision::Exception {
                message,
                topic,
                forward,
            } => Exception(message.category, topic.map(|t| t.arn.clone()), forward),
        })
    }

    /// Chat's query with `Sign` and `RequestTime` for `time`, signed with `token`, and `extra`.
    fn signed(
        token: &str,
        time: u64,
        extra: &[(&'static str, &str)],
    ) -> Vec<(&'static str, String)> {
        let time = time.to_string();
        CHAT.iter()
            .map(|(k, v)| (*k, v.to_string()))
            .chain([
                ("Sign", hex::encode(sign(token, &time))),
                ("RequestTime", time),
            ])
            .chain(extra.iter().map(|(k, v)| (*k, v.to_string())))
            .collect()
    }

    fn pairs<'a>(owned: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        owned.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// docs/contract.md's table of refusals, every row through `decide`: its answer's status
    /// and ErrorCode.
    #[test]
    fn every_refusal_gets_its_status_and_error_code() {
        let c = config(&[]);
        let good = signed(TOKEN, NOW, &[]);
        let with = |name: &'static str, value: &'static str| {
            let mut q: Vec<_> = good
                .clone()
                .into_iter()
                .filter(|(k, _)| *k != name)
                .collect();
            if !value.is_empty() {
                q.push((name, value.to_owned()));
            }
            q
        };
        let plus = |name: &'static str, value: &str| {
            let mut q = good.clone();
            q.push((name, value.to_owned()));
            q
        };
        let skewed = signed(TOKEN, NOW - 61, &[]);
        let other_token = signed("other", NOW, &[]);
        let big = "x".repeat(1025);
        type Row<'a> = (&'a str, Vec<(&'static str, String)>, &'a str, u16, u32);
        let rows: Vec<Row> = vec![
            ("GET", good.clone(), BODY, 405, 4050),
            ("POST", good.clone(), &big, 413, 4130),
            ("POST", with("SdkAppid", ""), BODY, 403, 4030),
            ("POST", with("SdkAppid", "1400000001"), BODY, 403, 4031),
            ("POST", plus("sdkappid", "1400000001"), BODY, 403, 4032),
            ("POST", with("Sign", ""), BODY, 401, 4010),
            ("POST", with("RequestTime", ""), BODY, 401, 4011),
            (
                "POST",
                with("RequestTime", "2026-11-25T20:00:19Z"),
                BODY,
                401,
                4012,
            ),
            ("POST", skewed, BODY, 401, 4013),
            ("POST", other_token, BODY, 401, 4014),
            ("POST", plus("sign", "00"), BODY, 401, 4015),
            // A repetition is refused before emptiness is looked at: an empty copy beside a
            // valid Sign is a conflict, not a missing Sign.
            ("POST", plus("sign", ""), BODY, 401, 4015),
            (
                "POST",
                with("CallbackCommand", ""),
                r#"{"ErrorCode":1}"#,
                400,
                4000,
            ),
            (
                "POST",
                plus("callbackcommand", "Group.CallbackBeforeSendMsg"),
                BODY,
                400,
                4001,
            ),
            (
                "POST",
                good.clone(),
                r#"{"CallbackCommand":"Group.CallbackAfterSendMsg","ErrorCode":1}"#,
                400,
                4002,
            ),
            ("POST", good.clone(), "{\"ErrorCode\": 1 // x\n}", 400, 4003),
            ("POST", good.clone(), "[]", 400, 4003),
            ("POST", good.clone(), r#"{"GroupId":"g"}"#, 400, 4003),
            (
                "POST",
                good.clone(),
                r#"{"ErrorCode":"10023 frequency limit"}"#,
                400,
                4003,
            ),
        ];
        for (method, query, body, status, code) in rows {
            let answer = run(&c, &[TOKEN], method, &pairs(&query), body)
                .expect_err(&format!("{method} {query:?} {body}"))
                .answer();
            assert_eq!(
                (answer.status, answer.error_code),
                (status, code),
                "{query:?} {body}: {}",
                answer.error_info
            );
            assert!(!answer.error_info.is_empty());
        }
        for (rejection, status, code) in [
            (Rejection::PublishFailed, 503, 5030),
            (Rejection::UpstreamFailed, 502, 5020),
            (Rejection::UpstreamTimedOut { timeout_ms: 1500 }, 504, 5040),
        ] {
            let answer = rejection.answer();
            assert_eq!((answer.status, answer.error_code), (status, code));
        }
    }

    #[test]
    fn checks_run_in_the_designed_order() {
        let c = config(&[]);
        let huge = "x".repeat(1025);
        assert_eq!(
            run(&c, &[TOKEN], "GET", &[], &huge),
            Err(Rejection::MethodNotAllowed)
        );
        assert_eq!(
            run(&c, &[TOKEN], "POST", &[], &huge),
            Err(Rejection::BodyTooLarge { limit: 1024 })
        );
        assert_eq!(
            run(&c, &[TOKEN], "POST", &[], "nope"),
            Err(Rejection::AppIdMissing)
        );
        assert_eq!(
            run(&c, &[TOKEN], "POST", CHAT, "nope"),
            Err(Rejection::SignMissing)
        );
        let good = signed(TOKEN, NOW, &[]);
        assert!(matches!(
            run(&c, &[TOKEN], "POST", &pairs(&good), "nope"),
            Err(Rejection::BadBody(_))
        ));
        assert!(run(&c, &[TOKEN], "POST", &pairs(&good), BODY).is_ok());
        assert!(
            run(&c, &[], "POST", CHAT, BODY).is_ok(),
            "no token: no Sign needed"
        );
    }

    #[test]
    fn an_exception_goes_to_its_categorys_topic_or_nowhere() {
        let c = config(&[]);
        assert_eq!(
            run(&c, &[], "POST", CHAT, BODY),
            Ok(Exception(
                Category::FrequencyLimit,
                Some("arn:aws:sns:us-east-1:123456789012:fl".into()),
                false
            ))
        );
        let unclassified = BODY.replace("10023", "12345");
        assert_eq!(
            run(&c, &[], "POST", CHAT, &unclassified),
            Ok(Exception(Category::Unclassified, None, false))
        );
        let padded = format!("{BODY}{}", " ".repeat(1024 - BODY.len()));
        assert!(
            run(&c, &[], "POST", CHAT, &padded).is_ok(),
            "a body of exactly the limit"
        );
    }

    #[test]
    fn during_a_rotation_either_token_signs_and_no_other() {
        let c = config(&[]);
        let both = ["new-token", "old-token"];
        for token in both {
            assert!(
                run(&c, &both, "POST", &pairs(&signed(token, NOW, &[])), BODY).is_ok(),
                "{token}"
            );
        }
        assert_eq!(
            run(
                &c,
                &both,
                "POST",
                &pairs(&signed("neither", NOW, &[])),
                BODY
            ),
            Err(Rejection::SignMismatch)
        );
    }

    #[test]
    fn other_commands_are_acknowledged_or_forwarded_after_the_checks_without_reading_the_body() {
        let before_send = [("CallbackCommand", "Group.CallbackBeforeSendMsg")];
        let query: Vec<_> = signed(TOKEN, NOW, &[])
            .into_iter()
            .filter(|(k, _)| *k != "CallbackCommand")
            .collect();
        let mut query = query;
        query.push(("CallbackCommand", before_send[0].1.into()));
        assert_eq!(
            run(&config(&[]), &[TOKEN], "POST", &pairs(&query), "not json"),
            Ok(Acknowledged("Group.CallbackBeforeSendMsg".into()))
        );
        let gateway = config(&[UPSTREAM]);
        assert_eq!(
            run(
                &gateway,
                &[TOKEN],
                "POST",
                &pairs(&query),
                "not json, not read"
            ),
            Ok(Forwarded("Group.CallbackBeforeSendMsg".into()))
        );
        // A forged call never reaches the upstream.
        assert_eq!(
            run(&gateway, &["guess"], "POST", &pairs(&query), "{}"),
            Err(Rejection::SignMismatch)
        );
    }

    #[test]
    fn without_a_query_command_only_the_bodys_command_is_read() {
        let c = config(&[UPSTREAM]);
        let no_command = [("SdkAppid", "1400000000")];
        let before_send = r#"{"CallbackCommand":"Group.CallbackBeforeSendMsg","MsgBody":"not an array","ErrorCode":"x"}"#;
        assert_eq!(
            run(&c, &[], "POST", &no_command, before_send),
            Ok(Forwarded("Group.CallbackBeforeSendMsg".into()))
        );
        assert!(matches!(
            run(&c, &[], "POST", &no_command, "not json"),
            Err(Rejection::BadBody(_))
        ));
        assert!(matches!(
            run(&c, &[], "POST", &no_command, BODY),
            Ok(Exception(Category::FrequencyLimit, _, false))
        ));
        assert_eq!(
            run(&c, &[], "POST", &no_command, r#"{"ErrorCode":1}"#),
            Err(Rejection::CommandMissing)
        );
    }

    #[test]
    fn exceptions_are_forwarded_only_when_asked() {
        let forwarding = config(&[UPSTREAM, ("FORWARD_EXCEPTIONS", "true")]);
        assert!(matches!(
            run(&forwarding, &[], "POST", CHAT, BODY),
            Ok(Exception(_, _, true))
        ));
        assert!(matches!(
            run(&config(&[UPSTREAM]), &[], "POST", CHAT, BODY),
            Ok(Exception(_, _, false))
        ));
    }
}
