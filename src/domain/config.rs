//! The configuration: one typed struct, read once at cold start from the environment (or, in
//! tests, from any lookup) by one helper, [`Env::var`]. docs/configuration.md is the table
//! people read; a test below keeps it and this file equal.

use crate::domain::bounded;
use crate::domain::classify::{Category, Classifier};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub app_ids: Vec<String>,
    pub tokens: TokenSource,
    pub max_skew_secs: u64,
    pub topics: Topics,
    pub classifier: Classifier,
    pub publish_timeout: Duration,
    pub max_body_bytes: usize,
    pub retry_queue_url: Option<String>,
    pub upstream: Option<Upstream>,
}

/// Where the tokens a `Sign` may be made with come from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// No token: `Sign` is not checked.
    None,
    /// `IM_CALLBACK_TOKEN`, then `IM_CALLBACK_TOKEN_PREVIOUS` during a rotation.
    Env(Vec<String>),
    /// `IM_CALLBACK_TOKEN_SECRET`: a Secrets Manager secret, name or ARN.
    Secret(String),
}

/// An SNS topic; FIFO topics need a message group and deduplication id on every publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub arn: String,
    pub fifo: bool,
}

/// The topic of each category; only `unclassified` may have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub invalid_group: Topic,
    pub frequency_limit: Topic,
    pub content_filter: Topic,
    pub muted_sender: Topic,
    pub unclassified: Option<Topic>,
}

impl Topics {
    pub fn get(&self, category: Category) -> Option<&Topic> {
        match category {
            Category::InvalidGroup => Some(&self.invalid_group),
            Category::FrequencyLimit => Some(&self.frequency_limit),
            Category::ContentFilter => Some(&self.content_filter),
            Category::MutedSender => Some(&self.muted_sender),
            Category::Unclassified => self.unclassified.as_ref(),
        }
    }
}

/// The app's existing callback backend, which every other callback command goes to.
#[derive(Clone, PartialEq, Eq)]
pub struct Upstream {
    /// An https URL (http only to a loopback host), possibly with a query of its own.
    pub url: String,
    pub timeout: Duration,
    /// Whether `Group.CallbackSendMsgException` is forwarded as well as published.
    pub forward_exceptions: bool,
}

/// A missing or malformed variable: one line naming it, quoting at most 100 characters of the
/// value, and never a token.
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

/// The environment, through `lookup`; a value of blanks counts as unset.
pub struct Env<F>(pub F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The variable `name`, parsed by `parse`, or `None` when unset.
    pub fn var<T>(
        &self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        (self.0)(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| parse(&v))
            .transpose()
            .map_err(|problem| ConfigError {
                variable: name,
                problem,
            })
    }

    fn required<T>(
        &self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        self.var(name, parse)?.ok_or_else(|| ConfigError {
            variable: name,
            problem: "is required but not set".into(),
        })
    }
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env(lookup);
        let upstream = match env.var("UPSTREAM_CALLBACK_URL", upstream_url)? {
            Some(url) => Some(Upstream {
                url,
                timeout: millis(env.var("UPSTREAM_TIMEOUT_MS", number(1, 1999))?, 1500),
                forward_exceptions: env.var("FORWARD_EXCEPTIONS", boolean)?.unwrap_or(false),
            }),
            None if env.var("FORWARD_EXCEPTIONS", boolean)? == Some(true) => {
                return Err(ConfigError {
                    variable: "FORWARD_EXCEPTIONS",
                    problem: "is true but UPSTREAM_CALLBACK_URL is not set".into(),
                });
            }
            None => None,
        };
        Ok(Config {
            app_ids: env.required("IM_SDK_APP_ID", app_ids)?,
            tokens: token_source(&env)?,
            max_skew_secs: env
                .var("IM_SIGN_MAX_SKEW_SECS", number(1, u64::MAX))?
                .unwrap_or(60),
            topics: Topics {
                invalid_group: env.required("TOPIC_ARN_INVALID_GROUP", topic)?,
                frequency_limit: env.required("TOPIC_ARN_FREQUENCY_LIMIT", topic)?,
                content_filter: env.required("TOPIC_ARN_CONTENT_FILTER", topic)?,
                muted_sender: env.required("TOPIC_ARN_MUTED_SENDER", topic)?,
                unclassified: env.var("TOPIC_ARN_UNCLASSIFIED", topic)?,
            },
            classifier: env
                .var("ERROR_CODE_OVERRIDES", Classifier::parse_overrides)?
                .unwrap_or_default(),
            publish_timeout: millis(env.var("PUBLISH_TIMEOUT_MS", number(100, 1900))?, 1500),
            // Why 64 KiB is the most: nothing built from such a body can pass SNS's and SQS's
            // 256 KiB, nor CloudWatch Logs' event limit. The envelope holds the body once, and
            // escaping a raw U+FFFE or U+FFFF (3 bytes) as `\ufffe` at most doubles it; the
            // attributes repeat fields of the body, each shorter decoded than sent; the queued
            // publish and its record write the envelope as a JSON string, where escaping a
            // quote or a backslash doubles it again. The worst case, a body all escapes, is
            // under 3 x 64 KiB plus about 1 KiB of names and the envelope's head.
            max_body_bytes: env
                .var("MAX_BODY_BYTES", number(1024, 65_536))?
                .map_or(65_536, |n| n as usize),
            retry_queue_url: env.var("RETRY_QUEUE_URL", |v| Ok(v.trim().to_owned()))?,
            upstream,
        })
    }
}

