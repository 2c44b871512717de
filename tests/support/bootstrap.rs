//! A Lambda binary as Lambda runs it: started under the local Runtime API
//! ([`super::runtime_api`]) with nothing in its environment but what the test gives it, its
//! standard output and standard error read line by line as it writes them.

use super::runtime_api::RuntimeApi;
use std::collections::HashMap;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// The webhook's bootstrap.
pub const WEBHOOK: &str = env!("CARGO_BIN_EXE_im-exception-webhook");
/// The redrive function's bootstrap.
pub const REDRIVE: &str = env!("CARGO_BIN_EXE_im-exception-redrive");

/// What Lambda sets for `function` under `api` (128 MB, version `$LATEST`, the JSON log
/// format, the test region), static test credentials, and every AWS service at `endpoint`.
pub fn lambda_env(api: &RuntimeApi, function: &str, endpoint: &str) -> HashMap<String, String> {
    let mut env = super::aws_env(endpoint);
    env.extend(
        [
            ("AWS_LAMBDA_RUNTIME_API", api.addr.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", function.to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    env
}

/// Lines read so far, shared with the task that reads them.
type Lines = Arc<Mutex<Vec<String>>>;
/// Standard output or standard error.
type Pipe = Box<dyn AsyncRead + Unpin + Send>;

/// A running bootstrap and what it has written so far.
pub struct Bootstrap {
    child: Child,
    /// Every line of standard output and standard error, in the order read.
    output: Lines,
    /// The lines of standard output alone: what Lambda sends to CloudWatch Logs as the
    /// function's log events.
    stdout: Lines,
    /// The tasks reading the two pipes; each ends when its pipe closes.
    readers: Vec<JoinHandle<()>>,
}

impl Bootstrap {
    /// Starts `bin` with `env` as its whole environment.
    pub fn spawn(bin: &str, env: &HashMap<String, String>) -> Bootstrap {
        let mut child = Command::new(bin)
            .env_clear()
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let pipes: [(Pipe, Option<Lines>); 2] = [
            (Box::new(child.stdout.take().unwrap()), Some(stdout.clone())),
            (Box::new(child.stderr.take().unwrap()), None),
        ];
        let readers = pipes
            .into_iter()
            .map(|(pipe, only)| {
                let all = output.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(pipe).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(only) = &only {
                            only.lock().unwrap().push(line.clone());
                        }
                        all.lock().unwrap().push(line);
                    }
                })
            })
            .collect();
        Bootstrap {
            child,
            output,
            stdout,
            readers,
        }
    }

    /// Every line of standard output and standard error so far, in the order read.
    pub fn lines(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// The lines of standard output so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Both streams so far, one line after the other.
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// Standard output once `ready` holds of it, or as it is after 5 s: a line written before
    /// an answer was posted may still be on its way through the pipe.
    pub async fn stdout_when(&self, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.stdout_lines();
            if ready(&lines) || Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to `within` for the process to exit by itself, and for every line it wrote.
    pub async fn exit(&mut self, within: Duration) -> ExitStatus {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the bootstrap stops within {within:?}"))
            .expect("wait for the bootstrap");
        self.read_to_the_end().await;
        status
    }

    /// Checks a cold start that stopped on its configuration: the process exits unsuccessfully
    /// within 20 s, having written one line, a configuration error naming `variable`; returns
    /// that line.
    pub async fn assert_configuration_error(&mut self, variable: &str) -> String {
        let status = self.exit(Duration::from_secs(20)).await;
        assert!(!status.success(), "{variable}");
        let lines = self.lines();
        assert_eq!(lines.len(), 1, "one line: {lines:#?}");
        assert!(lines[0].contains(variable), "{lines:#?}");
        assert!(lines[0].contains("configuration error"), "{lines:#?}");
        lines[0].clone()
    }

    /// Kills the process, and waits for every line it wrote.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill the bootstrap");
        self.read_to_the_end().await;
    }

    async fn read_to_the_end(&mut self) {
        for reader in std::mem::take(&mut self.readers) {
            reader.await.expect("the pipe reader");
        }
    }
}
