//! How benchmark calls reach a target: through a gateway with a bearer key,
//! or straight to a role, signing the principal as a gateway would.

use std::task::{Context, Poll};

use anyhow::Context as _;
use crm_platform::principal::{AccessRole, IdentitySigner, Principal, SignedChannel};
use http::HeaderValue;
use tonic::{body::Body, transport::Channel};

#[derive(Clone)]
pub enum Transport {
    /// Through a gateway, with an API key.
    Bearer(Channel, HeaderValue),
    /// Straight to a role, signed as a gateway.
    Signed(SignedChannel),
}

impl Transport {
    /// Through a gateway at `address`, with API key `key`.
    pub async fn with_key(address: &str, key: &str) -> anyhow::Result<Transport> {
        let header = HeaderValue::from_str(&format!("Bearer {key}")).context("the API key is not a header value")?;
        Ok(Transport::Bearer(connect(address).await?, header))
    }

    /// Straight to a role at `address`, signing as a gateway with `secret`.
    pub async fn signed(address: &str, secret: &str) -> anyhow::Result<Transport> {
        let principal = Principal { key_id: "bench".into(), roles: vec![AccessRole::Admin] };
        let signer = IdentitySigner::new(secret.as_bytes());
        Ok(Transport::Signed(SignedChannel::new(connect(address).await?, signer, principal)))
    }
}

async fn connect(address: &str) -> anyhow::Result<Channel> {
    let url = if address.contains("://") { address.to_string() } else { format!("http://{address}") };
    tonic::transport::Endpoint::from_shared(url)?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {address}"))
}

impl tower::Service<http::Request<Body>> for Transport {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = tracing::instrument::Instrumented<<Channel as tower::Service<http::Request<Body>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Transport::Bearer(channel, _) => channel.poll_ready(cx),
            Transport::Signed(signed) => signed.poll_ready(cx),
        }
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        match self {
            Transport::Bearer(channel, header) => {
                use tracing::Instrument;
                request.headers_mut().insert(http::header::AUTHORIZATION, header.clone());
                // A client's call is no span of ours (the signed one is the suite's own hop).
                channel.call(request).instrument(tracing::Span::none())
            }
            Transport::Signed(signed) => signed.call(request),
        }
    }
}
