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
};

use tonic::body::Body;
use tower::util::BoxCloneSyncService;

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
