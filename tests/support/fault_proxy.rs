//! A fault-injecting HTTP proxy in front of the moto server, switchable at run time: it passes
//! SNS calls through, answers 500, answers with SNS's throttling error, answers later than the
//! function waits, or refuses connections (its port closed).
//!
//! In every mode but [`Mode::KeepAlive`] it handles one request per connection and answers
//! `Connection: close`, so a pooled connection never carries a request past a switch of mode:
//! every request meets the mode in force when it arrives. In [`Mode::KeepAlive`] it keeps the
//! caller's connection open between requests, as SNS does, and [`FaultProxy::kill_idle`] can
//! then kill the idle (pooled) connections as if they had died while Lambda froze the
//! environment.
//!
//! On top of the mode, [`FaultProxy::fault_next`] makes only the next few requests meet a
//! fault, and [`FaultProxy::refuse_next_attempt`] refuses only the next connection attempts:
//! a fast failure followed by a healthy SNS. Every request's arrival is recorded
//! ([`FaultProxy::arrivals`]), so a test can tell the gap between a failed attempt and its
//! retry.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// What the proxy does with the requests that arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards each request to the upstream (moto) and its answer back.
    PassThrough,
    /// Forwards like [`Mode::PassThrough`], but keeps the caller's connection open for its next
    /// request (HTTP/1.1 keep-alive), so the SDK pools it.
    KeepAlive,
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

/// A fault for the next few requests only ([`FaultProxy::fault_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 with SNS's `InternalError` body.
    ServerError,
    /// HTTP 400 with SNS's `Throttling` body.
    Throttling,
    /// The connection is reset (RST, `SO_LINGER` 0) once the request has arrived.
    Reset,
    /// No answer: the request is held until the caller hangs up, and never reaches SNS.
    Stall,
}

/// How [`FaultProxy::kill_idle`] kills an idle keep-alive connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// The proxy closes its end now (FIN). A request the caller writes on it all the same (it
    /// had not noticed) is recorded as [`Met::DeadConnection`] and reset.
    Close,
    /// The proxy resets it now (RST, `SO_LINGER` 0).
    Reset,
    /// Nothing is sent now: the far end has forgotten the connection (an idle timeout while
    /// the caller was frozen), so the next request written on it is reset on arrival.
    ResetOnUse,
}

/// What a request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Met {
    /// The mode in force.
    Mode(Mode),
    /// A fault of [`FaultProxy::fault_next`].
    Fault(Fault),
    /// A connection killed with [`Kill::ResetOnUse`] or [`Kill::Close`]: reset, unanswered.
    DeadConnection,
}

/// One request, as it reached the proxy.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// When the whole request had arrived.
    pub at: Instant,
    /// The connection it came on, numbered from 1 in order of acceptance.
    pub connection: u64,
    /// Whether an earlier request came on the same connection (a pooled connection reused).
    pub reused: bool,
    pub met: Met,
}

/// A running proxy. Its tasks run on the runtime that started it, and end with it (or, for
/// [`FaultProxy::start_detached`], on a thread of its own that ends when the proxy is dropped).
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    shared: Arc<Shared>,
    detached: bool,
}

#[derive(Default)]
struct Shared {
    /// Every request, in order of arrival.
    arrivals: Mutex<Vec<Arrival>>,
    /// Requests forwarded to the upstream and answered by it.
    forwarded: AtomicUsize,
    /// The next requests meet this fault, as many as the count says.
    faults: Mutex<Option<(usize, Fault)>>,
    /// Whether the port is open.
    listening: Mutex<bool>,
    /// When the port was opened again after a refusal.
    reopened: Mutex<Vec<Instant>>,
    /// The open keep-alive connections, by number.
    connections: Mutex<HashMap<u64, Connection>>,
    next_connection: AtomicU64,
    /// Idle connections killed so far.
    killed: AtomicUsize,
}

/// What the proxy knows of one open connection.
struct Connection {
    /// Whether it has carried a request and waits for the next: pooled by the caller.
    idle: bool,
    kill: watch::Sender<Option<Kill>>,
}

