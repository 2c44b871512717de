//! `im-exception-replay`, the last resort's tool, run as an operator runs it, on the webhook's
//! own `publish_failed` records: the webhook's binary writes them with SNS and the retry queue
//! unreachable, and the tool reads them from moto's CloudWatch Logs, from files or from standard
//! input, and republishes each publish unchanged to moto's SNS.
//!
//! Run with `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --all-features --test replay`.

#[cfg(not(feature = "replay"))]
#[test]
fn the_replay_tests_need_the_replay_feature() {
    panic!("im-exception-replay is built with the `replay` feature: run with --all-features");
}

#[cfg(feature = "replay")]
mod support;

#[cfg(feature = "replay")]
mod replay {
    use crate::support::{self, Call, Lambda, World, callback, world::Delivery};
    use aws_sdk_cloudwatchlogs::types::InputLogEvent;
    use im_exception_webhook::domain::classify::Category;
    use im_exception_webhook::domain::publish::QueuedPublish;
    use serde_json::{Value, json};
    use std::collections::HashMap;
    use std::process::{Output, Stdio};
    use tokio::io::AsyncWriteExt;

    const REPLAY: &str = env!("CARGO_BIN_EXE_im-exception-replay");
    const GROUP: &str = "@TGS#2J4SZEAEL";

    /// Two exceptions of two categories, and a third of the first category.
    fn exceptions() -> [(Category, Value); 3] {
        let mut third = callback(json!(10023), GROUP);
        third["Random"] = json!(3);
        [
            (Category::FrequencyLimit, callback(json!(10023), GROUP)),
            (Category::MutedSender, callback(json!(20012), GROUP)),
            (Category::FrequencyLimit, third),
        ]
    }

    /// What the webhook's binary writes on `world`'s topics with SNS and the retry queue
    /// unreachable: standard output after another command and `bodies` (503 each), one record
    /// per exception among the other lines.
    async fn log_of(world: &World, bodies: &[&Value]) -> Vec<String> {
        let mut env = world.env();
        env.insert("AWS_ENDPOINT_URL_SNS".into(), support::moto::closed_url());
        env.insert("PUBLISH_TIMEOUT_MS".into(), "300".into());
        let mut webhook = Lambda::webhook(&world.endpoint, &env).await;
        let other = Call::command("Group.CallbackAfterSendMsg", "{}").http_api();
        webhook.invoke(&other).await.assert_acknowledged();
        for body in bodies {
            let call = Call::chat(body.to_string()).http_api();
            webhook.invoke(&call).await.assert_fail(503, 5030);
        }
        webhook.events("publish_failed", bodies.len()).await;
        let log = webhook.process.stdout_lines();
        assert_eq!(records(&log).len(), bodies.len(), "{log:#?}");
        log
    }

