//! Tencent Cloud Chat `Group.CallbackSendMsgException` webhook for AWS Lambda.
//!
//! The decision (is this callback genuine and well-formed, and which topic does it go to) is a
//! pure function of the request and the configuration: see [`decision::decide`]. Publishing to
//! SNS is the only I/O and sits behind the [`publish::Publisher`] trait; [`handler`] is the
//! thin adapter between Lambda's HTTP events and both.

pub mod auth;
pub mod callback;
pub mod classify;
pub mod config;
pub mod decision;
pub mod envelope;
pub mod handler;
pub mod logging;
pub mod metrics;
pub mod publish;
pub mod query;
pub mod rejection;
pub mod replay;

/// The only callback command this function publishes; every other command is acknowledged.
pub const EXCEPTION_COMMAND: &str = "Group.CallbackSendMsgException";
