//! A test's own SNS topics, one per category, each with an SQS queue subscribed to read back
//! what subscribers receive (every message read back is checked against docs/schema/), and
//! its retry queue. Names are unique per test so tests run in parallel on one moto.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sns::config::Credentials;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use im_exception_webhook::domain::classify::Category;
use im_exception_webhook::domain::publish::QueuedPublish;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";

/// Every category, with the variable that names its topic.
pub const CATEGORIES: [(Category, &str); 5] = [
    (Category::InvalidGroup, "TOPIC_ARN_INVALID_GROUP"),
    (Category::FrequencyLimit, "TOPIC_ARN_FREQUENCY_LIMIT"),
    (Category::ContentFilter, "TOPIC_ARN_CONTENT_FILTER"),
    (Category::MutedSender, "TOPIC_ARN_MUTED_SENDER"),
    (Category::Unclassified, "TOPIC_ARN_UNCLASSIFIED"),
];

/// Static test credentials; nothing is read from the environment.
pub fn credentials() -> Credentials {
    Credentials::new("test", "test", None, None, "static")
}

/// The production loader, pointed at `endpoint` with static credentials and a fixed region.
pub fn loader(endpoint: &str) -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(credentials())
        .endpoint_url(endpoint)
}

/// SDK configuration for the test's own (set-up and read-back) clients.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    loader(endpoint)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .load()
        .await
}

/// What a subscriber received: the SQS message and the SNS notification in its body.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The SNS notification JSON (non-raw delivery).
    pub notification: Value,
    /// SQS system attributes (`MessageGroupId`, `MessageDeduplicationId` on FIFO queues).
    pub system_attributes: HashMap<String, String>,
}

impl Delivery {
    /// The SNS `Message`, parsed: the envelope.
    pub fn envelope(&self) -> Value {
        let message = self.notification["Message"]
            .as_str()
            .expect("notification has a Message string");
        serde_json::from_str(message).expect("the Message is JSON")
    }

    pub fn subject(&self) -> Option<&str> {
        self.notification["Subject"].as_str()
    }

    /// The FIFO ids SQS reports for the message: group `group`, and the envelope's
    /// `dedupKey` as the deduplication id.
    #[track_caller]
    pub fn assert_fifo_ids(&self, group: &str) {
        let system = &self.system_attributes;
        assert_eq!(
            system.get("MessageGroupId").map(String::as_str),
            Some(group),
            "{self:#?}"
        );
        assert_eq!(
            system.get("MessageDeduplicationId").map(String::as_str),
            self.envelope()["dedupKey"].as_str(),
            "{self:#?}"
        );
    }

    /// What SNS delivered is `publish`, as whoever republishes a queued publish sends it: the
    /// topic, the Message byte for byte, the Subject, the attributes and the FIFO ids.
    #[track_caller]
    pub fn assert_delivers(&self, publish: &QueuedPublish) {
        assert_eq!(self.notification["TopicArn"], publish.topic_arn.as_str());
        let message = &self.notification["Message"];
        assert_eq!(message, publish.message.as_str(), "byte for byte");
        assert_eq!(self.subject(), publish.subject.as_deref());
        let attributes = publish.message_attributes.iter();
        let attributes =
            attributes.map(|(n, a)| (n.clone(), (a.data_type.clone(), a.string_value.clone())));
        assert_eq!(self.attributes(), attributes.collect::<HashMap<_, _>>());
        let system = |name: &str| self.system_attributes.get(name).cloned();
        assert_eq!(system("MessageGroupId"), publish.message_group_id);
        assert_eq!(
            system("MessageDeduplicationId"),
            publish.message_deduplication_id
        );
    }

    /// `MessageAttributes` as name -> (Type, Value).
    pub fn attributes(&self) -> HashMap<String, (String, String)> {
        let Some(map) = self.notification["MessageAttributes"].as_object() else {
            return HashMap::new();
        };
        map.iter()
            .map(|(name, v)| {
                let field = |f: &str| {
                    v[f].as_str()
                        .unwrap_or_else(|| panic!("attribute {name} has no {f}: {v}"))
                        .to_owned()
                };
                (name.clone(), (field("Type"), field("Value")))
            })
            .collect()
    }
}

/// The callbacks the envelopes of `deliveries` carry, in the order received.
pub fn callbacks(deliveries: &[Delivery]) -> Vec<Value> {
    deliveries
        .iter()
        .map(|d| d.envelope()["callback"].clone())
        .collect()
}

