//! Password hashing with argon2id (OWASP's parameters, the crate's
//! defaults), the length policy, and a verification that takes as long for
//! an unknown account as for a known one.

use std::sync::OnceLock;

use argon2::Argon2;
use password_hash::rand_core::OsRng;
use password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("use at least {0} characters for your password")]
    TooShort(usize),
    #[error("use at most {0} characters for your password")]
    TooLong(usize),
}

/// Checks a new password against the length policy (in characters, so a
/// passphrase in any script counts fairly).
pub fn check_policy(password: &str, min: usize, max: usize) -> Result<(), PasswordProblem> {
    let chars = password.chars().count();
    if chars < min {
        Err(PasswordProblem::TooShort(min))
    } else if chars > max {
        Err(PasswordProblem::TooLong(max))
    } else {
        Ok(())
    }
}

/// An argon2id PHC string for `password`. CPU-heavy (tens of
/// milliseconds): call it off the async workers.
pub fn hash(password: &str) -> Result<String, password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches `stored`; a malformed stored hash matches nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Spends the time a verification takes, for an account that does not
/// exist, so that timing does not tell which emails are registered.
pub fn verify_nothing(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("lectern-dummy-password").unwrap_or_default());
    let _ = verify(password, dummy);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse battery staple").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse battery staple", &stored));
        assert!(!verify("correct horse battery stapler", &stored));
        assert!(!verify("anything", "not a hash"));
    }

    #[test]
    fn the_policy_counts_characters() {
        assert_eq!(check_policy("short", 10, 20), Err(PasswordProblem::TooShort(10)));
        assert_eq!(check_policy("ééééééééééé", 10, 20), Ok(()));
        assert_eq!(
            check_policy(&"x".repeat(21), 10, 20),
            Err(PasswordProblem::TooLong(20))
        );
    }
}
