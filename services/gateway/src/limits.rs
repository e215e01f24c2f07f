//! Per-key limits: a token bucket per key (its size set by the key's access
//! role) and a cap on the streaming calls one key may hold open.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use crm_platform::{
    Error,
    config::{GatewayLimits, RateLimit},
    principal::Principal,
};
use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};
use http_body::Frame;
use tonic::{Status, body::Body};

pub struct Limits {
    /// One keyed limiter per distinct (rate, burst), shared by the roles that use it.
    buckets: Vec<(RateLimit, DefaultKeyedRateLimiter<String>)>,
    config: GatewayLimits,
    open_streams: Mutex<HashMap<String, usize>>,
}

impl Limits {
    pub fn new(config: GatewayLimits) -> Arc<Limits> {
        let mut buckets: Vec<(RateLimit, DefaultKeyedRateLimiter<String>)> = Vec::new();
        for limit in config.rate.values() {
            if buckets.iter().any(|(existing, _)| existing == limit) {
                continue;
            }
            let per_second = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
            buckets.push((*limit, DefaultKeyedRateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))));
        }
        Arc::new(Limits { buckets, config, open_streams: Mutex::default() })
    }

    /// Takes one token from the caller's bucket, or says when to retry.
    pub fn check_rate(&self, principal: &Principal) -> Result<(), Error> {
        // The most generous of the key's roles applies.
        let Some(limit) = principal
            .roles
            .iter()
            .filter_map(|role| self.config.rate.get(role))
            .max_by_key(|limit| (limit.per_second, limit.burst))
        else {
            return Ok(());
        };
        let Some((_, limiter)) = self.buckets.iter().find(|(bucket, _)| bucket == limit) else { return Ok(()) };
        limiter.check_key(&principal.key_id).map_err(|not_until| {
            let retry_after = not_until.wait_time_from(limiter.clock().now()).max(Duration::from_millis(1));
            Error::ResourceExhausted {
                message: format!(
                    "this key may make {} requests per second (bursts of {}); retry after the delay",
                    limit.per_second, limit.burst
                ),
                retry_after,
            }
        })
    }

    /// Reserves one of the key's stream slots until the returned slot is dropped.
    pub fn open_stream(self: &Arc<Self>, principal: &Principal) -> Result<StreamSlot, Error> {
        let mut open = self.open_streams.lock().unwrap_or_else(|poison| poison.into_inner());
        let count = open.entry(principal.key_id.clone()).or_default();
        if *count >= self.config.max_streams_per_key {
            return Err(Error::ResourceExhausted {
                message: format!(
                    "this key has {} streams open, the most allowed; close one first",
                    self.config.max_streams_per_key
                ),
                retry_after: Duration::from_secs(1),
            });
        }
        *count += 1;
        Ok(StreamSlot { limits: self.clone(), key_id: principal.key_id.clone() })
    }

    /// Forgets buckets of keys not seen lately (memory stays bounded).
    pub fn forget_idle_keys(&self) {
        for (_, limiter) in &self.buckets {
            limiter.retain_recent();
        }
    }
}

/// One open stream of a key; frees its slot when dropped.
pub struct StreamSlot {
    limits: Arc<Limits>,
    key_id: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open_streams.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(count) = open.get_mut(&self.key_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key_id);
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds its stream slot until it is done or dropped.
    pub struct SlotBody {
        #[pin]
        inner: Body,
        slot: Option<StreamSlot>,
    }
}

impl SlotBody {
    pub fn new(inner: Body, slot: StreamSlot) -> Self {
        SlotBody { inner, slot: Some(slot) }
    }
}

impl http_body::Body for SlotBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            this.slot.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
