//! Chat's query string, with parameter names matched case-insensitively.

/// What the query string says about one parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param<'a> {
    Missing,
    One(&'a str),
    /// Given more than once with different values: refused rather than guessed, so that a
    /// second copy can never smuggle past a check made on the first.
    Conflicting,
}

/// Decoded query parameters, in the order received.
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Query<'a> {
    pub fn new(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Query {
            pairs: pairs.into_iter().collect(),
        }
    }

    pub fn get(&self, name: &str) -> Param<'a> {
        let mut found = Param::Missing;
        for (key, value) in &self.pairs {
            if !key.eq_ignore_ascii_case(name) {
                continue;
            }
            found = match found {
                Param::Missing => Param::One(value),
                Param::One(first) if first == *value => Param::One(first),
                _ => return Param::Conflicting,
            };
        }
        found
    }

    /// The value, with an empty one counted as missing.
    pub fn get_non_empty(&self, name: &str) -> Param<'a> {
        match self.get(name) {
            Param::One("") => Param::Missing,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_whatever_their_case() {
        let q = Query::new([("sdkappid", "1"), ("CALLBACKCOMMAND", "x")]);
        assert_eq!(q.get("SdkAppid"), Param::One("1"));
        assert_eq!(q.get("CallbackCommand"), Param::One("x"));
        assert_eq!(q.get("Sign"), Param::Missing);
    }

    #[test]
    fn repetition_is_harmless_only_when_the_values_agree() {
        let q = Query::new([("SdkAppid", "1"), ("sdkappid", "1")]);
        assert_eq!(q.get("SdkAppid"), Param::One("1"));
        let q = Query::new([("SdkAppid", "1"), ("SDKAPPID", "2"), ("SdkAppid", "1")]);
        assert_eq!(q.get("SdkAppid"), Param::Conflicting);
    }

    #[test]
    fn empty_values_can_count_as_missing() {
        let q = Query::new([("Sign", "")]);
        assert_eq!(q.get("Sign"), Param::One(""));
        assert_eq!(q.get_non_empty("Sign"), Param::Missing);
    }
}
