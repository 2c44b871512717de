//! Configuration from the environment, read and validated once at cold start.

use crate::classify::{Category, Classifier};
use std::fmt;
use std::time::Duration;

pub const IM_SDK_APP_ID: &str = "IM_SDK_APP_ID";
pub const IM_CALLBACK_TOKEN: &str = "IM_CALLBACK_TOKEN";
pub const IM_SIGN_MAX_SKEW_SECS: &str = "IM_SIGN_MAX_SKEW_SECS";
pub const TOPIC_ARN_INVALID_GROUP: &str = "TOPIC_ARN_INVALID_GROUP";
pub const TOPIC_ARN_FREQUENCY_LIMIT: &str = "TOPIC_ARN_FREQUENCY_LIMIT";
pub const TOPIC_ARN_CONTENT_FILTER: &str = "TOPIC_ARN_CONTENT_FILTER";
pub const TOPIC_ARN_MUTED_SENDER: &str = "TOPIC_ARN_MUTED_SENDER";
pub const TOPIC_ARN_UNCLASSIFIED: &str = "TOPIC_ARN_UNCLASSIFIED";
pub const ERROR_CODE_OVERRIDES: &str = "ERROR_CODE_OVERRIDES";
pub const PUBLISH_TIMEOUT_MS: &str = "PUBLISH_TIMEOUT_MS";
pub const MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";

/// Every variable this function reads (besides the standard AWS ones).
pub const VARIABLES: [&str; 11] = [
    IM_SDK_APP_ID,
    IM_CALLBACK_TOKEN,
    IM_SIGN_MAX_SKEW_SECS,
    TOPIC_ARN_INVALID_GROUP,
    TOPIC_ARN_FREQUENCY_LIMIT,
    TOPIC_ARN_CONTENT_FILTER,
    TOPIC_ARN_MUTED_SENDER,
    TOPIC_ARN_UNCLASSIFIED,
    ERROR_CODE_OVERRIDES,
    PUBLISH_TIMEOUT_MS,
    MAX_BODY_BYTES,
];

/// The topic variable of each category, in [`Category::ALL`] order.
pub const TOPIC_VARIABLES: [&str; 5] = [
    TOPIC_ARN_INVALID_GROUP,
    TOPIC_ARN_FREQUENCY_LIMIT,
    TOPIC_ARN_CONTENT_FILTER,
    TOPIC_ARN_MUTED_SENDER,
    TOPIC_ARN_UNCLASSIFIED,
];

pub const DEFAULT_MAX_SKEW_SECS: u64 = 60;
pub const DEFAULT_PUBLISH_TIMEOUT_MS: u64 = 1500;
pub const DEFAULT_MAX_BODY_BYTES: usize = 262_144;

/// A missing or malformed variable; the message names it and never echoes a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "configuration error: {}: {}",
            self.variable, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}

/// An SNS topic; FIFO topics need a message group and deduplication id on every publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub arn: String,
    pub fifo: bool,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub app_ids: Vec<String>,
    pub token: Option<String>,
    pub max_skew_secs: u64,
    /// Indexed by [`Category::index`]; only `unclassified` may be absent.
    topics: [Option<Topic>; 5],
    pub classifier: Classifier,
    pub publish_timeout: Duration,
    pub max_body_bytes: usize,
}

