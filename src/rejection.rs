//! Every refusal, and the one place that turns it into Chat's FAIL answer.

use crate::callback::BodyError;
use crate::config::bounded;
use std::fmt;

/// Why a callback was not accepted. `answer` holds the HTTP table of docs/contract.md.
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
    /// The SNS message (envelope and attributes), or the `publish_failed` record that would
    /// keep it, is over `limit` bytes: nothing could ever deliver it, so it is refused now.
    MessageTooLarge {
        bytes: usize,
        limit: usize,
    },
    PublishFailed,
    /// The upstream callback backend gave no answer: refused, reset, TLS failure, or an
    /// answer too large to pass on.
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
            MessageTooLarge { .. } => (413, 4131),
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
            MessageTooLarge { .. } => "message_too_large",
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
            MessageTooLarge { bytes, limit } => write!(
                f,
                "the exception would make a message of {bytes} bytes, over the {limit}-byte \
                 limit of SNS and CloudWatch Logs"
            ),
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

    #[test]
    fn statuses_follow_the_design_table() {
        let cases = [
            (Rejection::MethodNotAllowed, 405),
            (Rejection::BodyTooLarge { limit: 1 }, 413),
            (Rejection::AppIdNotAccepted, 403),
            (Rejection::SignMismatch, 401),
            (Rejection::RequestTimeOutsideSkew { max_skew_secs: 60 }, 401),
            (Rejection::BadBody(BodyError::NotObject), 400),
            (Rejection::CommandMissing, 400),
            (Rejection::PublishFailed, 503),
            (
                Rejection::MessageTooLarge {
                    bytes: 262_145,
                    limit: 262_144,
                },
                413,
            ),
            (Rejection::UpstreamFailed, 502),
            (Rejection::UpstreamTimedOut { timeout_ms: 1500 }, 504),
        ];
        for (rejection, status) in cases {
            let answer = rejection.answer();
            assert_eq!(answer.status, status, "{rejection:?}");
            assert_ne!(answer.error_code, 0);
            assert!(!answer.error_info.is_empty());
        }
        let codes = |r: Rejection| r.answer().error_code;
        assert_eq!(
            codes(Rejection::MessageTooLarge { bytes: 2, limit: 1 }),
            4131
        );
        assert_eq!(codes(Rejection::UpstreamFailed), 5020);
        assert_eq!(codes(Rejection::UpstreamTimedOut { timeout_ms: 1 }), 5040);
    }

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
