//! Passwords: argon2id hashing (OWASP's parameters, the crate's defaults)
//! off the async workers and behind a bounded gate, the length policy, and a
//! verification that takes as long for an unknown account as for a known one.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::Argon2;
use password_hash::rand_core::OsRng;
use password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::Semaphore;

use super::AccountsError;

/// How long a hash or verification may wait for its turn before the
/// request is answered "busy, try again" instead.
const QUEUE_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("use at least {0} characters for your password")]
    TooShort(usize),
    #[error("use at most {0} characters for your password")]
    TooLong(usize),
}

/// Length limits, in characters (so a passphrase in any script counts fairly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_chars: usize,
    pub max_chars: usize,
}

impl PasswordPolicy {
    pub fn check(&self, password: &str) -> Result<(), PasswordProblem> {
        let chars = password.chars().count();
        if chars < self.min_chars {
            Err(PasswordProblem::TooShort(self.min_chars))
        } else if chars > self.max_chars {
            Err(PasswordProblem::TooLong(self.max_chars))
        } else {
            Ok(())
        }
    }

    /// A submitted password longer than this is not worth hashing: no
    /// stored password can match it (four bytes per character at most).
    fn longest_bytes(&self) -> usize {
        4 * self.max_chars
    }
}

/// Hashing and verification, at most `concurrent` at a time. Each argon2id
/// run holds 19 MiB for tens of milliseconds: without a bound, a flood of
/// logins would hold as many as the blocking pool has threads.
#[derive(Clone)]
pub struct Passwords {
    policy: PasswordPolicy,
    gate: Arc<Semaphore>,
}

impl Passwords {
    pub fn new(policy: PasswordPolicy, concurrent: usize) -> Passwords {
        Passwords {
            policy,
            gate: Arc::new(Semaphore::new(concurrent.max(1))),
        }
    }

    pub fn policy(&self) -> PasswordPolicy {
        self.policy
    }

    /// Runs `work` on the blocking pool once the gate lets it.
    async fn gated<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AccountsError> {
        let permit = tokio::time::timeout(QUEUE_WAIT, Arc::clone(&self.gate).acquire_owned())
            .await
            .map_err(|_| AccountsError::Busy)?
            // The gate is never closed.
            .map_err(|_| AccountsError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let outcome = work();
            drop(permit);
            outcome
        })
        .await
        .map_err(|e| AccountsError::Hashing(e.to_string()))
    }

    /// An argon2id PHC string for a password that passed the policy.
    pub async fn hash(&self, password: &str) -> Result<String, AccountsError> {
        self.policy.check(password)?;
        let password = password.to_owned();
        self.gated(move || hash(&password))
            .await?
            .map_err(|e| AccountsError::Hashing(e.to_string()))
    }

    /// Whether `password` matches `stored`; with nothing stored (no such
    /// account, or one without a password) it spends the same time and
    /// says no, so that timing does not tell which accounts exist.
    pub async fn verify(&self, password: &str, stored: Option<String>) -> Result<bool, AccountsError> {
        if password.len() > self.policy.longest_bytes() {
            return Ok(false);
        }
        let password = password.to_owned();
        self.gated(move || match stored {
            Some(stored) => verify(&password, &stored),
            None => {
                let _ = verify(&password, dummy_hash());
                false
            }
        })
        .await
    }
}

fn hash(password: &str) -> Result<String, password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// A malformed stored hash matches nothing.
fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash("lectern-dummy-password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PasswordPolicy {
        PasswordPolicy {
            min_chars: 10,
            max_chars: 20,
        }
    }

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
        assert_eq!(policy().check("short"), Err(PasswordProblem::TooShort(10)));
        assert_eq!(policy().check("ééééééééééé"), Ok(()));
        assert_eq!(policy().check(&"x".repeat(21)), Err(PasswordProblem::TooLong(20)));
    }

    #[actix_rt::test]
    async fn the_gate_lets_no_more_than_its_size_run_at_once() {
        let passwords = Passwords::new(policy(), 2);
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let runs = (0..6).map(|_| {
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            let passwords = passwords.clone();
            async move {
                passwords
                    .gated(move || {
                        use std::sync::atomic::Ordering::SeqCst;
                        let now = running.fetch_add(1, SeqCst) + 1;
                        most.fetch_max(now, SeqCst);
                        let _ = hash("a password to hash");
                        running.fetch_sub(1, SeqCst);
                    })
                    .await
                    .unwrap();
            }
        });
        futures_util::future::join_all(runs).await;
        assert!(most.load(std::sync::atomic::Ordering::SeqCst) <= 2);
    }

    #[actix_rt::test]
    async fn an_unknown_account_is_refused_after_the_same_work() {
        let passwords = Passwords::new(policy(), 1);
        assert!(!passwords.verify("whatever it is", None).await.unwrap());
        let stored = passwords.hash("a good password").await.unwrap();
        assert!(passwords.verify("a good password", Some(stored)).await.unwrap());
        assert!(matches!(
            passwords.hash("short").await,
            Err(AccountsError::Password(PasswordProblem::TooShort(10)))
        ));
    }
}
