//! The gateway's checks in front of every service it offers, local or proxied,
//! in order: authenticate the key, find the method's policy and check the
//! scope, take a token from the key's rate limit, set the call's deadline
//! (and take a stream slot for a streaming call), then hand the call on with the credential removed and the principal
//! attached (in the request's extensions for local services, and signed in
//! headers for the roles). Health and reflection stay open.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use crm_platform::{
    Error,
    principal::{IdentitySigner, is_public_path},
    refusal,
};
use tonic::{Status, body::Body, server::NamedService};
use tower::Service;

use crate::{
    auth::Authenticator,
    deadline::Deadlines,
    limits::{Limits, SlotBody, StreamSlot},
    policy,
};

/// What the gateway checks on every call.
pub struct Guard {
    authenticator: Authenticator,
    signer: IdentitySigner,
    limits: Arc<Limits>,
    deadlines: Deadlines,
    /// Every method path in the contracts, and whether it streams (either way):
    /// a path outside it is UNIMPLEMENTED, one inside it without a policy is
    /// PERMISSION_DENIED.
    methods: HashMap<String, bool>,
}

impl Guard {
    pub fn new(
        authenticator: Authenticator,
        signer: IdentitySigner,
        limits: Arc<Limits>,
        deadlines: Deadlines,
    ) -> Arc<Guard> {
        let methods = crm_proto::services()
            .iter()
            .flat_map(|service| {
                service
                    .methods
                    .iter()
                    .map(|method| (service.path(method), method.client_streaming || method.server_streaming))
            })
            .collect();
        Arc::new(Guard { authenticator, signer, limits, deadlines, methods })
    }

    /// Admits the call (rewriting its headers; for a stream, holding one of the
    /// key's stream slots) or says why not.
    async fn admit<B>(&self, request: &mut http::Request<B>) -> Result<Option<StreamSlot>, Error> {
        let path = request.uri().path().to_string();
        if is_public_path(&path) {
            return Ok(None);
        }
        // Authenticate first, so that strangers cannot probe which methods exist.
        let from = remote_address(request.extensions());
        let principal = self.authenticator.authenticate(request.headers(), from).await?;
        let Some(&streaming) = self.methods.get(&path) else {
            return Err(Error::Unimplemented(format!("no service of the suite serves {path}")));
        };
        let Some(scope) = policy::required_scope(&path) else {
            return Err(Error::PermissionDenied(format!("{path} has no access policy; no one may call it")));
        };
        if !policy::allows(&principal, scope) {
            return Err(Error::PermissionDenied(format!(
                "{path} needs the {} scope, which this key lacks",
                scope.as_str()
            )));
        }
        self.limits.check_rate(&principal)?;
        let headers = request.headers_mut();
        self.deadlines.apply(headers, streaming)?;
        let slot = if streaming { Some(self.limits.open_stream(&principal)?) } else { None };
        // The credential stops here: the roles trust the signed principal instead.
        headers.remove(http::header::AUTHORIZATION);
        self.signer.sign(&principal, &path, headers);
        tracing::Span::current().record("principal", principal.key_id.as_str());
        request.extensions_mut().insert(principal);
        Ok(slot)
    }
}

/// The caller's address, over TCP or TLS.
fn remote_address(extensions: &http::Extensions) -> Option<std::net::IpAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let tcp = extensions
        .get::<TcpConnectInfo>()
        .or_else(|| extensions.get::<TlsConnectInfo<TcpConnectInfo>>().map(|info| info.get_ref()));
    tcp.and_then(|info| info.remote_addr()).map(|address| address.ip())
}

/// `inner`, behind the [`Guard`].
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, guard: Arc<Guard>) -> Self {
        Guarded { inner, guard }
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Guarded<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone is not ready; the service polled ready is the one we take.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            match guard.admit(&mut request).await {
                Ok(None) => inner.call(request).await,
                Ok(Some(slot)) => {
                    let response = inner.call(request).await?;
                    Ok(response.map(|body| Body::new(SlotBody::new(body, slot))))
                }
                // Answered once the request has ended (`crm_platform::refusal`).
                Err(error) => Ok(refusal::answer(request.into_body(), Status::from(error)).await),
            }
        })
    }
}
