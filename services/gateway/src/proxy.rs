//! The transparent proxy: forwards any gRPC call (unary, client-, server- or
//! bidirectional streaming) to the role that serves it, body and trailers
//! untouched, without knowing the method.

use std::{convert::Infallible, future::Future, pin::Pin, task::Context, task::Poll};

use tonic::{Status, body::Body};
use tower::{Service, ServiceExt};

use crate::{auth::Authenticator, routing::RoutingTable};

/// The gateway's fallback service: every call no local service takes.
#[derive(Clone)]
pub struct Proxy {
    routes: RoutingTable,
    authenticator: Authenticator,
}

impl Proxy {
    pub fn new(routes: RoutingTable, authenticator: Authenticator) -> Self {
        Proxy { routes, authenticator }
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
        if let Err(error) = self.authenticator.check(request.headers()) {
            return ready(Status::from(error));
        }
        let (mut parts, body) = request.into_parts();
        // The credential stops here: roles learn who the caller is from the gateway, not from the key.
        parts.headers.remove(http::header::AUTHORIZATION);
        let forwarded = http::Request::from_parts(parts, Body::new(body));
        Box::pin(async move {
            let channel = upstream.channel.clone();
            match channel.oneshot(forwarded).await {
                Ok(response) => Ok(response),
                Err(error) => {
                    tracing::warn!(role = %upstream.role, error = %error, "upstream call failed");
                    Ok(Status::unavailable(format!("the {} role is unavailable; retry shortly", upstream.role))
                        .into_http())
                }
            }
        })
    }
}

fn ready(status: Status) -> Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>> {
    Box::pin(std::future::ready(Ok(status.into_http())))
}
