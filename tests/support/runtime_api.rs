//! A small Lambda Runtime API on loopback: it hands events to a bootstrap exactly as Lambda
//! does (`GET /runtime/invocation/next`) and collects what the bootstrap posts back: a
//! response, an invocation error (`/runtime/invocation/{id}/error`, with its
//! `Lambda-Runtime-Function-Error-Type`) or an init error. Any JSON event will do: an API
//! Gateway request, an SQS event.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};

/// Something the bootstrap posted: a response, an invocation error or an init error.
#[derive(Debug, Clone)]
pub struct Posted {
    pub path: String,
    pub body: String,
    /// `Lambda-Runtime-Function-Error-Type`, on an error post.
    pub error_type: Option<String>,
}

impl Posted {
    /// Whether this is the response of request `id`.
    pub fn is_response_of(&self, id: &str) -> bool {
        self.path == format!("/2018-06-01/runtime/invocation/{id}/response")
    }
}

pub struct RuntimeApi {
    pub addr: SocketAddr,
    events: mpsc::UnboundedSender<(String, String)>,
    posted: mpsc::UnboundedReceiver<Posted>,
    next_id: u32,
}

impl RuntimeApi {
    pub async fn start() -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (events, events_rx) = mpsc::unbounded_channel();
        let (posted_tx, posted) = mpsc::unbounded_channel();
        let events_rx = Arc::new(Mutex::new(events_rx));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, events_rx.clone(), posted_tx.clone()));
            }
        });
        RuntimeApi {
            addr,
            events,
            posted,
            next_id: 0,
        }
    }

    /// Queues one event; returns its request id.
    pub fn invoke(&mut self, event: &serde_json::Value) -> String {
        self.next_id += 1;
        let id = format!("request-{}", self.next_id);
        self.events.send((id.clone(), event.to_string())).unwrap();
        id
    }

    /// The next thing the bootstrap posts, if it posts within `wait`.
    pub async fn next_posted(&mut self, wait: Duration) -> Option<Posted> {
        tokio::time::timeout(wait, self.posted.recv())
            .await
            .ok()
            .flatten()
    }

    /// Invokes the bootstrap with `event` and returns the response it posted for it within
    /// 20 s, parsed (for an API Gateway event: `statusCode`, `body`, …); anything else posted
    /// first, or nothing, fails the test.
    pub async fn call(&mut self, event: &serde_json::Value) -> serde_json::Value {
        let id = self.invoke(event);
        let posted = self
            .next_posted(Duration::from_secs(20))
            .await
            .expect("the bootstrap answers");
        assert!(posted.is_response_of(&id), "{posted:?}");
        serde_json::from_str(&posted.body).expect("the response is JSON")
    }
}

async fn serve(
    stream: TcpStream,
    events: Arc<Mutex<mpsc::UnboundedReceiver<(String, String)>>>,
    posted: mpsc::UnboundedSender<Posted>,
) {
    let mut stream = BufReader::new(stream);
    loop {
        let Some(Request {
            method,
            path,
            body,
            error_type,
        }) = read_request(&mut stream).await
        else {
            return;
        };
        let reply = if method == "GET" && path.ends_with("/runtime/invocation/next") {
            let Some((id, event)) = events.lock().await.recv().await else {
                return;
            };
            // Each invocation may run 3 s: the function's timeout.
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 3_000;
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                 lambda-runtime-aws-request-id: {id}\r\nlambda-runtime-deadline-ms: {deadline}\r\n\
                 lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:im-exception-webhook\r\n\
                 lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\n\
                 content-length: {}\r\n\r\n{event}",
                event.len()
            )
        } else {
            let _ = posted.send(Posted {
                path,
                body,
                error_type,
            });
            "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
                .to_string()
        };
        if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One HTTP/1.1 request, as far as the Runtime API reads it.
struct Request {
    method: String,
    path: String,
    body: String,
    error_type: Option<String>,
}

/// One HTTP/1.1 request: method, path, body (content-length or chunked) and the error type.
async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let (mut length, mut chunked, mut error_type) = (0usize, false, None);
    loop {
        let mut header = String::new();
        stream.read_line(&mut header).await.ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "lambda-runtime-function-error-type" => error_type = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            stream.read_line(&mut size).await.ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            stream.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        stream.read_exact(&mut body).await.ok()?;
    }
    Some(Request {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
        error_type,
    })
}
