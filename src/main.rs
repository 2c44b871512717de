use im_exception_webhook::config::{Config, or_exit};
use im_exception_webhook::handler::{LambdaApp, service};
use im_exception_webhook::logging;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    logging::init();
    let config = or_exit(Config::from_env());
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    // One app for the life of the process. `run_concurrent` (many invocations at once on
    // Lambda Managed Instances, one at a time elsewhere) hands the service to tasks that need
    // it `'static`; a leaked reference costs nothing per invocation, where an `Arc` would
    // count references on every one.
    let app: &'static LambdaApp = Box::leak(Box::new(LambdaApp::new(config, loader).await));
    lambda_http::run_concurrent(service(app)).await
}
