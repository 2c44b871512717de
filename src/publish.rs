//! Publishing to SNS, the function's only I/O, behind a trait so tests can swap it.

use crate::config::Topic;
use crate::envelope::Message;
use aws_config::ConfigLoader;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sns::error::DisplayErrorContext;
use aws_sdk_sns::types::MessageAttributeValue;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use std::fmt;
use std::future::Future;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// The whole publish, retries included, ran past the deadline.
    TimedOut(Duration),
    /// SNS (or the way to it) failed after the SDK's retries.
    Failed(String),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::TimedOut(d) => {
                write!(f, "publish did not finish within {} ms", d.as_millis())
            }
            PublishError::Failed(e) => write!(f, "publish failed: {e}"),
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

/// [`Publisher`] over the AWS SDK, with the whole publish bounded by `deadline`.
#[derive(Debug, Clone)]
pub struct SnsPublisher {
    client: aws_sdk_sns::Client,
    deadline: Duration,
}

impl SnsPublisher {
    pub fn new(client: aws_sdk_sns::Client, deadline: Duration) -> Self {
        SnsPublisher { client, deadline }
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
        for attribute in &message.attributes {
            let value = MessageAttributeValue::builder()
                .data_type(attribute.data_type.as_str())
                .string_value(&attribute.value)
                .build()
                .map_err(|e| PublishError::Failed(e.to_string()))?;
            request = request.message_attributes(attribute.name, value);
        }
        if topic.fifo {
            request = request
                .message_group_id(&message.group_id)
                .message_deduplication_id(&message.dedup_key);
        }
        // The SDK's own timeouts bound each attempt; this bounds the retries as well, and
        // dropping the future on expiry cancels whatever attempt is still in flight.
        match tokio::time::timeout(self.deadline, request.send()).await {
            Err(_) => Err(PublishError::TimedOut(self.deadline)),
            Ok(Err(e)) => Err(PublishError::Failed(DisplayErrorContext(e).to_string())),
            Ok(Ok(output)) => Ok(output.message_id.unwrap_or_default()),
        }
    }
}

/// The SNS client, built once per cold start from `loader` (region, credentials and endpoint
/// come from the standard AWS variables). HTTPS is rustls on ring, which sets up several
/// times faster than the SDK's default aws-lc; the trust store is the system's, or
/// `SSL_CERT_FILE` when set.
pub async fn sns_client(loader: ConfigLoader, deadline: Duration) -> aws_sdk_sns::Client {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    // Two attempts fit in the deadline when the first one stalls.
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(deadline / 3)
        .operation_attempt_timeout(deadline / 2)
        .operation_timeout(deadline)
        .build();
    let sdk_config = loader
        .http_client(http_client)
        .timeout_config(timeouts)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await;
    aws_sdk_sns::Client::new(&sdk_config)
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
            return Err(PublishError::Failed("down".into()));
        }
        let mut sent = self.sent.lock().unwrap();
        sent.push((topic.arn.clone(), message.clone()));
        Ok(format!("m{}", sent.len()))
    }
}
