//! The pure core: what Chat sends, whether it is genuine, where it goes, and what is published.
//! Nothing here does I/O or reads the clock; the adapters and handlers do, and pass the time in.

pub mod auth;
pub mod budget;
pub mod callback;
pub mod classify;
pub mod config;
pub mod decision;
pub mod message;
pub mod publish;
pub mod query;
pub mod rejection;

use std::borrow::Cow;

/// The only callback command this function publishes; every other command is acknowledged,
/// or forwarded to the upstream when one is configured.
pub const EXCEPTION_COMMAND: &str = "Group.CallbackSendMsgException";

/// At most 100 characters of something the caller (or an operator) wrote, for an answer, a
/// log line or a configuration error: nobody can make either as long as they like.
pub fn bounded(value: &str) -> Cow<'_, str> {
    const MAX_CHARS: usize = 100;
    match value.char_indices().nth(MAX_CHARS) {
        None => value.into(),
        Some((cut, _)) => format!("{}...", &value[..cut]).into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_quote_keeps_at_most_100_characters() {
        let long = "群".repeat(5000);
        assert_eq!(super::bounded(&long).chars().count(), 103);
        assert_eq!(super::bounded("short"), "short");
    }
}