const SERVER_ERROR: &str = r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Receiver</Type><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error><RequestId>fault-proxy-500</RequestId></ErrorResponse>"#;
const THROTTLING: &str = r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>fault-proxy-throttling</RequestId></ErrorResponse>"#;

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) on a free loopback port, in `mode`,
    /// on the caller's runtime.
    pub async fn start(upstream: &str, mode: Mode) -> FaultProxy {
        let (proxy, serving) = FaultProxy::prepare(upstream, mode);
        tokio::spawn(serving.run());
        proxy
    }

    /// Like [`FaultProxy::start`], but the proxy runs on a thread and runtime of its own, so it
    /// goes on working while the caller's thread is blocked: what
    /// [`FaultProxy::kill_idle_frozen`] needs to kill connections while the function's runtime
    /// is "frozen". The thread ends when the proxy is dropped.
    pub async fn start_detached(upstream: &str, mode: Mode) -> FaultProxy {
        let (mut proxy, serving) = FaultProxy::prepare(upstream, mode);
        proxy.detached = true;
        std::thread::Builder::new()
            .name(format!("fault-proxy-{}", proxy.addr.port()))
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the proxy's runtime")
                    .block_on(serving.run());
            })
            .expect("start the proxy's thread");
        proxy
    }

    fn prepare(upstream: &str, mode: Mode) -> (FaultProxy, Serving) {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream is http://IP:PORT");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let (sender, receiver) = watch::channel(mode);
        let shared = Arc::new(Shared::default());
        *shared.listening.lock().unwrap() = true;
        let proxy = FaultProxy {
            addr,
            mode: sender,
            shared: shared.clone(),
            detached: false,
        };
        let serving = Serving {
            listener,
            addr,
            upstream,
            mode: receiver,
            shared,
        };
        (proxy, serving)
    }

    /// The endpoint URL to give the SDK.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches the mode; it applies to every request that arrives from now on. Entering
    /// `Refuse`, it returns once the port is closed; leaving it, once the port accepts again
    /// (otherwise the next publish could meet the closed port).
    pub async fn set(&self, mode: Mode) {
        let previous = self.mode.send_replace(mode);
        if mode == Mode::Refuse {
            while *self.shared.listening.lock().unwrap() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else if previous == Mode::Refuse {
            while TcpStream::connect(self.addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Closes the port until the caller next yields to its runtime, then opens it again in the
    /// mode in force: on the caller's current-thread runtime (a `#[tokio::test]`), a publish
    /// started right after this call has its first connection attempt refused (on loopback
    /// the kernel answers the SYN with a reset within the connect call, before the caller
    /// first yields) and finds the port open for its retry. Only the caller's runtime can
    /// tell when that is, so this is for [`FaultProxy::start`]'s proxies.
    pub async fn refuse_next_attempt(&self) {
        assert!(
            !self.detached,
            "refuse_next_attempt needs the caller's runtime"
        );
        let mode = *self.mode.borrow();
        assert_ne!(mode, Mode::Refuse);
        self.set(Mode::Refuse).await;
        self.mode.send_replace(mode);
    }

    /// When the port was opened again after each refusal.
    pub fn reopened(&self) -> Vec<Instant> {
        self.shared.reopened.lock().unwrap().clone()
    }

    /// The next `n` requests meet `fault` (replacing any faults still pending), whatever the
    /// mode; those after them meet the mode.
    pub fn fault_next(&self, n: usize, fault: Fault) {
        *self.shared.faults.lock().unwrap() = Some((n, fault));
    }

    /// Every request so far, in order of arrival.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.shared.arrivals.lock().unwrap().clone()
    }

    /// How many requests arrived while `mode` was in force (and met it).
    pub fn requests_in(&self, mode: Mode) -> usize {
        self.count(Met::Mode(mode))
    }

    /// How many requests met `met`.
    pub fn count(&self, met: Met) -> usize {
        self.arrivals().iter().filter(|a| a.met == met).count()
    }

    /// How many requests reached the upstream (and were answered by it), in any mode.
    pub fn forwarded(&self) -> usize {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// How many keep-alive connections are idle (pooled by the caller) right now.
    pub fn idle_connections(&self) -> usize {
        let connections = self.shared.connections.lock().unwrap();
        connections.values().filter(|c| c.idle).count()
    }

    /// Kills every idle keep-alive connection with `kill`; returns how many, once each is done.
    pub async fn kill_idle(&self, kill: Kill) -> usize {
        let (goal, count) = self.signal_kill(kill);
        while self.shared.killed.load(Ordering::SeqCst) < goal {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        count
    }

    /// [`FaultProxy::kill_idle`] while the caller's thread stays blocked, as the function's
    /// runtime is while Lambda freezes the environment: it polls nothing, so it cannot notice
    /// the FIN or RST before its next publish picks the pooled connection. Then it lets the
    /// packets land (a few milliseconds) before returning. Needs a detached proxy.
    pub fn kill_idle_frozen(&self, kill: Kill) -> usize {
        assert!(
            self.detached,
            "kill_idle_frozen needs FaultProxy::start_detached"
        );
        let (goal, count) = self.signal_kill(kill);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.shared.killed.load(Ordering::SeqCst) < goal {
            assert!(
                Instant::now() < deadline,
                "the proxy killed its connections"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        count
    }

    fn signal_kill(&self, kill: Kill) -> (usize, usize) {
        let connections = self.shared.connections.lock().unwrap();
        let idle: Vec<&Connection> = connections.values().filter(|c| c.idle).collect();
        let goal = self.shared.killed.load(Ordering::SeqCst) + idle.len();
        for connection in &idle {
            connection.kill.send_replace(Some(kill));
        }
        (goal, idle.len())
    }
}

/// The accepting loop, before it runs on some runtime.
struct Serving {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    shared: Arc<Shared>,
}

impl Serving {
    async fn run(self) {
        let listener = TcpListener::from_std(self.listener).expect("the proxy's listener");
        serve(listener, self.addr, self.upstream, self.mode, self.shared).await;
    }
}

/// Accepts connections while the mode is not `Refuse`; closes the port while it is.
async fn serve(
    mut listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    shared: Arc<Shared>,
) {
    loop {
        if *mode.borrow_and_update() == Mode::Refuse {
            drop(listener);
            *shared.listening.lock().unwrap() = false;
            // Reopened on the same port when the mode changes.
            if mode.wait_for(|m| *m != Mode::Refuse).await.is_err() {
                return;
            }
            listener = rebind(addr).await;
            *shared.listening.lock().unwrap() = true;
            shared.reopened.lock().unwrap().push(Instant::now());
            continue;
        }
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let number = shared.next_connection.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(handle(stream, number, mode.clone(), upstream, shared.clone()));
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

/// Takes one pending fault, if any.
fn take_fault(shared: &Shared) -> Option<Fault> {
    let mut faults = shared.faults.lock().unwrap();
    let (left, fault) = faults.as_mut()?;
    let fault = *fault;
    *left -= 1;
    if *left == 0 {
        *faults = None;
    }
    Some(fault)
}

/// Serves one connection: one request, or in [`Mode::KeepAlive`] one after the other until
/// the caller closes it or it is killed.
async fn handle(
    mut client: TcpStream,
    number: u64,
    mode: watch::Receiver<Mode>,
    upstream: SocketAddr,
    shared: Arc<Shared>,
) {
    let (kill_sender, mut kill) = watch::channel(None);
    shared.connections.lock().unwrap().insert(
        number,
        Connection {
            idle: false,
            kill: kill_sender,
        },
    );
    let mut served = 0usize;
    let mut dead = false;
    loop {
        let request = tokio::select! {
            request = read_request(&mut client) => request,
            how = async { kill.wait_for(Option::is_some).await.ok().and_then(|how| *how) } => {
                match how.expect("a kill") {
                    Kill::ResetOnUse => {
                        dead = true;
                        shared.killed.fetch_add(1, Ordering::SeqCst);
                        // Now only wait for the request that will meet the dead connection.
                        read_request(&mut client).await
                    }
                    Kill::Close => {
                        // FIN; a request the caller still writes on it is seen, and reset.
                        let _ = client.shutdown().await;
                        dead = true;
                        shared.killed.fetch_add(1, Ordering::SeqCst);
                        read_request(&mut client).await
                    }
                    Kill::Reset => {
                        reset(client);
                        shared.killed.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
            }
        };
        // A connection without a request (the probe of `set`, or the caller closing its
        // pooled connection) counts for nothing.
        let Some(request) = request else { break };
        if let Some(c) = shared.connections.lock().unwrap().get_mut(&number) {
            c.idle = false;
        }
        let current = *mode.borrow();
        let met = if dead {
            Met::DeadConnection
        } else if let Some(fault) = take_fault(&shared) {
            Met::Fault(fault)
        } else {
            Met::Mode(current)
        };
        shared.arrivals.lock().unwrap().push(Arrival {
            at: Instant::now(),
            connection: number,
            reused: served > 0,
            met,
        });
        served += 1;
        let keep_alive = met == Met::Mode(Mode::KeepAlive);
        match met {
            Met::DeadConnection | Met::Fault(Fault::Reset) => {
                reset(client);
                break;
            }
            Met::Fault(Fault::ServerError) | Met::Mode(Mode::ServerError) => {
                answer(&mut client, "500 Internal Server Error", SERVER_ERROR).await;
            }
            Met::Fault(Fault::Throttling) | Met::Mode(Mode::Throttling) => {
                answer(&mut client, "400 Bad Request", THROTTLING).await;
            }
            Met::Fault(Fault::Stall) => {
                // Held, unanswered, until the caller gives up (read returns 0 or fails).
                let mut probe = [0u8; 1];
                let _ = client.read(&mut probe).await;
            }
            Met::Mode(Mode::PassThrough) => {
                if let Some(answer) = forward(&request, upstream, &shared).await {
                    let _ = client.write_all(&answer).await;
                }
                let _ = client.shutdown().await;
            }
            Met::Mode(Mode::KeepAlive) => {
                let Some(answer) = forward(&request, upstream, &shared).await else {
                    break;
                };
                if client.write_all(&keep_alive_answer(&answer)).await.is_err() {
                    break;
                }
            }
            Met::Mode(Mode::Slow(delay)) => {
                let mut probe = [0u8; 1];
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {
                        if let Some(answer) = forward(&request, upstream, &shared).await {
                            let _ = client.write_all(&answer).await;
                        }
                        let _ = client.shutdown().await;
                    }
                    // The caller gave up (read returns 0 or fails): the request is dropped.
                    _ = client.read(&mut probe) => {}
                }
            }
            Met::Mode(Mode::Late(delay)) => {
                tokio::time::sleep(delay).await;
                // The caller may have gone (a late answer): SNS has the request all the same.
                if let Some(answer) = forward(&request, upstream, &shared).await {
                    let _ = client.write_all(&answer).await;
                }
                let _ = client.shutdown().await;
            }
            // Connections are not accepted in this mode; one accepted just before is refused too.
            Met::Mode(Mode::Refuse) => {}
        }
        if !keep_alive {
            break;
        }
        if let Some(c) = shared.connections.lock().unwrap().get_mut(&number) {
            c.idle = true;
        }
    }
    shared.connections.lock().unwrap().remove(&number);
}

/// Drops `client` with an RST instead of a FIN.
fn reset(client: TcpStream) {
    let _ = client.set_zero_linger();
    drop(client);
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

/// Sends `request` to the upstream with `Connection: close` and returns its whole answer.
async fn forward(request: &[u8], upstream: SocketAddr, shared: &Shared) -> Option<Vec<u8>> {
    let head_end = find(request, b"\r\n\r\n").expect("a read request has a head") + 2;
    let head = String::from_utf8_lossy(&request[..head_end]);
    let mut rewritten: String = head
        .split_inclusive("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    rewritten.push_str("Connection: close\r\n");
    let mut server = TcpStream::connect(upstream).await.ok()?;
    let mut answer = Vec::new();
    let sent = async {
        server.write_all(rewritten.as_bytes()).await?;
        server.write_all(&request[head_end..]).await?;
        server.read_to_end(&mut answer).await
    };
    sent.await.ok()?;
    shared.forwarded.fetch_add(1, Ordering::SeqCst);
    Some(answer)
}

/// The upstream's answer (read to its end) framed for a connection that stays open: its
/// `Connection` header replaced, and a `Content-Length` when it had no framing of its own.
fn keep_alive_answer(answer: &[u8]) -> Vec<u8> {
    let Some(end) = find(answer, b"\r\n\r\n") else {
        return answer.to_vec();
    };
    let head = String::from_utf8_lossy(&answer[..end + 2]);
    let body = &answer[end + 4..];
    let lower = head.to_ascii_lowercase();
    let framed = lower.contains("\r\ncontent-length:") || lower.contains("\r\ntransfer-encoding:");
    let mut rewritten: String = head
        .split_inclusive("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    if !framed {
        rewritten.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    rewritten.push_str("Connection: keep-alive\r\n\r\n");
    let mut out = rewritten.into_bytes();
    out.extend_from_slice(body);
    out
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
