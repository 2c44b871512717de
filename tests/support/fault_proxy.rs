//! A fault-injecting HTTP proxy in front of the moto server, switchable at run time: it passes
//! SNS calls through, answers 500, answers with SNS's throttling error, answers later than the
//! function waits, or refuses connections (its port closed).
//!
//! It handles one request per connection and answers `Connection: close`, so a pooled
//! connection never carries a request past a switch of mode: every request meets the mode in
//! force when it arrives.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// What the proxy does with the requests that arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards each request to the upstream (moto) and its answer back.
    PassThrough,
    /// HTTP 500 with SNS's `InternalError` body.
    ServerError,
    /// HTTP 400 with SNS's `Throttling` body ("Rate exceeded"), as SNS throttles a caller.
    Throttling,
    /// Holds each request for this long, then forwards it, unless the caller has hung up by
    /// then (then the request never reaches SNS).
    Slow(Duration),
    /// Holds each request for this long, then forwards it whether or not the caller is still
    /// waiting: SNS publishes what the caller already counts as failed.
    Late(Duration),
    /// The port is closed: connections are refused.
    Refuse,
}

/// A running proxy. Its tasks run on the runtime that started it, and end with it.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    /// The mode each request met, in order of arrival.
    seen: Mutex<Vec<Mode>>,
    /// Requests forwarded to the upstream and answered by it.
    forwarded: AtomicUsize,
}

const SERVER_ERROR: &str = r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Receiver</Type><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error><RequestId>fault-proxy-500</RequestId></ErrorResponse>"#;
const THROTTLING: &str = r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>fault-proxy-throttling</RequestId></ErrorResponse>"#;

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) on a free loopback port, in `mode`.
    pub async fn start(upstream: &str, mode: Mode) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream is http://IP:PORT");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (sender, receiver) = watch::channel(mode);
        let counts = Arc::new(Counts::default());
        tokio::spawn(serve(listener, addr, upstream, receiver, counts.clone()));
        FaultProxy {
            addr,
            mode: sender,
            counts,
        }
    }

    /// The endpoint URL to give the SDK.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches the mode; it applies to every request that arrives from now on.
    /// Switches the mode. Leaving `Refuse`, it returns only once the port accepts again:
    /// otherwise the next publish could meet the closed port, and the SDK's retry backoff
    /// would outlast the publish deadline.
    pub async fn set(&self, mode: Mode) {
        let previous = self.mode.send_replace(mode);
        if previous == Mode::Refuse && mode != Mode::Refuse {
            while TcpStream::connect(self.addr).await.is_err() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    }

    /// How many requests arrived while `mode` was in force.
    pub fn requests_in(&self, mode: Mode) -> usize {
        self.counts
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|m| **m == mode)
            .count()
    }

    /// How many requests reached the upstream (and were answered by it), in any mode.
    pub fn forwarded(&self) -> usize {
        self.counts.forwarded.load(Ordering::SeqCst)
    }
}

/// Accepts connections while the mode is not `Refuse`; closes the port while it is.
async fn serve(
    mut listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    counts: Arc<Counts>,
) {
    loop {
        if *mode.borrow_and_update() == Mode::Refuse {
            drop(listener);
            // Reopened on the same port when the mode changes.
            if mode.wait_for(|m| *m != Mode::Refuse).await.is_err() {
                return;
            }
            listener = rebind(addr).await;
            continue;
        }
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let current = *mode.borrow();
                tokio::spawn(handle(stream, current, upstream, counts.clone()));
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

async fn rebind(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket
        .bind(addr)
        .unwrap_or_else(|e| panic!("rebind the proxy on {addr}: {e}"));
    socket.listen(128).expect("listen")
}

async fn handle(mut client: TcpStream, mode: Mode, upstream: SocketAddr, counts: Arc<Counts>) {
    let Some(request) = read_request(&mut client).await else {
        return; // a connection without a request (the probe of `set`) counts for nothing
    };
    counts.seen.lock().unwrap().push(mode);
    match mode {
        Mode::PassThrough => forward(&mut client, &request, upstream, &counts).await,
        Mode::ServerError => answer(&mut client, "500 Internal Server Error", SERVER_ERROR).await,
        Mode::Throttling => answer(&mut client, "400 Bad Request", THROTTLING).await,
        Mode::Slow(delay) => {
            let mut probe = [0u8; 1];
            tokio::select! {
                _ = tokio::time::sleep(delay) => forward(&mut client, &request, upstream, &counts).await,
                // The caller gave up (read returns 0 or fails): the request is dropped.
                _ = client.read(&mut probe) => {}
            }
        }
        Mode::Late(delay) => {
            tokio::time::sleep(delay).await;
            forward(&mut client, &request, upstream, &counts).await;
        }
        // Connections are not accepted in this mode; one accepted just before is refused too.
        Mode::Refuse => {}
    }
}

/// One HTTP/1.1 request: the head up to the blank line, and `Content-Length` bytes of body.
async fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&request, b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        request.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    assert!(
        !head.contains("transfer-encoding: chunked"),
        "the fault proxy reads Content-Length bodies only"
    );
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("Content-Length is a number"));
    while request.len() < head_end + length {
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    Some(request)
}

/// Sends `request` to the upstream with `Connection: close` and copies its answer back.
async fn forward(client: &mut TcpStream, request: &[u8], upstream: SocketAddr, counts: &Counts) {
    let head_end = find(request, b"\r\n\r\n").expect("a read request has a head") + 2;
    let head = String::from_utf8_lossy(&request[..head_end]);
    let mut rewritten: String = head
        .split_inclusive("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    rewritten.push_str("Connection: close\r\n");
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let mut answer = Vec::new();
    let sent = async {
        server.write_all(rewritten.as_bytes()).await?;
        server.write_all(&request[head_end..]).await?;
        server.read_to_end(&mut answer).await
    };
    if sent.await.is_err() {
        return;
    }
    counts.forwarded.fetch_add(1, Ordering::SeqCst);
    // The caller may have gone (a late answer): SNS has the request all the same.
    let _ = client.write_all(&answer).await;
    let _ = client.shutdown().await;
}

async fn answer(client: &mut TcpStream, status: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nx-amzn-RequestId: fault-proxy\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.shutdown().await;
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
