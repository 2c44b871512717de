//! The adapter between Lambda's HTTP events and the decision: reads the request, publishes or
//! forwards what the decision says, logs one line per callback, and answers Chat.

use crate::config::Config;
use crate::decision::{Decision, WebhookRequest, decide};
use crate::envelope::Message;
use crate::forward::{Forward, ForwardError, Forwarder, HttpForwarder, UpstreamAnswer};
use crate::metrics::{Counted, emf_metadata};
use crate::publish::{self, Publisher, SnsPublisher};
use crate::query::Query;
use crate::record::{Kept, Record};
use crate::rejection::Rejection;
use crate::{EXCEPTION_COMMAND, config::bounded};
use lambda_http::http::header::{CONTENT_TYPE, LOCATION};
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::time::{Instant, SystemTime};

/// Chat's acknowledgement, byte for byte.
pub const ACKNOWLEDGEMENT: &str = r#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}"#;

/// What one cold start builds and every invocation uses.
#[derive(Debug)]
pub struct App<P, F> {
    pub config: Config,
    pub publisher: P,
    pub forwarder: F,
}

/// The function as deployed: SNS through the SDK, and the upstream when one is configured.
pub type LambdaApp = App<SnsPublisher, Option<HttpForwarder>>;

impl LambdaApp {
    /// Builds the clients once per cold start; `loader` supplies region, credentials and
    /// endpoint (the standard AWS variables in Lambda).
    pub async fn new(config: Config, loader: aws_config::ConfigLoader) -> LambdaApp {
        if config.tokens.is_empty() {
            tracing::warn!(
                event = "auth_disabled",
                "IM_CALLBACK_TOKEN is not set: callbacks are accepted without a Sign; anyone \
                 who knows an SdkAppID can publish exceptions"
            );
        }
        let client = publish::sns_client(loader).await;
        App {
            publisher: SnsPublisher::new(client, config.publish_timeout),
            forwarder: config.upstream.clone().map(HttpForwarder::new),
            config,
        }
    }
}

/// The service the Lambda runtime drives.
pub fn service<P: Publisher, F: Forwarder>(
    app: &'static App<P, F>,
) -> impl lambda_http::Service<
    Request,
    Response = AsBuilt,
    Error = Infallible,
    Future = impl Future<Output = Result<AsBuilt, Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    lambda_http::service_fn(move |request: Request| async move {
        Ok(AsBuilt(handle(app, request).await))
    })
}

/// A response exactly as built. lambda_http's own conversion of a `Response` re-encodes a
/// text body from its declared charset into UTF-8 (and drops a byte-order mark), which would
/// change an upstream's answer on its way to Chat; here a body goes out as it is: text when it
/// is UTF-8, otherwise bytes (base64 to API Gateway, which decodes them).
#[derive(Debug)]
pub struct AsBuilt(pub Response<Body>);

impl lambda_http::IntoResponse for AsBuilt {
    fn into_response(self) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        Box::pin(std::future::ready(self.0))
    }
}

/// The fields of a callback's log line; absent ones are left out. One line per callback, and
/// one more for the forward of an exception.
#[derive(Debug, Default)]
struct Line<'a> {
    event: &'static str,
    outcome: &'static str,
    category: Option<&'static str>,
    error_code: Option<i64>,
    group_id: Option<Cow<'a, str>>,
    dedup_key: Option<&'a str>,
    message_id: Option<&'a str>,
    command: Option<Cow<'a, str>>,
    status: Option<u16>,
    duration_ms: Option<u64>,
    reason: Option<&'static str>,
    detail: Option<String>,
    counted: Option<Counted>,
}

