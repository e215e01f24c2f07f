//! The roles running in this process, reachable without a network hop.
//!
//! Every role serves its gRPC services on a listener. When the gateway runs
//! in the same process (`crm up`, `crm serve --target all`), a proxied call
//! can skip the loopback connection: each role also registers here the very
//! service its listener serves (request ids, spans, metrics, the check of the
//! signed principal, its routes), and the gateway calls that. The call is the
//! same HTTP request with the same headers either way; only the second
//! HTTP/2 hop (encoding, flow control, a socket round trip), which cost the
//! gateway a third of a cheap call's throughput, is gone.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, RwLock},
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;
use tonic::{body::Body, transport::Channel};
use tower::{Service, ServiceExt, util::BoxCloneSyncService};

use crate::Role;

/// A role's whole server stack, as a service.
pub type LocalService = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// The registry one process's roles share.
#[derive(Clone, Default)]
pub struct LocalRoles {
    services: Arc<RwLock<HashMap<Role, LocalService>>>,
}

impl LocalRoles {
    /// Makes `role` reachable in-process (while it serves).
    pub fn register(&self, role: Role, service: LocalService) {
        self.services.write().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(role, service);
    }

    /// Takes `role` away (it is shutting down): calls go over the network again.
    pub fn unregister(&self, role: Role) {
        self.services.write().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&role);
    }

    /// `role`'s service, if it runs in this process and serves.
    pub fn get(&self, role: Role) -> Option<LocalService> {
        self.services.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&role).cloned()
    }
}

/// A channel from one role to another that takes the in-process path when
/// the other role serves in this process, and the network otherwise: a role
/// asking another one something on a caller's behalf (the segmentation role
/// looking a caller's phone number up in contacts, interactions resolving a
/// contact) skips the loopback hop the gateway skips. Decided call by call,
/// so a role that stops serving here is reached over the network again.
#[derive(Clone)]
pub struct RoleChannel {
    role: Role,
    local: LocalRoles,
    network: Channel,
    /// The local service `poll_ready` found, for the call that follows.
    ready: Option<LocalService>,
}

impl RoleChannel {
    pub fn new(role: Role, local: LocalRoles, network: Channel) -> Self {
        RoleChannel { role, local, network, ready: None }
    }

    /// A channel from the role of `ctx` to `role` at `url` (with the
    /// install's mutual TLS), in process when `role` serves here.
    pub fn connect(ctx: &crate::RoleContext, role: Role, url: &str) -> anyhow::Result<Self> {
        let network = crate::tls::internal_endpoint(url, ctx.server.internal_tls.as_ref())?.connect_lazy();
        Ok(RoleChannel::new(role, ctx.local.clone(), network))
    }
}

impl Service<http::Request<Body>> for RoleChannel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<'static, Result<http::Response<Body>, tonic::transport::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.ready = self.local.get(self.role);
        if self.ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        self.network.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.ready.take() {
            Some(service) => Box::pin(async move {
                let response = service.oneshot(request).await;
                Ok(response.unwrap_or_else(|never| match never {}))
            }),
            None => Box::pin(self.network.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answering(status: u16) -> LocalService {
        BoxCloneSyncService::new(tower::service_fn(move |_request: http::Request<Body>| async move {
            Ok::<_, Infallible>(http::Response::builder().status(status).body(Body::empty()).unwrap())
        }))
    }

    fn request() -> http::Request<Body> {
        http::Request::builder().uri("/crm.contacts.v1.ContactsService/LookupContact").body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn a_role_serving_here_is_called_in_process_and_over_the_network_once_it_stops() {
        let local = LocalRoles::default();
        // Nothing listens on port 1: only the in-process path can answer.
        let network = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let channel = RoleChannel::new(Role::Contacts, local.clone(), network);

        local.register(Role::Interactions, answering(500));
        let refused = channel.clone().oneshot(request()).await;
        assert!(refused.is_err(), "another role's registration is not taken");

        local.register(Role::Contacts, answering(204));
        let answered = channel.clone().oneshot(request()).await.unwrap();
        assert_eq!(answered.status(), 204);

        local.unregister(Role::Contacts);
        assert!(channel.oneshot(request()).await.is_err(), "once the role stops serving here, the network is used");
    }
}
