//! Who is calling the API: a bearer token (`Authorization: Bearer <token>`)
//! looked up by its SHA-256 in the job store, giving the caller's name and
//! role; and what each role may do. Tokens are made with `neurobatch token
//! create`, shown once, stored hashed, revocable. The extractor answers 401
//! without a live token and handlers answer 403 for a role that may not.
//! Room for OIDC: another way to make a [`Caller`].

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use neurobatch_core::domain::Role;
use sha2::{Digest, Sha256};

use super::error::{ApiError, error};
use crate::Scheduler;

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// The SHA-256 (lowercase hex) a token is stored as.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: `nbt_` and 64 hex digits (256 bits from the OS generator).
pub fn new_token() -> String {
    let a = uuid_bytes();
    let b = uuid_bytes();
    format!("nbt_{}{}", hex::encode(a), hex::encode(b))
}

fn uuid_bytes() -> [u8; 16] {
    // UUID v4 draws 122 bits from the OS generator; two give 244 random bits.
    *uuid::Uuid::new_v4().as_bytes()
}

impl Caller {
    /// `None` when the caller's role is one of `roles`; otherwise the 403 response.
    pub fn refuse_unless(&self, roles: &[Role]) -> Option<Response> {
        if roles.contains(&self.role) {
            None
        } else {
            let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Some(error(
                StatusCode::FORBIDDEN,
                format!("role {} may not do this (needs {})", self.role.as_str(), allowed.join(" or ")),
            ))
        }
    }
}

/// The token of an `Authorization` value: the scheme is case-insensitive
/// (RFC 7235: `Bearer`, `bearer`, `BEARER`); `None` for another scheme or an
/// empty token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl FromRequestParts<Scheduler> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &Scheduler) -> Result<Self, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let Some(token) = header.and_then(bearer_token) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer <token>)",
            ));
        };
        match s.inner.store.token_by_sha256(&token_sha256(token)).await {
            Ok(Some(t)) => Ok(Caller { name: t.name, role: t.role }),
            Ok(None) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked token")),
            Err(e) => Err(ApiError::from_failure(&e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_trimmed() {
        for value in ["Bearer nbt_x", "bearer nbt_x", "BEARER  nbt_x ", "  bEaReR nbt_x"] {
            assert_eq!(bearer_token(value), Some("nbt_x"), "{value:?}");
        }
        for value in ["Basic nbt_x", "Bearer", "Bearer   ", "Bearernbt_x", "nbt_x", ""] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }
}