fn millis(value: Option<u64>, default: u64) -> Duration {
    Duration::from_millis(value.unwrap_or(default))
}

fn token_source(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<TokenSource, ConfigError> {
    // Tokens are used exactly as written: not trimmed.
    let token = |v: &str| Ok(v.to_owned());
    let current = env.var("IM_CALLBACK_TOKEN", token)?;
    let previous = env.var("IM_CALLBACK_TOKEN_PREVIOUS", token)?;
    let secret = env.var("IM_CALLBACK_TOKEN_SECRET", |v| Ok(v.trim().to_owned()))?;
    let conflict = |variable, problem: &str| {
        Err(ConfigError {
            variable,
            problem: problem.into(),
        })
    };
    match (current, previous, secret) {
        (None, None, None) => Ok(TokenSource::None),
        (Some(_), _, Some(_)) | (None, Some(_), Some(_)) => conflict(
            "IM_CALLBACK_TOKEN_SECRET",
            "is set together with IM_CALLBACK_TOKEN or IM_CALLBACK_TOKEN_PREVIOUS: set one or the other",
        ),
        // A previous token alone would read as "no token" to whoever reads the deployment, yet
        // refuse every call Chat signs with the new one.
        (None, Some(_), None) => conflict(
            "IM_CALLBACK_TOKEN_PREVIOUS",
            "is set but IM_CALLBACK_TOKEN is not",
        ),
        (Some(current), previous, None) => Ok(TokenSource::Env(
            [Some(current), previous].into_iter().flatten().collect(),
        )),
        (None, None, Some(secret)) => Ok(TokenSource::Secret(secret)),
    }
}

fn app_ids(value: &str) -> Result<Vec<String>, String> {
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

/// A whole number from `min` to `max`.
fn number(min: u64, max: u64) -> impl FnOnce(&str) -> Result<u64, String> {
    move |value| match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(n) if n > max => Err(format!("{n} is more than {max}")),
        _ => Err(format!(
            "{:?} is not a whole number from {min}",
            bounded(value.trim())
        )),
    }
}

fn boolean(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{:?} is neither true nor false", bounded(value))),
    }
}

/// `arn:PARTITION:sns:REGION:ACCOUNT:NAME`, where a FIFO topic's name ends in `.fifo`.
fn topic(value: &str) -> Result<Topic, String> {
    let arn = value.trim();
    let parts: Vec<&str> = arn.split(':').collect();
    let well_formed = parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "sns"
        && parts.iter().all(|p| !p.is_empty());
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

/// An https URL, or http to a loopback host: every forward carries Chat's query, `Sign`
/// included, and a `Sign` seen in transit lets anyone forge callbacks within the skew window.
/// Never echoed: its query may hold a key of its own.
fn upstream_url(value: &str) -> Result<String, String> {
    let url = value.trim();
    let uri: lambda_http::http::Uri = url
        .parse()
        .map_err(|_| "is not an absolute URL".to_owned())?;
    let host = uri.host().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        _ if host.is_empty() || url.contains('#') => {
            Err("is not an absolute URL with a host (and no #fragment)".into())
        }
        Some("https") => Ok(url.to_owned()),
        Some("http") if loopback => Ok(url.to_owned()),
        Some("http") => Err(
            "is http:// to a host that is not loopback: forwards carry Chat's Sign, so they must \
             travel over https:// (http:// is only for a local backend on 127.0.0.1 or localhost)"
                .into(),
        ),
        _ => Err("is not an https:// URL".into()),
    }
}

// The tokens are secrets and the upstream URL may hold a key: neither reaches a log line
// through `{:?}`.
impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::None => f.write_str("None"),
            TokenSource::Env(tokens) => write!(f, "Env(<{} redacted>)", tokens.len()),
            TokenSource::Secret(id) => write!(f, "Secret({id:?})"),
        }
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("forward_exceptions", &self.forward_exceptions)
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("app_ids", &self.app_ids)
            .field("tokens", &self.tokens)
            .field("topics", &self.topics)
            .field("publish_timeout", &self.publish_timeout)
            .field("retry_queue_url", &self.retry_queue_url)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// The one configuration unit tests start from: every required variable, `content_filter` on a
