//! Bench-only baseline (not shipped): the smallest `lambda_http` function, answering Chat's
//! acknowledgement and doing nothing else. The cold-start benchmark runs it beside the webhook.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_request: Request| async {
        Ok::<_, Error>(Response::new(Body::Text(
            r#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}"#.to_owned(),
        )))
    }))
    .await
}
