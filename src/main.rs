use im_exception_webhook::domain::config::Config;
use im_exception_webhook::handlers::webhook::{App, service};
use im_exception_webhook::telemetry;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    let config = telemetry::or_exit(Config::from_env());
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    // One app for the life of the process. `run_concurrent` (many invocations at once on Lambda
    // Managed Instances, one at a time elsewhere) needs the service `'static`; a leaked
    // reference costs nothing per invocation, where an `Arc` would count on every one.
    let app: &'static App = Box::leak(Box::new(telemetry::or_exit(App::new(config, loader).await)));
    lambda_http::run_concurrent(service(app)).await
}
