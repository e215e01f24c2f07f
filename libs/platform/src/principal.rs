//! Who is calling, as the gateway vouches for it.
//!
//! The gateway authenticates the caller and passes the principal to the role
//! in two headers: `x-crm-principal` (`v1;<key id>;<roles>;<unix seconds>`)
//! and `x-crm-principal-signature`, an HMAC-SHA256 over the method path and
//! that value, keyed with the install's internal secret. A role accepts a
//! principal only with a valid signature made for this very method within the
//! last [`MAX_AGE_SECS`]; forged, re-targeted or stale identity is
//! UNAUTHENTICATED. Handlers read the [`Principal`] from the request's
//! extensions (for the audit trail).

use std::{
    fmt,
    str::FromStr,
    task::{Context, Poll},
    time::{SystemTime, UNIX_EPOCH},
};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tower::{Layer, Service};

use crate::error::Error;

pub const PRINCIPAL_HEADER: &str = "x-crm-principal";
pub const SIGNATURE_HEADER: &str = "x-crm-principal-signature";
/// How old a signed principal may be (clock skew plus queueing).
pub const MAX_AGE_SECS: u64 = 300;

/// An access role: a named set of scopes an API key is granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessRole {
    /// Everything, including key management.
    Admin,
    /// Call-centre and back-office staff: read and change customers and their history.
    Agent,
    /// Billing and accounting systems: ingest interactions, read customers, follow feeds.
    Integration,
    /// Analysts: read everything, change nothing.
    Analyst,
    /// Site reliability: alerts and the suite's health, no customer data.
    Sre,
}

impl AccessRole {
    pub const ALL: [AccessRole; 5] =
        [AccessRole::Admin, AccessRole::Agent, AccessRole::Integration, AccessRole::Analyst, AccessRole::Sre];

    pub fn as_str(self) -> &'static str {
        match self {
            AccessRole::Admin => "admin",
            AccessRole::Agent => "agent",
            AccessRole::Integration => "integration",
            AccessRole::Analyst => "analyst",
            AccessRole::Sre => "sre",
        }
    }
}

impl fmt::Display for AccessRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccessRole {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        AccessRole::ALL
            .into_iter()
            .find(|role| role.as_str() == name)
            .ok_or_else(|| format!("unknown access role {name:?}; expected admin, agent, integration, analyst or sre"))
    }
}

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Id of the API key (or `bootstrap` for the configured admin key, or the JWT subject).
    pub key_id: String,
    pub roles: Vec<AccessRole>,
}

impl Principal {
    /// The id to record in audit trails.
    pub fn actor(&self) -> &str {
        &self.key_id
    }
}

/// Who made a call and which request it was: what an audit entry records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    /// The request id (`x-request-id`), kept or minted by the server.
    pub request_id: String,
}

impl Caller {
    /// The caller of `request`, as the gateway signed it (roles) or authenticated it (the gateway).
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Caller, Error> {
        let principal = request
            .extensions()
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| Error::Unauthenticated("the call carries no authenticated caller".into()))?;
        let request_id = request
            .metadata()
            .get(crate::server::REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok(Caller { principal, request_id })
    }
}

/// Signs principals (the gateway) and verifies them (the roles).
#[derive(Clone)]
pub struct IdentitySigner {
    key: Vec<u8>,
}

impl IdentitySigner {
    pub fn new(internal_secret: &[u8]) -> Self {
        IdentitySigner { key: internal_secret.to_vec() }
    }

    fn mac(&self, path: &str, value: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(value.as_bytes());
        mac
    }

    /// Sets the identity headers for a call to `path` made on behalf of `principal`.
    pub fn sign(&self, principal: &Principal, path: &str, headers: &mut http::HeaderMap) {
        let roles: Vec<&str> = principal.roles.iter().map(|role| role.as_str()).collect();
        let value = format!("v1;{};{};{}", principal.key_id, roles.join(","), now_secs());
        let signature = hex::encode(self.mac(path, &value).finalize().into_bytes());
        if let (Ok(value), Ok(signature)) =
            (http::HeaderValue::from_str(&value), http::HeaderValue::from_str(&signature))
        {
            headers.insert(PRINCIPAL_HEADER, value);
            headers.insert(SIGNATURE_HEADER, signature);
        }
    }

