//! Whether a role can reach its database, and what callers see when it cannot.
//!
//! A watcher probes PostgreSQL every [`PROBE_INTERVAL`] on a connection of
//! its own (not one of the pool's, so a pool busy with long transactions
//! never looks like an outage). After [`FAILURES_TO_FALL`] probes in a row
//! fail or take longer than [`PROBE_TIMEOUT`], the role's services turn
//! NOT_SERVING in health (the gateway stops routing to the replica) and
//! every call is answered at once with UNAVAILABLE and a `RetryInfo`, instead
//! of waiting for the pool's timeout; the first probe that succeeds turns
//! them back to SERVING. Health and reflection stay answered.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures_util::future::Either;
use http::Request;
use sqlx::{Connection, PgConnection, PgPool, postgres::PgConnectOptions};
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic_health::{ServingStatus, server::HealthReporter};
use tower::{Layer, Service};

use crate::{Error, principal::is_public_path, refusal};

/// How often the database is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// A probe slower than this failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Failed probes in a row that make the role NOT_SERVING.
pub const FAILURES_TO_FALL: u32 = 2;
/// The delay a refused caller is told to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Whether the database answered the last probes; shared by the watcher and the layer.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Probes `pool`'s database until `shutdown`, reporting `services` in
    /// `reporter` as SERVING or NOT_SERVING as it answers or not.
    pub fn watch(
        pool: &PgPool,
        reporter: HealthReporter,
        services: Vec<String>,
        shutdown: CancellationToken,
    ) -> Readiness {
        let readiness = Readiness(Arc::new(AtomicBool::new(true)));
        let options = (*pool.connect_options()).clone();
        let flag = readiness.0.clone();
        tokio::spawn(async move {
            let mut probe: Option<PgConnection> = None;
            let mut failures = 0;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(PROBE_INTERVAL) => {}
                }
                let answered = tokio::time::timeout(PROBE_TIMEOUT, probe_once(&mut probe, &options)).await;
                failures = if matches!(answered, Ok(Ok(()))) { 0 } else { failures + 1 };
                if failures > 0 {
                    // Whatever state the connection is in, the next probe starts afresh.
                    probe = None;
                }
                let ready = failures < FAILURES_TO_FALL;
                if flag.swap(ready, Ordering::AcqRel) != ready && !shutdown.is_cancelled() {
                    let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
                    match &answered {
                        Ok(Err(error)) => tracing::warn!(ready, %error, "database readiness changed"),
                        _ => tracing::warn!(ready, "database readiness changed"),
                    }
                    for service in std::iter::once("").chain(services.iter().map(String::as_str)) {
                        reporter.set_service_status(service, status).await;
                    }
                }
            }
        });
        readiness
    }
}

async fn probe_once(probe: &mut Option<PgConnection>, options: &PgConnectOptions) -> Result<(), sqlx::Error> {
    let connection = match probe {
        Some(connection) => connection,
        None => probe.insert(PgConnection::connect_with(options).await?),
    };
    sqlx::query("SELECT 1").execute(connection).await?;
    Ok(())
}

/// Answers UNAVAILABLE with a `RetryInfo` while the database is unreachable.
#[derive(Clone)]
pub struct ReadinessLayer(Readiness);

impl ReadinessLayer {
    pub fn new(readiness: Readiness) -> Self {
        ReadinessLayer(readiness)
    }
}

impl<S> Layer<S> for ReadinessLayer {
    type Service = ReadinessGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReadinessGate { inner, readiness: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct ReadinessGate<S> {
    inner: S,
    readiness: Readiness,
}

impl<S, B> Service<Request<B>> for ReadinessGate<S>
where
    S: Service<Request<B>, Response = http::Response<Body>>,
    S::Error: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, refusal::Answer<S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if self.readiness.is_ready() || is_public_path(request.uri().path()) {
            return Either::Left(self.inner.call(request));
        }
        let refused = tonic::Status::from(Error::Unavailable {
            message: "the database is unreachable; retry shortly".into(),
            retry_after: RETRY_AFTER,
        });
        Either::Right(refusal::answer_boxed(request.into_body(), refused))
    }
}
