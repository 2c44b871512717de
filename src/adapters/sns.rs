//! SNS: sending a queued publish, behind [`Publisher`] so the handlers can be tested without
//! a network.

use crate::adapters::aws;
use crate::domain::publish::QueuedPublish;
use aws_config::SdkConfig;
use aws_sdk_sns::config::retry::RetryPartition;
use aws_sdk_sns::error::DisplayErrorContext;
use aws_sdk_sns::types::MessageAttributeValue;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// Sends one queued publish, retries included, and ends by `until`; the answer is the message
/// id, or why it failed.
pub trait Publisher: Send + Sync {
    fn publish(
        &self,
        publish: &QueuedPublish,
        until: Instant,
    ) -> impl Future<Output = Result<String, String>> + Send;
}

/// The webhook's SNS client: the first retry within 25 ms, waits doubling up to 200 ms, and
/// more attempts than the time Chat leaves can hold (30 attempts' expected waits alone come to
/// about 2.7 s), so that the operation timeout each call sets ends a run of failures. Its retry
/// partition is its own, so the SDK's retry quota counts this client's calls only: that quota (a
/// token bucket) stops retrying after a few calls that failed through all their attempts, so
/// during an outage later calls go to the retry queue at once instead of hammering SNS, and it
/// fills again with each call that succeeds.
pub fn webhook_client(sdk: &SdkConfig) -> aws_sdk_sns::Client {
    client(
        sdk,
        aws::retries(30, Duration::from_millis(25), Duration::from_millis(200)),
    )
}

/// The redrive function's and the replay tool's client: nobody waits on them as Chat does, so
/// fewer, longer-spaced attempts.
pub fn patient_client(sdk: &SdkConfig) -> aws_sdk_sns::Client {
    client(
        sdk,
        aws::retries(5, Duration::from_millis(100), Duration::from_secs(2)),
    )
}

fn client(
    sdk: &SdkConfig,
    retries: aws_sdk_sns::config::retry::RetryConfig,
) -> aws_sdk_sns::Client {
    let config = aws_sdk_sns::config::Builder::from(sdk)
        .retry_config(retries)
        .retry_partition(RetryPartition::custom("sns").build())
        .build();
    aws_sdk_sns::Client::from_conf(config)
}

impl Publisher for aws_sdk_sns::Client {
    async fn publish(&self, publish: &QueuedPublish, until: Instant) -> Result<String, String> {
        let left = aws::time_left(until)?;
        let mut request = self
            .publish()
            .topic_arn(&publish.topic_arn)
            .message(&publish.message)
            .set_subject(publish.subject.clone())
            .set_message_group_id(publish.message_group_id.clone())
            .set_message_deduplication_id(publish.message_deduplication_id.clone());
        for (name, attribute) in &publish.message_attributes {
            let value = MessageAttributeValue::builder()
                .data_type(&attribute.data_type)
                .string_value(&attribute.string_value)
                .build()
                .map_err(|e| e.to_string())?;
            request = request.message_attributes(name, value);
        }
        request
            .customize()
            .config_override(
                aws_sdk_sns::config::Builder::default().timeout_config(aws::timeouts(left)),
            )
            .send()
            .await
            .map(|output| output.message_id.unwrap_or_default())
            .map_err(|e| DisplayErrorContext(e).to_string())
    }
}
