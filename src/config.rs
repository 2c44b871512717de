//! Configuration from the environment, read and validated once at cold start.

use crate::classify::{Category, Classifier};
use std::fmt;
use std::time::Duration;

pub const IM_SDK_APP_ID: &str = "IM_SDK_APP_ID";
pub const IM_CALLBACK_TOKEN: &str = "IM_CALLBACK_TOKEN";
pub const IM_CALLBACK_TOKEN_PREVIOUS: &str = "IM_CALLBACK_TOKEN_PREVIOUS";
pub const IM_SIGN_MAX_SKEW_SECS: &str = "IM_SIGN_MAX_SKEW_SECS";
pub const TOPIC_ARN_INVALID_GROUP: &str = "TOPIC_ARN_INVALID_GROUP";
pub const TOPIC_ARN_FREQUENCY_LIMIT: &str = "TOPIC_ARN_FREQUENCY_LIMIT";
pub const TOPIC_ARN_CONTENT_FILTER: &str = "TOPIC_ARN_CONTENT_FILTER";
pub const TOPIC_ARN_MUTED_SENDER: &str = "TOPIC_ARN_MUTED_SENDER";
pub const TOPIC_ARN_UNCLASSIFIED: &str = "TOPIC_ARN_UNCLASSIFIED";
pub const ERROR_CODE_OVERRIDES: &str = "ERROR_CODE_OVERRIDES";
pub const PUBLISH_TIMEOUT_MS: &str = "PUBLISH_TIMEOUT_MS";
pub const MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";
pub const UPSTREAM_CALLBACK_URL: &str = "UPSTREAM_CALLBACK_URL";
pub const UPSTREAM_TIMEOUT_MS: &str = "UPSTREAM_TIMEOUT_MS";
pub const FORWARD_EXCEPTIONS: &str = "FORWARD_EXCEPTIONS";

/// Every variable the webhook reads (besides the standard AWS ones), with its default.
/// docs/configuration.md holds the same table for people; a test keeps the two equal.
pub const VARIABLES: [(&str, Option<&str>); 15] = [
    (IM_SDK_APP_ID, None),
    (IM_CALLBACK_TOKEN, None),
    (IM_CALLBACK_TOKEN_PREVIOUS, None),
    (IM_SIGN_MAX_SKEW_SECS, Some("60")),
    (TOPIC_ARN_INVALID_GROUP, None),
    (TOPIC_ARN_FREQUENCY_LIMIT, None),
    (TOPIC_ARN_CONTENT_FILTER, None),
    (TOPIC_ARN_MUTED_SENDER, None),
    (TOPIC_ARN_UNCLASSIFIED, None),
    (ERROR_CODE_OVERRIDES, None),
    (PUBLISH_TIMEOUT_MS, Some("1500")),
    (MAX_BODY_BYTES, Some("65536")),
    (UPSTREAM_CALLBACK_URL, None),
    (UPSTREAM_TIMEOUT_MS, Some("1500")),
    (FORWARD_EXCEPTIONS, Some("false")),
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
/// Chat's own bodies are a few kilobytes; the limit leaves room for long messages while the
/// envelope and its `publish_failed` record stay far below SNS's and CloudWatch Logs' 256 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 65_536;
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 1500;
/// Chat waits 2 s: a forward allowed to take longer could only produce answers nobody reads.
pub const MAX_UPSTREAM_TIMEOUT_MS: u64 = 1999;

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

/// The topic of each category: all the redrive function and the replay tool need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics([Option<Topic>; 5]);

impl Topics {
    /// Reads the `TOPIC_ARN_*` variables; only `unclassified` may be unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Topics, ConfigError> {
        let get = non_empty(&lookup);
        let mut topics: [Option<Topic>; 5] = Default::default();
        for category in Category::ALL {
            let variable = TOPIC_VARIABLES[category.index()];
            let value = match get(variable) {
                None if category != Category::Unclassified => return Err(unset(variable)),
                value => value,
            };
            topics[category.index()] = value
                .map(|arn| parse_topic_arn(&arn))
                .transpose()
                .map_err(|problem| ConfigError { variable, problem })?;
        }
        Ok(Topics(topics))
    }

    pub fn from_env() -> Result<Topics, ConfigError> {
        Topics::from_lookup(|name| std::env::var(name).ok())
    }

    /// The topic that receives `category`, if one is configured.
    pub fn get(&self, category: Category) -> Option<&Topic> {
        self.0[category.index()].as_ref()
    }
}