pub struct Subscribed {
    pub category: Category,
    pub variable: &'static str,
    pub topic_arn: String,
    pub queue_url: String,
}

/// One test's topics and queues on the moto server.
pub struct World {
    pub endpoint: String,
    pub sqs: aws_sdk_sqs::Client,
    pub topics: Vec<Subscribed>,
}

impl World {
    /// Five standard topics on the shared moto server.
    pub async fn standard(test: &str) -> World {
        World::create(super::moto::url(), test, false).await
    }

    /// Five FIFO topics (and FIFO queues) on the shared moto server.
    pub async fn fifo(test: &str) -> World {
        World::create(super::moto::url(), test, true).await
    }

    async fn create(endpoint: &str, test: &str, fifo: bool) -> World {
        let config = sdk_config(endpoint).await;
        let sns = aws_sdk_sns::Client::new(&config);
        let sqs = aws_sdk_sqs::Client::new(&config);
        let prefix = unique_prefix(test);
        let suffix = if fifo { ".fifo" } else { "" };

        let mut topics = Vec::new();
        for (category, variable) in CATEGORIES {
            let name = format!("{prefix}-{category}{suffix}");
            let mut create_topic = sns.create_topic().name(&name);
            if fifo {
                create_topic = create_topic
                    .attributes("FifoTopic", "true")
                    .attributes("ContentBasedDeduplication", "false");
            }
            let topic_arn = create_topic
                .send()
                .await
                .expect("create topic")
                .topic_arn
                .expect("topic ARN");

            let fifo_queue = fifo.then_some((QueueAttributeName::FifoQueue, "true".to_owned()));
            let queue_url = create_queue(&sqs, &name, fifo_queue).await;
            let queue_arn = queue_arn(&sqs, &queue_url).await;
            sns.subscribe()
                .topic_arn(&topic_arn)
                .protocol("sqs")
                .endpoint(queue_arn)
                .send()
                .await
                .expect("subscribe queue");

            topics.push(Subscribed {
                category,
                variable,
                topic_arn,
                queue_url,
            });
        }
        World {
            endpoint: endpoint.to_owned(),
            sqs,
            topics,
        }
    }

    pub fn topic(&self, category: Category) -> &Subscribed {
        self.topics
            .iter()
            .find(|t| t.category == category)
            .expect("every category has a topic")
    }

    /// The function's configuration: app id 1400000000 and every topic, unclassified included.
    pub fn env(&self) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = self
            .topics
            .iter()
            .map(|t| (t.variable.to_owned(), t.topic_arn.clone()))
            .collect();
        env.insert("IM_SDK_APP_ID".into(), super::SDK_APP_ID.into());
        env
    }

    /// Receives (and deletes) messages from `category`'s queue until `expected` have arrived
    /// or a short deadline passes, then checks once more that nothing else is waiting.
    pub async fn received(&self, category: Category, expected: usize) -> Vec<Delivery> {
        let queue = &self.topic(category).queue_url;
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut deliveries = Vec::new();
        while deliveries.len() < expected && Instant::now() < deadline {
            deliveries.extend(self.receive_once(queue, 1).await);
        }
        // moto delivers to SQS before Publish returns, so anything extra is already there.
        deliveries.extend(self.receive_once(queue, 0).await);
        deliveries
    }

    /// Messages received on every queue, by category, after one short receive each.
    pub async fn received_anywhere(&self) -> Vec<(Category, Delivery)> {
        let mut all = Vec::new();
        for t in &self.topics {
            for d in self.receive_once(&t.queue_url, 0).await {
                all.push((t.category, d));
            }
        }
        all
    }

    /// Asserts that exactly one message reached `category`'s queue and none reached any other.
    pub async fn only_delivery(&self, category: Category) -> Delivery {
        let mut got = self.received(category, 1).await;
        let elsewhere = self.received_anywhere().await;
        assert!(
            elsewhere.is_empty(),
            "expected one delivery to {category} only, also got {elsewhere:#?}"
        );
        assert_eq!(got.len(), 1, "deliveries to {category}: {got:#?}");
        got.pop().unwrap()
    }

    /// Asserts that no queue received anything.
    pub async fn assert_nothing_published(&self) {
        let all = self.received_anywhere().await;
        assert!(all.is_empty(), "expected nothing published, got {all:#?}");
    }

    async fn receive_once(&self, queue_url: &str, wait_secs: i32) -> Vec<Delivery> {
        let output = self
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_secs)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive message");
        let mut deliveries = Vec::new();
        for message in output.messages.unwrap_or_default() {
            // Deleted at once: a FIFO queue holds back the rest of a group until then.
            if let Some(handle) = &message.receipt_handle {
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("delete message");
            }
            let body = message.body.as_deref().expect("message body");
            let delivery = Delivery {
                notification: serde_json::from_str(body)
                    .unwrap_or_else(|e| panic!("SQS body is not JSON ({e}): {body}")),
                system_attributes: message
                    .attributes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v))
                    .collect(),
            };
            super::schema::check_delivery(&delivery);
            deliveries.push(delivery);
        }
        deliveries
    }
}

