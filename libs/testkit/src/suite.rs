//! Roles spawned in-process on ephemeral ports, reached through generated clients.

use std::{collections::HashMap, net::SocketAddr};

use anyhow::Context;
use crm::suite::{Install, RunningSuite};
use crm_platform::{
    Config, Role,
    clock::Clock,
    config::Secret,
    principal::{IdentitySigner, Principal, SignedChannel},
    telemetry::Telemetry,
};
use crm_proto::{
    alerting::v1::alerting_service_client::AlertingServiceClient,
    contacts::v1::contacts_service_client::ContactsServiceClient,
    gateway::v1::gateway_admin_service_client::GatewayAdminServiceClient,
    interactions::v1::interactions_service_client::InteractionsServiceClient,
    segmentation::v1::segmentation_service_client::SegmentationServiceClient,
};
use tonic::{
    metadata::AsciiMetadataValue,
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};
use tonic_health::pb::health_client::HealthClient;

use crate::TestDb;

/// The internal secret every test suite shares (it signs page tokens and identity).
pub const INTERNAL_SECRET: &str = "test-internal-secret-0123456789abcdef";

/// A channel that sends the suite's admin key with every call.
pub type Authed = InterceptedService<Channel, BearerKey>;

/// Adds `authorization: Bearer <key>`.
#[derive(Clone)]
pub struct BearerKey(AsciiMetadataValue);

impl BearerKey {
    /// `authorization: Bearer <key>`; panics when `key` is not ASCII.
    pub fn new(key: &str) -> Self {
        BearerKey(AsciiMetadataValue::try_from(format!("Bearer {key}")).expect("an ASCII key"))
    }
}

impl tonic::service::Interceptor for BearerKey {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A running set of roles on one test database.
pub struct TestSuite {
    suite: Option<RunningSuite>,
    /// The admin API key the gateway accepts.
    pub admin_key: String,
}

impl TestSuite {
    /// Every role in one process (`--target all`).
    pub async fn start(db: &TestDb) -> anyhow::Result<TestSuite> {
        TestSuite::start_roles(db, &Role::ALL, &[]).await
    }

    /// `roles` in one process, with extra configuration variables (e.g.
    /// `CRM_CONTACTS_UPSTREAMS` pointing at roles of another `TestSuite`).
    pub async fn start_roles(
        db: &TestDb,
        roles: &[Role],
        extra_vars: &[(String, String)],
    ) -> anyhow::Result<TestSuite> {
        TestSuite::start_with_clock(db, roles, extra_vars, Clock::system()).await
    }

