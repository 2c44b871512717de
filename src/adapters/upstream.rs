//! Forwarding a callback to the app's existing callback backend (the upstream).
//!
//! Chat has one callback URL per app. In front of an existing backend, every callback this
//! function does not own goes on to that backend exactly as Chat sent it: the query string and
//! body bytes unchanged, so the backend's own `Sign` check still works, and Chat gets the
//! backend's answer unchanged, because for a before-send callback that answer is the decision.

use crate::domain::config::Upstream;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::error::display::DisplayErrorContext;
use http_body_util::{BodyExt, Limited};
use std::fmt;
use std::time::Duration;

/// The largest upstream answer passed on to Chat; Chat's own answers are a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// A callback to forward, as received.
#[derive(Debug, Clone, Copy)]
pub struct Forward<'a> {
    /// Chat's query string, exactly as received (rebuilt from the parameters for REST API
    /// events, which carry no raw query string).
    pub query: Option<&'a str>,
    /// The body bytes as received (decoded, when API Gateway sent them base64-encoded).
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
}

/// The upstream's answer, passed on to Chat unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    /// A redirect's target: the redirect is passed on whole, never followed.
    pub location: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardError {
    /// No answer: refused, reset, a TLS failure.
    Unreachable(String),
    /// No answer within the upstream timeout.
    TimedOut(Duration),
    /// An answer larger than [`MAX_ANSWER_BYTES`].
    AnswerTooLarge,
    /// A status outside 200-599, which API Gateway would replace with an error of its own.
    BadStatus(u16),
    /// Bytes that are no final HTTP answer, e.g. a 1xx status with nothing after it.
    NotHttp(String),
}

impl ForwardError {
    /// A short, stable name for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ForwardError::Unreachable(_) => "unreachable",
            ForwardError::TimedOut(_) => "timeout",
            ForwardError::AnswerTooLarge => "answer_too_large",
            ForwardError::BadStatus(_) | ForwardError::NotHttp(_) => "bad_status",
        }
    }
}

impl fmt::Display for ForwardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardError::Unreachable(e) => write!(f, "upstream unreachable: {e}"),
            ForwardError::TimedOut(d) => {
                write!(f, "upstream gave no answer within {} ms", d.as_millis())
            }
            ForwardError::AnswerTooLarge => {
                write!(f, "upstream answer larger than {MAX_ANSWER_BYTES} bytes")
            }
            ForwardError::BadStatus(status) => {
                write!(f, "upstream answered with status {status}, outside 200-599")
            }
            ForwardError::NotHttp(e) => {
                write!(f, "upstream answered with no final HTTP status: {e}")
            }
        }
    }
}

/// The URL a callback is forwarded to: the upstream URL with Chat's query string appended
/// exactly as received, after the upstream's own query when it has one.
pub fn forward_url(upstream: &str, query: Option<&str>) -> String {
    let query = query.unwrap_or_default();
    if query.is_empty() {
        return upstream.to_owned();
    }
    let separator = match upstream.find('?') {
        None => "?",
        Some(_) if upstream.ends_with(['?', '&']) => "",
        Some(_) => "&",
    };
    format!("{upstream}{separator}{query}")
}

/// The forwarder over the SDK's own HTTP stack (hyper, rustls on ring, the same trust store and
/// `SSL_CERT_FILE`): one connection pool per cold start, connections kept alive, and no second
/// TLS implementation in the binary. The SDK's connector is used bare because a forward is no
/// AWS call: no signing, no retry classifiers; and redirects are answers like any other.
#[derive(Debug)]
pub struct Forwarder {
    connector: aws_smithy_http_client::Connector,
    upstream: Upstream,
}

/// How one attempt failed.
enum Failure {
    /// The connection failed before an answer began: worth one more attempt.
    Connection(String),
    Final(ForwardError),
}

impl Forwarder {
    pub fn new(upstream: Upstream) -> Self {
        let connector = aws_smithy_http_client::Connector::builder()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build();
        Forwarder {
            connector,
            upstream,
        }
    }