/// The app's existing callback backend, which every other callback command goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// An absolute http or https URL, possibly with a query of its own.
    pub url: String,
    pub timeout: Duration,
    /// Whether `Group.CallbackSendMsgException` is forwarded as well as published.
    pub forward_exceptions: bool,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub app_ids: Vec<String>,
    /// The tokens a `Sign` may be made with: the current one, then the previous one during a
    /// rotation. Empty: authentication is off.
    pub tokens: Vec<String>,
    pub max_skew_secs: u64,
    pub topics: Topics,
    pub classifier: Classifier,
    pub publish_timeout: Duration,
    pub max_body_bytes: usize,
    pub upstream: Option<Upstream>,
}

// The tokens are secrets: they must not reach a log line through `{:?}`; nor may the upstream
// URL, whose query may carry a key of its own.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("app_ids", &self.app_ids)
            .field("tokens", &format_args!("<{} redacted>", self.tokens.len()))
            .field("max_skew_secs", &self.max_skew_secs)
            .field("topics", &self.topics)
            .field("classifier", &self.classifier)
            .field("publish_timeout", &self.publish_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("upstream", &self.upstream.as_ref().map(|_| "<redacted>"))
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
        let get = non_empty(&lookup);
        let app_ids = get(IM_SDK_APP_ID).ok_or_else(|| unset(IM_SDK_APP_ID))?;
        let app_ids = parse_app_ids(&app_ids).map_err(|problem| ConfigError {
            variable: IM_SDK_APP_ID,
            problem,
        })?;
        let tokens: Vec<String> = [IM_CALLBACK_TOKEN, IM_CALLBACK_TOKEN_PREVIOUS]
            .iter()
            .filter_map(|name| get(name))
            .collect();
        // A previous token alone would mean "no token" to a reader of the deployment, yet
        // refuse every call Chat signs with the new one: say so rather than guess.
        if get(IM_CALLBACK_TOKEN).is_none() && !tokens.is_empty() {
            return Err(ConfigError {
                variable: IM_CALLBACK_TOKEN_PREVIOUS,
                problem: format!("is set but {IM_CALLBACK_TOKEN} is not"),
            });
        }
        let max_skew_secs = parse_number(IM_SIGN_MAX_SKEW_SECS, get(IM_SIGN_MAX_SKEW_SECS))?
            .unwrap_or(DEFAULT_MAX_SKEW_SECS);
        let topics = Topics::from_lookup(&lookup)?;
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
            tokens,
            max_skew_secs,
            topics,
            classifier,
            publish_timeout: Duration::from_millis(publish_timeout_ms),
            max_body_bytes,
            upstream: parse_upstream(&get)?,
        })
    }

    /// The topic that receives `category`, if one is configured.
    pub fn topic(&self, category: Category) -> Option<&Topic> {
        self.topics.get(category)
    }
}

/// The configuration, or one error line naming the variable and the end of the cold start:
/// Lambda reports the init failure, and nothing is accepted that could not be handled.
pub fn or_exit<T>(loaded: Result<T, ConfigError>) -> T {
    loaded.unwrap_or_else(|error| {
        tracing::error!(event = "config_error", variable = error.variable, "{error}");
        std::process::exit(1);
    })
}

/// `lookup` with empty values counted as unset.
fn non_empty(lookup: &impl Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| lookup(name).filter(|v| !v.trim().is_empty())
}

fn unset(variable: &'static str) -> ConfigError {
    ConfigError {
        variable,
        problem: "is required but not set".into(),
    }
}

