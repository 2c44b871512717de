//! Tencent Cloud Chat `Group.CallbackSendMsgException` webhook for AWS Lambda.
//!
//! Four layers, each in its folder, each importing only the ones listed before it:
//!
//! - [`domain`]: the pure core. What Chat sends, whether it is genuine, which category an
//!   exception is, what the answer is, and the publish it makes: no I/O, no clock.
//! - [`telemetry`]: the typed log lines and their embedded metrics.
//! - [`adapters`]: the I/O, one service each: SNS, the retry queue (SQS), the token secret
//!   (Secrets Manager) and the upstream callback backend.
//! - [`handlers`]: the entry points the mains run: the webhook's HTTP handler, the redrive
//!   function's SQS handler and the replay tool.

pub mod adapters;
pub mod domain;
pub mod handlers;
pub mod telemetry;
