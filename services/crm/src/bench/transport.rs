//! How benchmark calls reach a target: through a gateway with a bearer key,
//! or straight to a role, signing the principal as a gateway would.

use std::task::{Context, Poll};

use anyhow::Context as _;
use crm_platform::principal::{AccessRole, IdentitySigner, Principal};
use http::HeaderValue;
use tonic::{body::Body, transport::Channel};

#[derive(Clone)]
pub struct Transport {
    channel: Channel,
    credentials: Credentials,
}

#[derive(Clone)]
enum Credentials {
    Bearer(HeaderValue),
    Signed(IdentitySigner, Principal),
}

impl Transport {
    /// Through a gateway at `address`, with API key `key`.
    pub async fn with_key(address: &str, key: &str) -> anyhow::Result<Transport> {
        let header = HeaderValue::from_str(&format!("Bearer {key}")).context("the API key is not a header value")?;
        Ok(Transport { channel: connect(address).await?, credentials: Credentials::Bearer(header) })
    }

    /// Straight to a role at `address`, signing as a gateway with `secret`.
    pub async fn signed(address: &str, secret: &str) -> anyhow::Result<Transport> {
        let principal = Principal { key_id: "bench".into(), roles: vec![AccessRole::Admin] };
        let credentials = Credentials::Signed(IdentitySigner::new(secret.as_bytes()), principal);
        Ok(Transport { channel: connect(address).await?, credentials })
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
    type Future = <Channel as tower::Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        match &self.credentials {
            Credentials::Bearer(header) => {
                request.headers_mut().insert(http::header::AUTHORIZATION, header.clone());
            }
            Credentials::Signed(signer, principal) => {
                let path = request.uri().path().to_string();
                signer.sign(principal, &path, request.headers_mut());
            }
        }
        self.channel.call(request)
    }
}