    /// Sends the callback on and returns the upstream's answer, within the upstream timeout.
    pub async fn forward(&self, request: Forward<'_>) -> Result<UpstreamAnswer, ForwardError> {
        let url = forward_url(&self.upstream.url, request.query);
        let attempts = async {
            // A pooled connection that the upstream closed while Lambda froze this environment
            // fails as soon as it is used; one new connection at once saves the callback. The
            // upstream may then see it twice, as it may whenever Chat retries on its own.
            let first = match self.attempt(&url, &request).await {
                Err(Failure::Connection(first)) => first,
                done => return done.map_err(Failure::into_error),
            };
            self.attempt(&url, &request)
                .await
                .map_err(|failure| match failure {
                    Failure::Connection(second) => {
                        ForwardError::Unreachable(format!("{second} (and before it: {first})"))
                    }
                    Failure::Final(e) => e,
                })
        };
        let timeout = self.upstream.timeout;
        let answer = tokio::time::timeout(timeout, attempts)
            .await
            .unwrap_or(Err(ForwardError::TimedOut(timeout)))?;
        match answer.status {
            200..=599 => Ok(answer),
            status => Err(ForwardError::BadStatus(status)),
        }
    }

    async fn attempt(&self, url: &str, request: &Forward<'_>) -> Result<UpstreamAnswer, Failure> {
        let mut http = HttpRequest::new(SdkBody::from(request.body.to_vec()));
        http.set_method("POST").map_err(Failure::unreachable)?;
        http.set_uri(url).map_err(Failure::unreachable)?;
        let content_type = request.content_type.unwrap_or("application/json");
        http.headers_mut()
            .try_insert("content-type", content_type.to_owned())
            .map_err(Failure::unreachable)?;
        let response = self.connector.call(http).await.map_err(|e| {
            // The whole chain ("io error: ... Connection refused"), not just the error's kind.
            let detail = DisplayErrorContext(&e).to_string();
            // The upstream answered, but with no final HTTP answer (a lone 1xx status, garbage):
            // no second try, and Chat gets 502 as for any status outside 200-599.
            if parse_error(&e) {
                Failure::Final(ForwardError::NotHttp(detail))
            } else {
                Failure::Connection(detail)
            }
        })?;
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").map(str::to_owned);
        let location = response.headers().get("location").map(str::to_owned);
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    Failure::Final(ForwardError::AnswerTooLarge)
                } else {
                    Failure::unreachable(e)
                }
            })?
            .to_bytes()
            .to_vec();
        Ok(UpstreamAnswer {
            status,
            content_type,
            location,
            body,
        })
    }
}

/// Whether hyper failed on what the upstream sent rather than on the connection.
fn parse_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
        {
            return true;
        }
        source = e.source();
    }
    false
}

impl Failure {
    fn unreachable(e: impl fmt::Display) -> Failure {
        Failure::Final(ForwardError::Unreachable(e.to_string()))
    }

    fn into_error(self) -> ForwardError {
        match self {
            Failure::Connection(e) => ForwardError::Unreachable(e),
            Failure::Final(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chats_query_is_appended_exactly_as_received() {
        let q = Some("SdkAppid=1400000000&CallbackCommand=Group.CallbackBeforeSendMsg&x=a%2Bb%20c");
        assert_eq!(
            forward_url("https://b.example/im", q),
            "https://b.example/im?SdkAppid=1400000000&CallbackCommand=Group.CallbackBeforeSendMsg&x=a%2Bb%20c"
        );
        for (upstream, expected) in [
            (
                "https://b.example/im?app=1",
                "https://b.example/im?app=1&a=1",
            ),
            ("https://b.example/im?", "https://b.example/im?a=1"),
            ("https://b.example/im?k=v&", "https://b.example/im?k=v&a=1"),
        ] {
            assert_eq!(forward_url(upstream, Some("a=1")), expected);
        }
        assert_eq!(
            forward_url("https://b.example/im", None),
            "https://b.example/im"
        );
        assert_eq!(
            forward_url("https://b.example/im", Some("")),
            "https://b.example/im"
        );
    }
}
