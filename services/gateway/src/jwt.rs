//! Bearer JWTs from an identity provider, verified against its JWKS file:
//! signature (by the key the token's `kid` names), issuer, audience and
//! expiry. The caller's access roles come from a claim (`crm_roles` by
//! default); names the suite does not know grant nothing.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::RwLock,
    time::{Duration, Instant},
};

use anyhow::Context;
use crm_platform::{
    Error,
    config::JwtSettings,
    principal::{AccessRole, Principal},
};
use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};

/// A token naming an unknown key re-reads the file at most this often (key rotation).
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(10);

pub struct JwtVerifier {
    settings: JwtSettings,
    keys: RwLock<(JwkSet, Instant)>,
}

impl JwtVerifier {
    pub fn load(settings: JwtSettings) -> anyhow::Result<JwtVerifier> {
        let keys = read_jwks(&settings.jwks_file)?;
        Ok(JwtVerifier { settings, keys: RwLock::new((keys, Instant::now())) })
    }

    /// Whether `token` has the shape of a JWT (three dot-separated parts).
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3
    }

    /// The principal a valid token names.
    pub fn verify(&self, token: &str) -> Result<Principal, Error> {
        let refused = |why: String| Error::Unauthenticated(format!("the bearer token is not valid: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|error| refused(error.to_string()))?;
        let kid = header.kid.clone().ok_or_else(|| refused("it names no key (kid)".into()))?;
        let jwk = self.key(&kid).ok_or_else(|| refused(format!("no key {kid:?} in the JWKS")))?;
        if let Some(expected) = jwk.common.key_algorithm
            && format!("{expected:?}") != format!("{:?}", header.alg)
        {
            return Err(refused(format!("key {kid:?} is for {expected:?}, not {:?}", header.alg)));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|error| refused(error.to_string()))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<HashMap<String, serde_json::Value>>(token, &key, &validation)
            .map_err(|error| refused(error.to_string()))?
            .claims;
        let subject = claims.get("sub").and_then(|sub| sub.as_str()).unwrap_or_default();
        // The subject names the caller in audit trails and signed headers: short, visible text only.
        if subject.is_empty() || subject.len() > 200 || subject.chars().any(char::is_control) {
            return Err(refused("the token's subject must be 1 to 200 characters without control characters".into()));
        }
        let roles = claims
            .get(&self.settings.roles_claim)
            .and_then(|roles| roles.as_array())
            .map(|names| names.iter().filter_map(|name| name.as_str()?.parse::<AccessRole>().ok()).collect())
            .unwrap_or_default();
        Ok(Principal { key_id: format!("jwt:{subject}"), roles })
    }

    /// The key named `kid`, re-reading the file (rate-limited) when it is unknown.
    fn key(&self, kid: &str) -> Option<jsonwebtoken::jwk::Jwk> {
        {
            let keys = self.keys.read().unwrap_or_else(|poison| poison.into_inner());
            if let Some(jwk) = keys.0.find(kid) {
                return Some(jwk.clone());
            }
            if keys.1.elapsed() < RELOAD_AT_MOST_EVERY {
                return None;
            }
        }
        let mut keys = self.keys.write().unwrap_or_else(|poison| poison.into_inner());
        match read_jwks(&self.settings.jwks_file) {
            Ok(fresh) => *keys = (fresh, Instant::now()),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "re-reading the JWKS file failed; keeping the old keys");
                keys.1 = Instant::now();
            }
        }
        keys.0.find(kid).cloned()
    }
}

fn read_jwks(path: &PathBuf) -> anyhow::Result<JwkSet> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading CRM_JWT_JWKS_FILE {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a JWKS (JSON Web Key Set)", path.display()))
}