    /// Like [`TestSuite::start_roles`], with the roles reading the time from
    /// `clock` (a manual one lets the test move time).
    pub async fn start_with_clock(
        db: &TestDb,
        roles: &[Role],
        extra_vars: &[(String, String)],
        clock: Clock,
    ) -> anyhow::Result<TestSuite> {
        let admin_key = format!("crm_test_{}", uuid::Uuid::now_v7().simple());
        let mut vars: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".into(), db.url.clone()),
            ("CRM_METRICS_ADDR".into(), "127.0.0.1:0".into()),
            ("CRM_SHUTDOWN_GRACE".into(), "20s".into()),
            ("CRM_DB_MAX_CONNECTIONS".into(), "5".into()),
            ("CRM_BOOTSTRAP_ADMIN_KEY".into(), admin_key.clone()),
            ("CRM_INTERNAL_SECRET".into(), INTERNAL_SECRET.into()),
        ]);
        for role in Role::ALL {
            vars.insert(format!("{}_ADDR", role.env_prefix()), "127.0.0.1:0".into());
        }
        vars.extend(extra_vars.iter().cloned());
        let config = Config::from_vars(&vars).map_err(|errors| anyhow::anyhow!("{errors}"))?;
        // A test may point the suite elsewhere (through a proxy it can cut).
        let database_url = vars.get("DATABASE_URL").cloned().unwrap_or_else(|| db.url.clone());
        let install = Install {
            database_url: Secret::new(database_url),
            internal_secret: config.internal_secret.clone().context("internal secret")?,
            admin_key: config.bootstrap_admin_key.clone(),
            config,
            clock,
        };
        let suite = RunningSuite::start(&install, roles, &Telemetry::for_tests()).await?;
        Ok(TestSuite { suite: Some(suite), admin_key })
    }

    fn running(&self) -> &RunningSuite {
        self.suite.as_ref().unwrap_or_else(|| unreachable!("the suite runs until shutdown consumes it"))
    }

    /// Where `role` listens. Panics when the role does not run in this suite.
    pub fn address(&self, role: Role) -> SocketAddr {
        self.running().address(role).unwrap_or_else(|| panic!("{role} does not run in this test suite"))
    }

    /// Configuration that points a gateway started elsewhere at this suite's
    /// domain roles (`CRM_<ROLE>_UPSTREAMS`), for split topologies.
    pub fn upstream_vars(&self) -> Vec<(String, String)> {
        Role::DOMAIN
            .iter()
            .filter_map(|role| {
                let address = self.running().address(*role)?;
                Some((format!("{}_UPSTREAMS", role.env_prefix()), format!("http://{address}")))
            })
            .collect()
    }

    /// Where the console is served (`CRM_CONSOLE_ADDR` given to the suite).
    pub fn console_address(&self) -> Option<SocketAddr> {
        self.running().console().map(|(address, _)| *address)
    }

    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.running().metrics_address()
    }

    /// A fresh connection to `role`.
    pub async fn channel(&self, role: Role) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(format!("http://{}", self.address(role)))?.connect().await?)
    }

    /// `channel` carrying the admin key.
    pub async fn authed(&self, role: Role) -> anyhow::Result<Authed> {
        self.with_key(role, &self.admin_key.clone()).await
    }

    /// `channel` carrying `key` as its bearer credential.
    pub async fn with_key(&self, role: Role, key: &str) -> anyhow::Result<Authed> {
        let key = AsciiMetadataValue::try_from(format!("Bearer {key}"))?;
        Ok(InterceptedService::new(self.channel(role).await?, BearerKey(key)))
    }

    /// A channel straight to `role` that signs `principal` the way a gateway
    /// does, with `secret` (the suite's own secret is [`INTERNAL_SECRET`]).
    pub async fn signed(&self, role: Role, principal: Principal, secret: &str) -> anyhow::Result<SignedChannel> {
        Ok(SignedChannel::new(self.channel(role).await?, IdentitySigner::new(secret.as_bytes()), principal))
    }

    /// Health of the suite, asked of the gateway.
    pub async fn gateway_health(&self) -> anyhow::Result<HealthClient<Channel>> {
        Ok(HealthClient::new(self.channel(Role::Gateway).await?))
    }

    pub async fn contacts(&self) -> anyhow::Result<ContactsServiceClient<Authed>> {
        Ok(ContactsServiceClient::new(self.authed(Role::Gateway).await?))
    }

    pub async fn interactions(&self) -> anyhow::Result<InteractionsServiceClient<Authed>> {
        Ok(InteractionsServiceClient::new(self.authed(Role::Gateway).await?))
    }

    pub async fn segmentation(&self) -> anyhow::Result<SegmentationServiceClient<Authed>> {
        Ok(SegmentationServiceClient::new(self.authed(Role::Gateway).await?))
    }

    pub async fn alerting(&self) -> anyhow::Result<AlertingServiceClient<Authed>> {
        Ok(AlertingServiceClient::new(self.authed(Role::Gateway).await?))
    }

    pub async fn gateway_admin(&self) -> anyhow::Result<GatewayAdminServiceClient<Authed>> {
        Ok(GatewayAdminServiceClient::new(self.authed(Role::Gateway).await?))
    }

    /// Stops every role in order, draining in-flight calls.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        match self.suite.take() {
            Some(suite) => suite.shutdown().await,
            None => Ok(()),
        }
    }
}

impl Drop for TestSuite {
    fn drop(&mut self) {
        if let Some(suite) = self.suite.take() {
            // A test that failed before `shutdown`: stop the roles in the background.
            tokio::spawn(async move {
                let _ = suite.shutdown().await;
            });
        }
    }
}
