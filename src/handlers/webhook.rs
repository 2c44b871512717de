//! The webhook's entry point: reads Lambda's HTTP event, asks the decision, publishes (or queues,
//! or keeps as the last resort) or forwards what it says, and answers Chat with one log line per
//! callback.

use crate::adapters::retry_queue::RetryQueue;
use crate::adapters::secret::Tokens;
use crate::adapters::upstream::{Forward, ForwardError, Forwarder, UpstreamAnswer};
use crate::adapters::{Publisher, aws, sns};
use crate::domain::config::{Config, TokenSource, Topic};
use crate::domain::decision::{Decision, WebhookRequest, decide};
use crate::domain::message::Message;
use crate::domain::query::Query;
use crate::domain::rejection::Rejection;
use crate::domain::{EXCEPTION_COMMAND, bounded, budget};
use crate::telemetry::lines::{Line, Outcome};
use crate::telemetry::{self, lines};
use lambda_http::http::header::{CONTENT_TYPE, LOCATION};
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::value::RawValue;
use std::convert::Infallible;
use std::future::Future;
use std::time::SystemTime;
use tokio::time::Instant;

/// Chat's acknowledgement, byte for byte.
pub const ACKNOWLEDGEMENT: &str = r#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}"#;

/// What one cold start builds and every invocation uses. The publishers are type parameters so
/// that unit tests can put fakes in place of SNS and the retry queue.
pub struct App<P = aws_sdk_sns::Client, Q = RetryQueue> {
    pub config: Config,
    pub tokens: Tokens,
    pub sns: P,
    pub queue: Option<Q>,
    pub upstream: Option<Forwarder>,
}

impl App {
    /// The clients, once per cold start; `loader` supplies region, credentials and endpoints.
    /// Reading the token secret is the only call made here, and only when one is configured.
    pub async fn new(config: Config, loader: aws_config::ConfigLoader) -> Result<App, String> {
        let sdk = aws::sdk_config(loader).await;
        if config.tokens == TokenSource::None {
            tracing::warn!(
                event = "auth_disabled",
                "no callback token is configured: callbacks are accepted without a Sign; anyone \
                 who knows an SdkAppID can publish exceptions"
            );
        }
        Ok(App {
            tokens: Tokens::load(&config.tokens, &sdk).await?,
            sns: sns::webhook_client(&sdk),
            queue: config
                .retry_queue_url
                .clone()
                .map(|url| RetryQueue::new(url, &sdk)),
            upstream: config.upstream.clone().map(Forwarder::new),
            config,
        })
    }
}

/// The service the Lambda runtime drives: answers, then writes the lines.
pub fn service(
    app: &'static App,
) -> impl lambda_http::Service<
    Request,
    Response = AsBuilt,
    Error = Infallible,
    Future = impl Future<Output = Result<AsBuilt, Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    lambda_http::service_fn(move |request: Request| async move {
        let (response, lines) = handle(app, &request).await;
        for line in &lines {
            telemetry::emit(line);
        }
        Ok(AsBuilt(response))
    })
}

/// A response exactly as built. lambda_http's own conversion of a `Response` re-encodes a text
/// body from its declared charset into UTF-8 (and drops a byte-order mark), which would change
/// an upstream's answer on its way to Chat; here a body goes out as it is.
#[derive(Debug)]
pub struct AsBuilt(pub Response<Body>);

impl lambda_http::IntoResponse for AsBuilt {
    fn into_response(self) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        Box::pin(std::future::ready(self.0))
    }
}

/// Where and when the request came in, from API Gateway's request context.
struct Arrival {
    epoch_ms: Option<i64>,
    source_ip: Option<String>,
}

fn arrival(request: &Request) -> Arrival {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(c)) => Arrival {
            epoch_ms: Some(c.time_epoch),
            source_ip: c.http.source_ip.clone(),
        },
        Some(RequestContext::ApiGatewayV1(c)) => Arrival {
            epoch_ms: Some(c.request_time_epoch),
            source_ip: c.identity.source_ip.clone(),
        },
        _ => Arrival {
            epoch_ms: None,
            source_ip: None,
        },
    }
}

