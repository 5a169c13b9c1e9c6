//! Accounts as the operator sees them in the admin area: a search by part
//! of an address, one member's account, and what an administrator may do
//! to it (disable, enable, send the confirmation link again). Every action
//! is an audit event written in the transaction of its change.

use serde_json::json;
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{
    end_sessions, void_links, Accounts, AccountsError, Purpose, User, USER_COLUMNS, USER_COLUMN_COUNT,
};
use crate::events::{self, Event};
use crate::mail::EmailKind;

/// Part of an email address to look for: trimmed, lower case (addresses
/// are stored so), one to 254 characters with no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailFragment(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragmentProblem {
    #[error("type part of an email address to search for")]
    Empty,
    #[error("an email address is at most 254 characters")]
    TooLong,
    #[error("an email address has no control characters")]
    ControlCharacter,
}

impl EmailFragment {
    pub fn parse(raw: &str) -> Result<EmailFragment, FragmentProblem> {
        let fragment = raw.trim();
        if fragment.is_empty() {
            return Err(FragmentProblem::Empty);
        }
        if fragment.chars().count() > 254 {
            return Err(FragmentProblem::TooLong);
        }
        if fragment.chars().any(char::is_control) {
            return Err(FragmentProblem::ControlCharacter);
        }
        Ok(EmailFragment(fragment.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A LIKE pattern matching addresses that contain the fragment, with
    /// LIKE's own characters taken literally.
    fn like_pattern(&self) -> String {
        let escaped = self
            .0
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    }
}

/// An account with its dates, as the member pages show it.
#[derive(Debug, Clone)]
pub struct MemberAccount {
    pub user: User,
    pub created_at: OffsetDateTime,
    pub confirmed_at: Option<OffsetDateTime>,
    pub disabled_at: Option<OffsetDateTime>,
}

const MEMBER_COLUMNS: &str = "u.created_at, u.confirmed_at, u.disabled_at";

impl MemberAccount {
    fn from_row(row: &Row) -> Result<MemberAccount, AccountsError> {
        Ok(MemberAccount {
            user: User::from_columns(row, 0)?,
            created_at: row.get(USER_COLUMN_COUNT),
            confirmed_at: row.get(USER_COLUMN_COUNT + 1),
            disabled_at: row.get(USER_COLUMN_COUNT + 2),
        })
    }
}

impl Accounts {
    /// The accounts whose address contains `fragment`, by address, at most `limit`.
    pub async fn search_members(
        &self,
        fragment: &EmailFragment,
        limit: i64,
    ) -> Result<Vec<MemberAccount>, AccountsError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS}, {MEMBER_COLUMNS} FROM users u \
                 WHERE u.email LIKE $1 ESCAPE '\\' ORDER BY u.email LIMIT $2"
            ))
            .await?;
        client
            .query(&statement, &[&fragment.like_pattern(), &limit])
            .await?
            .iter()
            .map(MemberAccount::from_row)
            .collect()
    }

    /// The account `user_id`, if there is one.
    pub async fn get_member(&self, user_id: i64) -> Result<Option<MemberAccount>, AccountsError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS}, {MEMBER_COLUMNS} FROM users u WHERE u.id = $1"
            ))
            .await?;
        client
            .query_opt(&statement, &[&user_id])
            .await?
            .as_ref()
            .map(MemberAccount::from_row)
            .transpose()
    }

    /// Disables (`disabled`) or enables the account `user_id` for the
    /// administrator `admin_id`; whether anything changed. Disabling ends
    /// every session of the account at once and voids its links, so that
    /// none works after it is enabled again either.
    pub async fn set_disabled(
        &self,
        admin_id: i64,
        user_id: i64,
        disabled: bool,
    ) -> Result<bool, AccountsError> {
        if disabled && admin_id == user_id {
            return Err(AccountsError::OwnAccount);
        }
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let row = txn
            .query_opt(
                "SELECT email, disabled_at IS NOT NULL FROM users WHERE id = $1 FOR UPDATE",
                &[&user_id],
            )
            .await?
            .ok_or(AccountsError::NoSuchAccount(user_id))?;
        let email: String = row.get(0);
        if row.get::<_, bool>(1) == disabled {
            return Ok(false);
        }
        txn.execute(
            "UPDATE users SET disabled_at = CASE WHEN $2 THEN now() END WHERE id = $1",
            &[&user_id, &disabled],
        )
        .await?;
        let kind = if disabled {
            end_sessions(&txn, user_id, None).await?;
            void_links(&txn, user_id).await?;
            "admin.member_disabled"
        } else {
            "admin.member_enabled"
        };
        let event = Event::by_admin(kind, user_id.to_string(), admin_id, json!({ "email": email }));
        events::record_in(&txn, &event).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Sends the account `user_id` a new confirmation link, for the
    /// administrator `admin_id`: through the outbox, within the address's
    /// daily share of emails, and only while the address is unconfirmed
    /// and the account enabled.
    pub async fn resend_confirmation(&self, admin_id: i64, user_id: i64) -> Result<(), AccountsError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let statement = txn
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1 FOR UPDATE"
            ))
            .await?;
        let user = match txn.query_opt(&statement, &[&user_id]).await? {
            Some(row) => User::from_columns(&row, 0)?,
            None => return Err(AccountsError::NoSuchAccount(user_id)),
        };
        if user.confirmed {
            return Err(AccountsError::AlreadyConfirmed);
        }
        if user.disabled {
            return Err(AccountsError::Disabled);
        }
        // The address is not proven: no name goes to it.
        let data = json!({ "name": "", "change": false });
        let address = user.address()?;
        let sent = self
            .mail_link(
                &txn,
                user.id,
                &address,
                Purpose::Confirm,
                EmailKind::ConfirmEmail,
                data,
            )
            .await?;
        if !sent {
            // Dropping the transaction rolls back the link made for it.
            return Err(AccountsError::EmailsCapped);
        }
        let event = Event::by_admin(
            "admin.confirmation_resent",
            user.id.to_string(),
            admin_id,
            json!({ "email": user.email }),
        );
        events::record_in(&txn, &event).await?;
        txn.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fragment_is_trimmed_lower_case_and_bounded() {
        assert_eq!(EmailFragment::parse("  Ada@EX ").unwrap().as_str(), "ada@ex");
        assert_eq!(EmailFragment::parse("   "), Err(FragmentProblem::Empty));
        assert_eq!(
            EmailFragment::parse(&"a".repeat(255)),
            Err(FragmentProblem::TooLong)
        );
        assert_eq!(
            EmailFragment::parse("a\nb"),
            Err(FragmentProblem::ControlCharacter)
        );
    }

    #[test]
    fn like_characters_in_a_fragment_are_taken_literally() {
        let pattern = |raw: &str| EmailFragment::parse(raw).unwrap().like_pattern();
        assert_eq!(pattern("ada"), "%ada%");
        assert_eq!(pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
    }
}
