//! The tokens a `Sign` may be made with: from the environment, or from a Secrets Manager secret,
//! read at cold start and again at most every five minutes, so that a rotation needs no deploy.

use crate::domain::config::TokenSource;
use aws_config::SdkConfig;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long tokens read from the secret are used before it is read again.
pub const REFRESH_AFTER: Duration = Duration::from_secs(300);
/// A refresh happens during an invocation, inside Chat's 2 seconds: it may not take long.
const REFRESH_TIMEOUT: Duration = Duration::from_millis(500);

pub enum Tokens {
    Fixed(Arc<[String]>),
    Secret(Secret),
}

pub struct Secret {
    client: aws_sdk_secretsmanager::Client,
    id: String,
    refresh_after: Duration,
    cache: Mutex<(Arc<[String]>, Instant)>,
}

impl Tokens {
    /// The tokens of `source`; a secret is read now, and a failure stops the cold start.
    pub async fn load(source: &TokenSource, sdk: &SdkConfig) -> Result<Tokens, String> {
        Tokens::load_refreshing(source, sdk, REFRESH_AFTER).await
    }

    /// [`Tokens::load`], with the secret read again after `refresh_after` (tests shorten it).
    pub async fn load_refreshing(
        source: &TokenSource,
        sdk: &SdkConfig,
        refresh_after: Duration,
    ) -> Result<Tokens, String> {
        match source {
            TokenSource::None => Ok(Tokens::Fixed(Arc::new([]))),
            TokenSource::Env(tokens) => Ok(Tokens::Fixed(tokens.clone().into())),
            TokenSource::Secret(id) => {
                let client = aws_sdk_secretsmanager::Client::new(sdk);
                let tokens = read(&client, id, Duration::from_secs(5)).await?;
                Ok(Tokens::Secret(Secret {
                    client,
                    id: id.clone(),
                    refresh_after,
                    cache: Mutex::new((tokens, Instant::now())),
                }))
            }
        }
    }

    /// The tokens now; a secret read longer than [`REFRESH_AFTER`] ago is read again first. If that read
    /// fails, the tokens already held stay in use (a warning says so) until the next try, five
    /// minutes later: a Secrets Manager outage must not refuse every callback.
    pub async fn current(&self) -> Arc<[String]> {
        let secret = match self {
            Tokens::Fixed(tokens) => return tokens.clone(),
            Tokens::Secret(secret) => secret,
        };
        let mut cache = secret.cache.lock().await;
        if cache.1.elapsed() >= secret.refresh_after {
            cache.1 = Instant::now();
            match read(&secret.client, &secret.id, REFRESH_TIMEOUT).await {
                Ok(tokens) => cache.0 = tokens,
                Err(problem) => tracing::warn!(
                    event = "secret_refresh_failed",
                    "{problem}; the tokens read before stay in use"
                ),
            }
        }
        cache.0.clone()
    }
}

async fn read(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
    timeout: Duration,
) -> Result<Arc<[String]>, String> {
    let output = client
        .get_secret_value()
        .secret_id(id)
        .customize()
        .config_override(
            aws_sdk_secretsmanager::config::Builder::default()
                .timeout_config(crate::adapters::aws::timeouts(timeout)),
        )
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot read the token secret {id:?}: {}",
                DisplayErrorContext(e)
            )
        })?;
    let value = output
        .secret_string()
        .ok_or_else(|| format!("the token secret {id:?} holds no SecretString"))?;
    parse(value).map_err(|problem| format!("the token secret {id:?} {problem}"))
}

/// A secret is the token itself, or `{"current": "...", "previous": "..."}` during a rotation.
/// Either way a token is used exactly as written.
pub fn parse(value: &str) -> Result<Arc<[String]>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rotation {
        current: String,
        #[serde(default)]
        previous: Option<String>,
    }
    let tokens = if value.trim_start().starts_with('{') {
        let rotation: Rotation = serde_json::from_str(value)
            .map_err(|e| format!("is JSON but not {{\"current\": ..., \"previous\": ...}}: {e}"))?;
        [Some(rotation.current), rotation.previous]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
    } else {
        vec![value.to_owned()]
    };
    let tokens: Vec<String> = tokens.into_iter().filter(|t| !t.is_empty()).collect();
    match tokens.first() {
        Some(_) => Ok(tokens.into()),
        None => Err("holds an empty token".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_a_token_or_a_rotation() {
        assert_eq!(&*parse("xxxxyyyy").unwrap(), ["xxxxyyyy"]);
        assert_eq!(&*parse(" with blanks ").unwrap(), [" with blanks "]);
        assert_eq!(
            &*parse(r#"{"current":"new","previous":"old"}"#).unwrap(),
            ["new", "old"]
        );
        assert_eq!(
            &*parse(r#"{"current":"new","previous":""}"#).unwrap(),
            ["new"]
        );
        for bad in [
            "",
            r#"{"previous":"old"}"#,
            r#"{"current":"a","other":1}"#,
            "{nope",
            r#"{"current":""}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
