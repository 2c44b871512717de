//! Every refusal, and the one place that turns it into Chat's FAIL answer.

use crate::domain::bounded;
use crate::domain::callback::BodyError;
use std::fmt;

/// Why a callback was not accepted, or could not be handled. `answer` holds the HTTP table of
/// docs/contract.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    MethodNotAllowed,
    BodyTooLarge {
        limit: usize,
    },
    AppIdMissing,
    AppIdNotAccepted,
    AppIdConflicting,
    SignMissing,
    RequestTimeMissing,
    RequestTimeMalformed,
    RequestTimeOutsideSkew {
        max_skew_secs: u64,
    },
    SignMismatch,
    SignConflicting,
    CommandMissing,
    CommandConflicting,
    CommandMismatch {
        query: String,
        body: String,
    },
    BadBody(BodyError),
    /// SNS failed, and the retry queue failed too or none is configured.
    PublishFailed,
    /// The upstream callback backend gave no usable answer: refused, reset, TLS failure, an
    /// answer too large to pass on, or a status outside 200-599.
    UpstreamFailed,
    UpstreamTimedOut {
        timeout_ms: u128,
    },
}

/// An answer's HTTP status and the `ErrorCode` / `ErrorInfo` of its FAIL body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailAnswer {
    pub status: u16,
    pub error_code: u32,
    pub error_info: String,
}

impl Rejection {
    pub fn answer(&self) -> FailAnswer {
        use Rejection::*;
        let (status, error_code) = match self {
            MethodNotAllowed => (405, 4050),
            BodyTooLarge { .. } => (413, 4130),
            AppIdMissing => (403, 4030),
            AppIdNotAccepted => (403, 4031),
            AppIdConflicting => (403, 4032),
            SignMissing => (401, 4010),
            RequestTimeMissing => (401, 4011),
            RequestTimeMalformed => (401, 4012),
            RequestTimeOutsideSkew { .. } => (401, 4013),
            SignMismatch => (401, 4014),
            SignConflicting => (401, 4015),
            CommandMissing => (400, 4000),
            CommandConflicting => (400, 4001),
            CommandMismatch { .. } => (400, 4002),
            BadBody(_) => (400, 4003),
            PublishFailed => (503, 5030),
            UpstreamFailed => (502, 5020),
            UpstreamTimedOut { .. } => (504, 5040),
        };
        FailAnswer {
            status,
            error_code,
            error_info: self.to_string(),
        }
    }

    /// A short, stable name for logs and metrics.
    pub fn reason(&self) -> &'static str {
        use Rejection::*;
        match self {
            MethodNotAllowed => "method_not_allowed",
            BodyTooLarge { .. } => "body_too_large",
            AppIdMissing | AppIdNotAccepted | AppIdConflicting => "sdk_app_id",
            SignMissing | RequestTimeMissing | RequestTimeMalformed | SignMismatch
            | SignConflicting => "signature",
            RequestTimeOutsideSkew { .. } => "request_time_skew",
            CommandMissing | CommandConflicting | CommandMismatch { .. } => "callback_command",
            BadBody(_) => "bad_body",
            PublishFailed => "publish_failed",
            UpstreamFailed => "upstream_failed",
            UpstreamTimedOut { .. } => "upstream_timeout",
        }
    }
}

// What the caller is told. It names what was wrong and never repeats a secret: not the token,
// not the Sign that was sent, not the one that was expected; and it quotes at most 100
// characters of anything the caller sent.
impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Rejection::*;
        match self {
            MethodNotAllowed => f.write_str("method not allowed: Chat callbacks are POST"),
            BodyTooLarge { limit } => write!(f, "body larger than {limit} bytes"),
            AppIdMissing => f.write_str("SdkAppid is missing from the query string"),
            AppIdNotAccepted => f.write_str("SdkAppid is not accepted by this webhook"),
            AppIdConflicting => f.write_str("SdkAppid is given more than once"),
            SignMissing => f.write_str("Sign is missing from the query string"),
            RequestTimeMissing => f.write_str("RequestTime is missing from the query string"),
            RequestTimeMalformed => f.write_str("RequestTime is not a Unix time in seconds"),
            RequestTimeOutsideSkew { max_skew_secs } => write!(
                f,
                "RequestTime is more than {max_skew_secs} s away from the webhook's clock"
            ),
            SignMismatch => f.write_str("Sign does not match"),
            SignConflicting => f.write_str("Sign or RequestTime is given more than once"),
            CommandMissing => f.write_str("CallbackCommand is missing"),
            CommandConflicting => f.write_str("CallbackCommand is given more than once"),
            CommandMismatch { query, body } => write!(
                f,
                "CallbackCommand in the body ({:?}) disagrees with the query string ({:?})",
                bounded(body),
                bounded(query)
            ),
            BadBody(e) => e.fmt(f),
            PublishFailed => f.write_str("the exception could not be published; retry later"),
            UpstreamFailed => f.write_str("the upstream callback backend gave no usable answer"),
            UpstreamTimedOut { timeout_ms } => write!(
                f,
                "the upstream callback backend did not answer within {timeout_ms} ms"
            ),
        }
    }
}

impl From<BodyError> for Rejection {
    fn from(e: BodyError) -> Self {
        Rejection::BadBody(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The statuses and codes are asserted once, through `decide` (decision.rs), and once end to
    // end per answer class (tests/).

    #[test]
    fn what_the_caller_sent_is_quoted_at_most_100_characters() {
        let long = "G".repeat(10_000);
        let mismatch = Rejection::CommandMismatch {
            query: long.clone(),
            body: long.clone(),
        };
        let info = mismatch.answer().error_info;
        assert!(info.len() < 320, "{} bytes", info.len());
        let wrong_type = Rejection::BadBody(BodyError::WrongType {
            field: "GroupId".into(),
            detail: format!("invalid type: string {long:?}"),
        });
        assert!(wrong_type.answer().error_info.len() < 200);
    }
}
