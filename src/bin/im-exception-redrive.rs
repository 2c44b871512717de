//! The redrive function: republishes the retry queue's messages (an SQS event source mapping
//! with `ReportBatchItemFailures`).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use im_exception_webhook::adapters::{aws, sns};
use im_exception_webhook::handlers::redrive;
use im_exception_webhook::telemetry;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let sdk = aws::sdk_config(aws_config::defaults(aws_config::BehaviorVersion::latest())).await;
    let sns = &sns::patient_client(&sdk);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        let (response, line) = redrive::handle(sns, event.payload, &event.context.request_id).await;
        telemetry::emit(&line);
        Ok::<SqsBatchResponse, lambda_runtime::Error>(response)
    }))
    .await
}