/// FIFO topic, and `overrides` on top (a later entry wins).
#[cfg(test)]
pub(crate) fn test_config(overrides: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let base = [
        ("IM_SDK_APP_ID", "1400000000"),
        (
            "TOPIC_ARN_INVALID_GROUP",
            "arn:aws:sns:us-east-1:123456789012:ig",
        ),
        (
            "TOPIC_ARN_FREQUENCY_LIMIT",
            "arn:aws:sns:us-east-1:123456789012:fl",
        ),
        (
            "TOPIC_ARN_CONTENT_FILTER",
            "arn:aws:sns:us-east-1:123456789012:cf.fifo",
        ),
        (
            "TOPIC_ARN_MUTED_SENDER",
            "arn:aws:sns:us-east-1:123456789012:ms",
        ),
    ];
    let env: Vec<(&str, &str)> = base.iter().chain(overrides).copied().collect();
    Config::from_lookup(|name| {
        env.iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(overrides: &[(&str, &str)]) -> Config {
        test_config(overrides).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_variable_is_read() {
        let c = config(&[
            ("IM_SDK_APP_ID", " 1400000000, 1400000001 "),
            ("IM_CALLBACK_TOKEN", "xxxxyyyy"),
            ("IM_CALLBACK_TOKEN_PREVIOUS", "oldtoken"),
            ("IM_SIGN_MAX_SKEW_SECS", "30"),
            (
                "TOPIC_ARN_UNCLASSIFIED",
                "arn:aws:sns:us-east-1:123456789012:un",
            ),
            ("ERROR_CODE_OVERRIDES", "80005=content_filter"),
            ("PUBLISH_TIMEOUT_MS", "900"),
            ("MAX_BODY_BYTES", "1024"),
            (
                "RETRY_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/123456789012/retry",
            ),
            ("UPSTREAM_CALLBACK_URL", "https://backend.example/im?key=1"),
            ("UPSTREAM_TIMEOUT_MS", "700"),
            ("FORWARD_EXCEPTIONS", "TRUE"),
        ]);
        assert_eq!(c.app_ids, ["1400000000", "1400000001"]);
        assert_eq!(
            c.tokens,
            TokenSource::Env(vec!["xxxxyyyy".into(), "oldtoken".into()])
        );
        assert_eq!(c.max_skew_secs, 30);
        assert!(c.topics.get(Category::Unclassified).is_some());
        assert!(c.topics.get(Category::ContentFilter).unwrap().fifo);
        assert_eq!(c.classifier.classify(80005), Category::ContentFilter);
        assert_eq!(c.publish_timeout, Duration::from_millis(900));
        assert_eq!(c.max_body_bytes, 1024);
        assert!(c.retry_queue_url.unwrap().ends_with("/retry"));
        let upstream = c.upstream.unwrap();
        assert_eq!(upstream.url, "https://backend.example/im?key=1");
        assert_eq!(upstream.timeout, Duration::from_millis(700));
        assert!(upstream.forward_exceptions);
        let secret = config(&[("IM_CALLBACK_TOKEN_SECRET", " im/token ")]);
        assert_eq!(secret.tokens, TokenSource::Secret("im/token".into()));
    }

    #[test]
    fn a_bad_variable_is_named_and_quoted_at_most_100_characters() {
        let long = "x".repeat(5000);
        let overrides = format!("80005=spam,{long}");
        let cases: &[(&str, &str)] = &[
            ("IM_SDK_APP_ID", "14000x"),
            ("IM_SDK_APP_ID", " , "),
            ("TOPIC_ARN_FREQUENCY_LIMIT", "not-an-arn"),
            (
                "TOPIC_ARN_CONTENT_FILTER",
                "arn:aws:sqs:us-east-1:123456789012:q",
            ),
            ("TOPIC_ARN_UNCLASSIFIED", "arn:aws:sns:us-east-1:1"),
            ("IM_SIGN_MAX_SKEW_SECS", "-5"),
            ("PUBLISH_TIMEOUT_MS", "99"),
            ("PUBLISH_TIMEOUT_MS", "1901"),
            ("PUBLISH_TIMEOUT_MS", "1.5s"),
            ("MAX_BODY_BYTES", "65537"),
            ("MAX_BODY_BYTES", "1023"),
            ("ERROR_CODE_OVERRIDES", "80005=spam"),
            ("ERROR_CODE_OVERRIDES", &overrides),
            ("ERROR_CODE_OVERRIDES", &long),
            ("IM_CALLBACK_TOKEN_PREVIOUS", "old-only"),
            ("UPSTREAM_CALLBACK_URL", "backend.example/im"),
            ("UPSTREAM_CALLBACK_URL", "ftp://backend.example/im"),
            ("UPSTREAM_CALLBACK_URL", "http://backend.example/im"),
            ("UPSTREAM_CALLBACK_URL", "http://10.0.0.5:8080/im"),
            ("UPSTREAM_CALLBACK_URL", "https:///im"),
            ("UPSTREAM_CALLBACK_URL", "https://backend.example/im#x"),
            ("UPSTREAM_TIMEOUT_MS", "2000"),
            ("FORWARD_EXCEPTIONS", "yes"),
            ("FORWARD_EXCEPTIONS", "true"),
            ("IM_SDK_APP_ID", &long),
        ];
        for (variable, value) in cases {
            let mut env = vec![(*variable, *value)];
            if variable.starts_with("UPSTREAM_TIMEOUT") {
                env.push(("UPSTREAM_CALLBACK_URL", "https://b.example/"));
            }
            let err = test_config(&env).unwrap_err();
            assert_eq!(err.variable, *variable, "{value:?}: {err}");
            assert!(
                err.to_string().len() < 400,
                "{} bytes: {err}",
                err.to_string().len()
            );
        }
        for (a, b) in [
            ("IM_CALLBACK_TOKEN", "t"),
            ("IM_CALLBACK_TOKEN_PREVIOUS", "p"),
        ] {
            let err = test_config(&[
                (a, b),
                ("IM_CALLBACK_TOKEN", "t"),
                ("IM_CALLBACK_TOKEN_SECRET", "s"),
            ])
            .unwrap_err();
            assert_eq!(err.variable, "IM_CALLBACK_TOKEN_SECRET", "{err}");
        }
    }

    #[test]
    fn only_a_loopback_upstream_may_be_plain_http() {
        for url in [
            "http://127.0.0.1:8080/cb",
            "http://localhost/cb?app=im",
            "http://[::1]:9/cb",
            "https://10.0.0.5/cb",
        ] {
            let c = config(&[("UPSTREAM_CALLBACK_URL", url)]);
            assert_eq!(c.upstream.unwrap().url, url);
        }
    }

    #[test]
    fn debug_output_never_shows_the_tokens_or_the_upstream() {
        let shown = format!(
            "{:?}",
            config(&[
                ("IM_CALLBACK_TOKEN", "s3cr3t-token"),
                ("IM_CALLBACK_TOKEN_PREVIOUS", "0ld-s3cr3t"),
                (
                    "UPSTREAM_CALLBACK_URL",
                    "https://b.example/?key=upstream-key"
                ),
            ])
        );
        for secret in ["s3cr3t-token", "0ld-s3cr3t", "upstream-key"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    /// docs/configuration.md is what people read: it names exactly the variables the code
    /// reads, says which are required, and gives the defaults the code applies.
    #[test]
    fn the_documented_table_is_the_configuration() {
        let docs = include_str!("../../docs/configuration.md");
        let rows: Vec<(&str, bool, Option<&str>)> = docs
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let default = (cells[3] != "-").then(|| cells[3].trim_matches('`'));
                (cells[1].trim_matches('`'), cells[2] == "yes", default)
            })
            .collect();
        // Every variable the code asks for, given a complete environment.
        let asked = std::cell::RefCell::new(Vec::<String>::new());
        let _ = Config::from_lookup(|name| {
            asked.borrow_mut().push(name.to_owned());
            match name {
                "IM_SDK_APP_ID" => Some("1".into()),
                "UPSTREAM_CALLBACK_URL" => Some("https://b.example/".into()),
                n if n.starts_with("TOPIC_ARN_") => Some("arn:aws:sns:r:1:t".into()),
                _ => None,
            }
        });
        let mut asked = asked.into_inner();
        asked.sort();
        asked.dedup();
        let mut documented: Vec<&str> = rows.iter().map(|r| r.0).collect();
        documented.sort();
        assert_eq!(
            asked, documented,
            "the variables read are the variables documented"
        );

        let upstream = [("UPSTREAM_CALLBACK_URL", "https://b.example/")];
        let unset = config(&upstream);
        for (name, required, default) in rows {
            let without: Vec<(&str, &str)> = upstream.into_iter().chain([(name, "")]).collect();
            assert_eq!(
                test_config(&without).is_err(),
                required,
                "{name}: refused when unset exactly when it is required"
            );
            if let Some(default) = default {
                let set = config(&[upstream[0], (name, default)]);
                assert_eq!(set, unset, "{name}={default} is what unset means");
            }
        }
    }
}
