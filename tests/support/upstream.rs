//! A recording upstream: the app's existing callback backend, as the forwarding tests see it.
//!
//! It listens on a free loopback port (plain HTTP, or HTTPS with a certificate from a
//! [`TestCa`]), speaks HTTP/1.1 with keep-alive, reads `Content-Length` (and chunked) bodies,
//! and records every request as it arrives: the connection it came on, the method, the
//! request target exactly as on the wire, the headers and the body. It answers as the test
//! says ([`Reply`]): a status, a content type and a body, after a delay, or not at all.
//!
//! Its tasks run on the runtime that started it; dropping the [`Upstream`] stops them and
//! closes its port.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// What the upstream does once a request has arrived (and been recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answers after the reply's delay, and keeps the connection open for the next request.
    Answer,
    /// Answers, then closes the connection without announcing it (no `Connection: close`):
    /// a pooled connection that has gone stale by the next request.
    AnswerThenClose,
    /// Closes the connection after the delay without answering anything.
    Close,
    /// Sends the head and half of the body, then closes: an answer cut off.
    Truncate,
    /// Waits until [`Upstream::release`], then answers.
    Hold,
}

/// How the upstream answers the requests that arrive from now on.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    /// More headers, e.g. `Location`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
    pub action: Action,
}

impl Reply {
    pub fn new(status: u16, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type: content_type.map(str::to_owned),
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
            action: Action::Answer,
        }
    }

    /// 200 with a JSON body.
    pub fn json(body: &str) -> Reply {
        Reply::new(200, Some("application/json"), body)
    }

    /// Closes the connection without answering.
    pub fn close() -> Reply {
        Reply::new(200, None, "").then(Action::Close)
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn then(mut self, action: Action) -> Reply {
        self.action = action;
        self
    }
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Which accepted connection it came on, counting from 0.
    pub connection: usize,
    pub method: String,
    /// The request target (path and query) as on the wire.
    pub target: Vec<u8>,
    pub version: String,
    /// Names as sent, values as raw bytes, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The target up to its `?`.
    pub fn path(&self) -> &[u8] {
        self.target.split(|b| *b == b'?').next().unwrap_or_default()
    }

    /// The target after its first `?`, if it has one.
    pub fn query(&self) -> Option<&[u8]> {
        let i = self.target.iter().position(|b| *b == b'?')?;
        Some(&self.target[i + 1..])
    }

    /// Every value of header `name` (any case), as text.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The one value of header `name`; panics if it was sent more than once.
    #[track_caller]
    pub fn header(&self, name: &str) -> Option<String> {
        let mut values = self.header_values(name);
        assert!(values.len() <= 1, "{name} sent {} times", values.len());
        values.pop()
    }
}

struct Shared {
    reply: Mutex<Reply>,
    requests: Mutex<Vec<Recorded>>,
    /// How many requests have arrived, for waiting on.
    arrived: watch::Sender<usize>,
    connections: AtomicUsize,
    released: watch::Sender<bool>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// A running recording upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
}

impl Upstream {
    /// Plain HTTP on a free loopback port, answering `reply`.
    pub async fn start(reply: Reply) -> Upstream {
        Upstream::listen(reply, None).await
    }

    /// HTTPS on a free loopback port with `tls` (see [`TestCa::server_config`]).
    pub async fn start_tls(reply: Reply, tls: Arc<rustls::ServerConfig>) -> Upstream {
        Upstream::listen(reply, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn listen(reply: Reply, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the upstream");
        let addr = listener.local_addr().expect("upstream address");
        let shared = Arc::new(Shared {
            reply: Mutex::new(reply),
            requests: Mutex::default(),
            arrived: watch::Sender::new(0),
            connections: AtomicUsize::new(0),
            released: watch::Sender::new(false),
            tasks: Mutex::default(),
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let accepting = tokio::spawn(accept(listener, tls, shared.clone()));
        shared.tasks.lock().unwrap().push(accepting.abort_handle());
        Upstream {
            addr,
            scheme,
            shared,
        }
    }

    /// `http(s)://127.0.0.1:PORT` followed by `path_and_query` (which may be empty).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}://{}{path_and_query}", self.scheme, self.addr)
    }

    /// Answers the requests that arrive from now on with `reply`.
    pub fn set(&self, reply: Reply) {
        *self.shared.reply.lock().unwrap() = reply;
    }

    /// Lets every held request (and every later one) be answered.
    pub fn release(&self) {
        self.shared.released.send_replace(true);
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The one request received so far; panics unless there is exactly one.
    #[track_caller]
    pub fn only_request(&self) -> Recorded {
        let mut requests = self.requests();
        assert_eq!(requests.len(), 1, "requests received: {requests:#?}");
        requests.pop().unwrap()
    }

    /// How many TCP connections were accepted (a TLS handshake that failed included).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have arrived, at most `within`; returns them all.
    pub async fn wait_for_requests(&self, n: usize, within: Duration) -> Vec<Recorded> {
        let mut arrived = self.shared.arrived.subscribe();
        let waited = tokio::time::timeout(within, arrived.wait_for(|count| *count >= n)).await;
        let requests = self.requests();
        assert!(
            waited.is_ok(),
            "{n} requests expected within {within:?}, got {}: {requests:#?}",
            requests.len()
        );
        requests
    }

    /// Stops the upstream: its port closes and every connection is dropped.
    pub fn stop(self) {}
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for task in self.shared.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

async fn accept(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let connection = shared.connections.fetch_add(1, Ordering::SeqCst);
        let tls = tls.clone();
        let for_task = shared.clone();
        let task = tokio::spawn(async move {
            match tls {
                None => serve(tcp, connection, for_task).await,
                Some(acceptor) => {
                    // A client that does not trust the certificate aborts the handshake here.
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        serve(stream, connection, for_task).await;
                    }
                }
            }
        });
        shared.tasks.lock().unwrap().push(task.abort_handle());
    }
}

/// Serves one connection: request after request until the client closes it.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    connection: usize,
    shared: Arc<Shared>,
) {
    let mut stream = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut stream, connection).await else {
            return;
        };
        let close_asked = request
            .header_values("connection")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("close"));
        let reply = shared.reply.lock().unwrap().clone();
        shared.requests.lock().unwrap().push(request);
        shared.arrived.send_modify(|count| *count += 1);

