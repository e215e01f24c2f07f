//! TLS end to end: the gateway's listener with a certificate reloaded when
//! its files change, and mutual TLS between the gateway and the roles.

use std::{path::PathBuf, time::Duration};

use crm_platform::{
    Role,
    principal::{AccessRole, Principal},
};
use crm_proto::contacts::v1::{
    CreateContactRequest, GetContactRequest, ListContactsRequest, contacts_service_client::ContactsServiceClient,
};
use crm_testkit::{BearerKey, INTERNAL_SECRET, SignedChannel, TestDb, TestSuite};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::{contacts::person, support::eventually};

/// A certificate authority made for the test.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    fn pem(&self) -> String {
        self.0.pem()
    }

    /// A certificate for localhost (server and client use), and its key, as PEM.
    fn leaf(&self, name: &str) -> (String, String) {
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Files in a directory of the test's own.
struct Files(PathBuf);

impl Files {
    fn new() -> Files {
        let dir = std::env::temp_dir().join(format!("crm-tls-test-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Files(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        // Written beside and renamed, as certificate tools do: never half a file.
        let staging = self.0.join(format!(".{name}.new"));
        std::fs::write(&staging, text).unwrap();
        std::fs::rename(&staging, &path).unwrap();
        path.display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TLS connection to `address` trusting `ca`, presenting `identity` if given.
async fn tls_channel(
    address: std::net::SocketAddr,
    ca: &str,
    identity: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://localhost:{}", address.port()))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

#[tokio::test]
async fn the_gateway_serves_tls_reloads_its_certificate_and_roles_accept_only_internal_certificates() {
    let test_db = TestDb::create().await.unwrap();
    let files = Files::new();
    let internal_ca = Ca::new("crm internal CA");
    let (node_cert, node_key) = internal_ca.leaf("crm node");
    let internal = vec![
        ("CRM_INTERNAL_TLS_CA_FILE".to_string(), files.write("internal-ca.pem", &internal_ca.pem())),
        ("CRM_INTERNAL_TLS_CERT_FILE".to_string(), files.write("node.pem", &node_cert)),
        ("CRM_INTERNAL_TLS_KEY_FILE".to_string(), files.write("node.key", &node_key)),
    ];
    let public_ca = Ca::new("public CA");
    let (gateway_cert, gateway_key) = public_ca.leaf("crm gateway");
    let public_cert_file = files.write("gateway.pem", &gateway_cert);
    let public_key_file = files.write("gateway.key", &gateway_key);

    // Roles in one process, the gateway in another, over mutual TLS.
    let roles = TestSuite::start_roles(&test_db, &Role::DOMAIN, &internal).await.unwrap();
    let mut gateway_vars = internal.clone();
    gateway_vars.push(("CRM_TLS_CERT_FILE".into(), public_cert_file));
    gateway_vars.push(("CRM_TLS_KEY_FILE".into(), public_key_file));
    for role in Role::DOMAIN {
        gateway_vars.push((
            format!("{}_UPSTREAMS", role.env_prefix()),
            format!("https://localhost:{}", roles.address(role).port()),
        ));
    }
    let gateway = TestSuite::start_roles(&test_db, &[Role::Gateway], &gateway_vars).await.unwrap();
    let gateway_address = gateway.address(Role::Gateway);

    // A client trusting the public CA calls through; the gateway reached the roles over mTLS.
    let channel = tls_channel(gateway_address, &public_ca.pem(), None).await.unwrap();
    eventually(Duration::from_secs(20), "contacts SERVING behind the gateway", || {
        let mut health = HealthClient::new(channel.clone());
        async move {
            let request = HealthCheckRequest { service: "crm.contacts.v1.ContactsService".into() };
            health.check(request).await.is_ok_and(|answer| answer.into_inner().status() == ServingStatus::Serving)
        }
    })
    .await;
    let mut contacts =
        ContactsServiceClient::new(InterceptedService::new(channel.clone(), BearerKey::new(&gateway.admin_key)));
    let created = contacts
        .create_contact(CreateContactRequest { contact: Some(person("Tls", "Caller", "", "")), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    contacts.get_contact(GetContactRequest { id: created.id.clone() }).await.unwrap();

    // Plaintext to the gateway gets nowhere.
    let plain = Endpoint::from_shared(format!("http://{gateway_address}")).unwrap().connect().await;
    if let Ok(plain) = plain {
        let mut health = HealthClient::new(plain);
        assert!(health.check(HealthCheckRequest::default()).await.is_err());
    }

    // A role answers only callers with a certificate from the internal CA,
    // and still wants the gateway's signed principal.
    let principal = Principal { key_id: "direct".into(), roles: vec![AccessRole::Admin] };
    let signer = crm_platform::principal::IdentitySigner::new(INTERNAL_SECRET.as_bytes());
    let role_address = roles.address(Role::Contacts);
    let strangers = Ca::new("someone else's CA");
    let (stranger_cert, stranger_key) = strangers.leaf("stranger");
    for identity in [None, Some((stranger_cert.as_str(), stranger_key.as_str()))] {
        let refused = match tls_channel(role_address, &internal_ca.pem(), identity).await {
            Err(_) => true,
            Ok(channel) => {
                let mut client =
                    ContactsServiceClient::new(SignedChannel::new(channel, signer.clone(), principal.clone()));
                client.list_contacts(ListContactsRequest::default()).await.is_err()
            }
        };
        assert!(refused, "a caller without an internal certificate got through");
    }
    let inside = tls_channel(role_address, &internal_ca.pem(), Some((&node_cert, &node_key))).await.unwrap();
    let mut client = ContactsServiceClient::new(SignedChannel::new(inside, signer.clone(), principal.clone()));
    client.get_contact(GetContactRequest { id: created.id.clone() }).await.unwrap();

    // A renewed certificate (from another CA, to tell them apart) serves the next connection.
    let renewed_ca = Ca::new("renewed public CA");
    let (renewed_cert, renewed_key) = renewed_ca.leaf("crm gateway renewed");
    files.write("gateway.key", &renewed_key);
    files.write("gateway.pem", &renewed_cert);
    let renewed = tls_channel(gateway_address, &renewed_ca.pem(), None).await.unwrap();
    let mut health = HealthClient::new(renewed);
    health.check(HealthCheckRequest::default()).await.unwrap();
    let old_trust = tls_channel(gateway_address, &public_ca.pem(), None).await;
    let old_works = match old_trust {
        Err(_) => false,
        Ok(channel) => HealthClient::new(channel).check(HealthCheckRequest::default()).await.is_ok(),
    };
    assert!(!old_works, "the old certificate is still served after the renewal");

    gateway.shutdown().await.unwrap();
    roles.shutdown().await.unwrap();
}
