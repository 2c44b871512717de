//! The one configuration every unit test starts from.

use crate::config::{
    Config, ConfigError, IM_SDK_APP_ID, TOPIC_ARN_CONTENT_FILTER, TOPIC_ARN_FREQUENCY_LIMIT,
    TOPIC_ARN_INVALID_GROUP, TOPIC_ARN_MUTED_SENDER,
};

/// The required variables: one SdkAppID and the four required topics, `content_filter` FIFO.
pub const BASE_ENV: [(&str, &str); 5] = [
    (IM_SDK_APP_ID, "1400000000"),
    (
        TOPIC_ARN_INVALID_GROUP,
        "arn:aws:sns:us-east-1:123456789012:ig",
    ),
    (
        TOPIC_ARN_FREQUENCY_LIMIT,
        "arn:aws:sns:us-east-1:123456789012:fl",
    ),
    (
        TOPIC_ARN_CONTENT_FILTER,
        "arn:aws:sns:us-east-1:123456789012:cf.fifo",
    ),
    (
        TOPIC_ARN_MUTED_SENDER,
        "arn:aws:sns:us-east-1:123456789012:ms",
    ),
];

/// Reads `env` as the environment: a later entry wins over an earlier one of the same name.
pub fn load(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_lookup(|name| {
        env.iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    })
}

/// [`BASE_ENV`] with `overrides` on top.
pub fn config_with(overrides: &[(&str, &str)]) -> Config {
    let env: Vec<(&str, &str)> = BASE_ENV.iter().chain(overrides).copied().collect();
    load(&env).unwrap_or_else(|e| panic!("test configuration: {e}"))
}

/// An envelope as the function writes it, with a callback sent with odd spacing, numbers as
/// strings and escapes: replay must keep every byte.
pub const ENVELOPE: &str = r#"{"category":"frequency_limit","errorCode":10023,"sdkAppId":"1400000000","optPlatform":"RESTAPI","receivedAt":"2026-11-25T20:00:00.123Z","dedupKey":"d3b4c0a6e2c1f0b7a8e9d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5","callback":{"ErrorCode":"10023",  "GroupId":"@TGS#1","Random":1,"X":[1.50,"\u00e9"]}}"#;

/// A `publish_failed` log line holding `envelope`.
pub fn record_line(envelope: &str) -> String {
    format!(
        r#"{{"timestamp":"2026-11-25T20:00:00.700Z","level":"FATAL","event":"publish_failed","outcome":"publish_failed","category":"frequency_limit","topicArn":"arn:aws:sns:us-east-1:1:fl","envelope":{envelope},"error":"publish failed","requestId":"r1"}}"#
    )
}
