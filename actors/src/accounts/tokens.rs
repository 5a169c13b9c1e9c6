//! The random tokens of sessions and emailed links: 256 bits, URL-safe,
//! stored only as SHA-256. An emailed link works once, until it expires,
//! and only while nothing voided it since (a newer sign-up, a new address,
//! a new password).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use deadpool_postgres::{GenericClient, Transaction};
use sha2::{Digest, Sha256};
use time::Duration;

use super::{AccountsError, LinkProblem, Purpose, User, USER_COLUMNS};

/// A new random token and the hash that is stored.
pub(super) fn new_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    // The OS's generator does not fail on Linux once the system is up; a
    // process that cannot get randomness must not hand out tokens.
    getrandom::fill(&mut bytes).expect("the operating system's random generator works");
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

/// A random token for forms shown to visitors who are not logged in.
pub fn new_form_token() -> String {
    new_token().0
}

pub(super) fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether `value` could be a token (43 URL-safe characters).
pub fn is_token_shaped(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `a` equals `b`, in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Stores a new link token for `user_id` and returns the token.
pub(super) async fn create_link(
    txn: &Transaction<'_>,
    user_id: i64,
    purpose: Purpose,
    sent_to: &str,
    ttl: Duration,
) -> Result<String, AccountsError> {
    let (token, hash) = new_token();
    let insert = txn
        .prepare_cached(
            "INSERT INTO user_tokens (token_hash, user_id, purpose, sent_to, expires_at) \
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::float8))",
        )
        .await?;
    txn.execute(
        &insert,
        &[
            &hash,
            &user_id,
            &purpose.as_str(),
            &sent_to,
            &ttl.as_seconds_f64(),
        ],
    )
    .await?;
    Ok(token)
}

/// What an unused, unexpired token is for.
#[derive(Debug, Clone)]
pub struct LinkTarget {
    pub user: User,
    pub purpose: Purpose,
    pub sent_to: String,
}

/// The link `token` opens, if it may still be used for one of `purposes`;
/// `lock` holds its row until the transaction ends (to spend it).
pub(super) async fn find_link<C: GenericClient>(
    client: &C,
    token: &str,
    purposes: &[Purpose],
    lock: bool,
) -> Result<LinkTarget, AccountsError> {
    if token.len() > 64 {
        return Err(LinkProblem::Unknown.into());
    }
    let query = format!(
        "SELECT t.purpose, t.sent_to, t.used_at IS NOT NULL, t.voided_at IS NOT NULL, \
                t.expires_at <= now(), {USER_COLUMNS} \
         FROM user_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1{}",
        if lock { " FOR UPDATE OF t, u" } else { "" }
    );
    let statement = client.prepare_cached(&query).await?;
    let row = client
        .query_opt(&statement, &[&token_hash(token)])
        .await?
        .ok_or(LinkProblem::Unknown)?;
    let purpose = purposes
        .iter()
        .copied()
        .find(|p| p.as_str() == row.get::<_, &str>(0))
        .ok_or(LinkProblem::Unknown)?;
    if row.get::<_, bool>(2) {
        return Err(LinkProblem::Used.into());
    }
    let user = User::from_columns(&row, 5)?;
    let sent_to: String = row.get(1);
    // A link for the account's address is void once the account has moved
    // to another one (a change-of-address link goes to the new address).
    let moved = purpose != Purpose::ChangeEmail && sent_to != user.email;
    if row.get::<_, bool>(3) || moved {
        return Err(LinkProblem::Void.into());
    }
    if row.get::<_, bool>(4) {
        return Err(LinkProblem::Expired.into());
    }
    if user.disabled {
        return Err(AccountsError::Disabled);
    }
    Ok(LinkTarget {
        user,
        purpose,
        sent_to,
    })
}

/// Spends `token` in `txn`: it works once.
pub(super) async fn use_link(
    txn: &Transaction<'_>,
    token: &str,
    purposes: &[Purpose],
) -> Result<LinkTarget, AccountsError> {
    let target = find_link(txn, token, purposes, true).await?;
    let spend = txn
        .prepare_cached("UPDATE user_tokens SET used_at = now() WHERE token_hash = $1")
        .await?;
    txn.execute(&spend, &[&token_hash(token)]).await?;
    Ok(target)
}

/// Voids every link of `user_id` still open: after a change to the
/// account, links sent before it must not act on it.
pub(super) async fn void_links(txn: &Transaction<'_>, user_id: i64) -> Result<(), AccountsError> {
    let void = txn
        .prepare_cached(
            "UPDATE user_tokens SET voided_at = now() \
             WHERE user_id = $1 AND used_at IS NULL AND voided_at IS NULL",
        )
        .await?;
    txn.execute(&void, &[&user_id]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_stored_only_as_hashes() {
        let (a, hash_a) = new_token();
        let (b, _) = new_token();
        assert!(is_token_shaped(&a));
        assert_ne!(a, b);
        assert_eq!(hash_a, token_hash(&a));
        assert!(!hash_a.windows(a.len()).any(|w| w == a.as_bytes()));
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
