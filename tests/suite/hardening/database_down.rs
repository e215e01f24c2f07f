//! A role whose database is unreachable says so: NOT_SERVING in health (but
//! alive to a liveness probe), and UNAVAILABLE with RetryInfo at once, until
//! the database answers again.

use std::time::Duration;

use crm_platform::Role;
use crm_proto::contacts::v1::{CreateContactRequest, GetContactRequest};
use crm_testkit::{TestDb, TestSuite};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_types::StatusExt;

use crate::{contacts::person, support::eventually};

const CONTACTS: &str = "crm.contacts.v1.ContactsService";

async fn status(suite: &TestSuite, role: Role, service: &str) -> Option<ServingStatus> {
    let mut health = tonic_health::pb::health_client::HealthClient::new(suite.channel(role).await.ok()?);
    let answer = health.check(HealthCheckRequest { service: service.into() }).await.ok()?;
    Some(answer.into_inner().status())
}

#[tokio::test]
async fn an_unreachable_database_makes_the_role_not_serving_and_calls_fail_fast_until_it_returns() {
    let test_db = TestDb::create().await.unwrap();
    let (proxy, url) = test_db.behind_proxy().await.unwrap();
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &[("DATABASE_URL".into(), url)]).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let created = contacts
        .create_contact(CreateContactRequest {
            contact: Some(person("Outage", "Witness", "", "")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    proxy.cut();
    // The role and, through its health checks, the gateway turn NOT_SERVING.
    eventually(Duration::from_secs(20), "contacts NOT_SERVING at the role", || async {
        status(&suite, Role::Contacts, CONTACTS).await == Some(ServingStatus::NotServing)
    })
    .await;
    eventually(Duration::from_secs(20), "contacts NOT_SERVING at the gateway", || async {
        status(&suite, Role::Gateway, CONTACTS).await == Some(ServingStatus::NotServing)
    })
    .await;
    // The whole server reads not ready, yet alive: a liveness probe must not
    // restart a replica for an outage of its database.
    assert_eq!(status(&suite, Role::Contacts, "").await, Some(ServingStatus::NotServing));
    assert_eq!(status(&suite, Role::Contacts, crm_platform::server::LIVENESS).await, Some(ServingStatus::Serving));
    // A call is answered at once (not after the pool's timeout) with a retry delay.
    let refused = contacts.get_contact(GetContactRequest { id: created.id.clone() }).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.get_details_retry_info().is_some(), "{refused:?}");

    proxy.restore();
    eventually(Duration::from_secs(20), "contacts SERVING again", || async {
        status(&suite, Role::Gateway, CONTACTS).await == Some(ServingStatus::Serving)
    })
    .await;
    let read = contacts.get_contact(GetContactRequest { id: created.id.clone() }).await;
    assert_eq!(read.unwrap().into_inner().id, created.id);
    suite.shutdown().await.unwrap();
}
