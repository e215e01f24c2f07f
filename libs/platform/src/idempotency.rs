//! Idempotency keys: scoped to the caller who sent them and bound to the
//! request they first came with (Stripe's rule). A retry of the same request
//! with the same key gets the first answer; the same key with a different
//! request is refused with [`reused`], never answered with someone else's
//! or another request's result.

use std::collections::{BTreeMap, HashMap};

use prost::Message;
use sha2::{Digest, Sha256};

use crate::{Error, error::quote};

/// The reason of the error a reused key gets.
pub const REUSED: &str = "IDEMPOTENCY_KEY_REUSED";

/// A request's content as a SHA-256 digest: its protobuf encoding (with the
/// key itself and its maps left out by the caller), then each map's entries
/// in key order, since prost writes a map in its hash order.
pub struct Fingerprint(Sha256);

impl Fingerprint {
    pub fn of<M: Message>(message: &M) -> Self {
        let mut digest = Sha256::new();
        digest.update(message.encode_to_vec());
        Fingerprint(digest)
    }

    /// Adds a map's entries, sorted.
    pub fn map(mut self, name: &str, entries: &HashMap<String, String>) -> Self {
        let sorted: BTreeMap<&String, &String> = entries.iter().collect();
        self.0.update(name.as_bytes());
        for (key, value) in sorted {
            for part in [key, value] {
                self.0.update((part.len() as u64).to_le_bytes());
                self.0.update(part.as_bytes());
            }
        }
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.0.finalize().to_vec()
    }
}

/// FAILED_PRECONDITION: `key` was used by this caller for a different request.
pub fn reused(field: &str, key: &str) -> Error {
    Error::FailedPrecondition {
        reason: REUSED,
        message: format!(
            "{field} {} was already used by this caller for a different request; send a new {field} for a new request",
            quote(key)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_count_by_content_not_by_order() {
        let entries: Vec<(String, String)> = (0..50).map(|n| (format!("k{n}"), format!("v{n}"))).collect();
        let forward: HashMap<String, String> = entries.iter().cloned().collect();
        let backward: HashMap<String, String> = entries.iter().rev().cloned().collect();
        let message = prost_types::Timestamp { seconds: 5, nanos: 0 };
        let a = Fingerprint::of(&message).map("attributes", &forward).finish();
        let b = Fingerprint::of(&message).map("attributes", &backward).finish();
        assert_eq!(a, b);
        let mut changed = forward.clone();
        changed.insert("k1".into(), "other".into());
        assert_ne!(a, Fingerprint::of(&message).map("attributes", &changed).finish());
        assert_ne!(
            a,
            Fingerprint::of(&prost_types::Timestamp { seconds: 6, nanos: 0 }).map("attributes", &forward).finish()
        );
    }
}
