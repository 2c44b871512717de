//! Runs the `im-exception-replay` binary as an operator would: configured only through its
//! environment (the function's variables and the standard AWS ones), reading files, stdin, a
//! log group or a queue.

use std::collections::HashMap;
use std::process::{ExitStatus, Stdio};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The binary needs the `replay` feature (`make test` builds every feature). Looked up when a
/// test runs it, so the test binaries that share this harness still build without it.
pub fn bin() -> &'static str {
    option_env!("CARGO_BIN_EXE_im-exception-replay").unwrap_or_else(|| {
        panic!(
            "im-exception-replay is built only with the `replay` feature: run \
             `cargo test --all-features` (as `make test` does) or `--features replay`"
        )
    })
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct ReplayRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ReplayRun {
    /// The run ended with `replayed N, failed M` as its only standard output line.
    #[track_caller]
    pub fn assert_summary(&self, replayed: usize, failed: usize) {
        assert_eq!(
            self.stdout,
            format!("replayed {replayed}, failed {failed}\n"),
            "stderr:\n{}",
            self.stderr
        );
        assert_eq!(
            self.status.success(),
            failed == 0,
            "exit status {} with {failed} failed; stderr:\n{}",
            self.status,
            self.stderr
        );
    }

    /// The exit status was `code`.
    #[track_caller]
    pub fn assert_exit(&self, code: i32) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }

    /// The lines of standard error that start with `word` (`replayed`, `failed`, `deleted`…).
    pub fn report_lines(&self, word: &str) -> Vec<&str> {
        let prefix = format!("{word} ");
        self.stderr
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .collect()
    }
}

/// The standard AWS variables that point the binary at `endpoint` with static credentials.
pub fn aws_env(endpoint: &str) -> HashMap<String, String> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", super::world::REGION),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Runs the binary with `function_env` (IM_SDK_APP_ID, TOPIC_ARN_*, …) and SNS at `endpoint`,
/// on `files`, or on `stdin` when there are none. Nothing else from the test's environment is
/// passed on. Async, so that servers on the test's runtime (the fault proxy) keep answering.
pub async fn run(
    function_env: &HashMap<String, String>,
    endpoint: &str,
    files: &[&str],
    stdin: Option<&str>,
) -> ReplayRun {
    let mut env = aws_env(endpoint);
    env.extend(function_env.clone());
    run_with(&env, files, stdin).await
}

/// Runs the binary with exactly `env` as its environment and `args` as its arguments, `stdin`
/// (or nothing) on its standard input.
pub async fn run_with(
    env: &HashMap<String, String>,
    args: &[&str],
    stdin: Option<&str>,
) -> ReplayRun {
    let mut child = Command::new(bin())
        .env_clear()
        .envs(env)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start im-exception-replay");
    let mut pipe = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes())
            .await
            .expect("write the replay input");
    }
    drop(pipe);
    let output = child
        .wait_with_output()
        .await
        .expect("wait for im-exception-replay");
    ReplayRun {
        status: output.status,
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}