        tokio::time::sleep(reply.delay).await;
        if reply.action == Action::Hold {
            let mut released = shared.released.subscribe();
            if released.wait_for(|r| *r).await.is_err() {
                return;
            }
        }
        let out = stream.get_mut();
        match reply.action {
            Action::Close => return,
            Action::Truncate => {
                let cut = reply.body.len() / 2;
                let _ = out.write_all(&head(&reply, reply.body.len())).await;
                let _ = out.write_all(&reply.body[..cut]).await;
                let _ = out.flush().await;
                let _ = out.shutdown().await;
                return;
            }
            Action::Answer | Action::AnswerThenClose | Action::Hold => {
                let mut answer = head(&reply, reply.body.len());
                answer.extend_from_slice(&reply.body);
                if out.write_all(&answer).await.is_err() || out.flush().await.is_err() {
                    return;
                }
                if close_asked || reply.action == Action::AnswerThenClose {
                    let _ = out.shutdown().await;
                    return;
                }
            }
        }
    }
}

/// The status line and headers of `reply`, for a body of `length` bytes.
fn head(reply: &Reply, length: usize) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    if let Some(content_type) = &reply.content_type {
        head.push_str(&format!("content-type: {content_type}\r\n"));
    }
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {length}\r\n\r\n"));
    head.into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        500 => "Internal Server Error",
        _ => "Whatever",
    }
}

/// One HTTP/1.1 request, or `None` when the connection closes (or breaks) first.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut BufReader<S>,
    connection: usize,
) -> Option<Recorded> {
    let mut line = Vec::new();
    if stream.read_until(b'\n', &mut line).await.ok()? == 0 {
        return None;
    }
    let request_line = trim_crlf(&line).to_vec();
    let mut parts = request_line.splitn(3, |b| *b == b' ');
    let method = String::from_utf8_lossy(parts.next()?).into_owned();
    let target = parts.next()?.to_vec();
    let version = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();

    let mut headers = Vec::new();
    loop {
        line.clear();
        if stream.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        let header = trim_crlf(&line);
        if header.is_empty() {
            break;
        }
        let colon = header.iter().position(|b| *b == b':')?;
        let name = String::from_utf8_lossy(&header[..colon]).trim().to_owned();
        let value = header[colon + 1..].trim_ascii().to_vec();
        headers.push((name, value));
    }
    let mut recorded = Recorded {
        connection,
        method,
        target,
        version,
        headers,
        body: Vec::new(),
    };

    let chunked = recorded
        .header_values("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            line.clear();
            stream.read_until(b'\n', &mut line).await.ok()?;
            let size = String::from_utf8_lossy(trim_crlf(&line)).into_owned();
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            stream.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
            recorded.body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let length = match recorded.header_values("content-length").first() {
            Some(v) => v.trim().parse().ok()?,
            None => 0,
        };
        recorded.body.resize(length, 0);
        stream.read_exact(&mut recorded.body).await.ok()?;
    }
    Some(recorded)
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A certificate authority made for one test, and the server certificates it issues.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let certificate = params.self_signed(&key).expect("CA certificate");
        TestCa {
            der: certificate.der().clone(),
            pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate in PEM, as a CA bundle holds it.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes a CA bundle holding this CA alone into the test's temporary directory; the
    /// file is removed when the returned guard drops.
    pub fn write_bundle(&self, name: &str) -> Bundle {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{name}-{}-{n}-ca.pem", std::process::id()));
        std::fs::write(&path, &self.pem).expect("write the CA bundle");
        Bundle(path)
    }

    /// A TLS server configuration (rustls on ring) with a certificate this CA issued for
    /// 127.0.0.1 and localhost, sent with the CA certificate as its chain.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("server certificate parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("server key");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        let chain = vec![certificate.der().clone(), self.der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate and key");
        Arc::new(config)
    }
}

/// A CA bundle file, removed on drop.
pub struct Bundle(PathBuf);

impl Bundle {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
