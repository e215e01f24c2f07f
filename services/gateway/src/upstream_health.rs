//! Health of each role's replicas, checked from the gateway.
//!
//! One checker per role asks every replica, on a connection of its own,
//! whether all the role's services are SERVING. A replica that fails gets no
//! more calls (ejection) until it answers again.
//! The role is SERVING at the gateway's health service while at least one
//! replica is, so `Check` at the gateway answers for the whole suite.

use std::{sync::atomic::Ordering, time::Duration};

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, health_check_response, health_client::HealthClient},
    server::HealthReporter,
};

use crate::routing::{RoutingTable, Upstream};

/// How often each replica is checked.
const INTERVAL: Duration = Duration::from_millis(500);
/// A replica that does not answer within this is failing.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Starts one checker per role; they stop with `shutdown`.
pub fn spawn(routes: &RoutingTable, reporter: HealthReporter, shutdown: CancellationToken) {
    for upstream in routes.upstreams().cloned() {
        let reporter = reporter.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // Probes use connections of their own, so that checks never queue behind calls.
            let mut probes: Vec<Channel> =
                upstream.replicas.iter().map(|replica| replica.endpoint.connect_lazy()).collect();
            let mut reported = None;
            loop {
                let answers = join_all(probes.iter().map(|probe| serving(probe.clone(), &upstream.services))).await;
                for (index, serving) in answers.into_iter().enumerate() {
                    let replica = &upstream.replicas[index];
                    if !serving {
                        // A fresh connection for the next check: nothing of a broken one carries over.
                        probes[index] = replica.endpoint.connect_lazy();
                    }
                    if replica.healthy.swap(serving, Ordering::AcqRel) != serving {
                        tracing::info!(role = %upstream.role, replica = index, serving, "replica health changed");
                    }
                }
                let any_healthy = upstream.replicas.iter().any(|replica| replica.healthy.load(Ordering::Acquire));
                report(&upstream, &reporter, any_healthy, &mut reported).await;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(INTERVAL) => {}
                }
            }
        });
    }
}

/// Sets the role's services' status at the gateway when it changes.
async fn report(upstream: &Upstream, reporter: &HealthReporter, serving: bool, reported: &mut Option<bool>) {
    if *reported == Some(serving) {
        return;
    }
    let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
    tracing::info!(role = %upstream.role, ?status, "upstream health changed");
    for service in &upstream.services {
        reporter.set_service_status(service, status).await;
    }
    *reported = Some(serving);
}

/// Whether the replica behind `probe` says every one of `services` is SERVING.
async fn serving(probe: Channel, services: &[String]) -> bool {
    let mut client = HealthClient::new(probe);
    for service in services {
        let request = HealthCheckRequest { service: service.clone() };
        let answer = tokio::time::timeout(CHECK_TIMEOUT, client.check(request)).await;
        let serving = matches!(
            answer,
            Ok(Ok(response)) if response.get_ref().status() == health_check_response::ServingStatus::Serving
        );
        if !serving {
            return false;
        }
    }
    true
}
