//! Which role serves a call: the service path `/crm.<role>.v1.<Service>/<Method>`
//! names the role, so a new service or method needs no change here. Each
//! role is a set of replicas; calls go round-robin to the healthy ones (the
//! [`crate::upstream_health`] checker marks a failing replica unhealthy and
//! healthy again when it recovers), each replica's channel multiplexing
//! calls over HTTP/2.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use crm_platform::{
    Role,
    tls::{InternalTls, internal_endpoint},
};
use tonic::transport::{Channel, Endpoint};

/// One replica of a role: its connection and whether it passes health checks.
pub struct Replica {
    pub endpoint: Endpoint,
    /// Connects on first use and reconnects by itself.
    pub channel: Channel,
    /// Set by the health checker; only healthy replicas get calls.
    pub healthy: AtomicBool,
}

/// A domain role's upstream: its replicas and the services it serves.
#[derive(Clone)]
pub struct Upstream {
    pub role: Role,
    pub services: Vec<String>,
    pub replicas: Arc<Vec<Replica>>,
    /// Round-robin position.
    next: Arc<AtomicUsize>,
}

impl Upstream {
    /// The next healthy replica's channel, round-robin; `None` when none is healthy.
    pub fn pick(&self) -> Option<Channel> {
        self.pick_index().map(|index| self.replicas[index].channel.clone())
    }

    /// The index of the next healthy replica, round-robin.
    fn pick_index(&self) -> Option<usize> {
        let count = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| (start + offset) % count)
            .find(|index| self.replicas[*index].healthy.load(Ordering::Acquire))
    }
}

/// Every domain role's upstream, by role.
#[derive(Clone)]
pub struct RoutingTable {
    upstreams: HashMap<Role, Upstream>,
    /// Paths of the server-streaming methods, which the gateway ends itself
    /// when it shuts down (they would otherwise outlive any grace period).
    server_streaming: HashSet<String>,
}

impl RoutingTable {
    /// Builds a channel per replica, each healthy until checked; connections
    /// are made on demand, so the gateway starts even when a role is down.
    /// Internal calls speak mutual TLS when `tls` is set.
    pub fn connect(urls: &HashMap<Role, Vec<String>>, tls: Option<&InternalTls>) -> anyhow::Result<RoutingTable> {
        let services = crm_proto::services();
        let mut upstreams = HashMap::new();
        for (role, role_urls) in urls {
            let replicas = role_urls
                .iter()
                .map(|url| {
                    Ok(internal_endpoint(url, tls)?
                        .connect_timeout(Duration::from_secs(2))
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(30)))
                })
                .collect::<anyhow::Result<Vec<Endpoint>>>()?;
            let replicas: Vec<Replica> = replicas
                .into_iter()
                .map(|endpoint| Replica { channel: endpoint.connect_lazy(), endpoint, healthy: AtomicBool::new(true) })
                .collect();
            let package = format!("crm.{}.", role.as_str());
            let role_services =
                services.iter().filter(|service| service.name.starts_with(&package)).map(|s| s.name.clone()).collect();
            let upstream = Upstream {
                role: *role,
                services: role_services,
                replicas: Arc::new(replicas),
                next: Arc::new(AtomicUsize::new(0)),
            };
            upstreams.insert(*role, upstream);
        }
        let server_streaming = services
            .iter()
            .flat_map(|service| {
                service.methods.iter().filter(|method| method.server_streaming).map(|method| service.path(method))
            })
            .collect();
        Ok(RoutingTable { upstreams, server_streaming })
    }

    /// The upstream that serves `path` (`/crm.contacts.v1.ContactsService/Subscribe`).
    pub fn route(&self, path: &str) -> Option<&Upstream> {
        self.upstreams.get(&role_of_path(path)?)
    }

    /// Whether the method at `path` streams its responses.
    pub fn is_server_streaming(&self, path: &str) -> bool {
        self.server_streaming.contains(path)
    }

    pub fn upstreams(&self) -> impl Iterator<Item = &Upstream> {
        self.upstreams.values()
    }

    /// Every service name the gateway proxies.
    pub fn service_names(&self) -> Vec<String> {
        self.upstreams.values().flat_map(|upstream| upstream.services.iter().cloned()).collect()
    }
}

/// `/crm.contacts.v1.ContactsService/Get` → `Contacts`; anything else → `None`.
pub fn role_of_path(path: &str) -> Option<Role> {
    let service = path.strip_prefix('/')?.split('/').next()?;
    let role = service.strip_prefix("crm.")?.split('.').next()?;
    role.parse::<Role>().ok().filter(|role| *role != Role::Gateway)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_names_the_role() {
        assert_eq!(role_of_path("/crm.contacts.v1.ContactsService/Subscribe"), Some(Role::Contacts));
        assert_eq!(role_of_path("/crm.alerting.v2.NewService/Method"), Some(Role::Alerting));
        assert_eq!(role_of_path("/crm.gateway.v1.GatewayAdminService/ListEvents"), None);
        assert_eq!(role_of_path("/crm.billing.v1.X/Y"), None);
        assert_eq!(role_of_path("/other.v1.X/Y"), None);
        assert_eq!(role_of_path(""), None);
    }

    #[tokio::test]
    async fn every_domain_role_has_its_services() {
        let urls = Role::DOMAIN.iter().map(|role| (*role, vec!["http://127.0.0.1:1".to_string()])).collect();
        let table = RoutingTable::connect(&urls, None).unwrap();
        for role in Role::DOMAIN {
            let upstream = table.upstreams.get(&role).unwrap();
            assert!(!upstream.services.is_empty(), "{role} has no services");
            assert!(upstream.pick().is_some(), "replicas start healthy");
        }
        assert!(table.service_names().contains(&"crm.contacts.v1.ContactsService".to_string()));
        assert!(table.is_server_streaming("/crm.contacts.v1.ContactsService/Subscribe"));
        assert!(!table.is_server_streaming("/crm.contacts.v1.ContactsService/ListEvents"));
    }
}

#[cfg(test)]
mod round_robin_tests {
    use super::*;

    #[tokio::test]
    async fn calls_go_round_robin_to_healthy_replicas_only() {
        let urls = HashMap::from([(
            Role::Contacts,
            vec!["http://127.0.0.1:1".to_string(), "http://127.0.0.1:2".to_string(), "http://127.0.0.1:3".to_string()],
        )]);
        let table = RoutingTable::connect(&urls, None).unwrap();
        let upstream = table.route("/crm.contacts.v1.ContactsService/ListEvents").unwrap();
        let order: Vec<usize> = (0..4).filter_map(|_| upstream.pick_index()).collect();
        assert_eq!(order, [0, 1, 2, 0]);
        upstream.replicas[1].healthy.store(false, Ordering::Release);
        let order: Vec<usize> = (0..4).filter_map(|_| upstream.pick_index()).collect();
        assert!(!order.contains(&1) && order.len() == 4, "{order:?}");
        for replica in upstream.replicas.iter() {
            replica.healthy.store(false, Ordering::Release);
        }
        assert!(upstream.pick().is_none());
    }
}
