//! The entry points: the webhook's HTTP handler, the redrive function's SQS handler, and the
//! replay tool's reading and republishing of last-resort records.

pub mod redrive;
#[cfg(feature = "replay")]
pub mod replay;
pub mod webhook;
