//! A fault-injecting HTTP proxy in front of moto, given to a binary as `AWS_ENDPOINT_URL_SNS`
//! so that SNS alone meets faults. It keeps the caller's connections open between requests, as
//! SNS does, so the SDK pools them; each request then passes through to moto or meets a fault:
//! the next few requests ([`FaultProxy::fault_next`]), every request ([`FaultProxy::set_down`]),
//! or about one in `n` at random ([`FaultProxy::set_random`]); and a request that passes can be
//! held a while first, a slow SNS ([`FaultProxy::set_delay`]). Every request's arrival is kept
//! ([`FaultProxy::arrivals`]), so a test can count attempts and the gap before a retry.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What a request can meet instead of SNS's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 with SNS's `InternalError` body.
    ServerError,
    /// HTTP 400 with SNS's `Throttling` body, as SNS throttles a caller.
    Throttling,
    /// The connection is reset (RST) once the request has arrived.
    Reset,
    /// No answer: held until the caller hangs up; it never reaches SNS.
    Stall,
    /// Reaches SNS (published), but its answer is held until the caller hangs up: a publish
    /// the caller counts as failed although SNS has it.
    LostAnswer,
}

/// What a request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Met {
    /// Forwarded to moto, its answer passed back.
    Passed,
    Fault(Fault),
    /// SNS down ([`FaultProxy::set_down`]): reset on arrival.
    Down,
    /// Written on a pooled connection [`FaultProxy::kill_idle`] killed: reset on arrival.
    DeadConnection,
}

/// One request, as it reached the proxy.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// When the whole request had arrived.
    pub at: Instant,
    /// The connection it came on, numbered from 1 in order of acceptance: a number seen
    /// before is a pooled connection reused.
    pub connection: u64,
    pub met: Met,
}

/// A running proxy; its port closes when it is dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Shared,
    accepting: JoinHandle<()>,
}

type Shared = Arc<Mutex<State>>;

#[derive(Default)]
struct State {
    arrivals: Vec<Arrival>,
    /// The next requests meet this fault, as many as the count says.
    next: Option<(usize, Fault)>,
    down: bool,
    /// About one request in `.0` meets a fault drawn from `.1` (a splitmix64 state).
    random: Option<(u64, u64)>,
    /// Open connections by number.
    connections: HashMap<u64, Connection>,
    accepted: u64,
    forwarded: usize,
    /// How long a request that passes is held before it goes on, how many are held now, and
    /// the most held at once.
    delay: Duration,
    held: usize,
    most_held: usize,
}

#[derive(Default)]
struct Connection {
    /// Waiting for its next request: pooled by the caller.
    idle: bool,
    /// Killed by [`FaultProxy::kill_idle`].
    dead: bool,
}

const SERVER_ERROR: &str = r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Receiver</Type><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error><RequestId>fault-proxy-500</RequestId></ErrorResponse>"#;
const THROTTLING: &str = r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>fault-proxy-throttling</RequestId></ErrorResponse>"#;

/// The random faults, drawn evenly: stalls half before SNS and half after it.
const RANDOM_FAULTS: [Fault; 4] = [
    Fault::Reset,
    Fault::ServerError,
    Fault::Stall,
    Fault::LostAnswer,
];

