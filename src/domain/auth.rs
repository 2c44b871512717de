//! Is the call from Chat: the SdkAppid, and the Sign token when one is configured.

use crate::domain::query::{Param, Query};
use crate::domain::rejection::Rejection;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The accepted SdkAppid of the call.
pub fn check_app_id<'a>(query: &Query<'a>, accepted: &[String]) -> Result<&'a str, Rejection> {
    match query.get_non_empty("SdkAppid") {
        Param::Missing => Err(Rejection::AppIdMissing),
        Param::Conflicting => Err(Rejection::AppIdConflicting),
        Param::One(id) if accepted.iter().any(|a| a == id) => Ok(id),
        Param::One(_) => Err(Rejection::AppIdNotAccepted),
    }
}

/// Chat's signature: SHA-256 over `Token + RequestTime`, plain concatenation.
pub fn sign(token: &str, request_time: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(token.as_bytes());
    hasher.update(request_time.as_bytes());
    hasher.finalize().into()
}

/// Verifies `Sign` and `RequestTime` against the tokens (the current one and, during a
/// rotation, the previous one), within `max_skew_secs` of `now_secs`.
pub fn check_sign(
    query: &Query<'_>,
    tokens: &[String],
    max_skew_secs: u64,
    now_secs: u64,
) -> Result<(), Rejection> {
    let given_sign = match query.get_non_empty("Sign") {
        Param::Missing => return Err(Rejection::SignMissing),
        Param::Conflicting => return Err(Rejection::SignConflicting),
        Param::One(s) => s,
    };
    let request_time = match query.get_non_empty("RequestTime") {
        Param::Missing => return Err(Rejection::RequestTimeMissing),
        Param::Conflicting => return Err(Rejection::SignConflicting),
        Param::One(t) => t,
    };
    // Digits only: `u64::from_str` would also take a leading '+', which would change the
    // signed bytes without changing the time.
    if request_time.is_empty()
        || request_time.len() > 19
        || !request_time.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(Rejection::RequestTimeMalformed);
    }
    let sent_at: u64 = request_time
        .parse()
        .map_err(|_| Rejection::RequestTimeMalformed)?;
    if sent_at.abs_diff(now_secs) > max_skew_secs {
        return Err(Rejection::RequestTimeOutsideSkew { max_skew_secs });
    }
    let mut given = [0u8; 32];
    if hex::decode_to_slice(given_sign, &mut given).is_err() {
        return Err(Rejection::SignMismatch);
    }
    // Every token is compared, whichever matches: the time taken says nothing about which.
    let matched = tokens
        .iter()
        .fold(subtle::Choice::from(0), |matched, token| {
            matched | sign(token, request_time).ct_eq(&given)
        });
    if bool::from(matched) {
        Ok(())
    } else {
        Err(Rejection::SignMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFICIAL_SIGN: &str = "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061";

    fn tokens(names: &[&str]) -> Vec<String> {
        names.iter().map(|t| t.to_string()).collect()
    }

    fn query<'a>(sign: &'a str, time: &'a str) -> Query<'a> {
        Query::new([("Sign", sign), ("RequestTime", time)])
    }

    #[test]
    fn matches_chats_official_example() {
        assert_eq!(hex::encode(sign("xxxxyyyy", "1669872112")), OFFICIAL_SIGN);
        assert_eq!(
            check_sign(
                &query(OFFICIAL_SIGN, "1669872112"),
                &tokens(&["xxxxyyyy"]),
                60,
                1669872112
            ),
            Ok(())
        );
        let upper = OFFICIAL_SIGN.to_ascii_uppercase();
        assert_eq!(
            check_sign(
                &query(&upper, "1669872112"),
                &tokens(&["xxxxyyyy"]),
                60,
                1669872112
            ),
            Ok(())
        );
    }

    #[test]
    fn the_skew_window_is_inclusive_both_ways() {
        let t = 1669872112;
        assert_eq!(
            check_sign(
                &query(OFFICIAL_SIGN, "1669872112"),
                &tokens(&["xxxxyyyy"]),
                60,
                t + 60
            ),
            Ok(())
        );
        assert_eq!(
            check_sign(
                &query(OFFICIAL_SIGN, "1669872112"),
                &tokens(&["xxxxyyyy"]),
                60,
                t - 60
            ),
            Ok(())
        );
        for now in [t + 61, t - 61] {
            assert_eq!(
                check_sign(
                    &query(OFFICIAL_SIGN, "1669872112"),
                    &tokens(&["xxxxyyyy"]),
                    60,
                    now
                ),
                Err(Rejection::RequestTimeOutsideSkew { max_skew_secs: 60 })
            );
        }
    }

    #[test]
    fn every_wrong_signature_is_refused() {
        let t = 1669872112;
        let q = |s, r| check_sign(&query(s, r), &tokens(&["xxxxyyyy"]), 60, t);
        assert_eq!(q("", "1669872112"), Err(Rejection::SignMissing));
        assert_eq!(q(OFFICIAL_SIGN, ""), Err(Rejection::RequestTimeMissing));
        assert_eq!(
            q(OFFICIAL_SIGN, "+1669872112"),
            Err(Rejection::RequestTimeMalformed)
        );
        assert_eq!(
            q(OFFICIAL_SIGN, "soon"),
            Err(Rejection::RequestTimeMalformed)
        );
        assert_eq!(q("abc", "1669872112"), Err(Rejection::SignMismatch));
        assert_eq!(
            q(&OFFICIAL_SIGN[..63], "1669872112"),
            Err(Rejection::SignMismatch)
        );
        let mut flipped = OFFICIAL_SIGN.to_string();
        flipped.replace_range(0..1, "2");
        assert_eq!(q(&flipped, "1669872112"), Err(Rejection::SignMismatch));
        assert_eq!(
            check_sign(
                &query(OFFICIAL_SIGN, "1669872112"),
                &tokens(&["other-token"]),
                60,
                t
            ),
            Err(Rejection::SignMismatch)
        );
        let repeated = Query::new([
            ("Sign", OFFICIAL_SIGN),
            ("sign", "00"),
            ("RequestTime", "1669872112"),
        ]);
        assert_eq!(
            check_sign(&repeated, &tokens(&["xxxxyyyy"]), 60, t),
            Err(Rejection::SignConflicting)
        );
    }

    #[test]
    fn during_a_rotation_either_token_signs_and_no_other() {
        let t = 1669872112;
        let both = tokens(&["new-token", "xxxxyyyy"]);
        let by = |token: &str| hex::encode(sign(token, "1669872112"));
        for token in ["new-token", "xxxxyyyy"] {
            assert_eq!(
                check_sign(&query(&by(token), "1669872112"), &both, 60, t),
                Ok(())
            );
        }
        assert_eq!(
            check_sign(&query(&by("neither"), "1669872112"), &both, 60, t),
            Err(Rejection::SignMismatch)
        );
        assert_eq!(
            check_sign(
                &query(&by("xxxxyyyy"), "1669872112"),
                &tokens(&["new-token"]),
                60,
                t
            ),
            Err(Rejection::SignMismatch),
            "once the previous token is removed, its Sign is refused"
        );
    }

    #[test]
    fn app_id_must_be_one_of_the_accepted() {
        let accepted = vec!["1400000000".to_string(), "1400000001".to_string()];
        let q = |pairs: &[(&'static str, &'static str)]| {
            check_app_id(&Query::new(pairs.iter().copied()), &accepted)
        };
        assert_eq!(q(&[("SdkAppid", "1400000001")]), Ok("1400000001"));
        assert_eq!(q(&[("sdkappid", "1400000000")]), Ok("1400000000"));
        assert_eq!(q(&[]), Err(Rejection::AppIdMissing));
        assert_eq!(q(&[("SdkAppid", "")]), Err(Rejection::AppIdMissing));
        assert_eq!(
            q(&[("SdkAppid", "1400000002")]),
            Err(Rejection::AppIdNotAccepted)
        );
        assert_eq!(
            q(&[("SdkAppid", " 1400000000")]),
            Err(Rejection::AppIdNotAccepted)
        );
        assert_eq!(
            q(&[("SdkAppid", "1400000000"), ("SDKAPPID", "1")]),
            Err(Rejection::AppIdConflicting)
        );
    }
}
