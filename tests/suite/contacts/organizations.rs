//! Organizations and relationships.

use crm_proto::{
    common::v1::Date,
    contacts::v1::{
        CreateOrganizationRequest, CreateRelationshipRequest, DeleteRelationshipRequest, GetOrganizationRequest,
        ListContactsRequest, ListRelationshipsRequest, Organization, OrganizationKind, Relationship, RelationshipType,
        SearchContactsRequest, UpdateOrganizationRequest, list_relationships_request::Parent, relationship::Target,
    },
};
use crm_testkit::{TestDb, TestSuite};
use tonic::Code;

use super::{create, person, violated_fields};

#[tokio::test]
async fn contacts_link_to_organizations_and_are_found_through_them() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let acme = contacts
        .create_organization(CreateOrganizationRequest {
            organization: Some(Organization {
                name: " Acme Anvils ".into(),
                kind: OrganizationKind::Company as i32,
                domain: "ACME.example".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((acme.name.as_str(), acme.domain.as_str()), ("Acme Anvils", "acme.example"));
    let wile = create(&mut contacts, person("Wile", "Coyote", "wile@acme.example", "")).await;
    let road = create(&mut contacts, person("Road", "Runner", "beep@example.com", "")).await;

    let link = contacts
        .create_relationship(CreateRelationshipRequest {
            relationship: Some(Relationship {
                contact_id: wile.id.clone(),
                target: Some(Target::OrganizationId(acme.id.clone())),
                r#type: RelationshipType::EmployeeOf as i32,
                start_date: Some(Date { year: 2020, month: 1, day: 6 }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    contacts
        .create_relationship(CreateRelationshipRequest {
            relationship: Some(Relationship {
                contact_id: road.id.clone(),
                target: Some(Target::OtherContactId(wile.id.clone())),
                r#type: RelationshipType::Custom as i32,
                custom_type: "nemesis of".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();

    let employees = contacts
        .list_contacts(ListContactsRequest { organization_id: acme.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(employees.contacts.iter().map(|c| &c.id).collect::<Vec<_>>(), [&wile.id]);
    let of_wile = contacts
        .list_relationships(ListRelationshipsRequest {
            parent: Some(Parent::ContactId(wile.id.clone())),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(of_wile.relationships.len(), 2, "held and pointing at him");
    let by_company = contacts
        .search_contacts(SearchContactsRequest { query: "acme anvil".into(), page_size: 5 })
        .await
        .unwrap()
        .into_inner();
    assert!(by_company.results.iter().any(|r| r.contact.as_ref().unwrap().id == wile.id), "{by_company:?}");

    // Bad links name their fields.
    let bad = contacts
        .create_relationship(CreateRelationshipRequest {
            relationship: Some(Relationship {
                contact_id: wile.id.clone(),
                target: Some(Target::OrganizationId(acme.id.clone())),
                r#type: RelationshipType::Custom as i32,
                start_date: Some(Date { year: 2020, month: 1, day: 6 }),
                end_date: Some(Date { year: 2019, month: 1, day: 6 }),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["relationship.custom_type", "relationship.end_date"]);

    contacts.delete_relationship(DeleteRelationshipRequest { id: link.id.clone() }).await.unwrap();
    let employees = contacts
        .list_contacts(ListContactsRequest { organization_id: acme.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(employees.contacts.is_empty());

    // Organizations update with the etag.
    let mut change = acme.clone();
    change.name = "Acme Anvils & Rockets".into();
    let mask = prost_types::FieldMask { paths: vec!["name".into()] };
    let renamed = contacts
        .update_organization(UpdateOrganizationRequest {
            organization: Some(change.clone()),
            update_mask: Some(mask.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "Acme Anvils & Rockets");
    let stale = contacts
        .update_organization(UpdateOrganizationRequest { organization: Some(change), update_mask: Some(mask) })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let read = contacts.get_organization(GetOrganizationRequest { id: acme.id.clone() }).await.unwrap().into_inner();
    assert_eq!(read, renamed);
    let nameless = contacts
        .create_organization(CreateOrganizationRequest { organization: Some(Organization::default()) })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&nameless), ["organization.name"]);
    suite.shutdown().await.unwrap();
}
