//! Publishing to SNS, the function's only I/O besides forwarding, behind a trait so tests can
//! swap it.

use crate::config::Topic;
use crate::envelope::Message;
use crate::retry::{Attempt, GaveUp, RetryPolicy};
use aws_config::retry::RetryConfig;
use aws_config::{ConfigLoader, SdkConfig};
use aws_sdk_sns::config::SharedHttpClient;
use aws_sdk_sns::config::http::HttpResponse;
use aws_sdk_sns::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sns::types::MessageAttributeValue;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// SNS's limit on a message: the body and every attribute's name, type and value, in bytes.
pub const SNS_MESSAGE_LIMIT: usize = 262_144;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// No attempt succeeded within the deadline.
    TimedOut {
        deadline: Duration,
        attempts: u32,
        last_error: Option<String>,
    },
    /// SNS refused the request itself (a missing topic, a permission): not retried.
    Refused(String),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::TimedOut {
                deadline,
                attempts,
                last_error,
            } => {
                write!(
                    f,
                    "not published within {} ms ({attempts} attempts",
                    deadline.as_millis()
                )?;
                match last_error {
                    Some(e) => write!(f, "; last: {e})"),
                    None => f.write_str("; the last one stalled)"),
                }
            }
            PublishError::Refused(e) => write!(f, "refused by SNS: {e}"),
        }
    }
}

impl std::error::Error for PublishError {}

/// Sends one message to one topic and returns SNS's message id.
pub trait Publisher: Send + Sync {
    fn publish(
        &self,
        topic: &Topic,
        message: &Message,
    ) -> impl Future<Output = Result<String, PublishError>> + Send;
}

/// A message attribute as SNS gets it: name, SNS data type, value.
pub type Attribute<'m> = (&'static str, &'static str, Cow<'m, str>);

/// The message attributes of `message`, for subscription filter policies. An attribute whose
/// value is absent, empty, or one SNS would refuse is left out.
pub fn attributes(message: &Message) -> Vec<Attribute<'_>> {
    let strings = [
        ("category", Some(message.category.as_str())),
        ("groupId", message.group_id.as_deref()),
        ("groupType", message.group_type.as_deref()),
        ("fromAccount", message.from_account.as_deref()),
        ("operatorAccount", message.operator_account.as_deref()),
        ("sdkAppId", Some(message.sdk_app_id.as_str())),
        ("optPlatform", message.opt_platform.as_deref()),
        ("dedupKey", Some(message.dedup_key.as_str())),
    ];
    let mut attributes = Vec::with_capacity(strings.len() + 1);
    attributes.extend(strings.into_iter().filter_map(|(name, value)| {
        value
            .filter(|v| !v.is_empty() && sns_accepts(v))
            .map(|v| (name, "String", Cow::Borrowed(v)))
    }));
    attributes.push(("errorCode", "Number", message.error_code.to_string().into()));
    attributes
}

/// What SNS counts against [`SNS_MESSAGE_LIMIT`] for `message`.
pub fn sns_size(message: &Message) -> usize {
    let attributes: usize = attributes(message)
        .iter()
        .map(|(name, kind, value)| name.len() + kind.len() + value.len())
        .sum();
    message.body.len() + attributes
}

/// Whether SNS takes this as a message attribute value: the XML 1.0 character set.
fn sns_accepts(value: &str) -> bool {
    value.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
    })
}

/// [`Publisher`] over the AWS SDK: the whole publish, retries included, within the policy's
/// deadline (see [`crate::retry`] for the numbers).
#[derive(Debug, Clone)]
pub struct SnsPublisher {
    client: aws_sdk_sns::Client,
    policy: RetryPolicy,
}

impl SnsPublisher {
    pub fn new(client: aws_sdk_sns::Client, deadline: Duration) -> Self {
        SnsPublisher {
            client,
            policy: RetryPolicy::new(deadline),
        }
    }
}

impl Publisher for SnsPublisher {
    async fn publish(&self, topic: &Topic, message: &Message) -> Result<String, PublishError> {
        let mut request = self
            .client
            .publish()
            .topic_arn(&topic.arn)
            .message(&message.body)
            .subject(&message.subject);
        for (name, kind, value) in attributes(message) {
            let value = MessageAttributeValue::builder()
                .data_type(kind)
                .string_value(value.into_owned())
                .build()
                .map_err(|e| PublishError::Refused(e.to_string()))?;
            request = request.message_attributes(name, value);
        }
        if topic.fifo {
            request = request
                .message_group_id(message.fifo_group_id())
                .message_deduplication_id(&message.dedup_key);
        }
        let outcome = self
            .policy
            .run(&message.dedup_key, |_timeout| {
                let attempt = request.clone().send();
                async move {
                    match attempt.await {
                        Ok(output) => Attempt::Done(output.message_id.unwrap_or_default()),
                        Err(e) if retryable(&e) => {
                            Attempt::Retry(DisplayErrorContext(e).to_string())
                        }
                        Err(e) => Attempt::Fail(DisplayErrorContext(e).to_string()),
                    }
                }
            })
            .await;
        outcome.map_err(|gave_up: GaveUp<String>| match gave_up {
            GaveUp {
                refused: true,
                last_error,
                ..
            } => PublishError::Refused(last_error.unwrap_or_default()),
            GaveUp {
                attempts,
                last_error,
                ..
            } => PublishError::TimedOut {
                deadline: self.policy.deadline,
                attempts,
                last_error,
            },
        })
    }
}

/// SNS's error codes for "slow down", whatever the HTTP status they come with.
const THROTTLING_CODES: [&str; 5] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "KMSThrottling",
    "RequestLimitExceeded",
];

