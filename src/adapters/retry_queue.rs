//! The retry queue: where a publish SNS refused is kept, for the redrive function. SQS, unlike
//! a log line, is a place AWS promises to deliver from.

use crate::adapters::{Publisher, aws};
use crate::domain::publish::QueuedPublish;
use aws_config::SdkConfig;
use aws_sdk_sqs::config::retry::RetryPartition;
use aws_sdk_sqs::error::DisplayErrorContext;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;

/// The queue at `url`. Its SQS client is made the first time a publish fails, so a cold start
/// that never needs it pays nothing for it.
#[derive(Debug)]
pub struct RetryQueue {
    url: String,
    sdk: SdkConfig,
    client: OnceLock<aws_sdk_sqs::Client>,
}

impl RetryQueue {
    pub fn new(url: String, sdk: &SdkConfig) -> RetryQueue {
        RetryQueue {
            url,
            sdk: sdk.clone(),
            client: OnceLock::new(),
        }
    }

    fn client(&self) -> &aws_sdk_sqs::Client {
        self.client.get_or_init(|| {
            let config = aws_sdk_sqs::config::Builder::from(&self.sdk)
                .retry_config(aws::retries(
                    5,
                    Duration::from_millis(10),
                    Duration::from_millis(50),
                ))
                .retry_partition(RetryPartition::custom("retry-queue").build())
                .build();
            aws_sdk_sqs::Client::from_conf(config)
        })
    }
}

/// "Publishing" into the queue: the message body is the queued publish's JSON, and the answer
/// SQS's message id.
impl Publisher for RetryQueue {
    async fn publish(&self, publish: &QueuedPublish, until: Instant) -> Result<String, String> {
        let left = aws::time_left(until)?;
        self.client()
            .send_message()
            .queue_url(&self.url)
            .message_body(publish.to_json())
            .customize()
            .config_override(
                aws_sdk_sqs::config::Builder::default().timeout_config(aws::timeouts(left)),
            )
            .send()
            .await
            .map(|output| output.message_id.unwrap_or_default())
            .map_err(|e| DisplayErrorContext(e).to_string())
    }
}
