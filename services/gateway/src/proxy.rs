//! The transparent proxy: forwards any gRPC call (unary, client-, server- or
//! bidirectional streaming) to the role that serves it, body and trailers
//! untouched, without per-method code. When the gateway shuts down, the
//! response streams it is relaying end with UNAVAILABLE at their next pause,
//! so that draining is not held up by feeds that never end.

use std::{convert::Infallible, future::Future, pin::Pin, task::Context, task::Poll};

use bytes::Bytes;
use http_body::Frame;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::{Status, body::Body};
use tower::{Service, ServiceExt};

use crate::routing::RoutingTable;

/// The gateway's fallback service: every call no local service takes. It
/// sits behind the [`crate::guard::Guard`], which has already admitted the call.
#[derive(Clone)]
pub struct Proxy {
    routes: RoutingTable,
    /// The gateway's shutdown: relayed response streams end when it fires.
    shutdown: CancellationToken,
}

impl Proxy {
    pub fn new(routes: RoutingTable, shutdown: CancellationToken) -> Self {
        Proxy { routes, shutdown }
    }
}

impl Service<http::Request<axum::body::Body>> for Proxy {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        let path = request.uri().path().to_string();
        let Some(upstream) = self.routes.route(&path).cloned() else {
            return ready(Status::unimplemented(format!("no service of the suite serves {path}")));
        };
        let Some(channel) = upstream.pick() else {
            return ready(Status::unavailable(format!(
                "no replica of the {} role is healthy; retry shortly",
                upstream.role
            )));
        };
        let forwarded = request.map(Body::new);
        let streaming = self.routes.is_server_streaming(&path);
        let shutdown = self.shutdown.clone();
        Box::pin(async move {
            match channel.oneshot(forwarded).await {
                Ok(response) if streaming => Ok(response.map(|body| {
                    Body::new(EndOnShutdown { inner: body, shutdown: shutdown.cancelled_owned(), ended: false })
                })),
                Ok(response) => Ok(response),
                Err(error) if deadline_expired(&error) => {
                    Ok(Status::deadline_exceeded("the call's deadline expired before the role answered").into_http())
                }
                Err(error) => {
                    tracing::warn!(role = %upstream.role, error = %error, "upstream call failed");
                    Ok(Status::unavailable(format!("the {} role is unavailable; retry shortly", upstream.role))
                        .into_http())
                }
            }
        })
    }
}

/// The channel enforces `grpc-timeout` itself: its expiry is the caller's
/// deadline, not a sign that the role is down.
fn deadline_expired(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if current.is::<tonic::TimeoutExpired>() {
            return true;
        }
        cause = current.source();
    }
    false
}

fn ready(status: Status) -> Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>> {
    Box::pin(std::future::ready(Ok(status.into_http())))
}

pin_project_lite::pin_project! {
    /// A relayed response stream that ends with UNAVAILABLE trailers once the
    /// gateway shuts down and the upstream has nothing ready to send.
    struct EndOnShutdown {
        #[pin]
        inner: Body,
        #[pin]
        shutdown: WaitForCancellationFutureOwned,
        ended: bool,
    }
}

impl http_body::Body for EndOnShutdown {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame),
            Poll::Pending => match this.shutdown.poll(cx) {
                Poll::Ready(()) => {
                    *this.ended = true;
                    let status = Status::unavailable(
                        "the gateway is shutting down; subscribe again after the last position you handled",
                    );
                    let mut trailers = http::HeaderMap::new();
                    let _ = status.add_header(&mut trailers);
                    Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