// The token is a secret: it must not reach a log line through `{:?}`.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("app_ids", &self.app_ids)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_skew_secs", &self.max_skew_secs)
            .field("topics", &self.topics)
            .field("classifier", &self.classifier)
            .field("publish_timeout", &self.publish_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`; an empty value counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let required = |name: &'static str| {
            get(name).ok_or_else(|| ConfigError {
                variable: name,
                problem: "is required but not set".into(),
            })
        };

        let app_ids = parse_app_ids(&required(IM_SDK_APP_ID)?).map_err(|problem| ConfigError {
            variable: IM_SDK_APP_ID,
            problem,
        })?;
        let token = get(IM_CALLBACK_TOKEN);
        let max_skew_secs = parse_number(IM_SIGN_MAX_SKEW_SECS, get(IM_SIGN_MAX_SKEW_SECS))?
            .unwrap_or(DEFAULT_MAX_SKEW_SECS);

        let mut topics: [Option<Topic>; 5] = Default::default();
        for category in Category::ALL {
            let variable = TOPIC_VARIABLES[category.index()];
            let value = if category == Category::Unclassified {
                get(variable)
            } else {
                Some(required(variable)?)
            };
            topics[category.index()] = value
                .map(|arn| parse_topic_arn(&arn))
                .transpose()
                .map_err(|problem| ConfigError { variable, problem })?;
        }

        let classifier = Classifier::parse_overrides(
            &get(ERROR_CODE_OVERRIDES).unwrap_or_default(),
        )
        .map_err(|problem| ConfigError {
            variable: ERROR_CODE_OVERRIDES,
            problem,
        })?;
        let publish_timeout_ms = parse_number(PUBLISH_TIMEOUT_MS, get(PUBLISH_TIMEOUT_MS))?
            .unwrap_or(DEFAULT_PUBLISH_TIMEOUT_MS);
        let max_body_bytes = parse_number(MAX_BODY_BYTES, get(MAX_BODY_BYTES))?
            .map_or(Ok(DEFAULT_MAX_BODY_BYTES), usize::try_from)
            .map_err(|_| ConfigError {
                variable: MAX_BODY_BYTES,
                problem: "is too large for this machine".into(),
            })?;

        Ok(Config {
            app_ids,
            token,
            max_skew_secs,
            topics,
            classifier,
            publish_timeout: Duration::from_millis(publish_timeout_ms),
            max_body_bytes,
        })
    }

    /// The topic that receives `category`, if one is configured.
    pub fn topic(&self, category: Category) -> Option<&Topic> {
        self.topics[category.index()].as_ref()
    }
}

fn parse_app_ids(value: &str) -> Result<Vec<String>, String> {
    let ids: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = ids
        .iter()
        .find(|id| !id.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("{bad:?} is not an SDKAppID (digits only)"));
    }
    if ids.is_empty() {
        return Err("lists no SDKAppID".into());
    }
    Ok(ids)
}

/// A positive whole number, or `None` when the variable is unset.
fn parse_number(variable: &'static str, value: Option<String>) -> Result<Option<u64>, ConfigError> {
    value
        .map(|v| match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError {
                variable,
                problem: format!("{:?} is not a positive whole number", v.trim()),
            }),
        })
        .transpose()
}

/// `arn:PARTITION:sns:REGION:ACCOUNT:NAME`, where a FIFO topic's name ends in `.fifo`.
fn parse_topic_arn(value: &str) -> Result<Topic, String> {
    let arn = value.trim();
    let parts: Vec<&str> = arn.split(':').collect();
    let well_formed = parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "sns"
        && parts[3..].iter().all(|p| !p.is_empty());
    if !well_formed {
        return Err(format!(
            "{arn:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
        ));
    }
    Ok(Topic {
        arn: arn.to_owned(),
        fifo: arn.ends_with(".fifo"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(crate) fn base_env() -> HashMap<&'static str, String> {
        HashMap::from([
            (IM_SDK_APP_ID, "1400000000".to_string()),
            (
                TOPIC_ARN_INVALID_GROUP,
                "arn:aws:sns:us-east-1:123456789012:ig".into(),
            ),
            (
                TOPIC_ARN_FREQUENCY_LIMIT,
                "arn:aws:sns:us-east-1:123456789012:fl".into(),
            ),
            (
                TOPIC_ARN_CONTENT_FILTER,
                "arn:aws:sns:us-east-1:123456789012:cf.fifo".into(),
            ),
            (
                TOPIC_ARN_MUTED_SENDER,
                "arn:aws:sns:us-east-1:123456789012:ms".into(),
            ),
        ])
    }

    fn load(env: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| env.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_optional_variables_are_unset_or_empty() {
        let mut env = base_env();
        env.insert(IM_CALLBACK_TOKEN, String::new());
        env.insert(TOPIC_ARN_UNCLASSIFIED, String::new());
        env.insert(PUBLISH_TIMEOUT_MS, String::new());
        let c = load(&env).unwrap();
        assert_eq!(c.app_ids, ["1400000000"]);
        assert_eq!(c.token, None);
        assert_eq!(c.max_skew_secs, 60);
        assert_eq!(c.publish_timeout, Duration::from_millis(1500));
        assert_eq!(c.max_body_bytes, 262_144);
        assert!(c.topic(Category::Unclassified).is_none());
        assert!(c.topic(Category::ContentFilter).unwrap().fifo);
        assert!(!c.topic(Category::InvalidGroup).unwrap().fifo);
    }

    #[test]
    fn every_variable_is_read() {
        let mut env = base_env();
        env.insert(IM_SDK_APP_ID, " 1400000000, 1400000001 ".into());
        env.insert(IM_CALLBACK_TOKEN, "xxxxyyyy".into());
        env.insert(IM_SIGN_MAX_SKEW_SECS, "30".into());
        env.insert(
            TOPIC_ARN_UNCLASSIFIED,
            "arn:aws:sns:us-east-1:123456789012:un".into(),
        );
        env.insert(ERROR_CODE_OVERRIDES, "80005=content_filter".into());
        env.insert(PUBLISH_TIMEOUT_MS, "900".into());
        env.insert(MAX_BODY_BYTES, "1024".into());
        let c = load(&env).unwrap();
        assert_eq!(c.app_ids, ["1400000000", "1400000001"]);
        assert_eq!(c.token.as_deref(), Some("xxxxyyyy"));
        assert_eq!(c.max_skew_secs, 30);
        assert_eq!(
            c.topic(Category::Unclassified).unwrap().arn,
            "arn:aws:sns:us-east-1:123456789012:un"
        );
        assert_eq!(c.classifier.classify(80005), Category::ContentFilter);
        assert_eq!(c.publish_timeout, Duration::from_millis(900));
        assert_eq!(c.max_body_bytes, 1024);
    }

    #[test]
    fn a_bad_variable_is_named() {
        let cases: &[(&'static str, Option<&str>)] = &[
            (IM_SDK_APP_ID, None),
            (IM_SDK_APP_ID, Some("14000x")),
            (IM_SDK_APP_ID, Some(" , ")),
            (TOPIC_ARN_INVALID_GROUP, None),
            (TOPIC_ARN_FREQUENCY_LIMIT, Some("not-an-arn")),
            (
                TOPIC_ARN_CONTENT_FILTER,
                Some("arn:aws:sqs:us-east-1:123456789012:q"),
            ),
            (TOPIC_ARN_MUTED_SENDER, None),
            (TOPIC_ARN_UNCLASSIFIED, Some("arn:aws:sns:us-east-1:1")),
            (IM_SIGN_MAX_SKEW_SECS, Some("-5")),
            (PUBLISH_TIMEOUT_MS, Some("0")),
            (PUBLISH_TIMEOUT_MS, Some("1.5s")),
            (MAX_BODY_BYTES, Some("big")),
            (ERROR_CODE_OVERRIDES, Some("80005=spam")),
        ];
        for (variable, value) in cases {
            let mut env = base_env();
            match value {
                Some(v) => env.insert(variable, v.to_string()),
                None => env.remove(variable),
            };
            let err = load(&env).unwrap_err();
            assert_eq!(err.variable, *variable, "{value:?}");
            assert!(err.to_string().contains(variable));
        }
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let mut env = base_env();
        env.insert(IM_CALLBACK_TOKEN, "s3cr3t-token".into());
        let shown = format!("{:?}", load(&env).unwrap());
        assert!(!shown.contains("s3cr3t-token"));
        assert!(shown.contains("redacted"));
    }
}
