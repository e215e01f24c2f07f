//! The transparent proxy: forwards any gRPC call (unary, client-, server- or
//! bidirectional streaming) to the role that serves it, body and trailers
//! untouched, without per-method code. A role running in the gateway's own
//! process is called in-process (`crm_platform::local`: the same server
//! stack, without the second HTTP/2 hop), the others over their channels.
//! When the gateway shuts down, the response streams it is relaying end with
//! UNAVAILABLE at their next pause, so that draining is not held up by feeds
//! that never end.

use std::{convert::Infallible, future::Future, pin::Pin, task::Context, task::Poll};

use bytes::Bytes;
use http_body::Frame;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::{Status, body::Body};
use tower::{Service, ServiceExt};
use tracing::Instrument;

use crm_platform::{local::LocalRoles, refusal};

use crate::{deadline, routing::RoutingTable};

/// The gateway's fallback service: every call no local service takes. It
/// sits behind the [`crate::guard::Guard`], which has already admitted the call.
#[derive(Clone)]
pub struct Proxy {
    routes: RoutingTable,
    /// Roles of this process, called without a network hop.
    local: LocalRoles,
    /// The gateway's shutdown: relayed response streams end when it fires.
    shutdown: CancellationToken,
}

impl Proxy {
    pub fn new(routes: RoutingTable, local: LocalRoles, shutdown: CancellationToken) -> Self {
        Proxy { routes, local, shutdown }
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
            let refused = Status::unimplemented(format!("no service of the suite serves {path}"));
            return refusal::answer_boxed(request.into_body(), refused);
        };
        // The hop to the role is a client span of its own, the role's server span its child.
        let span = crm_platform::trace_context::client_span(&path);
        let mut forwarded = request.map(Body::new);
        crm_platform::trace_context::propagate(&span, forwarded.headers_mut());
        let streaming = self.routes.is_server_streaming(&path);
        let shutdown = self.shutdown.clone();
        let relay = move |response: http::Response<Body>| {
            if streaming {
                response.map(|body| {
                    Body::new(EndOnShutdown { inner: body, shutdown: shutdown.cancelled_owned(), ended: false })
                })
            } else {
                response
            }
        };
        if let Some(service) = self.local.get(upstream.role) {
            // In-process: the channel's enforcement of `grpc-timeout` is ours to do.
            let deadline = deadline::of(forwarded.headers());
            return Box::pin(
                async move {
                    let call = service.oneshot(forwarded);
                    let response = match deadline {
                        Some(deadline) => match tokio::time::timeout(deadline, call).await {
                            Ok(response) => response,
                            Err(_) => return Ok(expired()),
                        },
                        None => call.await,
                    };
                    Ok(response.map(relay).unwrap_or_else(|never| match never {}))
                }
                .instrument(span),
            );
        }
        let Some(channel) = upstream.pick() else {
            let refused =
                Status::unavailable(format!("no replica of the {} role is healthy; retry shortly", upstream.role));
            return refusal::answer_boxed(forwarded.into_body(), refused);
        };
        Box::pin(
            async move {
                match channel.oneshot(forwarded).await {
                    Ok(response) => Ok(relay(response)),
                    Err(error) if deadline_expired(&error) => Ok(expired()),
                    Err(error) => {
                        tracing::warn!(role = %upstream.role, error = %error, "upstream call failed");
                        Ok(Status::unavailable(format!("the {} role is unavailable; retry shortly", upstream.role))
                            .into_http())
                    }
                }
            }
            .instrument(span),
        )
    }
}

fn expired() -> http::Response<Body> {
    Status::deadline_exceeded("the call's deadline expired before the role answered").into_http()
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

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, time::Duration};

    use crm_platform::{Role, local::LocalService};
    use tower::util::BoxCloneSyncService;

    use super::*;

    /// A contacts role that answers every call with OK and a marker header, after `delay`.
    fn local_contacts(delay: Duration) -> LocalService {
        BoxCloneSyncService::new(tower::service_fn(move |_request: http::Request<Body>| async move {
            tokio::time::sleep(delay).await;
            let mut response = Status::ok("").into_http::<Body>();
            response.headers_mut().insert("x-answered-by", http::HeaderValue::from_static("in-process"));
            Ok::<_, Infallible>(response)
        }))
    }

    fn call(deadline: Option<&'static str>) -> http::Request<axum::body::Body> {
        let mut request = http::Request::builder()
            .method("POST")
            .uri("/crm.contacts.v1.ContactsService/GetContact")
            .header("content-type", "application/grpc");
        if let Some(deadline) = deadline {
            request = request.header("grpc-timeout", deadline);
        }
        request.body(axum::body::Body::empty()).unwrap()
    }

    fn grpc_status(response: &http::Response<Body>) -> Option<&str> {
        response.headers().get("grpc-status").and_then(|value| value.to_str().ok())
    }

    #[tokio::test]
    async fn a_role_of_this_process_is_called_in_process_and_the_network_otherwise() {
        // The configured upstream cannot be reached: only the in-process path can answer.
        let urls = HashMap::from([(Role::Contacts, vec!["http://127.0.0.1:9".to_string()])]);
        let routes = RoutingTable::connect(&urls, None).unwrap();
        let local = LocalRoles::default();
        let mut proxy = Proxy::new(routes, local.clone(), CancellationToken::new());

        local.register(Role::Contacts, local_contacts(Duration::ZERO));
        let answered = proxy.call(call(None)).await.unwrap();
        assert_eq!(answered.headers().get("x-answered-by").unwrap(), "in-process");

        // Its deadline is enforced as the channel would.
        local.register(Role::Contacts, local_contacts(Duration::from_secs(5)));
        let late = tokio::time::timeout(Duration::from_secs(2), proxy.call(call(Some("50m")))).await.unwrap().unwrap();
        assert_eq!(grpc_status(&late), Some("4"), "DEADLINE_EXCEEDED");

        // A role shutting down unregisters: the call goes to the network (down here).
        local.unregister(Role::Contacts);
        let remote = proxy.call(call(Some("2S"))).await.unwrap();
        assert!(remote.headers().get("x-answered-by").is_none());
        assert_eq!(grpc_status(&remote), Some("14"), "UNAVAILABLE");
    }
}