/// Answers one HTTP request, and says what to log. Never fails: every problem is an answer.
pub async fn handle<P: Publisher, Q: Publisher>(
    app: &App<P, Q>,
    request: &Request,
) -> (Response<Body>, Vec<Line>) {
    let started = Instant::now();
    let now = SystemTime::now();
    let request_id = request
        .lambda_context_ref()
        .map_or("", |c| c.request_id.as_str());
    let Arrival {
        epoch_ms,
        source_ip,
    } = arrival(request);
    let left = app
        .config
        .publish_timeout
        .saturating_sub(budget::since_arrival(epoch_ms, now));
    let tokens = app.tokens.current().await;
    let query = Query::new(
        request
            .query_string_parameters_ref()
            .into_iter()
            .flat_map(|q| q.iter()),
    );
    let webhook_request = WebhookRequest {
        method: request.method().as_str(),
        query,
        body: request.body().as_ref(),
    };
    let line = |outcome| Line::new(outcome, request_id, SystemTime::now());

    match decide(&webhook_request, &app.config, &tokens, now) {
        Err(rejection) => {
            let response = fail(&rejection);
            let outcome = Outcome::Rejected {
                reason: rejection.reason(),
                detail: rejection.to_string(),
                status: response.status().as_u16(),
                source_ip,
            };
            (response, vec![line(outcome)])
        }
        Ok(Decision::Acknowledge { command }) => {
            let command = bounded(&command).into_owned();
            (acknowledge(), vec![line(Outcome::OtherCommand { command })])
        }
        Ok(Decision::Forward { command }) => {
            let (answer, outcome) = forward(app.upstream.as_ref(), request, &command, false).await;
            let response = match answer {
                Ok(answer) => pass_on(answer),
                Err(ForwardError::TimedOut(timeout)) => fail(&Rejection::UpstreamTimedOut {
                    timeout_ms: timeout.as_millis(),
                }),
                Err(_) => fail(&Rejection::UpstreamFailed),
            };
            (response, vec![line(outcome)])
        }
        Ok(Decision::Exception {
            message,
            topic,
            forward: also,
        }) => {
            let exception = lines::Exception::of(&message, source_ip.as_deref());
            let delivered = deliver(app, message, topic, exception, started, started + left);
            if also {
                // Concurrently, each bounded by its own timeout; Chat's answer is the publish's.
                let forwarded = forward(app.upstream.as_ref(), request, EXCEPTION_COMMAND, true);
                let ((response, published), (_, forwarded)) = tokio::join!(delivered, forwarded);
                (response, vec![line(published), line(forwarded)])
            } else {
                let (response, published) = delivered.await;
                (response, vec![line(published)])
            }
        }
    }
}

/// Publishes an exception to its topic; when SNS fails, keeps it in the retry queue; when that
/// fails too (or there is none), answers 503 and writes the last-resort record. Without a topic
/// for its category, the log line is where the exception goes.
async fn deliver<P: Publisher, Q: Publisher>(
    app: &App<P, Q>,
    message: Message,
    topic: Option<&Topic>,
    exception: lines::Exception,
    started: Instant,
    deadline: Instant,
) -> (Response<Body>, Outcome) {
    let duration_ms = || started.elapsed().as_millis() as u64;
    let Some(topic) = topic else {
        let envelope = RawValue::from_string(message.envelope).ok();
        return (
            acknowledge(),
            Outcome::Logged {
                exception,
                envelope,
            },
        );
    };
    let publish = message.publish_to(topic);
    let split = budget::split(
        deadline.saturating_duration_since(Instant::now()),
        app.queue.is_some(),
    );
    let sns_error = match app.sns.publish(&publish, Instant::now() + split.sns).await {
        Ok(message_id) => {
            let outcome = Outcome::Published {
                exception,
                message_id,
                duration_ms: duration_ms(),
            };
            return (acknowledge(), outcome);
        }
        Err(error) => error,
    };
    let queue_error = match &app.queue {
        None => "no retry queue is configured".to_owned(),
        Some(queue) => match queue.publish(&publish, deadline).await {
            Ok(message_id) => {
                let reason = lines::reason(&sns_error);
                let outcome = Outcome::Queued {
                    exception,
                    message_id,
                    reason,
                    duration_ms: duration_ms(),
                };
                return (acknowledge(), outcome);
            }
            Err(error) => error,
        },
    };
    let reason = format!(
        "SNS: {}; retry queue: {}",
        cut(&sns_error),
        cut(&queue_error)
    );
    let outcome = Outcome::PublishFailed {
        exception,
        reason,
        publish,
    };
    (fail(&Rejection::PublishFailed), outcome)
}

/// Half of a line's reason each, for the two errors of a last resort.
fn cut(error: &str) -> String {
    error.chars().take(145).collect()
}