fn parse_upstream(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Upstream>, ConfigError> {
    let forward_exceptions = match get(FORWARD_EXCEPTIONS).map(|v| v.trim().to_ascii_lowercase()) {
        None => false,
        Some(v) if v == "false" => false,
        Some(v) if v == "true" => true,
        Some(v) => {
            return Err(ConfigError {
                variable: FORWARD_EXCEPTIONS,
                problem: format!("{:?} is neither true nor false", bounded(&v)),
            });
        }
    };
    let timeout_ms = parse_number(UPSTREAM_TIMEOUT_MS, get(UPSTREAM_TIMEOUT_MS))?
        .unwrap_or(DEFAULT_UPSTREAM_TIMEOUT_MS);
    if timeout_ms > MAX_UPSTREAM_TIMEOUT_MS {
        return Err(ConfigError {
            variable: UPSTREAM_TIMEOUT_MS,
            problem: format!(
                "{timeout_ms} is not less than 2000: Chat stops waiting after 2 seconds"
            ),
        });
    }
    let Some(url) = get(UPSTREAM_CALLBACK_URL) else {
        if forward_exceptions {
            return Err(ConfigError {
                variable: FORWARD_EXCEPTIONS,
                problem: format!("is true but {UPSTREAM_CALLBACK_URL} is not set"),
            });
        }
        return Ok(None);
    };
    let url = parse_upstream_url(url.trim()).map_err(|problem| ConfigError {
        variable: UPSTREAM_CALLBACK_URL,
        problem,
    })?;
    Ok(Some(Upstream {
        url,
        timeout: Duration::from_millis(timeout_ms),
        forward_exceptions,
    }))
}

/// An absolute http or https URL with a host. Never echoed: its query may hold a key.
fn parse_upstream_url(url: &str) -> Result<String, String> {
    let problem = || "is not an absolute http:// or https:// URL with a host".to_owned();
    let uri: lambda_http::http::Uri = url.parse().map_err(|_| problem())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    if !scheme_ok || !host_ok || url.contains('#') {
        return Err(problem());
    }
    Ok(url.to_owned())
}

/// At most 100 characters of something the caller (or an operator) wrote, for a message.
pub fn bounded(value: &str) -> std::borrow::Cow<'_, str> {
    const MAX_CHARS: usize = 100;
    match value.char_indices().nth(MAX_CHARS) {
        None => value.into(),
        Some((cut, _)) => format!("{}...", &value[..cut]).into(),
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
        return Err(format!(
            "{:?} is not an SDKAppID (digits only)",
            bounded(bad)
        ));
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
                problem: format!("{:?} is not a positive whole number", bounded(v.trim())),
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
            "{:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)",
            bounded(arn)
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
    use crate::test_support::{BASE_ENV, config_with, load};

    #[test]
    fn defaults_apply_when_optional_variables_are_unset_or_empty() {
        let c = config_with(&[
            (IM_CALLBACK_TOKEN, ""),
            (TOPIC_ARN_UNCLASSIFIED, ""),
            (PUBLISH_TIMEOUT_MS, ""),
            (UPSTREAM_CALLBACK_URL, ""),
            (FORWARD_EXCEPTIONS, ""),
        ]);
        assert_eq!(c.app_ids, ["1400000000"]);
        assert!(c.tokens.is_empty());
        assert_eq!(c.max_skew_secs, 60);
        assert_eq!(c.publish_timeout, Duration::from_millis(1500));
        assert_eq!(c.max_body_bytes, 65_536);
        assert_eq!(c.upstream, None);
        assert!(c.topic(Category::Unclassified).is_none());
        assert!(c.topic(Category::ContentFilter).unwrap().fifo);
        assert!(!c.topic(Category::InvalidGroup).unwrap().fifo);
    }

    #[test]
    fn every_variable_is_read() {
        let c = config_with(&[
            (IM_SDK_APP_ID, " 1400000000, 1400000001 "),
            (IM_CALLBACK_TOKEN, "xxxxyyyy"),
            (IM_CALLBACK_TOKEN_PREVIOUS, "oldtoken"),
            (IM_SIGN_MAX_SKEW_SECS, "30"),
            (
                TOPIC_ARN_UNCLASSIFIED,
                "arn:aws:sns:us-east-1:123456789012:un",
            ),
            (ERROR_CODE_OVERRIDES, "80005=content_filter"),
            (PUBLISH_TIMEOUT_MS, "900"),
            (MAX_BODY_BYTES, "1024"),
            (UPSTREAM_CALLBACK_URL, "https://backend.example/im?key=1"),
            (UPSTREAM_TIMEOUT_MS, "700"),
            (FORWARD_EXCEPTIONS, "TRUE"),
        ]);
        assert_eq!(c.app_ids, ["1400000000", "1400000001"]);
        assert_eq!(c.tokens, ["xxxxyyyy", "oldtoken"]);
        assert_eq!(c.max_skew_secs, 30);
        assert_eq!(
            c.topic(Category::Unclassified).unwrap().arn,
            "arn:aws:sns:us-east-1:123456789012:un"
        );
        assert_eq!(c.classifier.classify(80005), Category::ContentFilter);
        assert_eq!(c.publish_timeout, Duration::from_millis(900));
        assert_eq!(c.max_body_bytes, 1024);
        assert_eq!(
            c.upstream,
            Some(Upstream {
                url: "https://backend.example/im?key=1".into(),
                timeout: Duration::from_millis(700),
                forward_exceptions: true,
            })
        );
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
            (IM_CALLBACK_TOKEN_PREVIOUS, Some("old-only")),
            (UPSTREAM_CALLBACK_URL, Some("backend.example/im")),
            (UPSTREAM_CALLBACK_URL, Some("ftp://backend.example/im")),
            (UPSTREAM_CALLBACK_URL, Some("https:///im")),
            (UPSTREAM_CALLBACK_URL, Some("https://backend.example/im#x")),
            (UPSTREAM_CALLBACK_URL, Some("https://back end/")),
            (UPSTREAM_TIMEOUT_MS, Some("2000")),
            (UPSTREAM_TIMEOUT_MS, Some("0")),
            (FORWARD_EXCEPTIONS, Some("yes")),
            (FORWARD_EXCEPTIONS, Some("true")),
        ];
        for (variable, value) in cases {
            let mut env: Vec<(&str, &str)> = BASE_ENV.to_vec();
            env.retain(|(name, _)| name != variable);
            if let Some(v) = value {
                env.push((variable, v));
            }
            let err = load(&env).unwrap_err();
            assert_eq!(err.variable, *variable, "{value:?}: {err}");
            assert!(err.to_string().contains(variable));
        }
    }

    #[test]
    fn the_upstream_url_may_carry_a_query_and_the_timeout_must_stay_under_two_seconds() {
        let c = config_with(&[
            (UPSTREAM_CALLBACK_URL, "http://10.0.0.5:8080/cb?app=im"),
            (UPSTREAM_TIMEOUT_MS, "1999"),
        ]);
        let upstream = c.upstream.unwrap();
        assert_eq!(upstream.url, "http://10.0.0.5:8080/cb?app=im");
        assert_eq!(upstream.timeout, Duration::from_millis(1999));
        assert!(!upstream.forward_exceptions);
    }

    #[test]
    fn debug_output_never_shows_the_tokens_or_the_upstream() {
        let shown = format!(
            "{:?}",
            config_with(&[
                (IM_CALLBACK_TOKEN, "s3cr3t-token"),
                (IM_CALLBACK_TOKEN_PREVIOUS, "0ld-s3cr3t"),
                (UPSTREAM_CALLBACK_URL, "https://b.example/?key=upstream-key"),
            ])
        );
        for secret in ["s3cr3t-token", "0ld-s3cr3t", "upstream-key"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn a_refusal_quotes_at_most_100_characters() {
        let long = "x".repeat(5000);
        assert_eq!(bounded(&long).chars().count(), 103);
        assert_eq!(bounded("short"), "short");
        let err = load(&[(IM_SDK_APP_ID, &long)]).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }

    /// docs/configuration.md is what people read: it lists exactly these variables, says which
    /// are required, and gives these defaults.
    #[test]
    fn the_documented_table_is_the_configuration() {
        let docs = include_str!("../docs/configuration.md");
        let rows: Vec<(String, bool, Option<String>)> = docs
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let unquote = |c: &str| c.trim_matches('`').to_owned();
                let default = (cells[3] != "-").then(|| unquote(cells[3]));
                (unquote(cells[1]), cells[2] == "yes", default)
            })
            .collect();
        let required = [
            IM_SDK_APP_ID,
            TOPIC_ARN_INVALID_GROUP,
            TOPIC_ARN_FREQUENCY_LIMIT,
            TOPIC_ARN_CONTENT_FILTER,
            TOPIC_ARN_MUTED_SENDER,
        ];
        let expected: Vec<(String, bool, Option<String>)> = VARIABLES
            .iter()
            .map(|(name, default)| {
                (
                    name.to_string(),
                    required.contains(name),
                    default.map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(rows, expected);
        // The defaults in the table are the ones the code applies.
        let c = config_with(&[]);
        assert_eq!(c.max_skew_secs.to_string(), "60");
        assert_eq!(c.publish_timeout.as_millis().to_string(), "1500");
        assert_eq!(c.max_body_bytes.to_string(), "65536");
        let with_upstream = config_with(&[(UPSTREAM_CALLBACK_URL, "https://b.example/")]);
        let upstream = with_upstream.upstream.unwrap();
        assert_eq!(upstream.timeout.as_millis().to_string(), "1500");
        assert!(!upstream.forward_exceptions);
        for (name, _) in VARIABLES {
            assert!(
                required.contains(&name) == load(&without(name)).is_err(),
                "{name}: required in the table, and only then refused when missing"
            );
        }
    }

    fn without(name: &str) -> Vec<(&'static str, &'static str)> {
        BASE_ENV
            .iter()
            .copied()
            .filter(|(n, _)| *n != name)
            .collect()
    }
}
