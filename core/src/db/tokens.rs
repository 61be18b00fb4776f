//! API tokens: stored as their SHA-256 only (the token itself is shown once,
//! when created), with a role, and revocable. Looking a token up by its hash
//! is how the API authenticates a request.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::rows::corrupt;
use super::{DbError, JobStore, stored};
use crate::domain::Role;

/// A token's record (never the token).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

type Row = (i64, String, String, DateTime<Utc>, Option<DateTime<Utc>>);

fn token((id, name, role, created_at, revoked_at): Row) -> Result<ApiToken, DbError> {
    let role = role.parse::<Role>().map_err(|e| corrupt(id, "role", e))?;
    Ok(ApiToken { id, name, role, created_at, revoked_at })
}

impl JobStore {
    /// Records a token by its SHA-256 (hex). A name already in use is the
    /// database's unique-constraint error.
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        token_sha256: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiToken, DbError> {
        let now = stored(now);
        let row: Row = dispatch!(self, |pool| {
            sqlx::query_as(
                "INSERT INTO api_tokens (name, role, token_sha256, created_at) VALUES ($1, $2, $3, $4) \
                 RETURNING id, name, role, created_at, revoked_at",
            )
            .bind(name)
            .bind(role.as_str())
            .bind(token_sha256)
            .bind(now)
            .fetch_one(pool)
            .await
            .map_err(DbError::from)
        })?;
        token(row)
    }

    /// The live (not revoked) token with this SHA-256.
    pub async fn token_by_sha256(&self, token_sha256: &str) -> Result<Option<ApiToken>, DbError> {
        let row: Option<Row> = dispatch!(self, |pool| {
            sqlx::query_as(
                "SELECT id, name, role, created_at, revoked_at FROM api_tokens \
                 WHERE token_sha256 = $1 AND revoked_at IS NULL",
            )
            .bind(token_sha256)
            .fetch_optional(pool)
            .await
            .map_err(DbError::from)
        })?;
        row.map(token).transpose()
    }

    pub async fn tokens(&self) -> Result<Vec<ApiToken>, DbError> {
        let rows: Vec<Row> = dispatch!(self, |pool| {
            sqlx::query_as("SELECT id, name, role, created_at, revoked_at FROM api_tokens ORDER BY id")
                .fetch_all(pool)
                .await
                .map_err(DbError::from)
        })?;
        rows.into_iter().map(token).collect()
    }

    /// Revokes the token called `name`; `false` when there is no live one.
    pub async fn revoke_token(&self, name: &str, now: DateTime<Utc>) -> Result<bool, DbError> {
        let now = stored(now);
        dispatch!(self, |pool| {
            let done = sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL")
                .bind(name)
                .bind(now)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}
