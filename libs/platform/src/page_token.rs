//! Opaque page tokens that cannot be forged or carried into another query.
//!
//! A token is `base64url(cursor_json || fingerprint || hmac)`. The fingerprint
//! hashes the method and every request field that shapes the result (filters,
//! ordering), so a token minted for one query is refused by any other; the
//! HMAC, keyed with the install's internal secret, makes the cursor
//! tamper-proof. A bad token is INVALID_ARGUMENT on `page_token`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::error::Error;

type HmacSha256 = Hmac<Sha256>;

const MAC_LEN: usize = 32;
const FINGERPRINT_LEN: usize = 32;

/// The shape of a query: what a page token is bound to.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Query([u8; FINGERPRINT_LEN]);

impl Query {
    /// Starts a fingerprint for `method` (e.g. `crm.contacts.v1.ContactsService/ListEvents`).
    pub fn builder(method: &str) -> QueryBuilder {
        QueryBuilder(Sha256::new()).field("method", method)
    }
}

/// Adds the request fields that shape a query to its fingerprint.
pub struct QueryBuilder(Sha256);

impl QueryBuilder {
    /// Adds one named value; names and values are length-prefixed so that
    /// `("ab", "c")` and `("a", "bc")` differ.
    pub fn field(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        for part in [name.as_bytes(), value.as_ref()] {
            self.0.update((part.len() as u64).to_be_bytes());
            self.0.update(part);
        }
        self
    }

    pub fn build(self) -> Query {
        Query(self.0.finalize().into())
    }
}

/// Mints and checks page tokens with the install's secret.
#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

impl PageTokens {
    pub fn new(secret: &[u8]) -> Self {
        PageTokens { key: secret.to_vec() }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("hmac accepts any key length"))
    }

    /// A token that resumes `query` at `cursor`.
    pub fn encode<C: Serialize>(&self, query: &Query, cursor: &C) -> Result<String, Error> {
        let mut bytes = serde_json::to_vec(cursor)
            .map_err(|error| Error::Internal(anyhow::Error::new(error).context("encoding a page token")))?;
        bytes.extend_from_slice(&query.0);
        let mut mac = self.mac();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Where a list resumes: nowhere for an empty token (the first page),
    /// else the cursor inside it.
    pub fn resume<C: DeserializeOwned>(&self, query: &Query, token: &str) -> Result<Option<C>, Error> {
        if token.is_empty() { Ok(None) } else { self.decode(query, token).map(Some) }
    }

    /// Ends a page read with `limit + 1` rows: drops the extra row and, when
    /// there was one, returns the token that resumes after the last row kept
    /// (its cursor made by `cursor`); else an empty token (the end).
    pub fn next_page<T, C: Serialize>(
        &self,
        query: &Query,
        rows: &mut Vec<T>,
        limit: i64,
        cursor: impl Fn(&T) -> C,
    ) -> Result<String, Error> {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit.max(0) as usize);
        match rows.last() {
            Some(last) if more => self.encode(query, &cursor(last)),
            _ => Ok(String::new()),
        }
    }

    /// The cursor inside `token`, if the token was minted here for this very query.
    pub fn decode<C: DeserializeOwned>(&self, query: &Query, token: &str) -> Result<C, Error> {
        let invalid = |why: &str| Error::invalid("page_token", why.to_string());
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid("is not a page token returned by this API"))?;
        if bytes.len() < FINGERPRINT_LEN + MAC_LEN {
            return Err(invalid("is not a page token returned by this API"));
        }
        let (signed, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        let mut mac = self.mac();
        mac.update(signed);
        mac.verify_slice(tag).map_err(|_| invalid("is not a page token returned by this API"))?;
        let (cursor, fingerprint) = signed.split_at(signed.len() - FINGERPRINT_LEN);
        if fingerprint != query.0 {
            return Err(invalid("belongs to a different query; send the same filters as the request that returned it"));
        }
        serde_json::from_slice(cursor).map_err(|_| invalid("is not a page token returned by this API"))
    }
}

/// A list request's `page_size` as a row limit: 0 means `default`, more than
/// `max` is lowered to `max`, negative is INVALID_ARGUMENT (proto/README.md).
pub fn page_size(requested: i32, default: i32, max: i32) -> Result<i64, Error> {
    if requested < 0 {
        return Err(Error::invalid("page_size", "must not be negative"));
    }
    Ok(i64::from(if requested == 0 { default } else { requested.min(max) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(types: &str) -> Query {
        Query::builder("crm.contacts.v1.ContactsService/ListEvents").field("event_types", types).build()
    }

    fn field_of(error: Error) -> String {
        match error {
            Error::InvalidArgument(violations) => violations[0].field.clone(),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn a_token_resumes_its_own_query() {
        let tokens = PageTokens::new(b"secret");
        let token = tokens.encode(&query("a"), &(42u64, 7u64)).unwrap();
        assert_eq!(tokens.decode::<(u64, u64)>(&query("a"), &token).unwrap(), (42, 7));
    }

    #[test]
    fn a_token_is_refused_by_another_query() {
        let tokens = PageTokens::new(b"secret");
        let token = tokens.encode(&query("a"), &(42u64, 7u64)).unwrap();
        let error = tokens.decode::<(u64, u64)>(&query("b"), &token).unwrap_err();
        assert_eq!(field_of(error), "page_token");
    }

    #[test]
    fn a_tampered_token_or_a_foreign_key_is_refused() {
        let tokens = PageTokens::new(b"secret");
        let token = tokens.encode(&query("a"), &(42u64, 7u64)).unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[1] ^= 0x01; // "[42,7]" becomes "[52,7]"
        let forged = URL_SAFE_NO_PAD.encode(&bytes);
        assert!(tokens.decode::<(u64, u64)>(&query("a"), &forged).is_err());
        assert!(PageTokens::new(b"other").decode::<(u64, u64)>(&query("a"), &token).is_err());
        assert!(tokens.decode::<(u64, u64)>(&query("a"), "not-a-token!").is_err());
        assert!(tokens.decode::<(u64, u64)>(&query("a"), "").is_err());
    }

    #[test]
    fn fields_are_length_prefixed() {
        let left = Query::builder("m").field("ab", "c").build();
        let right = Query::builder("m").field("a", "bc").build();
        assert_ne!(left, right);
    }
}