/// Whether another attempt may succeed: anything on the way to SNS (a refused, reset or
/// timed-out connection, a pooled connection that died while the environment was frozen, an
/// answer cut short), SNS's own 5xx, and throttling. A refusal of the request itself (4xx)
/// would only be refused again.
fn retryable<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    match error {
        SdkError::ConstructionFailure(_) => false,
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            status >= 500
                || status == 429
                || context
                    .err()
                    .code()
                    .is_some_and(|code| THROTTLING_CODES.contains(&code))
        }
        _ => true,
    }
}

/// The SNS client, built once per cold start from `loader` (region, credentials and endpoint
/// come from the standard AWS variables). HTTPS is rustls on ring, which sets up several
/// times faster than the SDK's default aws-lc; the trust store is the system's, or
/// `SSL_CERT_FILE` when set. The SDK's own retries are off: [`RetryPolicy`] decides, within
/// the deadline Chat gives.
pub async fn sns_client(loader: ConfigLoader) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(&sdk_config(loader).await)
}

/// The configuration [`sns_client`] is made from, for a program that builds other clients on
/// the same credentials and HTTPS client (the replay tool). Its SDK retries are off, as SNS's
/// must be; a client that wants the SDK's retries turns them back on for itself.
pub async fn sdk_config(loader: ConfigLoader) -> SdkConfig {
    loader
        .http_client(https_client())
        .retry_config(RetryConfig::disabled())
        .load()
        .await
}

/// The SDK's HTTP client on rustls + ring: one TLS stack for SNS and the upstream.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Category;

    fn message() -> Message {
        Message {
            category: Category::FrequencyLimit,
            error_code: 10023,
            body: r#"{"category":"frequency_limit"}"#.into(),
            subject: "frequency_limit: error 10023".into(),
            dedup_key: "d".repeat(64),
            sdk_app_id: "1400000000".into(),
            group_id: Some("@TGS#1".into()),
            group_type: Some("Public".into()),
            from_account: Some("a\u{1}b".into()),
            operator_account: None,
            opt_platform: Some("RESTAPI".into()),
        }
    }

    #[test]
    fn attributes_leave_out_what_is_absent_or_refused_by_sns() {
        let m = message();
        let names: Vec<(&str, &str)> = attributes(&m).iter().map(|a| (a.0, a.1)).collect();
        assert_eq!(
            names,
            [
                ("category", "String"),
                ("groupId", "String"),
                ("groupType", "String"),
                ("sdkAppId", "String"),
                ("optPlatform", "String"),
                ("dedupKey", "String"),
                ("errorCode", "Number"),
            ],
            "fromAccount holds a control character, operatorAccount is absent"
        );
        assert_eq!(attributes(&m).last().unwrap().2, "10023");
    }

    #[test]
    fn the_size_counts_the_body_and_every_attribute() {
        let m = message();
        let expected = m.body.len()
            + ("category".len() + 6 + "frequency_limit".len())
            + ("groupId".len() + 6 + "@TGS#1".len())
            + ("groupType".len() + 6 + "Public".len())
            + ("sdkAppId".len() + 6 + "1400000000".len())
            + ("optPlatform".len() + 6 + "RESTAPI".len())
            + ("dedupKey".len() + 6 + 64)
            + ("errorCode".len() + 6 + "10023".len());
        assert_eq!(sns_size(&m), expected);
    }

    fn service_error(
        status: u16,
        code: &str,
    ) -> SdkError<aws_sdk_sns::operation::publish::PublishError, HttpResponse> {
        let raw = HttpResponse::new(
            status.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        );
        let meta = aws_sdk_sns::error::ErrorMetadata::builder()
            .code(code)
            .build();
        SdkError::service_error(
            aws_sdk_sns::operation::publish::PublishError::generic(meta),
            raw,
        )
    }

    #[test]
    fn faults_are_retried_and_refusals_are_not() {
        assert!(retryable(&service_error(500, "InternalError")));
        assert!(retryable(&service_error(503, "ServiceUnavailable")));
        assert!(retryable(&service_error(400, "Throttling")));
        assert!(retryable(&service_error(429, "TooManyRequests")));
        assert!(!retryable(&service_error(400, "InvalidParameter")));
        assert!(!retryable(&service_error(404, "NotFound")));
        assert!(!retryable(&service_error(403, "AuthorizationError")));
        let timeout: SdkError<aws_sdk_sns::operation::publish::PublishError, HttpResponse> =
            SdkError::timeout_error("stalled");
        assert!(retryable(&timeout));
        let io = SdkError::<aws_sdk_sns::operation::publish::PublishError, HttpResponse>::dispatch_failure(
            aws_smithy_runtime_api::client::result::ConnectorError::io("connection reset".into()),
        );
        assert!(retryable(&io));
    }
}

/// A [`Publisher`] for unit tests: records what it is given, or fails every publish.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct RecordingPublisher {
    pub(crate) fail: bool,
    pub(crate) sent: std::sync::Mutex<Vec<(String, Message)>>,
}

#[cfg(test)]
impl RecordingPublisher {
    pub(crate) fn failing() -> Self {
        RecordingPublisher {
            fail: true,
            ..Default::default()
        }
    }
}

#[cfg(test)]
impl Publisher for RecordingPublisher {
    async fn publish(&self, topic: &Topic, message: &Message) -> Result<String, PublishError> {
        if self.fail {
            return Err(PublishError::TimedOut {
                deadline: Duration::from_millis(1500),
                attempts: 3,
                last_error: Some("down".into()),
            });
        }
        let mut sent = self.sent.lock().unwrap();
        sent.push((topic.arn.clone(), message.clone()));
        Ok(format!("m{}", sent.len()))
    }
}
