use im_exception_webhook::config::Config;
use im_exception_webhook::handler::{App, service};
use im_exception_webhook::{logging, publish};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    logging::init();
    let config = Config::from_env().unwrap_or_else(|error| {
        tracing::error!(event = "config_error", variable = error.variable, "{error}");
        std::process::exit(1);
    });
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    let client = publish::sns_client(loader, config.publish_timeout).await;
    let publisher = publish::SnsPublisher::new(client, config.publish_timeout);
    let app = Box::leak(Box::new(App { config, publisher }));
    lambda_http::run(service(app)).await
}
