//! Password hashing: argon2id with OWASP's minimum cost (19 MiB of memory, 2 passes, 1 lane),
//! run off the async threads because one hash takes tens of milliseconds by design.

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
};

use super::AccountError;

/// Memory cost in KiB (19 MiB).
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Passes over memory.
pub const ITERATIONS: u32 = 2;
/// Lanes.
pub const PARALLELISM: u32 = 1;

/// Shortest password accepted.
pub const MIN_LEN: usize = 10;
/// Longest password accepted (argon2 takes any length; this bounds the work per request).
pub const MAX_LEN: usize = 256;

fn hasher() -> Result<Argon2<'static>, AccountError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| AccountError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Checks a new password against the rules, naming `field` in the error.
pub fn check(field: &'static str, password: &str) -> Result<(), AccountError> {
    let length = password.chars().count();
    if length < MIN_LEN {
        return Err(AccountError::invalid(
            field,
            format!("must be at least {MIN_LEN} characters long"),
        ));
    }
    if length > MAX_LEN {
        return Err(AccountError::invalid(
            field,
            format!("must be at most {MAX_LEN} characters long"),
        ));
    }
    Ok(())
}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) of a password, with a fresh salt.
pub async fn hash(password: String) -> Result<String, AccountError> {
    tokio::task::spawn_blocking(move || {
        hasher()?
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| AccountError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| AccountError::Hash(e.to_string()))?
}

/// Whether `password` matches the stored PHC string; `None` (no password set yet) runs a hash
/// of the same cost anyway, so timing does not tell which accounts exist.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, AccountError> {
    tokio::task::spawn_blocking(move || {
        let argon2 = hasher()?;
        match stored {
            Some(stored) => {
                let parsed = PasswordHash::new(&stored)
                    .map_err(|e| AccountError::Hash(format!("stored hash: {e}")))?;
                Ok(argon2.verify_password(password.as_bytes(), &parsed).is_ok())
            }
            None => {
                let _ = argon2.hash_password(password.as_bytes());
                Ok(false)
            }
        }
    })
    .await
    .map_err(|e| AccountError::Hash(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_at_owasp_cost_and_verify_only_the_right_password() {
        let stored = hash("correct horse battery".into()).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(
            verify("correct horse battery".into(), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(
            !verify("correct horse batterY".into(), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("anything".into(), None).await.unwrap());
        let again = hash("correct horse battery".into()).await.unwrap();
        assert_ne!(stored, again, "every hash has its own salt");
    }

    #[test]
    fn short_and_huge_passwords_are_refused_naming_the_field() {
        let error = check("password", "short").unwrap_err();
        assert_eq!(error.field(), Some("password"));
        assert!(check("password", &"x".repeat(MAX_LEN + 1)).is_err());
        assert!(check("password", "long enough!").is_ok());
    }
}
