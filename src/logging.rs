//! Log set-up: one JSON object per line (what CloudWatch Logs Insights, metric filters and the
//! replay tool read), unless Lambda's log format is explicitly `Text`.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Whether `AWS_LAMBDA_LOG_FORMAT` asks for JSON. Unset means JSON too: the `publish_failed`
/// record must stay machine-readable for replay.
pub fn json_from_env() -> bool {
    !std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text"))
}

/// `AWS_LAMBDA_LOG_LEVEL` (as Lambda sets it), else `RUST_LOG` as a bare level, else INFO.
pub fn level_from_env() -> LevelFilter {
    ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find_map(|v| match v.trim().to_ascii_uppercase().as_str() {
            "FATAL" => Some(LevelFilter::ERROR),
            other => other.parse().ok(),
        })
        .unwrap_or(LevelFilter::INFO)
}

/// The subscriber used in production, writing to `writer`; tests pass a buffer.
pub fn subscriber<W>(
    json: bool,
    level: LevelFilter,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(false);
    if json {
        Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
        )
    } else {
        Box::new(builder.without_time().finish())
    }
}

/// Installs the production subscriber on standard output.
pub fn init() {
    let subscriber = subscriber(json_from_env(), level_from_env(), std::io::stdout);
    // Only fails if a subscriber is already set, in which case that one is kept.
    let _ = tracing::subscriber::set_global_default(subscriber);
}
