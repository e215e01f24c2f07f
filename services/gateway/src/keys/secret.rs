//! The bearer secret of an API key: `crm_<id as 32 hex digits>_<43 base64url characters>`.
//! The id lets the gateway find the key without scanning; the random part
//! (256 bits) is what proves possession. Only its SHA-256 is stored.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const PREFIX: &str = "crm_";

/// A freshly generated secret for key `id`.
pub fn generate(id: Uuid) -> String {
    let mut random = [0u8; 32];
    rand::rng().fill_bytes(&mut random);
    format!("{PREFIX}{}_{}", id.simple(), URL_SAFE_NO_PAD.encode(random))
}

/// The key id inside a presented secret, if it has our shape.
pub fn key_id(secret: &str) -> Option<Uuid> {
    let rest = secret.strip_prefix(PREFIX)?;
    let (id, random) = rest.split_once('_')?;
    if id.len() != 32 || random.is_empty() {
        return None;
    }
    Uuid::try_parse(id).ok()
}

/// What is stored and compared: SHA-256 of the whole secret.
pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_names_its_key() {
        let id = Uuid::now_v7();
        let secret = generate(id);
        assert_eq!(key_id(&secret), Some(id));
        assert_ne!(generate(id), secret, "secrets are random");
        assert_eq!(key_id("crm_not-hex_x"), None);
        assert_eq!(key_id("Bearer x"), None);
        assert_eq!(key_id(&format!("crm_{}_", id.simple())), None);
    }
}
