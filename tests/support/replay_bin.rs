//! Runs the `im-exception-replay` binary as an operator would: configured only through its
//! environment (the function's variables and the standard AWS ones), reading files or stdin.

use std::collections::HashMap;
use std::process::{ExitStatus, Stdio};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_im-exception-replay");

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
    let mut child = Command::new(BIN)
        .env_clear()
        .envs(function_env)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", super::world::REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .args(files)
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
