//! Who the caller is: a bearer API key (`authorization: Bearer <secret>`),
//! either the configured bootstrap admin key or a key from the key store.

use crm_platform::{
    Error,
    config::Secret,
    principal::{AccessRole, Principal},
};
use subtle::ConstantTimeEq;

use crate::keys::{cache::KeyCache, secret};

/// The key id recorded for calls made with the bootstrap admin key.
pub const BOOTSTRAP_KEY_ID: &str = "bootstrap";

#[derive(Clone)]
pub struct Authenticator {
    bootstrap: Secret,
    keys: KeyCache,
}

impl Authenticator {
    pub fn new(bootstrap: Secret, keys: KeyCache) -> Self {
        Authenticator { bootstrap, keys }
    }

    /// The principal behind the bearer key in `headers`.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, Error> {
        let invalid = || Error::Unauthenticated("the API key is not valid".into());
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Error::Unauthenticated("send an API key as `authorization: Bearer <key>`".into()));
        };
        let presented = value.to_str().ok().and_then(|value| value.strip_prefix("Bearer ")).ok_or_else(invalid)?;
        if bool::from(presented.as_bytes().ct_eq(self.bootstrap.expose().as_bytes())) {
            return Ok(Principal { key_id: BOOTSTRAP_KEY_ID.into(), roles: vec![AccessRole::Admin] });
        }
        let id = secret::key_id(presented).ok_or_else(invalid)?;
        let record = self.keys.get(id).await?.ok_or_else(invalid)?;
        if !bool::from(secret::hash(presented).ct_eq(&record.secret_sha256)) {
            return Err(invalid());
        }
        if record.revoked {
            return Err(Error::Unauthenticated("the API key was revoked".into()));
        }
        Ok(Principal { key_id: record.id.to_string(), roles: record.roles })
    }
}
