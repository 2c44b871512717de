//! A recording upstream: the app's existing callback backend, as the forwarding tests see it.
//!
//! It listens on a free loopback port (plain HTTP, or HTTPS with a certificate from a
//! [`TestCa`]), speaks HTTP/1.1 with keep-alive, and records every request as it arrives: the
//! connection it came on, the method, the request target exactly as on the wire, the headers
//! and the body (by `Content-Length`: the forwarder sends bodies whole). It answers as the test
//! says ([`Reply`]): any status, written raw (so also one outside 200-599), or not at all.
//! Dropping the [`Upstream`] (or [`Upstream::stop`]) closes its port and its connections.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// What the upstream does once a request has arrived (and been recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answers, and keeps the connection open for the next request.
    Answer,
    /// Answers, then closes the connection without announcing it (no `Connection: close`):
    /// a pooled connection that has gone stale by the next request.
    AnswerThenClose,
    /// Closes the connection without answering anything.
    Close,
    /// Sends the head and half of the body, then closes: an answer cut off.
    Truncate,
    /// Waits until [`Upstream::release`] (a slow upstream, when never released), then answers.
    Hold,
}

/// How the upstream answers the requests that arrive from now on.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// `Content-Type` (when given) and any more, e.g. `Location`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub action: Action,
}

impl Reply {
    pub fn new(status: u16, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: content_type
                .map(|ct| ("content-type".to_owned(), ct.to_owned()))
                .into_iter()
                .collect(),
            body: body.into(),
            action: Action::Answer,
        }
    }

    /// 200 with a JSON body.
    pub fn json(body: &str) -> Reply {
        Reply::new(200, Some("application/json"), body)
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
    /// Names as sent, values as raw bytes, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Recorded {
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
}

struct Shared {
    reply: Mutex<Reply>,
    requests: Mutex<Vec<Recorded>>,
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
            connections: AtomicUsize::new(0),
            released: watch::Sender::new(false),
            tasks: Mutex::default(),
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let for_task = shared.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let connection = for_task.connections.fetch_add(1, Ordering::SeqCst);
                let (tls, shared) = (tls.clone(), for_task.clone());
                let task = tokio::spawn(async move {
                    // A client that does not trust the certificate ends the handshake here.
                    match tls {
                        None => serve(tcp, connection, shared).await,
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(tcp).await {
                                serve(stream, connection, shared).await;
                            }
                        }
                    }
                });
                for_task.tasks.lock().unwrap().push(task.abort_handle());
            }
        });
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

    /// Stops the upstream: its port closes and every connection is dropped; what it recorded
    /// stays readable.
    pub fn stop(&self) {
        for task in self.shared.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves one connection: request after request until the client closes it.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    connection: usize,
    shared: Arc<Shared>,
) {
    let mut stream = BufReader::new(stream);
    while let Some(request) = read_request(&mut stream, connection).await {
        let reply = shared.reply.lock().unwrap().clone();
        shared.requests.lock().unwrap().push(request);

        if reply.action == Action::Hold {
            let mut released = shared.released.subscribe();
            if released.wait_for(|r| *r).await.is_err() {
                return;
            }
        }
        let sent = match reply.action {
            Action::Close => return,
            Action::Truncate => reply.body.len() / 2,
            Action::Answer | Action::AnswerThenClose | Action::Hold => reply.body.len(),
        };
        let mut answer = head(&reply);
        answer.extend_from_slice(&reply.body[..sent]);
        let out = stream.get_mut();
        let written = out.write_all(&answer).await.is_ok() && out.flush().await.is_ok();
        if !written || matches!(reply.action, Action::Truncate | Action::AnswerThenClose) {
            let _ = out.shutdown().await;
            return;
        }
    }
}

/// The status line and headers of `reply`; the status as given, whatever HTTP allows.
fn head(reply: &Reply) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {} Upstream\r\n", reply.status);
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", reply.body.len()));
    head.into_bytes()
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
        headers.push((name, header[colon + 1..].trim_ascii().to_vec()));
    }
    let mut recorded = Recorded {
        connection,
        method,
        target,
        headers,
        body: Vec::new(),
    };
    let length = match recorded.header_values("content-length").first() {
        Some(v) => v.trim().parse().ok()?,
        None => 0,
    };
    recorded.body.resize(length, 0);
    stream.read_exact(&mut recorded.body).await.ok()?;
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
        let key = KeyPair::generate().expect("CA key");
        let certificate = params.self_signed(&key).expect("CA certificate");
        TestCa {
            der: certificate.der().clone(),
            pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes a CA bundle holding this CA alone (as `SSL_CERT_FILE` names one) into the tests'
    /// temporary directory; the file is removed when the returned guard drops.
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
