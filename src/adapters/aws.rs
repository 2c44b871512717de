//! What every AWS client of a cold start shares: region, credentials, endpoints (the standard
//! variables, `AWS_ENDPOINT_URL_SNS` and the like included) and one HTTPS client.

use aws_config::{ConfigLoader, SdkConfig};
use aws_sdk_sns::config::SharedHttpClient;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use std::time::Duration;

/// The shared configuration, loaded once per cold start. Loading reads only the environment;
/// the first request to a service pays for its connection.
pub async fn sdk_config(loader: ConfigLoader) -> SdkConfig {
    loader.http_client(https_client()).load().await
}

/// The SDK's HTTP client on rustls + ring, which sets up several times faster than the SDK's
/// default aws-lc on a cold start. The trust store is the system's, plus the certificates of
/// `SSL_CERT_FILE` when set (rustls-native-certs reads it).
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The SDK's standard retries (exponential backoff with full jitter, its classifiers for 5xx,
/// throttling, resets and dead pooled connections), pulled in to fit Chat's 2 seconds: the
/// first retry comes within `first` (the backoff is a random fraction of it), the waits double
/// up to `longest`, and the operation timeout each call sets (see [`timeouts`]), not the
/// attempt count, ends a run of failures.
pub fn retries(max_attempts: u32, first: Duration, longest: Duration) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(max_attempts)
        .with_initial_backoff(first)
        .with_max_backoff(longest)
}

/// What is left of the time until `until`; none is an error the caller reports as its failure.
pub fn time_left(until: tokio::time::Instant) -> Result<Duration, String> {
    let left = until.saturating_duration_since(tokio::time::Instant::now());
    if left.is_zero() {
        return Err("no time left".into());
    }
    Ok(left)
}

/// The whole call ends within `left`, retries included, and one attempt may take at most half
/// of it: a stalled attempt then still leaves room for another.
pub fn timeouts(left: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_timeout(left)
        .operation_attempt_timeout(left / 2)
        .build()
}
