//! Merging: survivorship, unions, redirects, merges of merged contacts, audit.

use std::collections::HashMap;

use crm_proto::contacts::v1::{
    CreateRelationshipRequest, GetContactRequest, ListRelationshipsRequest, MergeContactsRequest, Relationship,
    RelationshipType, list_relationships_request, relationship::Target,
};
use crm_testkit::{TestDb, TestSuite};
use tonic::Code;

use super::{audit_trail, create, external, person, violated_fields};

#[tokio::test]
async fn merging_unions_lists_applies_survivorship_and_redirects_the_losers() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();

    let mut first = person("Jon", "Snow", "jon@winterfell.example", "");
    first.tags = vec!["north".into()];
    first.external_ids = vec![external("billing", "1")];
    first.owner = "agent-a".into();
    let a = create(&mut contacts, first).await;
    let mut second = person("Jonathan", "Snow", "", "+1 201 555 0123");
    second.birth_date = None;
    second.tags = vec!["watch".into()];
    second.external_ids = vec![external("accounting", "9")];
    second.owner = "agent-b".into();
    second.emails =
        vec![crm_proto::contacts::v1::Email { address: "lord.commander@wall.example".into(), ..Default::default() }];
    let b = contacts
        .create_contact(crm_proto::contacts::v1::CreateContactRequest {
            contact: Some(second),
            allow_duplicate: true,
            override_reason: "test".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let c = create(&mut contacts, person("Sam", "Tarly", "sam@citadel.example", "")).await;
    // b knows c: the link moves to the survivor.
    contacts
        .create_relationship(CreateRelationshipRequest {
            relationship: Some(Relationship {
                contact_id: b.id.clone(),
                target: Some(Target::OtherContactId(c.id.clone())),
                r#type: RelationshipType::ReferredBy as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap();

    let merged = contacts
        .merge_contacts(MergeContactsRequest {
            survivor_id: a.id.clone(),
            loser_ids: vec![b.id.clone()],
            field_sources: HashMap::from([("given_name".to_string(), b.id.clone())]),
            etag: a.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(merged.id, a.id);
    assert_eq!(merged.given_name, "Jonathan", "chosen value wins");
    assert_eq!(merged.owner, "agent-b", "most recently updated non-empty value wins");
    assert_eq!(merged.birth_date, a.birth_date, "the only non-empty birth date");
    let emails: Vec<&str> = merged.emails.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(emails, ["jon@winterfell.example", "lord.commander@wall.example"]);
    assert_eq!(merged.emails.iter().filter(|e| e.primary).count(), 1);
    assert_eq!(merged.phones.len(), 1);
    assert_eq!(merged.tags, ["north", "watch"]);
    assert_eq!(merged.external_ids.len(), 2);
    assert_eq!(merged.merged_ids, std::slice::from_ref(&b.id));

    // The loser's id resolves to the survivor; its external id and link moved.
    let via_loser = contacts.get_contact(GetContactRequest { id: b.id.clone() }).await.unwrap().into_inner();
    assert_eq!(via_loser.id, a.id);
    let links = contacts
        .list_relationships(ListRelationshipsRequest {
            parent: Some(list_relationships_request::Parent::ContactId(a.id.clone())),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .relationships;
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].contact_id, a.id);
    let via_loser = contacts
        .list_relationships(ListRelationshipsRequest {
            parent: Some(list_relationships_request::Parent::ContactId(b.id.clone())),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .relationships;
    assert_eq!(via_loser, links, "the loser's id lists the survivor's links");

    // Merge the merged contact: d absorbs a (and with it b); every old id resolves to d.
    let d = contacts
        .create_contact(crm_proto::contacts::v1::CreateContactRequest {
            contact: Some(person("Aegon", "Targaryen", "aegon@example.com", "")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let stale = contacts
        .merge_contacts(MergeContactsRequest {
            survivor_id: d.id.clone(),
            loser_ids: vec![b.id.clone()],
            etag: "v999".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let merged_again = contacts
        .merge_contacts(MergeContactsRequest {
            survivor_id: d.id.clone(),
            loser_ids: vec![b.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    let mut expected = vec![a.id.clone(), b.id.clone()];
    expected.sort();
    assert_eq!(merged_again.merged_ids, expected);
    for old in [&a.id, &b.id] {
        assert_eq!(contacts.get_contact(GetContactRequest { id: old.clone() }).await.unwrap().into_inner().id, d.id);
    }
    assert_eq!(merged_again.emails.len(), 3);
    // Merging it again changes nothing.
    let again = contacts
        .merge_contacts(MergeContactsRequest {
            survivor_id: d.id.clone(),
            loser_ids: vec![a.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(again.etag, merged_again.etag);

    // The audit trail shows both sides.
    let survivor_trail = audit_trail(&contacts, &d.id).await;
    assert_eq!(survivor_trail[0].action, "merge");
    assert!(survivor_trail[0].note.contains(&a.id));
    assert!(survivor_trail[0].changes.iter().any(|change| change.field == "emails"));
    let loser_trail = audit_trail(&contacts, &a.id).await;
    assert_eq!(loser_trail[0].action, "merged_into");
    assert!(loser_trail[0].note.contains(&d.id));

    // Bad requests name their fields.
    let bad = contacts
        .merge_contacts(MergeContactsRequest {
            survivor_id: d.id.clone(),
            loser_ids: vec![d.id.clone(), "nope".into()],
            field_sources: HashMap::from([("emails".to_string(), d.id.clone())]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["loser_ids[0]", "loser_ids[1]", "field_sources[\"emails\"]"]);
    suite.shutdown().await.unwrap();
}
