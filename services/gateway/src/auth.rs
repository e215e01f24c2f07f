//! Who the caller is, from `authorization: Bearer <credential>`: the
//! configured bootstrap admin key, a key from the key store, or (when
//! configured) a JWT from the identity provider.

use crm_platform::{
    Error,
    config::Secret,
    principal::{AccessRole, Principal},
};
use subtle::ConstantTimeEq;

use std::{net::IpAddr, sync::Arc};

use crate::{
    jwt::JwtVerifier,
    keys::{cache::KeyCache, secret},
};

/// The key id recorded for calls made with the bootstrap admin key.
pub const BOOTSTRAP_KEY_ID: &str = "bootstrap";

#[derive(Clone)]
pub struct Authenticator {
    bootstrap: Secret,
    keys: KeyCache,
    /// Set when JWTs are accepted (`CRM_JWT_JWKS_FILE`).
    jwt: Option<Arc<JwtVerifier>>,
}

impl Authenticator {
    pub fn new(bootstrap: Secret, keys: KeyCache, jwt: Option<JwtVerifier>) -> Self {
        Authenticator { bootstrap, keys, jwt: jwt.map(Arc::new) }
    }

    /// The principal behind the bearer key in `headers`; `from` is the
    /// caller's address (strangers' key lookups are budgeted per address).
    pub async fn authenticate(&self, headers: &http::HeaderMap, from: Option<IpAddr>) -> Result<Principal, Error> {
        let invalid = || Error::Unauthenticated("the API key is not valid".into());
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Error::Unauthenticated("send an API key as `authorization: Bearer <key>`".into()));
        };
        let presented = value.to_str().ok().and_then(|value| value.strip_prefix("Bearer ")).ok_or_else(invalid)?;
        if bool::from(presented.as_bytes().ct_eq(self.bootstrap.expose().as_bytes())) {
            return Ok(Principal { key_id: BOOTSTRAP_KEY_ID.into(), roles: vec![AccessRole::Admin] });
        }
        if let Some(jwt) = &self.jwt
            && JwtVerifier::looks_like_jwt(presented)
        {
            return jwt.verify(presented);
        }
        let id = secret::key_id(presented).ok_or_else(invalid)?;
        let record = self.keys.get(id, from).await?.ok_or_else(invalid)?;
        if !bool::from(secret::hash(presented).ct_eq(&record.secret_sha256)) {
            return Err(invalid());
        }
        if record.revoked {
            return Err(Error::Unauthenticated("the API key was revoked".into()));
        }
        Ok(Principal { key_id: record.id.to_string(), roles: record.roles })
    }
}
