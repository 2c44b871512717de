//! The redrive function: republishes the webhook's `publish_failed` records that a CloudWatch
//! Logs subscription delivers; a batch with a record not published fails the invocation.

use im_exception_webhook::config::{Topics, or_exit};
use im_exception_webhook::logging;
use im_exception_webhook::publish::{self, SnsPublisher};
use im_exception_webhook::record_source::SubscriptionEvent;
use im_exception_webhook::redrive::{PUBLISH_DEADLINE, Redrive};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    logging::init();
    let topics = or_exit(Topics::from_env());
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    let publisher = SnsPublisher::new(publish::sns_client(loader).await, PUBLISH_DEADLINE);
    let redrive = Redrive { topics, publisher };
    lambda_runtime::run(service_fn(|event: LambdaEvent<SubscriptionEvent>| {
        let redrive = &redrive;
        async move {
            // Boxed: unboxed, the batch future nests deep enough to overflow rustc's layout
            // query limit.
            let handled = Box::pin(redrive.handle(&event.payload, &event.context.request_id));
            let summary = handled.await?;
            Ok::<_, lambda_runtime::Error>(serde_json::json!({
                "redriven": summary.replayed,
                "repeated": summary.repeated,
                "skipped": summary.skipped,
            }))
        }
    }))
    .await
}