/// Writes `$line` at `$level`: the field list of every callback line, in one place.
macro_rules! log_line {
    ($level:ident, $line:expr, $request_id:expr, $now:expr) => {{
        let line: &Line<'_> = &$line;
        let counted = line.counted;
        let count = |c: Counted| (counted == Some(c)).then_some(1);
        tracing::$level!(
            event = line.event,
            outcome = line.outcome,
            category = line.category,
            errorCode = line.error_code,
            groupId = line.group_id.as_deref(),
            dedupKey = line.dedup_key,
            messageId = line.message_id,
            command = line.command.as_deref(),
            status = line.status,
            durationMs = line.duration_ms,
            reason = line.reason,
            detail = line.detail.as_deref(),
            Category = line
                .category
                .filter(|_| count(Counted::Exception).is_some()),
            Exceptions = count(Counted::Exception),
            Reason = line.reason.filter(|_| count(Counted::Rejected).is_some()),
            Rejected = count(Counted::Rejected),
            Command = line
                .command
                .as_deref()
                .filter(|_| count(Counted::Forwarded).is_some()),
            Forwarded = count(Counted::Forwarded),
            ForwardFailures = count(Counted::ForwardFailure),
            _aws = counted.map(|c| emf_metadata(c, $now)),
            requestId = $request_id,
        )
    }};
}

/// Answers one HTTP request. Never fails: every problem is an answer to Chat.
pub async fn handle<P: Publisher, F: Forwarder>(
    app: &App<P, F>,
    request: Request,
) -> Response<Body> {
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
    let request_id = request
        .lambda_context_ref()
        .map_or("", |c| c.request_id.as_str());
    let now = SystemTime::now();

    match decide(&webhook_request, &app.config, now) {
        Err(rejection) => {
            let line = Line {
                event: "callback",
                outcome: "rejected",
                reason: Some(rejection.reason()),
                detail: Some(rejection.to_string()),
                counted: Some(Counted::Rejected),
                ..Line::default()
            };
            log_line!(warn, line, request_id, now);
            fail(&rejection)
        }
        Ok(Decision::Acknowledge { command }) => {
            let line = Line {
                event: "callback",
                outcome: "other_command",
                command: Some(bounded(&command)),
                ..Line::default()
            };
            log_line!(info, line, request_id, now);
            acknowledge()
        }
        Ok(Decision::Forward { command }) => {
            let forwarded = forward(app, &request, &command, "callback", request_id, now).await;
            match forwarded {
                Ok(answer) => pass_on(answer),
                Err(ForwardError::TimedOut(timeout)) => fail(&Rejection::UpstreamTimedOut {
                    timeout_ms: timeout.as_millis(),
                }),
                Err(_) => fail(&Rejection::UpstreamFailed),
            }
        }
        Ok(Decision::Exception {
            message,
            topic,
            forward: also_forward,
        }) => {
            let published = publish(app, &message, topic, request_id, now);
            if also_forward {
                // Concurrently, each bounded by its own timeout; Chat's answer is the publish's.
                let exception =
                    forward(app, &request, EXCEPTION_COMMAND, "forward", request_id, now);
                tokio::join!(published, exception).0
            } else {
                published.await
            }
        }
    }
}

/// Publishes an exception, or keeps it in the log when its category has no topic.
async fn publish<P: Publisher, F>(
    app: &App<P, F>,
    message: &Message,
    topic: Option<&crate::config::Topic>,
    request_id: &str,
    now: SystemTime,
) -> Response<Body> {
    let record = |kept| Record {
        kept,
        message,
        request_id,
        at: SystemTime::now(),
    };
    let Some(topic) = topic else {
        // Without a topic for its category, this line is where the exception is kept.
        record(Kept::NoTopic).emit();
        return acknowledge();
    };
    match app.publisher.publish(topic, message).await {
        Ok(message_id) => {
            let line = Line {
                event: "callback",
                outcome: "published",
                category: Some(message.category.as_str()),
                error_code: Some(message.error_code),
                group_id: message.group_id.as_deref().map(bounded),
                dedup_key: Some(&message.dedup_key),
                message_id: Some(&message_id),
                counted: Some(Counted::Exception),
                ..Line::default()
            };
            log_line!(info, line, request_id, now);
            acknowledge()
        }
        Err(error) => {
            // Chat will not send this again: the record is the only copy, for the redrive.
            let error = error.to_string();
            record(Kept::PublishFailed {
                topic_arn: &topic.arn,
                error: &error,
            })
            .emit();
            fail(&Rejection::PublishFailed)
        }
    }
}