/// A retry queue on `endpoint` (its own moto server in load runs), with a dead-letter queue
/// after `max_receive_count` receives, as the template makes them.
pub struct RetryQueue {
    pub sqs: aws_sdk_sqs::Client,
    pub url: String,
    pub dead_letter_url: String,
}

/// A message read from a queue, still in it until deleted.
#[derive(Debug, Clone)]
pub struct Queued {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
}

impl RetryQueue {
    pub async fn create(endpoint: &str, test: &str, max_receive_count: u32) -> RetryQueue {
        let sqs = aws_sdk_sqs::Client::new(&sdk_config(endpoint).await);
        let prefix = unique_prefix(test);
        let dead_letter_url = create_queue(&sqs, &format!("{prefix}-dlq"), None).await;
        let dead_letter_arn = queue_arn(&sqs, &dead_letter_url).await;
        let policy = serde_json::json!({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": max_receive_count});
        let redrive = (QueueAttributeName::RedrivePolicy, policy.to_string());
        let url = create_queue(&sqs, &format!("{prefix}-retry"), Some(redrive)).await;
        RetryQueue {
            sqs,
            url,
            dead_letter_url,
        }
    }

    /// Up to 10 messages of `queue_url` now, left in the queue (hidden for `visibility` seconds).
    pub async fn receive(&self, queue_url: &str, visibility: i32) -> Vec<Queued> {
        let output = self
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(visibility)
            .send()
            .await
            .expect("receive message");
        output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| Queued {
                message_id: m.message_id.unwrap_or_default(),
                receipt_handle: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
            })
            .collect()
    }

    /// `n` messages of `queue_url`, received within 10 s, each hidden for `visibility` seconds
    /// once read (0: visible again at once, as after its visibility timeout); fewer fail the test.
    pub async fn receive_n(&self, queue_url: &str, n: usize, visibility: i32) -> Vec<Queued> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            got.extend(self.receive(queue_url, visibility).await);
        }
        assert_eq!(got.len(), n, "messages of {queue_url}: {got:#?}");
        got
    }

    /// Every message of `queue_url`, each deleted as it is read.
    pub async fn drain(&self, queue_url: &str) -> Vec<Queued> {
        let mut all = Vec::new();
        loop {
            let batch = self.receive(queue_url, 30).await;
            if batch.is_empty() {
                return all;
            }
            for message in &batch {
                self.delete(queue_url, message).await;
            }
            all.extend(batch);
        }
    }

    pub async fn delete(&self, queue_url: &str, message: &Queued) {
        self.sqs
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(&message.receipt_handle)
            .send()
            .await
            .expect("delete message");
    }
}

/// The event an SQS event source mapping hands the redrive function for `messages`.
pub fn sqs_event(messages: &[Queued]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            serde_json::json!({
                "messageId": m.message_id, "receiptHandle": m.receipt_handle, "body": m.body,
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                "md5OfBody": "", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:retry", "awsRegion": REGION,
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// A new queue named `name`, with `attribute` if any; its URL.
async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attribute: Option<(QueueAttributeName, String)>,
) -> String {
    let create = sqs.create_queue().queue_name(name);
    let create = match attribute {
        Some((key, value)) => create.attributes(key, value),
        None => create,
    };
    let created = create.send().await.expect("create queue");
    created.queue_url.expect("queue URL")
}

pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("get queue attributes")
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .expect("queue ARN")
}

/// `it-<test>-<pid>-<n>`: unique across tests, runs and parallel binaries, and a valid SNS
/// topic and SQS queue name (letters, digits, hyphens; at most 80 characters with `.fifo`).
fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let test: String = test
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(32)
        .collect();
    format!("it-{test}-{}-{n}", std::process::id())
}
