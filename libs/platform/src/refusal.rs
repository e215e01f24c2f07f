//! Refusing a call before its handler has read the request.
//!
//! A layer that refuses a call (no key or a bad one, over a limit, the
//! database down) could answer at once. But if the client is still sending
//! the request, its DATA frames queued behind other streams' headers on a
//! busy connection, the server must then reset the stream (RST_STREAM
//! NO_ERROR, RFC 9113 8.1); h2 remembers only 50 streams reset in the last
//! second, and DATA arriving for a forgotten one is a protocol error that
//! counts against the connection's lifetime budget
//! ([`crate::server::MAX_LOCAL_ERROR_RESETS`], the guard against
//! MadeYouReset). A burst of refusals on one connection (a client over its
//! rate limit, a flood of made-up keys) used to spend that budget and have
//! the connection closed (GOAWAY ENHANCE_YOUR_CALM) under the client's good
//! calls too.
//!
//! So a refusal is answered once the request has ended: what is left of it
//! is read and dropped, at most [`READ_AT_MOST`] bytes for at most
//! [`WAIT_AT_MOST`]. A unary call's message is there already or a moment
//! behind; a client stream that goes on past either bound is answered then
//! (and reset, as before).

use std::{future::Future, pin::Pin, time::Duration};

use http_body::Body;
use tonic::Status;

/// The most of a refused request read before answering.
pub const READ_AT_MOST: usize = 64 * 1024;
/// The longest a refusal waits for its request to end.
pub const WAIT_AT_MOST: Duration = Duration::from_secs(2);

/// `status` as the answer to a call whose request is `body`, once the
/// request has ended (or the bounds above are reached).
pub async fn answer<B: Body>(body: B, status: Status) -> http::Response<tonic::body::Body> {
    answer_within(body, status, WAIT_AT_MOST).await
}

/// A refusal as a layer's future, which never fails.
pub type Answer<E> = Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, E>> + Send>>;

/// [`answer`] as a layer's future.
pub fn answer_boxed<B, E>(body: B, status: Status) -> Answer<E>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    Box::pin(async move { Ok(answer(body, status).await) })
}

async fn answer_within<B: Body>(body: B, status: Status, wait: Duration) -> http::Response<tonic::body::Body> {
    let _ = tokio::time::timeout(wait, read_to_end(body)).await;
    status.into_http()
}

/// Reads `body` and drops it, until it ends, fails, or passed [`READ_AT_MOST`].
async fn read_to_end<B: Body>(body: B) {
    let mut body = std::pin::pin!(body);
    let mut read = 0;
    while read <= READ_AT_MOST {
        let frame = std::future::poll_fn(|cx| Pin::as_mut(&mut body).poll_frame(cx)).await;
        match frame {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, bytes::Buf::remaining),
            Some(Err(_)) | None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request body sent in `chunks`, then ended, or never ended.
    struct Request {
        chunks: Vec<bytes::Bytes>,
        ends: bool,
    }

    impl Body for Request {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
            match self.chunks.pop() {
                Some(chunk) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(chunk)))),
                None if self.ends => std::task::Poll::Ready(None),
                None => std::task::Poll::Pending,
            }
        }
    }

    #[tokio::test]
    async fn a_refusal_waits_for_the_request_to_end_within_its_bounds() {
        use futures_util::FutureExt;
        let status = || Status::unauthenticated("no key");
        let ended = Request { chunks: vec![bytes::Bytes::from_static(&[0; 5])], ends: true };
        let response = answer(ended, status()).now_or_never().expect("an ended request is answered at once");
        assert_eq!(response.headers()["grpc-status"], "16");

        let large = Request { chunks: vec![bytes::Bytes::from(vec![0; READ_AT_MOST + 1])], ends: false };
        assert!(answer(large, status()).now_or_never().is_some(), "past the bytes read, answered at once");

        let endless = || Request { chunks: vec![], ends: false };
        assert!(answer(endless(), status()).now_or_never().is_none(), "a request still coming is waited for");
        let response = answer_within(endless(), status(), Duration::from_millis(1)).await;
        assert_eq!(response.headers()["grpc-status"], "16", "and answered after the wait");
    }
}
