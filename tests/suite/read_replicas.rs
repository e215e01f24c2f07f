//! `DATABASE_READ_URL`: the calls that tolerate lag read from the replicas,
//! the rest from the primary, and a replica outage sends those reads back
//! to the primary instead of failing them.
//!
//! The "replica" here is a second database with the same schemas and none
//! of the primary's rows, so where a call read is plain in its answer: as a
//! replica that has not caught up would answer.

use std::time::Duration;

use crm_platform::Role;
use crm_proto::contacts::v1::{
    CreateContactRequest, ExportContactsRequest, GetContactRequest, ListAuditEventsRequest, ListContactsRequest,
    list_audit_events_request::Parent,
};
use crm_testkit::{TestDb, TestSuite};

use crate::{contacts::person, support::eventually};

async fn listed(contacts: &mut crate::contacts::Client) -> usize {
    contacts.list_contacts(ListContactsRequest::default()).await.unwrap().into_inner().contacts.len()
}

async fn audit_entries(contacts: &mut crate::contacts::Client, id: &str) -> usize {
    let request = ListAuditEventsRequest { parent: Some(Parent::ContactId(id.into())), ..Default::default() };
    contacts.list_audit_events(request).await.unwrap().into_inner().audit_events.len()
}

#[tokio::test]
async fn lists_exports_and_audit_trails_read_from_the_replicas_and_from_the_primary_when_they_are_down() {
    let replica = TestDb::create().await.unwrap();
    TestSuite::start(&replica).await.unwrap().shutdown().await.unwrap();
    let (proxy, replica_url) = replica.behind_proxy().await.unwrap();
    let primary = TestDb::create().await.unwrap();
    let suite =
        TestSuite::start_roles(&primary, &Role::ALL, &[("DATABASE_READ_URL".into(), replica_url)]).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let created = contacts
        .create_contact(CreateContactRequest { contact: Some(person("Rita", "Read", "", "")), ..Default::default() })
        .await
        .unwrap()
        .into_inner();

    // A single record is read where it was written: the caller sees its own write.
    let read = contacts.get_contact(GetContactRequest { id: created.id.clone() }).await.unwrap().into_inner();
    assert_eq!(read.id, created.id);
    // Lists, exports and audit trails read from the replica, which has not got it.
    assert_eq!(listed(&mut contacts).await, 0);
    let mut export = contacts.export_contacts(ExportContactsRequest::default()).await.unwrap().into_inner();
    assert!(export.message().await.unwrap().is_none(), "the replica's export is empty");
    assert_eq!(audit_entries(&mut contacts, &created.id).await, 0);

    // The replica down: the same calls answer from the primary.
    proxy.cut();
    assert_eq!(listed(&mut contacts).await, 1);
    assert_eq!(audit_entries(&mut contacts, &created.id).await, 1);

    // Back: reads return to it.
    proxy.restore();
    eventually(Duration::from_secs(20), "lists read from the replica again", || {
        let mut contacts = contacts.clone();
        async move { listed(&mut contacts).await == 0 }
    })
    .await;
    suite.shutdown().await.unwrap();
}
