//! The keys authentication reads on every call, without a query per call.
//!
//! An entry is fetched on first use and kept for [`TTL`]. Revocation does not
//! wait for the TTL: every replica follows the gateway's event feed and drops
//! a key as soon as its `ApiKeyRevoked` commits (NOTIFY wakes the follower).
//!
//! Strangers cannot starve the keys that work: a key seen valid is read again
//! when its entry expires without any budget (there are only as many as were
//! issued), while ids never seen valid are looked up within budgets, per
//! remote address ([`STRANGER_LOOKUPS_PER_ADDRESS`]) and overall
//! ([`STRANGER_LOOKUPS_PER_SECOND`]); an id found missing is remembered for
//! [`MISSING_TTL`]. So a flood of made-up keys from one place costs that
//! place its lookups, not everyone's, and never becomes a flood of queries.
//! Forgotten entries of missing ids are pruned, so the cache cannot grow
//! with what strangers send.

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use crm_platform::{Error, outbox::Feed};
use crm_proto::gateway::v1 as pb;
use futures_util::StreamExt;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use prost::{Message, Name};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::store::{KeyRecord, KeyStore};

/// How long a cached key is trusted without a revocation event (the safety net
/// if the feed follower is down).
const TTL: Duration = Duration::from_secs(30);
/// How long an id found missing is answered from the cache.
const MISSING_TTL: Duration = Duration::from_secs(5);
/// Lookups of ids never seen valid, per second, from one remote address
/// (an IPv6 /64 counts as one).
const STRANGER_LOOKUPS_PER_ADDRESS: u32 = 20;
/// Lookups of ids never seen valid, per second, over all addresses.
const STRANGER_LOOKUPS_PER_SECOND: u32 = 500;
/// Entries kept before missing ids whose time is up are pruned.
const PRUNE_ABOVE: usize = 10_000;

/// A key as last read (`None`: no such key), and when it was read.
type Entry = (Option<KeyRecord>, Instant);

/// What to do for a key id, given its cache entry.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Answer from the cache.
    Cached,
    /// A key seen valid whose entry expired: read it again, no budget needed.
    Refresh,
    /// An id never seen valid (or missing for longer than [`MISSING_TTL`]):
    /// read it within the strangers' budgets.
    Stranger,
}

fn decide(entry: Option<&Entry>, now: Instant) -> Decision {
    match entry {
        Some((Some(_), fetched)) if now.duration_since(*fetched) < TTL => Decision::Cached,
        Some((Some(_), _)) => Decision::Refresh,
        Some((None, fetched)) if now.duration_since(*fetched) < MISSING_TTL => Decision::Cached,
        Some((None, _)) | None => Decision::Stranger,
    }
}

/// The budgets of lookups for ids never seen valid.
struct Strangers {
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    overall: DefaultDirectRateLimiter,
}

impl Strangers {
    fn new() -> Self {
        let quota = |per_second: u32| Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN));
        Strangers {
            per_address: DefaultKeyedRateLimiter::keyed(quota(STRANGER_LOOKUPS_PER_ADDRESS)),
            overall: DefaultDirectRateLimiter::direct(quota(STRANGER_LOOKUPS_PER_SECOND)),
        }
    }

    /// Takes one lookup from `from`'s budget and the overall one, or says when to retry.
    fn admit(&self, from: Option<IpAddr>) -> Result<(), Error> {
        let refused = || Error::Unavailable {
            message: "too many unknown API keys are being tried from here; retry shortly".into(),
            retry_after: Duration::from_secs(1),
        };
        if let Some(address) = from.map(network_of)
            && self.per_address.check_key(&address).is_err()
        {
            return Err(refused());
        }
        self.overall.check().map_err(|_| refused())
    }
}

/// The address budgets are kept by: IPv4 as is, IPv6 by its /64 (one host's share).
fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(segments[0], segments[1], segments[2], segments[3], 0, 0, 0, 0))
        }
    }
}

#[derive(Clone)]
pub struct KeyCache {
    store: KeyStore,
    entries: Arc<RwLock<HashMap<Uuid, Entry>>>,
    strangers: Arc<Strangers>,
}

impl KeyCache {
    pub fn new(store: KeyStore) -> Self {
        KeyCache { store, entries: Arc::default(), strangers: Arc::new(Strangers::new()) }
    }

    /// Key `id`, from the cache when fresh; `from` is the caller's address.
    pub async fn get(&self, id: Uuid, from: Option<IpAddr>) -> Result<Option<KeyRecord>, Error> {
        let now = Instant::now();
        {
            let entries = self.entries.read().unwrap_or_else(|poison| poison.into_inner());
            let entry = entries.get(&id);
            match decide(entry, now) {
                Decision::Cached => return Ok(entry.and_then(|(record, _)| record.clone())),
                Decision::Refresh => {}
                Decision::Stranger => self.strangers.admit(from)?,
            }
        }
        let record = self.store.record(id).await?;
        let mut entries = self.entries.write().unwrap_or_else(|poison| poison.into_inner());
        if entries.len() >= PRUNE_ABOVE {
            entries.retain(|_, (record, fetched)| record.is_some() || now.duration_since(*fetched) < MISSING_TTL);
            self.strangers.per_address.retain_recent();
        }
        entries.insert(id, (record.clone(), Instant::now()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyRecord {
        KeyRecord { id: Uuid::now_v7(), secret_sha256: vec![1; 32], roles: Vec::new(), revoked: false }
    }

    #[test]
    fn a_known_key_is_refreshed_without_a_budget_and_strangers_need_one() {
        let read = Instant::now();
        let known = (Some(key()), read);
        assert_eq!(decide(Some(&known), read + Duration::from_secs(1)), Decision::Cached);
        // Its entry expired while strangers flood: read again, outside their budgets.
        assert_eq!(decide(Some(&known), read + TTL + Duration::from_secs(1)), Decision::Refresh);
        let missing = (None, read);
        assert_eq!(decide(Some(&missing), read + Duration::from_millis(10)), Decision::Cached);
        assert_eq!(decide(Some(&missing), read + MISSING_TTL), Decision::Stranger);
        assert_eq!(decide(None, read), Decision::Stranger);
    }

    #[test]
    fn one_address_spending_its_budget_leaves_the_others_theirs() {
        let strangers = Strangers::new();
        let attacker: IpAddr = "10.0.0.66".parse().unwrap();
        let refused =
            (0..STRANGER_LOOKUPS_PER_ADDRESS * 5).filter(|_| strangers.admit(Some(attacker)).is_err()).count();
        assert!(refused > 0, "the attacker's address ran out of lookups");
        assert!(strangers.admit(Some("10.0.0.7".parse().unwrap())).is_ok());
        // An IPv6 host's addresses share its /64's budget.
        let host = |last: u16| Some(IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last)));
        let refused =
            (0..STRANGER_LOOKUPS_PER_ADDRESS * 5).filter(|n| strangers.admit(host(*n as u16)).is_err()).count();
        assert!(refused > 0);
    }
}