impl FaultProxy {
    /// A proxy to `upstream` (`http://IP:PORT`) on a free loopback port, passing everything
    /// through, served on the caller's runtime.
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream is http://IP:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Shared::default();
        let accepting = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, upstream, shared.clone()));
                }
            }
        });
        FaultProxy {
            addr,
            shared,
            accepting,
        }
    }

    /// The endpoint URL to give the SDK.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.lock().unwrap()
    }

    /// The next `n` requests meet `fault` (before being down or random faults are considered).
    pub fn fault_next(&self, n: usize, fault: Fault) {
        self.state().next = (n > 0).then_some((n, fault));
    }

    /// SNS down (every request reset on arrival) or back.
    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    /// About one request in `one_in` meets a fault of [`RANDOM_FAULTS`], drawn from `seed`;
    /// `None` stops it.
    pub fn set_random(&self, one_in: Option<u64>, seed: u64) {
        self.state().random = one_in.map(|n| (n, seed));
    }

    /// Each request that passes is held for `delay` before it goes on to SNS.
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// The most requests held by the delay at once: publishes of several callbacks waiting
    /// together.
    pub fn most_held(&self) -> usize {
        self.state().most_held
    }

    /// Every request so far, in order of arrival.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.state().arrivals.clone()
    }

    /// How many requests reached moto (and were answered by it), a lost answer included.
    pub fn forwarded(&self) -> usize {
        self.state().forwarded
    }

    /// How many connections wait for their next request (pooled by the caller) right now.
    pub fn idle_connections(&self) -> usize {
        let state = self.state();
        state.connections.values().filter(|c| c.idle).count()
    }

    /// Kills every idle connection the way an idle timeout does while Lambda freezes the
    /// environment: nothing is sent, so the caller cannot notice; the far end has forgotten
    /// the connection, and the next request written on it is reset. Returns how many.
    pub fn kill_idle(&self) -> usize {
        let mut state = self.state();
        let idle = state.connections.values_mut().filter(|c| c.idle);
        idle.map(|c| c.dead = true).count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// What a request that has just arrived on `connection` meets, recorded as its arrival.
fn meet(shared: &Shared, connection: u64) -> Met {
    let mut state = shared.lock().unwrap();
    let dead = state.connections.get_mut(&connection).is_some_and(|c| {
        c.idle = false;
        c.dead
    });
    let met = if dead {
        Met::DeadConnection
    } else if let Some((left, fault)) = state.next {
        state.next = (left > 1).then_some((left - 1, fault));
        Met::Fault(fault)
    } else if state.down {
        Met::Down
    } else if let Some((one_in, seed)) = &mut state.random {
        let draw = splitmix64(seed);
        if draw.is_multiple_of(*one_in) {
            Met::Fault(RANDOM_FAULTS[(draw / *one_in) as usize % RANDOM_FAULTS.len()])
        } else {
            Met::Passed
        }
    } else {
        Met::Passed
    };
    state.arrivals.push(Arrival {
        at: Instant::now(),
        connection,
        met,
    });
    met
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Serves one connection, request after request, until the caller closes it or a fault ends it.
async fn serve(mut client: TcpStream, upstream: SocketAddr, shared: Shared) {
    let number = {
        let mut state = shared.lock().unwrap();
        state.accepted += 1;
        let number = state.accepted;
        state.connections.insert(number, Connection::default());
        number
    };
    while let Some(request) = read_request(&mut client).await {
        let met = meet(&shared, number);
        let answered = match met {
            Met::Passed => {
                hold(&shared).await;
                match forward(&request, upstream, &shared).await {
                    Some(answer) => client.write_all(&answer).await.is_ok(),
                    None => false,
                }
            }
            // SNS's error answers; the connection stays open, as SNS keeps it.
            Met::Fault(Fault::ServerError) => {
                error(&mut client, "500 Internal Server Error", SERVER_ERROR).await
            }
            Met::Fault(Fault::Throttling) => {
                error(&mut client, "400 Bad Request", THROTTLING).await
            }
            Met::Fault(fault @ (Fault::Stall | Fault::LostAnswer)) => {
                if fault == Fault::LostAnswer {
                    let _ = forward(&request, upstream, &shared).await;
                }
                // Unanswered until the caller hangs up (its read returns); then the end.
                let _ = client.read(&mut [0u8; 1]).await;
                false
            }
            Met::Fault(Fault::Reset) | Met::Down | Met::DeadConnection => false,
        };
        if !answered {
            // Dropped with an RST instead of a FIN.
            let _ = client.set_zero_linger();
            break;
        }
        if let Some(c) = shared.lock().unwrap().connections.get_mut(&number) {
            c.idle = true;
        }
    }
    shared.lock().unwrap().connections.remove(&number);
}

/// Holds a request that passes for the delay set, if any, counting how many are held at once.
async fn hold(shared: &Shared) {
    let delay = {
        let mut state = shared.lock().unwrap();
        state.held += 1;
        state.most_held = state.most_held.max(state.held);
        state.delay
    };
    tokio::time::sleep(delay).await;
    shared.lock().unwrap().held -= 1;
}

async fn error(client: &mut TcpStream, status: &str, body: &str) -> bool {
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\
         x-amzn-RequestId: fault-proxy\r\n\r\n{body}",
        body.len()
    );
    client.write_all(answer.as_bytes()).await.is_ok()
}

/// One HTTP/1.1 request: the head up to the blank line, and `Content-Length` bytes of body
/// (the SDK frames its requests so, never chunked). `None` when the caller closes first.
async fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&request, b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        request.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("Content-Length is a number"));
    while request.len() < head_end + length {
        let n = client.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        request.extend_from_slice(&chunk[..n]);
    }
    Some(request)
}

/// Sends `request` to moto on a connection of its own (`Connection: close`, read to its end),
/// and returns the answer framed for the caller's connection, which stays open.
async fn forward(request: &[u8], upstream: SocketAddr, shared: &Shared) -> Option<Vec<u8>> {
    let head_end = find(request, b"\r\n\r\n")? + 2;
    let mut head = without_connection(&request[..head_end]);
    head.push_str("Connection: close\r\n");
    let mut server = TcpStream::connect(upstream).await.ok()?;
    server.write_all(head.as_bytes()).await.ok()?;
    server.write_all(&request[head_end..]).await.ok()?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).await.ok()?;
    shared.lock().unwrap().forwarded += 1;

    let end = find(&answer, b"\r\n\r\n")?;
    let mut head = without_connection(&answer[..end + 2]);
    let body = &answer[end + 4..];
    let lower = head.to_ascii_lowercase();
    if !lower.contains("\r\ncontent-length:") && !lower.contains("\r\ntransfer-encoding:") {
        // Framed by the end of the connection upstream; the caller's connection goes on.
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut framed = head.into_bytes();
    framed.extend_from_slice(body);
    Some(framed)
}

/// An HTTP head (ending in one CRLF) without its `Connection` header.
fn without_connection(head: &[u8]) -> String {
    String::from_utf8_lossy(head)
        .split_inclusive("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