    fn records(log: &[String]) -> Vec<&String> {
        let record = |l: &&String| l.contains(r#""event":"publish_failed""#);
        log.iter().filter(record).collect()
    }

    /// `lines` in a file of this test run's own.
    fn file(name: &str, lines: &[String]) -> String {
        let path = format!(
            "{}/{name}-{}.log",
            env!("CARGO_TARGET_TMPDIR"),
            std::process::id()
        );
        std::fs::write(&path, lines.join("\n")).unwrap();
        path
    }

    /// Runs the tool with `args`, nothing in its environment but `env`, and `stdin`.
    async fn replay(args: &[&str], env: &HashMap<String, String>, stdin: &str) -> Output {
        let mut child = tokio::process::Command::new(REPLAY)
            .args(args)
            .env_clear()
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start im-exception-replay");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        child.wait_with_output().await.expect("it ends")
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// A successful run that says it replayed (or, dry, would have) `n` publishes, and says
    /// `what` `n` times on standard error.
    #[track_caller]
    fn assert_replayed(run: &Output, n: usize, what: &str) {
        let summary = format!("replayed {n}, failed 0\n");
        assert_eq!(
            (run.status.code(), text(&run.stdout)),
            (Some(0), summary),
            "{run:?}"
        );
        assert_eq!(text(&run.stderr).matches(what).count(), n, "{run:?}");
    }

    /// Each record of `log` delivered once to its topic, the publish unchanged byte for byte
    /// (Message, Subject, attributes), and nothing else.
    async fn assert_each_delivered_once(world: &World, log: &[String], sent: &[(Category, Value)]) {
        for ((category, body), record) in sent.iter().zip(records(log)) {
            let record: Value = serde_json::from_str(record).unwrap();
            let publish: QueuedPublish = serde_json::from_value(record["publish"].clone()).unwrap();
            let delivered: Vec<Delivery> = world.received(*category, 1).await;
            let d = delivered
                .iter()
                .find(|d| d.notification["Message"] == publish.message.as_str())
                .unwrap_or_else(|| panic!("{category}: {body} not delivered: {delivered:#?}"));
            d.assert_delivers(&publish);
            support::assert_envelope(&d.envelope(), *category, body);
        }
        world.assert_nothing_published().await;
    }

    #[tokio::test]
    async fn help_and_version_work() {
        let help = replay(&["--help"], &HashMap::new(), "").await;
        assert!(help.status.success(), "{help:?}");
        // The tool's own name and what it does, not the webhook's.
        for said in [
            "Usage: im-exception-replay",
            "publish_failed records",
            "--log-group",
            "--since",
            "--until",
            "--dry-run",
            "--version",
        ] {
            assert!(text(&help.stdout).contains(said), "{said}: {help:?}");
        }
        let version = replay(&["--version"], &HashMap::new(), "").await;
        let expected = format!("im-exception-replay {}\n", env!("CARGO_PKG_VERSION"));
        let version = (version.status.code(), text(&version.stdout));
        assert_eq!(version, (Some(0), expected));
    }

    /// The records of the last hour in the function's log group, among its other lines: a dry
    /// run lists them and publishes nothing; a replay publishes each unchanged; a record older
    /// than `--since` is left alone. (moto's FilterLogEvents ignores the JSON filter pattern
    /// the tool sends and returns every line; the tool reads only the records.)
    #[tokio::test]
    async fn the_records_of_a_log_group_since_an_hour_are_republished_unchanged() {
        let world = World::standard("replay-log-group").await;
        let sent = exceptions();
        let log = log_of(&world, &sent.iter().map(|(_, b)| b).collect::<Vec<_>>()).await;
        let old = records(&log)[2].clone();
        let recent: Vec<String> = log.iter().filter(|l| **l != old).cloned().collect();

        let loader = support::world::loader(&world.endpoint);
        let sdk = im_exception_webhook::adapters::aws::sdk_config(loader).await;
        let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
        let (group, stream) = (format!("/aws/lambda/replay-{}", std::process::id()), "s");
        let create = logs.create_log_group().log_group_name(&group).send().await;
        create.expect("create the log group");
        let create = logs
            .create_log_stream()
            .log_group_name(&group)
            .log_stream_name(stream);
        create.send().await.expect("create the log stream");
        let now = support::events::now_millis() as i64;
        let at = |ms: i64, line: &String| InputLogEvent::builder().timestamp(ms).message(line);
        let mut events = vec![at(now - 2 * 3_600_000, &old).build().unwrap()];
        events.extend(recent.iter().map(|l| at(now - 60_000, l).build().unwrap()));
        let put = logs
            .put_log_events()
            .log_group_name(&group)
            .log_stream_name(stream);
        put.set_log_events(Some(events))
            .send()
            .await
            .expect("put the log events");

        let env = support::aws_env(&world.endpoint);
        let args = ["--log-group", &group, "--since", "1h", "--dry-run"];
        assert_replayed(&replay(&args, &env, "").await, 2, "would publish");
        world.assert_nothing_published().await;
        assert_replayed(&replay(&args[..4], &env, "").await, 2, "published");
        assert_each_delivered_once(&world, &recent, &sent[..2]).await;
    }

    /// From files and from standard input, a record that appears twice sent once; a dry run of
    /// files needs no credentials; what cannot be read, or a command line that does not say
    /// what it means, exits 2 with a message that says what to type, and publishes nothing.
    #[tokio::test]
    async fn records_from_files_and_stdin_are_republished_once_and_bad_input_exits_2() {
        let world = World::standard("replay-files").await;
        let sent = exceptions();
        let log = log_of(&world, &[&sent[0].1, &sent[1].1]).await;
        let mut twice = log.clone();
        twice.push(records(&log)[0].clone());
        let path = file("replay-twice", &twice);
        let env = support::aws_env(&world.endpoint);

        let run = replay(&[&path], &env, "").await;
        assert_replayed(&run, 2, "published");
        assert_eq!(text(&run.stderr).matches("repeated").count(), 1, "{run:?}");
        assert_each_delivered_once(&world, &log, &sent[..2]).await;

        // `aws logs tail` output: a time and a stream name before each JSON line.
        let tail = log
            .iter()
            .map(|l| format!("2026-12-01T10:00:00.700000+00:00 s {l}"));
        let run = replay(&[], &env, &tail.collect::<Vec<_>>().join("\n")).await;
        assert_replayed(&run, 2, "published");
        assert_each_delivered_once(&world, &log, &sent[..2]).await;

        // No region, no credentials, nothing at all in the environment.
        let dry = replay(&["--dry-run", &path], &HashMap::new(), "").await;
        assert_replayed(&dry, 2, "would publish");

        let cases: [(&[&str], &[&str]); 4] = [
            (
                &[&path, "/nonexistent/r.log"],
                &["cannot read /nonexistent/r.log"],
            ),
            (
                &["--log-group", "g", "--since", "yesterday"],
                &["--since", "30m, 6h, 2d", "--help"],
            ),
            (&["--log-group", "g"], &["--since", "--help"]),
            (
                &["--log-group", "none", "--since", "1h"],
                &["cannot read log group none"],
            ),
        ];
        for (args, said) in cases {
            let run = replay(args, &env, "").await;
            let stderr = text(&run.stderr);
            assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
            for words in said {
                assert!(stderr.contains(words), "{args:?}: {words:?} in {stderr}");
            }
        }
        world.assert_nothing_published().await;
        std::fs::remove_file(&path).unwrap();
    }
}
