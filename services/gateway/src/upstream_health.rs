//! Mirrors each role's health into the gateway's health service, so that
//! `Check` at the gateway for `crm.contacts.v1.ContactsService` says whether
//! the contacts role can serve right now.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, health_check_response, health_client::HealthClient},
    server::HealthReporter,
};

use crate::routing::{RoutingTable, Upstream};

/// How often each role's health is checked.
const INTERVAL: Duration = Duration::from_millis(500);
/// A role that does not answer within this is NOT_SERVING.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Starts one checker per role; they stop with `shutdown`.
pub fn spawn(routes: &RoutingTable, reporter: HealthReporter, shutdown: CancellationToken) {
    for upstream in routes.upstreams().cloned() {
        let reporter = reporter.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let status = check(&upstream).await;
                if last != Some(status) {
                    tracing::info!(role = %upstream.role, ?status, "upstream health changed");
                    for service in &upstream.services {
                        reporter.set_service_status(service, status).await;
                    }
                    last = Some(status);
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(INTERVAL) => {}
                }
            }
        });
    }
}

/// SERVING only when the role says every one of its services is.
async fn check(upstream: &Upstream) -> ServingStatus {
    let mut client = HealthClient::new(upstream.channel.clone());
    for service in &upstream.services {
        let request = HealthCheckRequest { service: service.clone() };
        let answer = tokio::time::timeout(CHECK_TIMEOUT, client.check(request)).await;
        let serving = matches!(
            answer,
            Ok(Ok(response)) if response.get_ref().status() == health_check_response::ServingStatus::Serving
        );
        if !serving {
            return ServingStatus::NotServing;
        }
    }
    ServingStatus::Serving
}