/// Sends the request on to the upstream exactly as received, and says what came of it.
async fn forward(
    upstream: Option<&Forwarder>,
    request: &Request,
    command: &str,
    of_exception: bool,
) -> (Result<UpstreamAnswer, ForwardError>, Outcome) {
    let started = Instant::now();
    let forward = Forward {
        query: request.uri().query(),
        body: request.body().as_ref(),
        content_type: request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    };
    let answer = match upstream {
        Some(upstream) => upstream.forward(forward).await,
        None => Err(ForwardError::Unreachable(
            "no upstream is configured".into(),
        )),
    };
    let command = bounded(command).into_owned();
    let duration_ms = started.elapsed().as_millis() as u64;
    // Never the body, the token or the Sign: the command, why, and how long it took.
    let outcome = match &answer {
        Ok(answer) => Outcome::Forwarded {
            command,
            status: answer.status,
            duration_ms,
            of_exception,
        },
        Err(error) => Outcome::ForwardFailed {
            command,
            reason: error.reason(),
            detail: lines::reason(&error.to_string()),
            duration_ms,
        },
    };
    (answer, outcome)
}

/// The upstream's answer, as Chat gets it: status, `Content-Type` (and a redirect's
/// `Location`) and body unchanged.
fn pass_on(answer: UpstreamAnswer) -> Response<Body> {
    let Ok(status) = StatusCode::from_u16(answer.status) else {
        return fail(&Rejection::UpstreamFailed);
    };
    let body = match String::from_utf8(answer.body) {
        Ok(text) => Body::Text(text),
        Err(bytes) => Body::Binary(bytes.into_bytes()),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in [
        (CONTENT_TYPE, answer.content_type),
        (LOCATION, answer.location),
    ] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn acknowledge() -> Response<Body> {
    json_response(StatusCode::OK, ACKNOWLEDGEMENT.to_owned())
}

fn fail(rejection: &Rejection) -> Response<Body> {
    let answer = rejection.answer();
    let body = serde_json::json!({
        "ActionStatus": "FAIL",
        "ErrorCode": answer.error_code,
        "ErrorInfo": answer.error_info,
    });
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST);
    json_response(status, body.to_string())
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::config::test_config;
    use crate::domain::publish::QueuedPublish;
    use lambda_http::request::LambdaRequest;
    use serde::Deserialize;
    use serde_json::{Value, json};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, UNIX_EPOCH};

    /// A publisher that records what it gets (and how long it was given), or fails: at once,
    /// or after stalling for all it was given.
    #[derive(Default)]
    struct Fake {
        fail: bool,
        stall: bool,
        sent: Mutex<Vec<(QueuedPublish, Duration)>>,
    }

    impl Publisher for Arc<Fake> {
        async fn publish(&self, publish: &QueuedPublish, until: Instant) -> Result<String, String> {
            let given = until.saturating_duration_since(Instant::now());
            self.sent.lock().unwrap().push((publish.clone(), given));
            if self.stall {
                tokio::time::sleep_until(until).await;
                return Err("operation timeout".into());
            }
            if self.fail {
                Err("connection refused".into())
            } else {
                Ok("id-1".into())
            }
        }
    }

    fn fake(fail: bool) -> Arc<Fake> {
        Arc::new(Fake {
            fail,
            ..Fake::default()
        })
    }

    fn app(sns: &Arc<Fake>, queue: Option<&Arc<Fake>>) -> App<Arc<Fake>, Arc<Fake>> {
        App {
            config: test_config(&[]).unwrap(),
            tokens: Tokens::Fixed(Arc::new([])),
            sns: sns.clone(),
            queue: queue.cloned(),
            upstream: None,
        }
    }

    /// An HTTP API event from Chat that API Gateway received `ago` before now.
    fn request(body: &str, ago: Duration) -> Request {
        let arrived = SystemTime::now() - ago;
        let event = json!({
            "version": "2.0", "routeKey": "POST /callback", "rawPath": "/callback",
            "rawQueryString": "SdkAppid=1400000000&CallbackCommand=Group.CallbackSendMsgException&contenttype=json&ClientIP=10.0.0.1&OptPlatform=RESTAPI",
            "queryStringParameters": {"SdkAppid": "1400000000", "CallbackCommand": "Group.CallbackSendMsgException", "contenttype": "json", "ClientIP": "10.0.0.1", "OptPlatform": "RESTAPI"},
            "headers": {"content-type": "application/json"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "api", "domainName": "example.com", "domainPrefix": "example",
                "http": {"method": "POST", "path": "/callback", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "chat"},
                "requestId": "r", "routeKey": "POST /callback", "stage": "$default",
                "time": "25/Nov/2026:20:00:00 +0000",
                "timeEpoch": arrived.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64,
            },
            "body": body, "isBase64Encoded": false,
        });
        let lambda: LambdaRequest = serde_json::from_value(event).unwrap();
        lambda.into()
    }

    const MUTED: &str = r#"{"ErrorCode":10017,"GroupId":"g"}"#;

    async fn run(
        app: &App<Arc<Fake>, Arc<Fake>>,
        body: &str,
        ago: Duration,
    ) -> (u16, Value, Value) {
        let (response, lines) = handle(app, &request(body, ago)).await;
        assert_eq!(lines.len(), 1);
        let body = serde_json::from_slice(response.body().as_ref()).unwrap();
        (
            response.status().as_u16(),
            body,
            serde_json::to_value(&lines[0]).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_published_exception_gets_the_acknowledgement() {
        let sns = fake(false);
        let (status, body, line) = run(&app(&sns, None), MUTED, Duration::ZERO).await;
        assert_eq!(
            (status, body),
            (200, serde_json::from_str::<Value>(ACKNOWLEDGEMENT).unwrap())
        );
        assert_eq!(
            (line["outcome"].as_str(), line["messageId"].as_str()),
            (Some("published"), Some("id-1"))
        );
        assert_eq!(line["sourceIp"], "203.0.113.7");
        let sent = sns.sent.lock().unwrap();
        assert_eq!(sent[0].0.topic_arn, "arn:aws:sns:us-east-1:123456789012:ms");
    }

    #[tokio::test]
    async fn when_sns_fails_the_publish_is_queued_and_acknowledged() {
        let (sns, queue) = (fake(true), fake(false));
        let (status, _, line) = run(&app(&sns, Some(&queue)), MUTED, Duration::ZERO).await;
        assert_eq!(
            (status, line["outcome"].as_str(), line["Queued"].as_u64()),
            (200, Some("queued"), Some(1))
        );
        assert_eq!(line["reason"], "connection refused");
        assert_eq!(
            queue.sent.lock().unwrap()[0].0,
            sns.sent.lock().unwrap()[0].0,
            "the same publish"
        );
    }

    #[tokio::test]
    async fn when_the_queue_fails_too_or_there_is_none_chat_gets_503_and_the_record_keeps_the_publish()
     {
        let sns = fake(true);
        for queue in [Some(fake(true)), None] {
            let (status, body, line) = run(&app(&sns, queue.as_ref()), MUTED, Duration::ZERO).await;
            assert_eq!((status, body["ErrorCode"].as_u64()), (503, Some(5030)));
            assert_eq!(
                (line["event"].as_str(), line["level"].as_str()),
                (Some("publish_failed"), Some("FATAL"))
            );
            let kept = QueuedPublish::deserialize(&line["publish"]).unwrap();
            assert_eq!(kept, sns.sent.lock().unwrap().last().unwrap().0);
            assert!(
                line["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("SNS: connection refused; retry queue: ")
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_counts_from_the_arrival_and_leaves_the_queue_its_last_250_ms() {
        let (sns, queue) = (
            Arc::new(Fake {
                stall: true,
                ..Fake::default()
            }),
            fake(false),
        );
        let app = app(&sns, Some(&queue));
        run(&app, MUTED, Duration::from_millis(1000)).await;
        let ms =
            |sent: &Mutex<Vec<(QueuedPublish, Duration)>>| sent.lock().unwrap()[0].1.as_millis();
        // 1,500 ms from the arrival 1,000 ms ago: 250 ms for SNS, then 250 ms for the queue.
        assert!((240..=250).contains(&ms(&sns.sent)), "{}", ms(&sns.sent));
        assert!(
            (240..=250).contains(&ms(&queue.sent)),
            "{}",
            ms(&queue.sent)
        );
        run(&app, MUTED, Duration::from_secs(60)).await;
        let given = sns.sent.lock().unwrap()[1].1.as_millis();
        assert!(
            (1240..=1250).contains(&given),
            "a replayed event's own start counts: {given}"
        );
    }

    #[tokio::test]
    async fn refusals_and_topicless_exceptions_publish_nothing() {
        let sns = fake(false);
        let app = app(&sns, None);
        let (status, body, line) = run(&app, "[]", Duration::ZERO).await;
        assert_eq!((status, body["ActionStatus"].as_str()), (400, Some("FAIL")));
        assert_eq!(
            (line["Reason"].as_str(), line["sourceIp"].as_str()),
            (Some("bad_body"), Some("203.0.113.7"))
        );
        let (status, _, line) = run(&app, r#"{"ErrorCode":1,"GroupId":"g"}"#, Duration::ZERO).await;
        assert_eq!((status, line["outcome"].as_str()), (200, Some("logged")));
        assert_eq!(line["envelope"]["callback"]["GroupId"], "g");
        assert!(sns.sent.lock().unwrap().is_empty());
    }
}
