//! The keys authentication reads on every call, without a query per call.
//!
//! An entry is fetched on first use and kept for [`TTL`]. Revocation does not
//! wait for the TTL: every replica follows the gateway's event feed and drops
//! a key as soon as its `ApiKeyRevoked` commits (NOTIFY wakes the follower).
//! Ids that do not exist are remembered for [`MISSING_TTL`], and lookups are
//! capped at [`MISSES_PER_SECOND`], so a flood of made-up keys cannot become
//! a flood of queries.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use crm_platform::{Error, outbox::Feed};
use crm_proto::gateway::v1 as pb;
use futures_util::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota};
use prost::{Message, Name};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::store::{KeyRecord, KeyStore};

/// How long a cached key is trusted without a revocation event (the safety net
/// if the feed follower is down).
const TTL: Duration = Duration::from_secs(30);
const MISSING_TTL: Duration = Duration::from_secs(1);
/// Cache misses (database lookups) per second, over all callers: a flood of
/// made-up key ids cannot turn into a flood of queries.
const MISSES_PER_SECOND: u32 = 200;

/// A key as last read (`None`: no such key), and when it was read.
type Entry = (Option<KeyRecord>, Instant);

#[derive(Clone)]
pub struct KeyCache {
    store: KeyStore,
    entries: Arc<RwLock<HashMap<Uuid, Entry>>>,
    misses: Arc<DefaultDirectRateLimiter>,
}

impl KeyCache {
    pub fn new(store: KeyStore) -> Self {
        let per_second = NonZeroU32::new(MISSES_PER_SECOND).unwrap_or(NonZeroU32::MIN);
        let misses = Arc::new(DefaultDirectRateLimiter::direct(Quota::per_second(per_second)));
        KeyCache { store, entries: Arc::default(), misses }
    }

    /// Key `id`, from the cache when fresh.
    pub async fn get(&self, id: Uuid) -> Result<Option<KeyRecord>, Error> {
        if let Some((record, fetched)) = self.entries.read().unwrap_or_else(|poison| poison.into_inner()).get(&id) {
            let ttl = if record.is_some() { TTL } else { MISSING_TTL };
            if fetched.elapsed() < ttl {
                return Ok(record.clone());
            }
        }
        if self.misses.check().is_err() {
            return Err(Error::Unavailable {
                message: "too many unknown API keys are being tried; retry shortly".into(),
                retry_after: Duration::from_secs(1),
            });
        }
        let record = self.store.record(id).await?;
        self.entries.write().unwrap_or_else(|poison| poison.into_inner()).insert(id, (record.clone(), Instant::now()));
        Ok(record)
    }

    /// Forgets key `id`; the next call reads it again.
    pub fn forget(&self, id: Uuid) {
        self.entries.write().unwrap_or_else(|poison| poison.into_inner()).remove(&id);
    }

    /// Drops revoked keys as their events commit, from now until `shutdown`.
    pub async fn follow_revocations(&self, feed: Feed, shutdown: CancellationToken) -> Result<(), Error> {
        let start = feed.end().await?;
        let cache = self.clone();
        let mut events = Box::pin(feed.follow(start, vec![pb::ApiKeyRevoked::full_name()], shutdown.clone()));
        tokio::spawn(async move {
            loop {
                match events.next().await {
                    Some(Ok(event)) => {
                        let payload = event.payload.unwrap_or_default();
                        let revoked = pb::ApiKeyRevoked::decode(payload.value.as_slice()).ok();
                        match revoked.and_then(|revoked| revoked.api_key).and_then(|key| Uuid::try_parse(&key.id).ok())
                        {
                            Some(id) => cache.forget(id),
                            None => tracing::warn!(event_id = %event.id, "unreadable ApiKeyRevoked event"),
                        }
                    }
                    Some(Err(_)) if shutdown.is_cancelled() => return,
                    Some(Err(error)) => {
                        // Without the feed, only the TTL protects us: clear everything and retry.
                        tracing::warn!(%error, "following key revocations failed; clearing the key cache");
                        cache.entries.write().unwrap_or_else(|poison| poison.into_inner()).clear();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let restart = feed.end().await.unwrap_or_default();
                        events = Box::pin(feed.follow(restart, vec![pb::ApiKeyRevoked::full_name()], shutdown.clone()));
                    }
                    None => return,
                }
            }
        });
        Ok(())
    }
}
