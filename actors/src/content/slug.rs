//! `Slug`: the name of a series, episode, article or tag in its URL and file
//! name, parsed once at the edge (the importer's files, the pages' paths) and
//! again when read from the database, so that inside a `Slug` is valid.

use std::error::Error;
use std::fmt;

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

/// Longest slug of a series, episode or article (the tables' CHECK says the same).
pub const MAX_SLUG_LEN: usize = 80;
/// Longest tag.
pub const MAX_TAG_LEN: usize = 40;

/// Lower-case ASCII letters and digits in words joined by single hyphens.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Slug(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    #[error("a slug cannot be empty")]
    Empty,
    #[error("a slug has at most {max} characters")]
    TooLong { max: usize },
    #[error("a slug is lower-case letters and digits in words joined by single hyphens")]
    Malformed,
}

impl Slug {
    /// The slug of a series, episode or article.
    pub fn parse(text: &str) -> Result<Slug, SlugError> {
        Slug::parse_within(text, MAX_SLUG_LEN)
    }

    /// A tag: a slug of at most [`MAX_TAG_LEN`] characters.
    pub fn parse_tag(text: &str) -> Result<Slug, SlugError> {
        Slug::parse_within(text, MAX_TAG_LEN)
    }

    fn parse_within(text: &str, max: usize) -> Result<Slug, SlugError> {
        if text.is_empty() {
            return Err(SlugError::Empty);
        }
        if text.len() > max {
            return Err(SlugError::TooLong { max });
        }
        let words_ok = text.split('-').all(|word| {
            !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        if words_ok {
            Ok(Slug(text.to_owned()))
        } else {
            Err(SlugError::Malformed)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A slug column that does not hold a slug fails the query: the tables'
/// CHECK constraints make that a broken database, not a value to pass on.
impl<'a> FromSql<'a> for Slug {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Slug, Box<dyn Error + Sync + Send>> {
        Ok(Slug::parse(<&str as FromSql>::from_sql(ty, raw)?)?)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

impl ToSql for Slug {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <String as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slugs_are_lower_case_words_joined_by_single_hyphens() {
        for good in ["a", "rust-2024", "web-services-with-actix"] {
            assert_eq!(Slug::parse(good).map(|s| s.to_string()), Ok(good.to_owned()));
        }
        for bad in ["-a", "a-", "a--b", "A", "a_b", "é", "a b"] {
            assert_eq!(Slug::parse(bad), Err(SlugError::Malformed), "{bad}");
        }
        assert_eq!(Slug::parse(""), Err(SlugError::Empty));
    }

    #[test]
    fn tags_are_shorter_slugs() {
        let forty = "a".repeat(MAX_TAG_LEN);
        assert!(Slug::parse_tag(&forty).is_ok());
        assert_eq!(
            Slug::parse_tag(&format!("{forty}b")),
            Err(SlugError::TooLong { max: MAX_TAG_LEN })
        );
        assert!(Slug::parse(&format!("{forty}b")).is_ok());
    }

    #[test]
    fn a_column_that_holds_no_slug_is_an_error() {
        assert_eq!(
            Slug::from_sql(&Type::TEXT, b"ownership")
                .map(|s| s.to_string())
                .ok(),
            Some("ownership".to_owned())
        );
        assert!(Slug::from_sql(&Type::TEXT, b"Not A Slug").is_err());
    }

    proptest! {
        #[test]
        fn words_of_letters_and_digits_are_slugs(
            words in proptest::collection::vec("[a-z0-9]{1,8}", 1..8)
        ) {
            let text = words.join("-");
            let slug = Slug::parse(&text);
            prop_assert_eq!(slug.is_ok(), text.len() <= MAX_SLUG_LEN);
            if let Ok(slug) = slug {
                prop_assert_eq!(slug.as_str(), text.as_str());
                prop_assert_eq!(serde_json::to_string(&slug).unwrap(), format!("\"{text}\""));
            }
        }

        #[test]
        fn exactly_the_slug_rule_is_accepted(text in "[a-zA-Z0-9_ é-]{0,90}") {
            let valid = !text.is_empty()
                && text.len() <= MAX_SLUG_LEN
                && !text.starts_with('-')
                && !text.ends_with('-')
                && !text.contains("--")
                && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            prop_assert_eq!(Slug::parse(&text).is_ok(), valid, "{:?}", text);
        }

        #[test]
        fn any_text_is_parsed_without_panicking(text in "\\PC{0,200}") {
            let _ = Slug::parse(&text);
            let _ = Slug::parse_tag(&text);
        }

        #[test]
        fn a_parsed_slug_parses_again_to_itself(text in "[a-z0-9-]{0,90}") {
            if let Ok(slug) = Slug::parse(&text) {
                prop_assert_eq!(Slug::parse(slug.as_str()), Ok(slug.clone()));
                prop_assert_eq!(slug.to_string(), text);
            }
        }
    }
}