/// Sends the request on to the upstream exactly as received and logs what came of it.
async fn forward<P, F: Forwarder>(
    app: &App<P, F>,
    request: &Request,
    command: &str,
    event: &'static str,
    request_id: &str,
    now: SystemTime,
) -> Result<UpstreamAnswer, ForwardError> {
    let started = Instant::now();
    let result = app
        .forwarder
        .forward(Forward {
            query: request.uri().query(),
            body: request.body().as_ref(),
            content_type: request
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        })
        .await;
    let duration_ms = Some(started.elapsed().as_millis() as u64);
    match &result {
        Ok(answer) => {
            let line = Line {
                event,
                outcome: "forwarded",
                command: Some(bounded(command)),
                status: Some(answer.status),
                duration_ms,
                counted: Some(Counted::Forwarded),
                ..Line::default()
            };
            log_line!(info, line, request_id, now);
        }
        // Never the body, the token or the Sign: the command, why, and how long it took.
        Err(error) => {
            let line = Line {
                event: "forward_failed",
                outcome: "forward_failed",
                command: Some(bounded(command)),
                duration_ms,
                reason: Some(error.reason()),
                detail: Some(error.to_string()),
                counted: Some(Counted::ForwardFailure),
                ..Line::default()
            };
            log_line!(warn, line, request_id, now);
        }
    }
    result
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
    use crate::forward::RecordingForwarder;
    use crate::publish::RecordingPublisher;
    use crate::test_support::config_with;
    use lambda_http::http;

    type TestApp = App<RecordingPublisher, Option<RecordingForwarder>>;

    fn app(fail: bool) -> TestApp {
        App {
            config: config_with(&[]),
            publisher: RecordingPublisher {
                fail,
                ..Default::default()
            },
            forwarder: None,
        }
    }

    fn gateway(forward_exceptions: bool, answer: Result<UpstreamAnswer, ForwardError>) -> TestApp {
        let flag = if forward_exceptions { "true" } else { "false" };
        App {
            config: config_with(&[
                ("UPSTREAM_CALLBACK_URL", "https://backend.example/im"),
                ("FORWARD_EXCEPTIONS", flag),
            ]),
            publisher: RecordingPublisher::default(),
            forwarder: Some(RecordingForwarder::answering(answer)),
        }
    }

    fn rejection_by_upstream() -> UpstreamAnswer {
        UpstreamAnswer {
            status: 200,
            content_type: Some("application/json; charset=utf-8".into()),
            body: br#"{"ActionStatus":"OK","ErrorCode":1,"ErrorInfo":"blocked by moderation"}"#
                .to_vec(),
            ..UpstreamAnswer::default()
        }
    }

    fn request(method: &str, query: &str, body: &str) -> Request {
        let map: lambda_http::aws_lambda_events::query_map::QueryMap = query.parse().unwrap();
        http::Request::builder()
            .method(method)
            .uri(format!("https://example.com/callback?{query}"))
            .body(Body::Text(body.to_owned()))
            .unwrap()
            .with_query_string_parameters(map)
    }

    // Every test here logs through a subscriber of its own: tracing caches a callsite met with
    // no interested subscriber as "never", across threads, which would hide lines from the
    // test that captures them.

    fn body_of(response: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    const QUERY: &str =
        "SdkAppid=1400000000&CallbackCommand=Group.CallbackSendMsgException&contenttype=json";

    #[tokio::test]
    async fn a_published_exception_gets_the_exact_acknowledgement() {
        let _logs = crate::logging::capture::start(true);
        let app = app(false);
        let response = handle(
            &app,
            request("POST", QUERY, r#"{"ErrorCode":10017,"GroupId":"g"}"#),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.body().as_ref(), ACKNOWLEDGEMENT.as_bytes());
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let sent = app.publisher.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "arn:aws:sns:us-east-1:123456789012:ms");
    }

    #[tokio::test]
    async fn a_failed_publish_is_503_and_not_acknowledged() {
        let _logs = crate::logging::capture::start(true);
        let app = app(true);
        let response = handle(&app, request("POST", QUERY, r#"{"ErrorCode":10017}"#)).await;
        assert_eq!(response.status(), 503);
        let body = body_of(&response);
        assert_eq!(body["ActionStatus"], "FAIL");
        assert_eq!(body["ErrorCode"], 5030);
    }

    #[tokio::test]
    async fn refusals_are_chat_shaped_fail_answers_and_publish_nothing() {
        let _logs = crate::logging::capture::start(true);
        let app = app(false);
        for (method, query, body, status) in [
            ("PUT", QUERY, "{}", 405),
            ("POST", "SdkAppid=1", "{}", 403),
            ("POST", QUERY, "[]", 400),
        ] {
            let response = handle(&app, request(method, query, body)).await;
            assert_eq!(response.status(), status);
            let body = body_of(&response);
            assert_eq!(body["ActionStatus"], "FAIL");
            assert_ne!(body["ErrorCode"], 0);
            assert!(!body["ErrorInfo"].as_str().unwrap().is_empty());
        }
        assert!(app.publisher.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn unclassified_without_a_topic_is_acknowledged_and_not_published() {
        let _logs = crate::logging::capture::start(true);
        let app = app(false);
        let response = handle(&app, request("POST", QUERY, r#"{"ErrorCode":1}"#)).await;
        assert_eq!(response.status(), 200);
        assert!(app.publisher.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn every_callback_line_carries_valid_emf_metrics() {
        let (_guard, logs) = crate::logging::capture::start(true);
        let ok = app(false);
        handle(&ok, request("POST", QUERY, r#"{"ErrorCode":10017}"#)).await;
        handle(&ok, request("POST", "SdkAppid=2", "{}")).await;
        handle(&app(true), request("POST", QUERY, r#"{"ErrorCode":10004}"#)).await;

        let records = logs.records();
        assert_eq!(records.len(), 3, "{records:#?}");
        let metrics: Vec<Vec<String>> = records
            .iter()
            .map(|r| crate::metrics::validate_emf(r).unwrap())
            .collect();
        assert_eq!(
            metrics,
            [
                vec!["Exceptions"],
                vec!["Rejected"],
                vec!["Exceptions", "PublishFailures"]
            ]
        );
        assert_eq!(records[0]["Category"], "muted_sender");
        assert_eq!(records[1]["Reason"], "sdk_app_id");
        assert_eq!(records[2]["event"], "publish_failed");
        assert_eq!(records[2]["Category"], "invalid_group");
        assert_eq!(records[2]["envelope"]["errorCode"], 10004);
    }

    #[tokio::test]
    async fn without_a_topic_the_exception_is_kept_in_its_log_line() {
        let (_guard, logs) =
            crate::logging::capture::start_at(true, tracing::level_filters::LevelFilter::ERROR);
        let app = app(false);
        let response = handle(
            &app,
            request("POST", QUERY, r#"{"ErrorCode":1,"GroupId":"g"}"#),
        )
        .await;
        assert_eq!(response.status(), 200);
        let records = logs.records();
        assert_eq!(records.len(), 1, "kept even at level ERROR: {records:#?}");
        assert_eq!(records[0]["outcome"], "logged");
        assert_eq!(records[0]["envelope"]["callback"]["GroupId"], "g");
    }

    const BEFORE_SEND: &str =
        "SdkAppid=1400000000&CallbackCommand=Group.CallbackBeforeSendMsg&contenttype=json&x=a%2Bb";

    #[tokio::test]
    async fn another_command_gets_the_upstreams_answer_unchanged() {
        let (_guard, logs) = crate::logging::capture::start(true);
        let app = gateway(false, Ok(rejection_by_upstream()));
        let mut req = request("POST", BEFORE_SEND, "{\"MsgBody\": []}");
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let response = handle(&app, req).await;
        let expected = rejection_by_upstream();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        assert_eq!(response.body().as_ref(), expected.body.as_slice());
        let received = app
            .forwarder
            .as_ref()
            .unwrap()
            .received
            .lock()
            .unwrap()
            .clone();
        assert_eq!(
            received,
            [(
                Some(BEFORE_SEND.to_owned()),
                b"{\"MsgBody\": []}".to_vec(),
                Some("text/plain".into())
            )]
        );
        assert!(app.publisher.sent.lock().unwrap().is_empty());
        let records = logs.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["outcome"], "forwarded");
        assert_eq!(records[0]["status"], 200);
        assert_eq!(
            crate::metrics::validate_emf(&records[0]).unwrap(),
            ["Forwarded"]
        );
        assert_eq!(records[0]["Command"], "Group.CallbackBeforeSendMsg");
    }

    #[tokio::test]
    async fn an_upstream_without_an_answer_is_502_or_504() {
        let (_guard, logs) = crate::logging::capture::start(true);
        for (error, status, code) in [
            (
                ForwardError::Unreachable("connection refused".into()),
                502,
                5020,
            ),
            (ForwardError::AnswerTooLarge, 502, 5020),
            (
                ForwardError::TimedOut(std::time::Duration::from_millis(1500)),
                504,
                5040,
            ),
        ] {
            let app = gateway(false, Err(error));
            let response = handle(&app, request("POST", BEFORE_SEND, "{}")).await;
            assert_eq!(response.status(), status);
            let body = body_of(&response);
            assert_eq!(body["ActionStatus"], "FAIL");
            assert_eq!(body["ErrorCode"], code);
        }
        let records = logs.records();
        assert_eq!(records.len(), 3);
        for record in &records {
            assert_eq!(record["event"], "forward_failed");
            assert_eq!(record["command"], "Group.CallbackBeforeSendMsg");
            assert!(record["durationMs"].is_u64());
            assert_eq!(
                crate::metrics::validate_emf(record).unwrap(),
                ["ForwardFailures"]
            );
        }
    }

    #[tokio::test]
    async fn a_forwarded_exception_is_answered_by_its_publish_alone() {
        let (_guard, logs) = crate::logging::capture::start(true);
        let down = Err(ForwardError::Unreachable("refused".into()));
        for (forward_exceptions, upstream, forwards) in [
            (true, down.clone(), 1),
            (true, Ok(rejection_by_upstream()), 1),
            (false, down, 0),
        ] {
            let app = gateway(forward_exceptions, upstream);
            let response = handle(&app, request("POST", QUERY, r#"{"ErrorCode":10017}"#)).await;
            assert_eq!(response.status(), 200);
            assert_eq!(response.body().as_ref(), ACKNOWLEDGEMENT.as_bytes());
            assert_eq!(app.publisher.sent.lock().unwrap().len(), 1);
            let received = app
                .forwarder
                .as_ref()
                .unwrap()
                .received
                .lock()
                .unwrap()
                .len();
            assert_eq!(received, forwards);
        }
        let mut events: Vec<String> = logs
            .records()
            .iter()
            .map(|r| {
                format!(
                    "{}/{}",
                    r["event"].as_str().unwrap(),
                    r["outcome"].as_str().unwrap()
                )
            })
            .collect();
        events.sort();
        assert_eq!(
            events,
            [
                "callback/published",
                "callback/published",
                "callback/published",
                "forward/forwarded",
                "forward_failed/forward_failed",
            ]
        );
    }
}
