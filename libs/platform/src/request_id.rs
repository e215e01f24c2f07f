//! The request id every call carries (`x-request-id`): the caller's own when
//! it sends one, else a fresh UUIDv7. It names the call in logs, audit
//! trails and events, and is the default idempotency key of a create, so it
//! is checked before anything stores it: 1 to [`MAX_LENGTH`] visible ASCII
//! characters, else INVALID_ARGUMENT (a 3,000-character id once overflowed a
//! btree index and came back INTERNAL).

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{HeaderValue, Request};
use tonic::body::Body;
use tower::{Layer, Service};
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::Error;

/// The header that carries the request id, in and out.
pub const HEADER: &str = "x-request-id";
/// The longest request id accepted (as long as a body's `request_id`).
pub const MAX_LENGTH: usize = 200;

/// Why the caller's request id cannot be used, if it cannot.
pub fn check(headers: &http::HeaderMap) -> Result<(), Error> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(());
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_LENGTH || !bytes.iter().all(|byte| byte.is_ascii_graphic()) {
        return Err(Error::invalid(
            HEADER,
            format!("must be 1 to {MAX_LENGTH} visible ASCII characters (got {} bytes)", bytes.len()),
        ));
    }
    Ok(())
}

/// Request ids are UUIDv7: unique, and sortable by time in logs.
#[derive(Clone, Copy)]
pub struct MakeUuidV7;

impl MakeRequestId for MakeUuidV7 {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()).ok().map(RequestId::new)
    }
}

/// Refuses a call whose request id [`check`] refuses, before anything else sees it.
#[derive(Clone, Copy, Default)]
pub struct CheckRequestIdLayer;

impl<S> Layer<S> for CheckRequestIdLayer {
    type Service = CheckRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CheckRequestId { inner }
    }
}

#[derive(Clone)]
pub struct CheckRequestId<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for CheckRequestId<S>
where
    S: Service<Request<B>, Response = http::Response<ResBody>, Error = Infallible>,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<tower::BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match check(request.headers()) {
            Ok(()) => {
                let response = self.inner.call(request);
                Box::pin(async move { Ok(response.await?.map(Body::new)) })
            }
            Err(error) => crate::refusal::answer_boxed(request.into_body(), tonic::Status::from(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn request_ids_are_short_visible_ascii() {
        assert!(check(&http::HeaderMap::new()).is_ok());
        assert!(check(&headers("01a23394-142f-73ea-a3e7-3b245e62f01d")).is_ok());
        assert!(check(&headers(&"r".repeat(MAX_LENGTH))).is_ok());
        assert!(check(&headers(&"r".repeat(MAX_LENGTH + 1))).is_err());
        assert!(check(&headers("two words")).is_err());
        assert!(check(&headers("")).is_err());
    }
}