    /// The principal in `headers`, if a gateway signed it for `path` recently.
    pub fn verify(&self, path: &str, headers: &http::HeaderMap) -> Result<Principal, Error> {
        let refused = |why: &str| Error::Unauthenticated(format!("{why}; call the suite through its gateway"));
        let value = headers.get(PRINCIPAL_HEADER).and_then(|value| value.to_str().ok());
        let signature = headers.get(SIGNATURE_HEADER).and_then(|value| value.to_str().ok());
        let (Some(value), Some(signature)) = (value, signature) else {
            return Err(refused("no caller identity"));
        };
        let signature = hex::decode(signature).map_err(|_| refused("the caller identity is not signed"))?;
        self.mac(path, value).verify_slice(&signature).map_err(|_| refused("the caller identity is forged"))?;

        let mut parts = value.split(';');
        let (Some("v1"), Some(key_id), Some(roles), Some(signed_at), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refused("the caller identity is malformed"));
        };
        let signed_at: u64 = signed_at.parse().map_err(|_| refused("the caller identity is malformed"))?;
        if now_secs().abs_diff(signed_at) > MAX_AGE_SECS {
            return Err(refused("the caller identity has expired"));
        }
        let roles = roles
            .split(',')
            .filter(|role| !role.is_empty())
            .map(AccessRole::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| refused("the caller identity is malformed"))?;
        Ok(Principal { key_id: key_id.to_string(), roles })
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0)
}

/// A channel to a role that signs `principal` on every call, as the gateway
/// does: for internal callers (a role following another role's feed, the
/// benchmark's direct mode, tests) that share the install's secret. Over a
/// network [`tonic::transport::Channel`], or a [`crate::local::RoleChannel`]
/// that takes the in-process path when it can.
#[derive(Clone)]
pub struct SignedChannel<C = tonic::transport::Channel> {
    channel: C,
    signer: IdentitySigner,
    principal: Principal,
}

impl<C> SignedChannel<C> {
    pub fn new(channel: C, signer: IdentitySigner, principal: Principal) -> Self {
        SignedChannel { channel, signer, principal }
    }
}

impl<C> Service<http::Request<tonic::body::Body>> for SignedChannel<C>
where
    C: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = C::Error;
    type Future = tracing::instrument::Instrumented<C::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx)
    }

    /// Signs the call and makes it a client span of the caller's trace.
    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        use tracing::Instrument;
        let path = request.uri().path().to_string();
        self.signer.sign(&self.principal, &path, request.headers_mut());
        let span = crate::trace_context::client_span(&path);
        crate::trace_context::propagate(&span, request.headers_mut());
        self.channel.call(request).instrument(span)
    }
}

/// Paths every caller may reach without an identity: health and reflection.
pub fn is_public_path(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// The role side: refuses calls without a valid gateway signature and puts
/// the [`Principal`] into the request's extensions.
#[derive(Clone)]
pub struct VerifyIdentityLayer {
    signer: IdentitySigner,
}

impl VerifyIdentityLayer {
    pub fn new(signer: IdentitySigner) -> Self {
        VerifyIdentityLayer { signer }
    }
}

impl<S> Layer<S> for VerifyIdentityLayer {
    type Service = VerifyIdentity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyIdentity { inner, signer: self.signer.clone() }
    }
}

#[derive(Clone)]
pub struct VerifyIdentity<S> {
    inner: S,
    signer: IdentitySigner,
}

impl<S, B> Service<http::Request<B>> for VerifyIdentity<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = futures_util::future::Either<S::Future, crate::refusal::Answer<S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        if !is_public_path(&path) {
            match self.signer.verify(&path, request.headers()) {
                Ok(principal) => {
                    tracing::Span::current().record("principal", principal.key_id.as_str());
                    request.extensions_mut().insert(principal);
                }
                Err(error) => {
                    let refused = crate::refusal::answer_boxed(request.into_body(), tonic::Status::from(error));
                    return futures_util::future::Either::Right(refused);
                }
            }
        }
        futures_util::future::Either::Left(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Principal {
        Principal { key_id: "k1".into(), roles: vec![AccessRole::Agent, AccessRole::Analyst] }
    }

    #[test]
    fn a_signed_principal_is_verified_for_its_own_path_only() {
        let signer = IdentitySigner::new(b"internal");
        let mut headers = http::HeaderMap::new();
        signer.sign(&agent(), "/crm.contacts.v1.ContactsService/ListEvents", &mut headers);
        assert_eq!(signer.verify("/crm.contacts.v1.ContactsService/ListEvents", &headers).unwrap(), agent());
        assert!(signer.verify("/crm.contacts.v1.ContactsService/Subscribe", &headers).is_err());
        assert!(IdentitySigner::new(b"other").verify("/crm.contacts.v1.ContactsService/ListEvents", &headers).is_err());
    }

    #[test]
    fn a_forged_principal_is_refused() {
        let signer = IdentitySigner::new(b"internal");
        let mut headers = http::HeaderMap::new();
        signer.sign(&agent(), "/p", &mut headers);
        let forged = headers[PRINCIPAL_HEADER].to_str().unwrap().replace("agent,analyst", "admin");
        headers.insert(PRINCIPAL_HEADER, forged.parse().unwrap());
        let error = signer.verify("/p", &headers).unwrap_err();
        assert!(error.to_string().contains("forged"), "{error}");
        assert!(signer.verify("/p", &http::HeaderMap::new()).is_err());
    }

    #[test]
    fn roles_round_trip() {
        for role in AccessRole::ALL {
            assert_eq!(role.as_str().parse::<AccessRole>(), Ok(role));
        }
        assert!("root".parse::<AccessRole>().is_err());
    }
}
