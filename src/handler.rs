//! The adapter between Lambda's HTTP events and the decision: reads the request, publishes
//! what the decision says, logs one line per callback, and answers Chat.

use crate::config::Config;
use crate::decision::{Decision, WebhookRequest, decide};
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

    let decision = match decide(&webhook_request, &app.config, SystemTime::now()) {
        Ok(decision) => decision,
        Err(rejection) => {
            tracing::warn!(
                event = "callback",
                outcome = "rejected",
                reason = rejection.reason(),
                detail = %rejection,
                request_id,
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
                request_id
            );
            acknowledge()
        }
        Decision::Exception {
            message,
            topic: None,
            error_code,
            group_id,
        } => {
            // No topic for this category: the log line is where the exception is kept.
            tracing::info!(
                event = "callback",
                outcome = "logged",
                category = message.category.as_str(),
                error_code,
                group_id,
                dedup_key = message.dedup_key,
                envelope = message.body,
                request_id,
            );
            acknowledge()
        }
        Decision::Exception {
            message,
            topic: Some(topic),
            error_code,
            group_id,
        } => match app.publisher.publish(topic, &message).await {
            Ok(message_id) => {
                tracing::info!(
                    event = "callback",
                    outcome = "published",
                    category = message.category.as_str(),
                    error_code,
                    group_id,
                    dedup_key = message.dedup_key,
                    message_id,
                    request_id,
                );
                acknowledge()
            }
            Err(error) => {
                // Chat will not send this again: this record is the only copy, made for replay.
                tracing::error!(
                    event = "publish_failed",
                    outcome = "publish_failed",
                    category = message.category.as_str(),
                    error_code,
                    group_id,
                    topic_arn = topic.arn,
                    dedup_key = message.dedup_key,
                    envelope = message.body,
                    error = %error,
                    request_id,
                );
                fail(&Rejection::PublishFailed)
            }
        },
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
