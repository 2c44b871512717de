//! One moto server per test binary, on a free loopback port, stopped when the binary exits;
//! and, for load runs, servers of their own ([`separate`]): moto slows as its queues fill.
//!
//! The server is started through `sh`, which waits on its standard input (a pipe from this
//! process) and kills the server when that pipe closes. The pipe closes when the test binary
//! exits, however it exits (statics are never dropped, a panic or a SIGKILL included), so no
//! server outlives the tests.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long moto may take to start answering (it imports every AWS service on start-up).
const START_DEADLINE: Duration = Duration::from_secs(60);

struct Server {
    url: String,
    /// Kept open for the life of the process: closing it stops the server.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

/// The endpoint URL of this binary's moto server, starting it on first use.
pub fn url() -> &'static str {
    static SERVER: OnceLock<Server> = OnceLock::new();
    &SERVER.get_or_init(start).url
}

/// A moto server of its own, which lives as long as the test binary.
pub fn separate() -> &'static str {
    &Box::leak(Box::new(start())).url
}

/// `MOTO_SERVER`, else the project's `.venv/bin/moto_server`; never a silent skip.
fn binary() -> PathBuf {
    let candidate = std::env::var_os("MOTO_SERVER")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"));
    assert!(
        candidate.is_file(),
        "moto_server not found at {} (from MOTO_SERVER, or <crate>/.venv/bin/moto_server). \
         The integration tests need a real SNS API: run `make test`, which installs moto into \
         .venv and sets MOTO_SERVER.",
        candidate.display()
    );
    candidate
}

/// A port nothing listens on right now (the kernel's pick for 127.0.0.1:0).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// An endpoint on a loopback port nothing listens on: every request to it is refused.
pub fn closed_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

fn start() -> Server {
    let binary = binary();
    let port = free_port();
    let log_path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("moto-server-{port}.log"));
    let log = std::fs::File::create(&log_path).expect("create the moto log file");
    let mut child = Command::new("sh")
        .arg("-c")
        // `read` returns when our end of the pipe closes, i.e. when the test binary exits.
        .arg(r#""$0" -H 127.0.0.1 -p "$1" & p=$!; read _; kill "$p"; wait "$p""#)
        .arg(&binary)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("clone the log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {} through sh: {e}", binary.display()));
    let stdin = child.stdin.take().expect("piped stdin");

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    while !answers(addr) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "moto_server exited ({status}) before answering; see {}",
                log_path.display()
            );
        }
        assert!(
            started.elapsed() < START_DEADLINE,
            "moto_server did not answer on {addr} within {START_DEADLINE:?}; see {}",
            log_path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        url: format!("http://{addr}"),
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(child),
    }
}

/// Whether an HTTP server answers on `addr` (any status line will do).
fn answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut status_line = String::new();
    BufReader::new(stream).read_line(&mut status_line).is_ok() && status_line.starts_with("HTTP/")
}
