//! Who the caller is. For now one credential exists, the bootstrap admin API
//! key, sent as `authorization: Bearer <key>`; the key store, scopes and JWT
//! arrive with the gateway issue (#5) and replace this check.

use std::sync::Arc;

use crm_platform::{Error, config::Secret};
use subtle::ConstantTimeEq;
use tonic::{Status, metadata::MetadataMap};

/// Checks credentials in constant time.
#[derive(Clone)]
pub struct Authenticator {
    admin_key: Arc<Secret>,
}

impl Authenticator {
    pub fn new(admin_key: Secret) -> Self {
        Authenticator { admin_key: Arc::new(admin_key) }
    }

    /// `Ok` when `headers` carry a valid bearer key.
    pub fn check(&self, headers: &http::HeaderMap) -> Result<(), Error> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Error::Unauthenticated("send an API key as `authorization: Bearer <key>`".into()));
        };
        let presented = value.to_str().ok().and_then(|value| value.strip_prefix("Bearer ")).unwrap_or("");
        if bool::from(presented.as_bytes().ct_eq(self.admin_key.expose().as_bytes())) {
            Ok(())
        } else {
            Err(Error::Unauthenticated("the API key is not valid".into()))
        }
    }

    /// The same check as a tonic interceptor, for the services the gateway serves itself.
    pub fn interceptor(&self) -> impl Fn(tonic::Request<()>) -> Result<tonic::Request<()>, Status> + Clone + use<> {
        let authenticator = self.clone();
        move |request: tonic::Request<()>| {
            let headers = MetadataMap::into_headers(request.metadata().clone());
            authenticator.check(&headers).map_err(Status::from)?;
            Ok(request)
        }
    }
}
