//! The `im-exception-replay` binary against moto, reading where an operator finds the records:
//! the function's log group (FilterLogEvents) and the redrive function's dead-letter queue
//! (Lambda on-failure destination records). The records are the function's own: the
//! production handler, with SNS refusing connections, writes them into a captured log. Each
//! replay must deliver exactly what the function would have published.
//!
//! Run with `make test`, or `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --all-features
//! --test replay`.

#[cfg(not(feature = "replay"))]
#[test]
fn the_replay_tests_need_the_replay_feature() {
    panic!(
        "tests/replay.rs runs im-exception-replay, which is built only with the `replay` \
         feature: run `cargo test --all-features` (as `make test` does)"
    );
}

#[cfg(feature = "replay")]
mod support;

#[cfg(feature = "replay")]
mod against_moto {
    use crate::support::fault_proxy::{FaultProxy, Mode};
    use crate::support::replay_bin::{self, ReplayRun};
    use crate::support::world::{self, Delivery};
    use crate::support::{self, Call, Logs, World, callback, invoke};
    use aws_config::SdkConfig;
    use aws_sdk_cloudwatchlogs::types::InputLogEvent;
    use aws_sdk_sqs::types::QueueAttributeName;
    use im_exception_webhook::classify::Category;
    use im_exception_webhook::envelope::Rfc3339Millis;
    use im_exception_webhook::handler::LambdaApp;
    use im_exception_webhook::record_source;
    use serde_json::{Value, json};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, UNIX_EPOCH};

    const MINUTE_MS: i64 = 60_000;
    const HOUR_MS: i64 = 60 * MINUTE_MS;
    const STREAM: &str = "2026/12/01/[$LATEST]0123456789abcdef";

    /// `body` with another `Random`: another exception, same category and group.
    fn another(body: &Value, random: u64) -> Value {
        let mut other = body.clone();
        other["Random"] = json!(random);
        other
    }

    /// `rp-<test>-<pid>-<n>`: a name no other test, run or binary uses, valid for a log group
    /// and an SQS queue.
    fn unique(test: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("rp-{test}-{}-{n}", std::process::id())
    }

    async fn sdk_config() -> SdkConfig {
        world::loader(support::moto::url())
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .load()
            .await
    }

    /// A test's topics and queues, the production function publishing to them through a proxy
    /// that refuses connections, and what it logged for the callbacks sent meanwhile.
    struct Down {
        world: World,
        proxy: FaultProxy,
        app: &'static LambdaApp,
        /// Every line the function logged.
        log: Vec<String>,
    }

    impl Down {
        async fn standard(test: &str, bodies: &[&Value]) -> Down {
            Down::new(World::standard(test).await, bodies).await
        }

        /// One callback per category, as in the function's own fault tests, sent to a
        /// function on standard topics while SNS is down: the callbacks and the function.
        async fn one_of_each(test: &str) -> (Vec<(Category, Value)>, Down) {
            let sent = support::one_of_each("@TGS#");
            let bodies: Vec<&Value> = sent.iter().map(|(_, body)| body).collect();
            let down = Down::standard(test, &bodies).await;
            (sent, down)
        }

        async fn fifo(test: &str, bodies: &[&Value]) -> Down {
            Down::new(World::fifo(test).await, bodies).await
        }

        async fn new(world: World, bodies: &[&Value]) -> Down {
            let proxy = FaultProxy::start(&world.endpoint, Mode::Refuse).await;
            let mut env = world.env();
            env.insert("PUBLISH_TIMEOUT_MS".into(), "300".into());
            let app = support::function(&env, &proxy.url()).await;
            let (logs, guard) = Logs::capture();
            for body in bodies {
                invoke(app, &Call::chat(body.to_string()).http_api())
                    .await
                    .assert_fail(503);
            }
            // Lines that are not records are in a real log too.
            invoke(
                app,
                &Call::command("Group.CallbackAfterSendMsg", "{}").http_api(),
            )
            .await
            .assert_acknowledged();
            drop(guard);
            let log: Vec<String> = logs.text().lines().map(str::to_owned).collect();
            let down = Down {
                world,
                proxy,
                app,
                log,
            };
            assert_eq!(down.records().len(), bodies.len(), "{:#?}", down.log);
            down
        }

        /// The `publish_failed` lines, in the order the callbacks were sent.
        fn records(&self) -> Vec<&str> {
            self.log
                .iter()
                .map(String::as_str)
                .filter(|line| line.contains(r#""event":"publish_failed""#))
                .collect()
        }

        /// The record of the callback `body`.
        fn record_of(&self, body: &Value) -> &str {
            let records = self.records();
            records
                .iter()
                .copied()
                .find(|line| {
                    let record: Value = serde_json::from_str(line).unwrap();
                    support::logs::envelope(&record)["callback"] == *body
                })
                .unwrap_or_else(|| panic!("no record of {body} in {records:#?}"))
        }

        /// The binary's environment: the function's topics, AWS at moto with static keys.
        fn env(&self) -> HashMap<String, String> {
            let mut env = replay_bin::aws_env(&self.world.endpoint);
            env.extend(self.world.env());
            env
        }

        async fn replay(&self, args: &[&str]) -> ReplayRun {
            replay_bin::run_with(&self.env(), args, None).await
        }

        /// Checks that `delivery`, the replay of the record of `body`, is what the function
        /// publishes (SNS reachable for a fresh publish of the same callback, refused again
        /// after it).
        async fn assert_as_the_function_publishes(
            &self,
            delivery: &Delivery,
            body: &Value,
            category: Category,
        ) {
            self.proxy.set(Mode::PassThrough).await;
            support::assert_published_as_the_function_would(
                &self.world,
                delivery,
                &self.log.join("\n"),
                body,
                category,
                (&self.world, self.app),
            )
            .await;
            self.proxy.set(Mode::Refuse).await;
        }

        /// Checks that each of `sent` was delivered once, to its own category's topic and
        /// nowhere else, as the function publishes it.
        async fn assert_each_delivered_as_published(&self, sent: &[(Category, Value)]) {
            let mut deliveries = Vec::new();
            for (category, body) in sent {
                let got = self.world.received(*category, 1).await;
                assert_eq!(got.len(), 1, "{category}: {got:#?}");
                assert_eq!(got[0].envelope()["callback"], *body);
                deliveries.push(got.into_iter().next().unwrap());
            }
            self.world.assert_nothing_published().await;
            for ((category, body), delivery) in sent.iter().zip(&deliveries) {
                self.assert_as_the_function_publishes(delivery, body, *category)
                    .await;
            }
        }
    }

    /// A new log group holding `events` (milliseconds since the epoch, line) in one stream, as
    /// Lambda writes a function's output: one event per line.
    async fn log_group(test: &str, events: &[(i64, &str)]) -> String {
        let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk_config().await);
        let name = format!("/aws/lambda/{}", unique(test));
        logs.create_log_group()
            .log_group_name(&name)
            .send()
            .await
            .expect("create log group");
        logs.create_log_stream()
            .log_group_name(&name)
            .log_stream_name(STREAM)
            .send()
            .await
            .expect("create log stream");
        let mut events = events.to_vec();
        events.sort_by_key(|(at, _)| *at);
        let events: Vec<InputLogEvent> = events
            .iter()
            .map(|(at, message)| {
                InputLogEvent::builder()
                    .timestamp(*at)
                    .message(*message)
                    .build()
                    .expect("timestamp and message are set")
            })
            .collect();
        let put = logs
            .put_log_events()
            .log_group_name(&name)
            .log_stream_name(STREAM)
            .set_log_events(Some(events))
            .send()
            .await
            .expect("put log events");
        assert!(put.rejected_log_events_info.is_none(), "{put:?}");
        name
    }

    /// Every line of `log` as an event at `at`, a millisecond apart.
    fn at(at: i64, log: &[&str]) -> Vec<(i64, String)> {
        log.iter()
            .enumerate()
            .map(|(i, line)| (at + i as i64, (*line).to_owned()))
            .collect()
    }

    fn as_refs(events: &[(i64, String)]) -> Vec<(i64, &str)> {
        events.iter().map(|(t, m)| (*t, m.as_str())).collect()
    }

    /// A redrive dead-letter queue: a standard queue, as Lambda destinations need.
    async fn dead_letter_queue(test: &str) -> (aws_sdk_sqs::Client, String) {
        let sqs = aws_sdk_sqs::Client::new(&sdk_config().await);
        let url = sqs
            .create_queue()
            .queue_name(unique(test))
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue URL");
        (sqs, url)
    }

    /// What Lambda puts into an on-failure destination when the redrive function gave up on
    /// the subscription event holding `lines`.
    fn destination_record(lines: &[&str], attempt: u32) -> String {
        let event = record_source::subscription_event("/aws/lambda/im-exception-webhook", lines);
        json!({
            "version": "1.0",
            "timestamp": "2026-12-01T10:00:05.123Z",
            "requestContext": {
                "requestId": format!("0e3d6c2a-5b1f-4f7e-9a1c-{attempt:012}"),
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:im-exception-redrive:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3
            },
            "requestPayload": {"awslogs": {"data": event.awslogs.data}},
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled"
            },
            "responsePayload": {
                "errorMessage": "1 record not published: SNS unreachable",
                "errorType": "&alloc::boxed::Box<dyn core::error::Error + core::marker::Send + core::marker::Sync>"
            }
        })
        .to_string()
    }

    async fn send(sqs: &aws_sdk_sqs::Client, url: &str, body: &str) {
        sqs.send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .expect("send message");
    }

    /// The bodies of the messages in the queue, visible or not.
    async fn queued(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
        let count = |attributes: &HashMap<QueueAttributeName, String>, name| {
            attributes
                .get(&name)
                .map_or(0, |v: &String| v.parse::<usize>().unwrap())
        };
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("get queue attributes")
            .attributes
            .unwrap_or_default();
        let visible = count(&attributes, QueueAttributeName::ApproximateNumberOfMessages);
        let in_flight = count(
            &attributes,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        );
        assert_eq!(
            in_flight, 0,
            "the replay leaves no message in flight: the next run can take it at once"
        );
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .expect("receive message")
            .messages
            .unwrap_or_default();
        assert_eq!(received.len(), visible, "{received:#?}");
        received
            .into_iter()
            .map(|m| m.body.unwrap_or_default())
            .collect()
    }

    fn time(at_ms: i64) -> String {
        Rfc3339Millis(UNIX_EPOCH + Duration::from_millis(at_ms as u64)).to_string()
    }

    #[tokio::test]
    async fn a_log_group_replay_delivers_each_exception_as_the_function_would_have_published_it() {
        let (sent, down) = Down::one_of_each("logs-each").await;
        let now = support::now_millis();
        let mut log: Vec<&str> = vec!["START RequestId: 1 Version: $LATEST"];
        log.extend(down.log.iter().map(String::as_str));
        log.extend(["END RequestId: 1", "REPORT RequestId: 1 Duration: 2.51 ms"]);
        let events = at(now - 10 * MINUTE_MS, &log);
        let group = log_group("logs-each", &as_refs(&events)).await;

        let run = down.replay(&["--log-group", &group, "--since", "1h"]).await;
        run.assert_summary(sent.len(), 0);
        let replayed = run.report_lines("replayed");
        assert_eq!(replayed.len(), sent.len(), "{}", run.stderr);
        assert!(
            replayed
                .iter()
                .all(|l| l.starts_with(&format!("replayed {group}/{STREAM}@"))),
            "each record is named by its log group, stream and time: {replayed:#?}"
        );

        down.assert_each_delivered_as_published(&sent).await;
    }

    #[tokio::test]
    async fn since_and_until_bound_what_is_read_from_the_log_group() {
        let oldest = callback(json!(10023), "@TGS#window");
        let middle = another(&oldest, 2);
        let newest = another(&oldest, 3);
        let down = Down::standard("logs-window", &[&oldest, &middle, &newest]).await;
        let now = support::now_millis();
        let records = [
            down.record_of(&oldest),
            down.record_of(&middle),
            down.record_of(&newest),
        ];
        let events = [
            (now - 3 * HOUR_MS, records[0]),
            (now - 90 * MINUTE_MS, records[1]),
            (now - MINUTE_MS, records[2]),
        ];
        let group = log_group("logs-window", &events).await;
        let category = Category::FrequencyLimit;
        let (four_hours_ago, two_hours_ago) = (time(now - 4 * HOUR_MS), time(now - 2 * HOUR_MS));

        for (args, expected) in [
            (vec!["--since", "2h", "--until", "1h"], &middle),
            (
                vec!["--since", &four_hours_ago, "--until", &two_hours_ago],
                &oldest,
            ),
            (vec!["--since", "30m"], &newest),
        ] {
            let mut all = vec!["--log-group", group.as_str()];
            all.extend(&args);
            let run = down.replay(&all).await;
            run.assert_summary(1, 0);
            let got = down.world.received(category, 1).await;
            assert_eq!(got.len(), 1, "{args:?}: {got:#?}");
            assert_eq!(got[0].envelope()["callback"], *expected, "{args:?}");
            down.world.assert_nothing_published().await;
        }

        let run = down
            .replay(&["--log-group", &group, "--since", "1h", "--until", "2h"])
            .await;
        run.assert_exit(2);
        assert!(
            run.stderr.contains("--since is later than --until"),
            "{}",
            run.stderr
        );
    }

    #[tokio::test]
    async fn a_log_group_is_read_to_its_last_page() {
        let first = callback(json!(80004), "@TGS#pages");
        let second = another(&first, 2);
        let down = Down::standard("logs-pages", &[&first, &second]).await;
        let now = support::now_millis();
        // FilterLogEvents returns at most 10,000 events a page. Real CloudWatch would filter the
        // other lines out; a server that ignores the pattern returns them, and the records then
        // come on the second page.
        let filler: Vec<String> = (0..10_000)
            .map(|i| format!("{{\"event\":\"callback\",\"outcome\":\"acknowledged\",\"n\":{i}}}"))
            .collect();
        let mut events: Vec<(i64, &str)> = filler
            .iter()
            .enumerate()
            .map(|(i, line)| (now - 20 * MINUTE_MS + i as i64, line.as_str()))
            .collect();
        events.push((now - 5 * MINUTE_MS, down.record_of(&first)));
        events.push((now - 4 * MINUTE_MS, down.record_of(&second)));
        let group = log_group("logs-pages", &events).await;

        let run = down.replay(&["--log-group", &group, "--since", "1h"]).await;
        run.assert_summary(2, 0);
        let got = down.world.received(Category::ContentFilter, 2).await;
        assert_eq!(world::callbacks(&got), [first, second], "{got:#?}");
        down.world.assert_nothing_published().await;
    }

    #[tokio::test]
    async fn a_dry_run_says_what_it_would_publish_and_publishes_and_deletes_nothing() {
        let (sent, down) = Down::one_of_each("dry-run").await;
        let now = support::now_millis();
        let log: Vec<&str> = down.log.iter().map(String::as_str).collect();
        let group = log_group("dry-run", &as_refs(&at(now - MINUTE_MS, &log))).await;
        let (sqs, queue) = dead_letter_queue("dry-run").await;
        let message = destination_record(&log, 1);
        send(&sqs, &queue, &message).await;

        for source in [
            vec!["--log-group", group.as_str(), "--since", "1h"],
            vec!["--queue", queue.as_str()],
        ] {
            let mut args = vec!["--dry-run"];
            args.extend(source);
            let run = down.replay(&args).await;
            run.assert_summary(sent.len(), 0);
            let would = run.report_lines("would publish");
            assert_eq!(would.len(), sent.len(), "{}", run.stderr);
            for (category, _) in &sent {
                let topic = &down.world.topic(*category).topic_arn;
                assert!(
                    would.iter().any(|l| l.contains(&format!(": {category} "))
                        && l.contains(&format!(" to {topic}"))),
                    "{category} to {topic}: {would:#?}"
                );
            }
            down.world.assert_nothing_published().await;
        }
        assert_eq!(
            queued(&sqs, &queue).await,
            [message],
            "the message is still there"
        );

        // The dry run took nothing away: the real run still finds every record.
        let run = down.replay(&["--queue", &queue]).await;
        run.assert_summary(sent.len(), 0);
        assert_eq!(down.world.received_anywhere().await.len(), sent.len());
        assert!(queued(&sqs, &queue).await.is_empty());
    }

    #[tokio::test]
    async fn the_dead_letter_queue_is_replayed_and_each_message_deleted_once_published() {
        let (sent, down) = Down::one_of_each("queue-drain").await;
        let records = down.records();
        let (sqs, queue) = dead_letter_queue("queue-drain").await;
        // Two failed batches, one with a line that is not a record in it.
        let mut first: Vec<&str> = vec!["START RequestId: 1 Version: $LATEST"];
        first.extend(&records[..3]);
        send(&sqs, &queue, &destination_record(&first, 1)).await;
        send(&sqs, &queue, &destination_record(&records[3..], 2)).await;

        let run = down.replay(&["--queue", &queue]).await;
        run.assert_summary(sent.len(), 0);
        assert_eq!(run.report_lines("deleted").len(), 2, "{}", run.stderr);
        assert!(queued(&sqs, &queue).await.is_empty(), "{}", run.stderr);

        down.assert_each_delivered_as_published(&sent).await;

        // Drained: another run finds nothing.
        let run = down.replay(&["--queue", &queue]).await;
        run.assert_summary(0, 0);
    }

    #[tokio::test]
    async fn a_message_with_a_record_not_published_stays_in_the_queue() {
        let frequency = callback(json!(10023), "@TGS#stays");
        let frequency_too = another(&frequency, 2);
        let unclassified = callback(json!(12345), "@TGS#stays");
        let down =
            Down::standard("queue-stays", &[&frequency, &frequency_too, &unclassified]).await;
        let (sqs, queue) = dead_letter_queue("queue-stays").await;
        let publishable = destination_record(&[down.record_of(&frequency)], 1);
        // One record publishable, one whose category has no topic configured: all of the
        // message stays.
        let mixed = destination_record(
            &[
                down.record_of(&frequency_too),
                down.record_of(&unclassified),
            ],
            2,
        );
        let not_a_record = r#"{"version":"1.0","requestPayload":{"Records":[]}}"#;
        send(&sqs, &queue, &publishable).await;
        send(&sqs, &queue, &mixed).await;
        send(&sqs, &queue, not_a_record).await;

        let mut env = down.env();
        env.remove("TOPIC_ARN_UNCLASSIFIED");
        let run = replay_bin::run_with(&env, &["--queue", &queue], None).await;
        // Published: the first message's record and the mixed message's frequency_limit one.
        run.assert_summary(2, 2);
        run.assert_exit(1);
        assert!(
            run.stderr.contains("set TOPIC_ARN_UNCLASSIFIED"),
            "{}",
            run.stderr
        );
        assert_eq!(run.report_lines("deleted").len(), 1, "{}", run.stderr);
        let mut left = queued(&sqs, &queue).await;
        left.sort();
        let mut expected = vec![mixed.clone(), not_a_record.to_owned()];
        expected.sort();
        assert_eq!(left, expected);
        assert_eq!(
            down.world.received(Category::FrequencyLimit, 2).await.len(),
            2
        );
        down.world.assert_nothing_published().await;

        // With the topic configured, the mixed message goes through; the other one can never
        // be read, and stays.
        let run = down.replay(&["--queue", &queue]).await;
        run.assert_summary(2, 1);
        assert_eq!(queued(&sqs, &queue).await, [not_a_record]);
        let got = down.world.received(Category::Unclassified, 1).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].envelope()["callback"], unclassified);
        // Published again with the rest of its message: at least once, as on any standard
        // topic; subscribers drop it by dedupKey.
        let again = down.world.received(Category::FrequencyLimit, 1).await;
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].envelope()["callback"], frequency_too);
        down.world.assert_nothing_published().await;
    }

    #[tokio::test]
    async fn a_message_stays_in_the_queue_while_sns_is_down() {
        let body = callback(json!(20012), "@TGS#sns-down");
        let down = Down::standard("queue-sns-down", &[&body]).await;
        let (sqs, queue) = dead_letter_queue("queue-sns-down").await;
        let message = destination_record(&[down.record_of(&body)], 1);
        send(&sqs, &queue, &message).await;

        // SNS alone behind the refusing proxy; the queue is reachable.
        let mut env = down.env();
        env.insert("AWS_ENDPOINT_URL_SNS".into(), down.proxy.url());
        let run = replay_bin::run_with(&env, &["--queue", &queue], None).await;
        run.assert_summary(0, 1);
        assert_eq!(run.report_lines("kept").len(), 1, "{}", run.stderr);
        assert_eq!(queued(&sqs, &queue).await, std::slice::from_ref(&message));
        down.world.assert_nothing_published().await;

        let run = down.replay(&["--queue", &queue]).await;
        run.assert_summary(1, 0);
        assert!(queued(&sqs, &queue).await.is_empty());
        let delivery = down.world.only_delivery(Category::MutedSender).await;
        down.assert_as_the_function_publishes(&delivery, &body, Category::MutedSender)
            .await;
    }

    #[tokio::test]
    async fn replaying_the_same_queue_content_twice_on_fifo_topics_delivers_each_exception_once() {
        let first = callback(json!(80001), "@TGS#fifo-twice");
        let second = another(&first, 2);
        let down = Down::fifo("queue-fifo-twice", &[&first, &second]).await;
        let (sqs, queue) = dead_letter_queue("queue-fifo-twice").await;
        let both = destination_record(&[down.record_of(&first), down.record_of(&second)], 1);
        // The same log event in two failed batches (a subscription delivers at least once).
        let again = destination_record(&[down.record_of(&second)], 2);

        for _ in 0..2 {
            send(&sqs, &queue, &both).await;
            send(&sqs, &queue, &again).await;
            let run = down.replay(&["--queue", &queue]).await;
            run.assert_summary(2, 0);
            assert_eq!(run.report_lines("deleted").len(), 2, "{}", run.stderr);
            assert!(queued(&sqs, &queue).await.is_empty());
        }

        let deliveries = down.world.received(Category::ContentFilter, 2).await;
        let mut callbacks = world::callbacks(&deliveries);
        let mut expected = vec![first, second];
        for list in [&mut callbacks, &mut expected] {
            list.sort_by_key(|c| c["Random"].as_u64());
        }
        assert_eq!(callbacks, expected, "each once");
        for delivery in &deliveries {
            delivery.assert_fifo_ids("@TGS#fifo-twice");
        }
        down.world.assert_nothing_published().await;
    }

    #[tokio::test]
    async fn region_and_credentials_come_from_the_profile_named_by_aws_profile() {
        let body = callback(json!(10004), "@TGS#profile");
        let down = Down::standard("profile", &[&body]).await;
        let now = support::now_millis();
        let group = log_group("profile", &[(now - MINUTE_MS, down.record_of(&body))]).await;

        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("profile"));
        std::fs::create_dir_all(&dir).unwrap();
        let called = dir.join("credential-process-called");
        let script = dir.join("credentials.sh");
        std::fs::write(
            &script,
            format!(
                "echo called >> '{}'\nprintf '%s' '{{\"Version\": 1, \"AccessKeyId\": \"oncall-process\", \"SecretAccessKey\": \"oncall-process\"}}'\n",
                called.display()
            ),
        )
        .unwrap();
        let config = dir.join("config");
        std::fs::write(
            &config,
            format!(
                "[default]\nregion = eu-west-3\n\n\
                 [profile oncall]\nregion = {region}\n\n\
                 [profile oncall-process]\nregion = {region}\ncredential_process = /bin/sh {script}\n",
                region = world::REGION,
                script = script.display()
            ),
        )
        .unwrap();
        let credentials = dir.join("credentials");
        std::fs::write(
            &credentials,
            "[oncall]\naws_access_key_id = oncall\naws_secret_access_key = oncall\n",
        )
        .unwrap();

        let env_for = |profile: Option<&str>| {
            let mut env = down.world.env();
            for (name, value) in [
                ("AWS_ENDPOINT_URL", down.world.endpoint.as_str()),
                ("AWS_CONFIG_FILE", config.to_str().unwrap()),
                ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("PATH", "/usr/bin:/bin"),
            ] {
                env.insert(name.into(), value.into());
            }
            if let Some(profile) = profile {
                env.insert("AWS_PROFILE".into(), profile.into());
            }
            assert!(!env.contains_key("AWS_ACCESS_KEY_ID") && !env.contains_key("AWS_REGION"));
            env
        };
        let args = ["--log-group", group.as_str(), "--since", "1h"];

        // The default profile has a region but no credentials: nothing can be read.
        let run = replay_bin::run_with(&env_for(None), &args, None).await;
        run.assert_exit(2);
        assert!(
            run.stderr.contains("cannot read log group"),
            "{}",
            run.stderr
        );
        down.world.assert_nothing_published().await;

        // Keys from the shared credentials file.
        let run = replay_bin::run_with(&env_for(Some("oncall")), &args, None).await;
        run.assert_summary(1, 0);
        let delivery = down.world.only_delivery(Category::InvalidGroup).await;
        assert_eq!(delivery.envelope()["callback"], body);

        // Keys from the profile's credential_process.
        assert!(!called.exists());
        let run = replay_bin::run_with(&env_for(Some("oncall-process")), &args, None).await;
        run.assert_summary(1, 0);
        assert!(called.exists(), "the credential process ran");
        let delivery = down.world.only_delivery(Category::InvalidGroup).await;
        assert_eq!(delivery.envelope()["callback"], body);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn what_cannot_be_read_exits_2_and_publishes_nothing() {
        let body = callback(json!(10004), "@TGS#unreadable");
        let down = Down::standard("unreadable", &[&body]).await;
        let missing_queue = format!(
            "{}/123456789012/{}",
            down.world.endpoint,
            unique("no-such-queue")
        );
        let missing_group = format!("/aws/lambda/{}", unique("no-such-group"));
        for (args, says) in [
            (
                vec!["--log-group", missing_group.as_str(), "--since", "1h"],
                "cannot read log group",
            ),
            (vec!["--queue", missing_queue.as_str()], "cannot receive"),
            (vec!["--since", "1h"], "usage:"),
            (vec!["--log-group", "g", "--since", "soon"], "usage:"),
        ] {
            let run = down.replay(&args).await;
            run.assert_exit(2);
            assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        }

        let mut env = down.env();
        env.remove("AWS_REGION");
        env.insert("AWS_EC2_METADATA_DISABLED".into(), "true".into());
        let run = replay_bin::run_with(&env, &["--queue", &missing_queue], None).await;
        run.assert_exit(2);
        assert!(run.stderr.contains("no AWS region"), "{}", run.stderr);
        down.world.assert_nothing_published().await;

        let run = down.replay(&["--help"]).await;
        run.assert_exit(0);
        assert!(
            run.stdout.contains("--log-group NAME --since WHEN"),
            "{}",
            run.stdout
        );
    }
}
