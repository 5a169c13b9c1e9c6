//! `EmailAddress`: an email address that has been checked and normalised,
//! parsed once at the edge (forms, the command line, webhooks).

use std::fmt;

/// Longest address SMTP can carry (RFC 5321: a 254-octet path).
const MAX_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;

/// A syntactically valid address, trimmed and in lower case, so that one
/// mailbox is one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("enter an email address")]
    Empty,
    #[error("that email address is too long")]
    TooLong,
    #[error("that does not look like an email address (name@example.com)")]
    Malformed,
}

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<EmailAddress, AddressError> {
        let address = raw.trim().to_lowercase();
        if address.is_empty() {
            return Err(AddressError::Empty);
        }
        if address.len() > MAX_LEN {
            return Err(AddressError::TooLong);
        }
        let (local, domain) = address.rsplit_once('@').ok_or(AddressError::Malformed)?;
        let local_ok = !local.is_empty()
            && local.len() <= MAX_LOCAL_LEN
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        let domain_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if local_ok && domain_ok {
            Ok(EmailAddress(address))
        } else {
            Err(AddressError::Malformed)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_case_and_space() {
        let address = EmailAddress::parse("  Ada.Lovelace+Notes@Example.ORG ").unwrap();
        assert_eq!(address.as_str(), "ada.lovelace+notes@example.org");
    }

    #[test]
    fn refuses_what_cannot_be_mailed() {
        for bad in [
            "ada",
            "@example.org",
            "ada@",
            "ada@localhost",
            "ada@@example.org",
            "ada@exa mple.org",
            "a da@example.org",
            ".ada@example.org",
            "ada..l@example.org",
            "ada@-example.org",
            "ada@example..org",
            "ada@example.org\r\nBcc: victim@example.org",
            "<ada@example.org>",
            "ada\"@example.org",
        ] {
            assert_eq!(EmailAddress::parse(bad), Err(AddressError::Malformed), "{bad:?}");
        }
        assert_eq!(EmailAddress::parse("   "), Err(AddressError::Empty));
        let long = format!("{}@example.org", "a".repeat(250));
        assert_eq!(EmailAddress::parse(&long), Err(AddressError::TooLong));
    }

    proptest! {
        #[test]
        fn a_parsed_address_parses_to_itself_and_carries_no_header_breaks(raw in "\\PC{0,80}") {
            if let Ok(address) = EmailAddress::parse(&raw) {
                prop_assert_eq!(EmailAddress::parse(address.as_str()), Ok(address.clone()));
                prop_assert!(!address.as_str().contains(['\r', '\n', ',', '<', '>', ' ']));
            }
        }
    }
}
