//! Which role serves a call: the service path `/crm.<role>.v1.<Service>/<Method>`
//! names the role, so a new service or method needs no change here. Each
//! role is a set of replicas behind one load-balanced channel; the
//! [`crate::upstream_health`] checker removes a failing replica from the set
//! and puts it back when it recovers.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crm_platform::Role;
use tokio::sync::mpsc::Sender;
use tonic::transport::{Channel, Endpoint, channel::Change};

/// A domain role's upstream: its replicas, their balanced channel, and the services it serves.
#[derive(Clone)]
pub struct Upstream {
    pub role: Role,
    /// Balances over the replicas currently in the set.
    pub channel: Channel,
    pub services: Vec<String>,
    /// Every configured replica, by index.
    pub replicas: Vec<Endpoint>,
    /// Adds and removes replicas of `channel`'s set.
    pub changes: Sender<Change<usize, Endpoint>>,
    /// How many replicas are in the set; none means UNAVAILABLE at once.
    pub healthy: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn has_healthy_replica(&self) -> bool {
        self.healthy.load(Ordering::Acquire) > 0
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
    /// Builds the channels with every replica in; connections are made on
    /// demand, so the gateway starts even when a role is down.
    pub async fn connect(urls: &HashMap<Role, Vec<String>>) -> anyhow::Result<RoutingTable> {
        let services = crm_proto::services();
        let mut upstreams = HashMap::new();
        for (role, role_urls) in urls {
            let replicas = role_urls
                .iter()
                .map(|url| {
                    Ok(Endpoint::from_shared(url.clone())?
                        .connect_timeout(Duration::from_secs(2))
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(30)))
                })
                .collect::<anyhow::Result<Vec<Endpoint>>>()?;
            let (channel, changes) = Channel::balance_channel(replicas.len().max(1) * 2);
            for (index, replica) in replicas.iter().enumerate() {
                changes.send(Change::Insert(index, replica.clone())).await?;
            }
            let package = format!("crm.{}.", role.as_str());
            let role_services =
                services.iter().filter(|service| service.name.starts_with(&package)).map(|s| s.name.clone()).collect();
            let healthy = Arc::new(AtomicUsize::new(replicas.len()));
            upstreams
                .insert(*role, Upstream { role: *role, channel, services: role_services, replicas, changes, healthy });
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
        let table = RoutingTable::connect(&urls).await.unwrap();
        for role in Role::DOMAIN {
            let upstream = table.upstreams.get(&role).unwrap();
            assert!(!upstream.services.is_empty(), "{role} has no services");
            assert!(upstream.has_healthy_replica(), "replicas start in the set");
        }
        assert!(table.service_names().contains(&"crm.contacts.v1.ContactsService".to_string()));
        assert!(table.is_server_streaming("/crm.contacts.v1.ContactsService/Subscribe"));
        assert!(!table.is_server_streaming("/crm.contacts.v1.ContactsService/ListEvents"));
    }
}
