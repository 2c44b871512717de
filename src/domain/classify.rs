//! Which team owns an exception: the error-code table of docs/contract.md, in one place.

use crate::domain::bounded;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// A category of group-message exception; the wire name is what subscribers filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    InvalidGroup,
    FrequencyLimit,
    ContentFilter,
    MutedSender,
    Unclassified,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::InvalidGroup,
        Category::FrequencyLimit,
        Category::ContentFilter,
        Category::MutedSender,
        Category::Unclassified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::InvalidGroup => "invalid_group",
            Category::FrequencyLimit => "frequency_limit",
            Category::ContentFilter => "content_filter",
            Category::MutedSender => "muted_sender",
            Category::Unclassified => "unclassified",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown category {:?}", bounded(s)))
    }
}

/// The default mapping from Chat error codes to categories; any other code is unclassified.
pub const DEFAULT_TABLE: &[(Category, &[i64])] = &[
    (Category::InvalidGroup, &[10004, 10007, 10010, 10015, 80002]),
    (Category::FrequencyLimit, &[10023, 10006]),
    (Category::ContentFilter, &[80001, 80003, 80004, 10016]),
    (Category::MutedSender, &[10017, 20012]),
];

/// The default table plus the deploy-time overrides (`ERROR_CODE_OVERRIDES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classifier {
    overrides: HashMap<i64, Category>,
}

impl Classifier {
    pub fn new(overrides: HashMap<i64, Category>) -> Self {
        Classifier { overrides }
    }

    /// Parses `80005=content_filter,10007=unclassified` (blanks around items allowed).
    pub fn parse_overrides(spec: &str) -> Result<Self, String> {
        let mut overrides = HashMap::new();
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (code, category) = item
                .split_once('=')
                .ok_or_else(|| format!("{:?} is not CODE=category", bounded(item)))?;
            let code: i64 = code
                .trim()
                .parse()
                .map_err(|_| format!("{:?} is not an integer error code", bounded(code.trim())))?;
            let category: Category = category.trim().parse()?;
            if overrides.insert(code, category).is_some() {
                return Err(format!("error code {code} is given more than once"));
            }
        }
        Ok(Classifier { overrides })
    }

    /// Total: every code has a category.
    pub fn classify(&self, error_code: i64) -> Category {
        // Most deployments have no overrides: skip hashing the code then.
        if let Some(category) = (!self.overrides.is_empty())
            .then(|| self.overrides.get(&error_code))
            .flatten()
        {
            return *category;
        }
        DEFAULT_TABLE
            .iter()
            .find(|(_, codes)| codes.contains(&error_code))
            .map_or(Category::Unclassified, |(category, _)| *category)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_matches_the_design() {
        let c = Classifier::default();
        for code in [10004, 10007, 10010, 10015, 80002] {
            assert_eq!(c.classify(code), Category::InvalidGroup, "{code}");
        }
        for code in [10023, 10006] {
            assert_eq!(c.classify(code), Category::FrequencyLimit, "{code}");
        }
        for code in [80001, 80003, 80004, 10016] {
            assert_eq!(c.classify(code), Category::ContentFilter, "{code}");
        }
        for code in [10017, 20012] {
            assert_eq!(c.classify(code), Category::MutedSender, "{code}");
        }
        for code in [0, -1, 10005, 80005, i64::MAX] {
            assert_eq!(c.classify(code), Category::Unclassified, "{code}");
        }
    }

    #[test]
    fn overrides_win_over_the_default_table() {
        let c = Classifier::parse_overrides(" 80005=content_filter , 10007=unclassified,").unwrap();
        assert_eq!(c.classify(80005), Category::ContentFilter);
        assert_eq!(c.classify(10007), Category::Unclassified);
        assert_eq!(c.classify(10004), Category::InvalidGroup);
    }

    #[test]
    fn malformed_overrides_are_refused() {
        for bad in [
            "80005",
            "x=content_filter",
            "80005=spam",
            "1=unclassified,1=muted_sender",
        ] {
            assert!(Classifier::parse_overrides(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Classifier::parse_overrides("").unwrap(),
            Classifier::default()
        );
    }

    #[test]
    fn wire_names_round_trip() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>().unwrap(), c);
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
        }
    }
}
