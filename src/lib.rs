//! Tencent Cloud Chat `Group.CallbackSendMsgException` webhook for AWS Lambda.
//!
//! The decision (is this callback genuine and well-formed, and where does it go) is a pure
//! function of the request and the configuration: see [`decision::decide`]. Publishing to SNS
//! and forwarding to the app's existing callback backend are the only I/O, behind the
//! [`publish::Publisher`] and [`forward::Forwarder`] traits; [`handler`] is the thin adapter
//! between Lambda's HTTP events and all three.
//!
//! A failed publish is kept as a `publish_failed` log record ([`record`]); the redrive function
//! and the replay tool read such records back ([`record_source`]) and publish them again
//! exactly as the webhook would have ([`republish`]).

pub mod auth;
pub mod callback;
pub mod classify;
pub mod config;
pub mod decision;
pub mod envelope;
pub mod forward;
pub mod handler;
pub mod logging;
pub mod metrics;
pub mod publish;
pub mod query;
pub mod record;
pub mod record_source;
pub mod redrive;
pub mod rejection;
pub mod republish;
pub mod retry;
#[cfg(test)]
pub(crate) mod test_support;

/// The only callback command this function publishes; every other command is acknowledged,
/// or forwarded to the upstream when one is configured.
pub const EXCEPTION_COMMAND: &str = "Group.CallbackSendMsgException";
