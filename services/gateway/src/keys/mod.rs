//! API keys: stored as hashes, cached in each gateway replica, and dropped
//! from every replica's cache when revoked.
//!
//! - [`secret`]: the `crm_<id>_<random>` format, generation and hashing.
//! - [`store`]: the `api_keys` table and the admin API's queries.
//! - [`cache`]: what authentication reads on every call, kept fresh by the
//!   gateway's own event feed (`ApiKeyRevoked` reaches every replica within
//!   milliseconds of the commit).

pub mod cache;
pub mod secret;
pub mod store;
