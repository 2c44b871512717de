//! The adapter between Lambda's HTTP events and the decision: reads the request, publishes
//! what the decision says, logs one line per callback, and answers Chat.

use crate::config::Config;
use crate::decision::{Decision, WebhookRequest, decide};
use crate::metrics::{Counted, emf_metadata};
use crate::publish::Publisher;
use crate::query::Query;
use crate::rejection::Rejection;
use lambda_http::http::{StatusCode, header::CONTENT_TYPE};
use lambda_http::{Body, Request, RequestExt, Response};
use std::convert::Infallible;
use std::future::Future;
use std::time::SystemTime;

/// Chat's acknowledgement, byte for byte.
pub const ACKNOWLEDGEMENT: &str = r#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}"#;

/// What one cold start builds and every invocation uses.
#[derive(Debug)]
pub struct App<P> {
    pub config: Config,
    pub publisher: P,
}

/// The service `lambda_http::run` drives.
pub fn service<P: Publisher>(
    app: &'static App<P>,
) -> impl lambda_http::Service<
    Request,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> {
    lambda_http::service_fn(move |request: Request| async move { Ok(handle(app, request).await) })
}

/// Answers one HTTP request. Never fails: every problem is an answer to Chat.
pub async fn handle<P: Publisher>(app: &App<P>, request: Request) -> Response<Body> {
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
    let decision = match decide(&webhook_request, &app.config, now) {
        Ok(decision) => decision,
        Err(rejection) => {
            tracing::warn!(
                event = "callback",
                outcome = "rejected",
                reason = rejection.reason(),
                detail = %rejection,
                Reason = rejection.reason(),
                Rejected = 1,
                _aws = emf_metadata(Counted::Rejected, now),
                requestId = request_id,
            );
            return fail(&rejection);
        }
    };

    match decision {
        Decision::OtherCommand(command) => {
            tracing::info!(
                event = "callback",
                outcome = "other_command",
                command,
                requestId = request_id
            );
            acknowledge()
        }
        Decision::Exception {
            message,
            topic,
            error_code,
        } => {
            let group_id = message.attribute("groupId");
            let published = match topic {
                Some(topic) => match app.publisher.publish(topic, &message).await {
                    Ok(message_id) => Some(message_id),
                    Err(error) => {
                        // Chat will not send this again: this record is the only copy, for replay.
                        tracing::error!(
                            event = "publish_failed",
                            outcome = "publish_failed",
                            category = message.category.as_str(),
                            errorCode = error_code,
                            groupId = group_id,
                            topicArn = topic.arn,
                            dedupKey = message.dedup_key,
                            envelope = message.body,
                            error = %error,
                            Category = message.category.as_str(),
                            Exceptions = 1,
                            PublishFailures = 1,
                            _aws = emf_metadata(Counted::PublishFailure, now),
                            requestId = request_id,
                        );
                        return fail(&Rejection::PublishFailed);
                    }
                },
                None => None,
            };
            // Without a topic for its category, the log line is where the exception is kept.
            tracing::info!(
                event = "callback",
                outcome = if published.is_some() {
                    "published"
                } else {
                    "logged"
                },
                category = message.category.as_str(),
                errorCode = error_code,
                groupId = group_id,
                dedupKey = message.dedup_key,
                messageId = published,
                envelope = published.is_none().then_some(message.body.as_str()),
                Category = message.category.as_str(),
                Exceptions = 1,
                _aws = emf_metadata(Counted::Exception, now),
                requestId = request_id,
            );
            acknowledge()
        }
    }
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
    response.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("static header value"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::RecordingPublisher;
    use lambda_http::http;

    fn app(fail: bool) -> App<RecordingPublisher> {
        let env = [
            ("IM_SDK_APP_ID", "1400000000"),
            ("TOPIC_ARN_INVALID_GROUP", "arn:aws:sns:us-east-1:1:ig"),
            ("TOPIC_ARN_FREQUENCY_LIMIT", "arn:aws:sns:us-east-1:1:fl"),
            ("TOPIC_ARN_CONTENT_FILTER", "arn:aws:sns:us-east-1:1:cf"),
            ("TOPIC_ARN_MUTED_SENDER", "arn:aws:sns:us-east-1:1:ms"),
        ];
        let config = Config::from_lookup(|k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        App {
            config,
            publisher: RecordingPublisher {
                fail,
                ..Default::default()
            },
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
        assert_eq!(sent[0].0, "arn:aws:sns:us-east-1:1:ms");
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
}
