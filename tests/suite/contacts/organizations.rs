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
use tonic_types::StatusExt;

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
            ..Default::default()
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
        .create_organization(CreateOrganizationRequest {
            organization: Some(Organization::default()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&nameless), ["organization.name"]);
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_company_created_twice_under_another_form_is_stopped_at_the_door() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let company = |name: &str, domain: &str| Organization {
        name: name.into(),
        kind: OrganizationKind::Company as i32,
        domain: domain.into(),
        ..Default::default()
    };
    let create = |organization: Organization| CreateOrganizationRequest {
        organization: Some(organization),
        ..Default::default()
    };
    let acme = contacts.create_organization(create(company("ACME, Inc.", "acme.example"))).await.unwrap().into_inner();

    // The same company without its legal form, and by its domain alone.
    for (name, domain, reasons) in [
        ("Acme Incorporated", "", "name_exact"),
        ("A.C.M.E. Holdings", "ACME.example", "domain_exact"),
        ("The Acme Company Ltd", "acme.example", "domain_exact,name_exact"),
    ] {
        let refused = contacts.create_organization(create(company(name, domain))).await.unwrap_err();
        assert_eq!(refused.code(), Code::AlreadyExists, "{name}: {refused:?}");
        let info = refused.check_error_details().unwrap().error_info().cloned().unwrap();
        assert_eq!(info.reason, "LIKELY_DUPLICATE");
        assert_eq!(info.metadata["candidate_ids"], acme.id, "{name}");
        assert_eq!(info.metadata["reasons"], reasons, "{name}");
        assert!(!refused.message().contains("ACME"), "no names in the error: {}", refused.message());
    }
    // Two companies of one name on different domains are two.
    let acme_uk =
        contacts.create_organization(create(company("Acme Ltd", "acme-uk.example"))).await.unwrap().into_inner();

    // The override needs a reason, and leaves one in the audit trail.
    let mut allowed = create(company("Acme Incorporated", ""));
    allowed.allow_duplicate = true;
    let refused = contacts.create_organization(allowed.clone()).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["override_reason"]);
    allowed.override_reason = "the bankrupt estate, kept apart".into();
    let estate = contacts.create_organization(allowed).await.unwrap().into_inner();
    let trail = contacts
        .list_audit_events(crm_proto::contacts::v1::ListAuditEventsRequest {
            parent: Some(crm_proto::contacts::v1::list_audit_events_request::Parent::OrganizationId(estate.id.clone())),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        trail
            .audit_events
            .iter()
            .any(|event| event.note.contains("the bankrupt estate") && event.note.contains(&acme.id)),
        "{trail:?}"
    );

    // The scan pairs what was let in: the estate, of no domain, with both
    // companies of its name, page by page.
    let mut pairs = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = contacts
            .find_duplicate_organizations(crm_proto::contacts::v1::FindDuplicateOrganizationsRequest {
                page_size: 1,
                page_token: page_token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        pairs.extend(
            page.pairs.into_iter().map(|pair| (pair.organization_id, pair.other_organization_id, pair.reasons)),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let name_exact = vec!["name_exact".to_string()];
    assert_eq!(
        pairs,
        [(acme.id.clone(), estate.id.clone(), name_exact.clone()), (acme_uk.id.clone(), estate.id.clone(), name_exact)]
    );

    // A renamed company is found by its new name.
    contacts
        .update_organization(UpdateOrganizationRequest {
            organization: Some(Organization {
                id: acme.id.clone(),
                name: "Roadrunner Traps GmbH".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["name".into()] }),
        })
        .await
        .unwrap();
    let refused = contacts.create_organization(create(company("Roadrunner Traps", ""))).await.unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn organizations_stored_before_name_keys_get_theirs_at_start_and_are_checked_against() {
    let test_db = TestDb::create().await.unwrap();
    let pool = test_db.role_pool(crm_platform::Role::Contacts).await.unwrap();
    // As a row written before migration 0010 left it: no name key.
    sqlx::query(
        "INSERT INTO organizations (id, data, name) VALUES (gen_random_uuid(), '{\"name\": \"Globex Corporation\"}', 'Globex Corporation')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let key: Option<String> =
            sqlx::query_scalar("SELECT name_key FROM organizations").fetch_one(&pool).await.unwrap();
        if key.is_some() {
            assert_eq!(key.as_deref(), Some("globex"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the role filled in no name key within a minute");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let globex = Organization { name: "GLOBEX, Inc.".into(), ..Default::default() };
    let refused = contacts
        .create_organization(CreateOrganizationRequest { organization: Some(globex), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    suite.shutdown().await.unwrap();
}

/// Two records of one company merge: the survivor keeps the chosen name and
/// the union of ids, tags and addresses; members move (a person employed by
/// both is employed once), the loser's id reads and links to the survivor,
/// and the loser leaves the lists, the scan and the duplicate check.
#[tokio::test]
async fn merging_organizations_moves_members_and_ids_to_the_survivor() {
    use crm_proto::{
        common::v1::ExternalId,
        contacts::v1::{
            FindDuplicateOrganizationsRequest, ListAuditEventsRequest, ListOrganizationsRequest,
            MergeOrganizationsRequest, list_audit_events_request,
        },
    };
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let company = |name: &str, domain: &str, external: &str, tag: &str| CreateOrganizationRequest {
        organization: Some(Organization {
            name: name.into(),
            kind: OrganizationKind::Company as i32,
            domain: domain.into(),
            external_ids: vec![ExternalId { source: "erp".into(), id: external.into() }],
            tags: vec![tag.into()],
            ..Default::default()
        }),
        allow_duplicate: true,
        override_reason: "two records of one company, to merge".into(),
    };
    let acme = contacts.create_organization(company("ACME, Inc.", "acme.example", "A-1", "key account")).await.unwrap();
    let acme = acme.into_inner();
    let twin = contacts.create_organization(company("Acme Incorporated", "", "A-2", "supplier")).await.unwrap();
    let twin = twin.into_inner();
    let wile = create(&mut contacts, person("Wile", "Coyote", "wile@acme.example", "")).await;
    let road = create(&mut contacts, person("Road", "Runner", "road@acme.example", "")).await;
    let employ = |contact: &str, organization: &str| CreateRelationshipRequest {
        relationship: Some(Relationship {
            contact_id: contact.into(),
            target: Some(Target::OrganizationId(organization.into())),
            r#type: RelationshipType::EmployeeOf as i32,
            ..Default::default()
        }),
    };
    for (contact, organization) in [(&wile, &acme), (&wile, &twin), (&road, &twin)] {
        contacts.create_relationship(employ(&contact.id, &organization.id)).await.unwrap();
    }

    // Bad requests name their fields; a stale etag is refused.
    let merge = |loser_ids: Vec<String>, etag: &str| MergeOrganizationsRequest {
        survivor_id: acme.id.clone(),
        loser_ids,
        field_sources: [("name".to_string(), twin.id.clone())].into(),
        etag: etag.into(),
    };
    let mut bad = merge(vec![acme.id.clone(), "nope".into()], "");
    bad.field_sources.insert("tags".into(), twin.id.clone());
    let refused = contacts.merge_organizations(bad).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["loser_ids[0]", "loser_ids[1]", "field_sources[\"tags\"]"]);
    let stale = contacts.merge_organizations(merge(vec![twin.id.clone()], "\"stale\"")).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");

    let merged = contacts.merge_organizations(merge(vec![twin.id.clone()], &acme.etag)).await.unwrap().into_inner();
    let survivor = merged.organization.unwrap();
    assert_eq!(survivor.id, acme.id);
    assert_eq!(survivor.name, "Acme Incorporated", "the name chosen from the loser");
    assert_eq!(survivor.domain, "acme.example", "the only domain given");
    let ids: Vec<&str> = survivor.external_ids.iter().map(|id| id.id.as_str()).collect();
    assert_eq!(ids, ["A-1", "A-2"]);
    assert_eq!(survivor.tags, ["key account", "supplier"]);

    // The loser's id reads the survivor, and its external id belongs to it.
    let read = contacts.get_organization(GetOrganizationRequest { id: twin.id.clone() }).await.unwrap().into_inner();
    assert_eq!(read, survivor);
    let listed = contacts.list_organizations(ListOrganizationsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.organizations.iter().map(|o| &o.id).collect::<Vec<_>>(), [&acme.id]);
    let scan = contacts.find_duplicate_organizations(FindDuplicateOrganizationsRequest::default()).await.unwrap();
    assert!(scan.into_inner().pairs.is_empty(), "a merged record is no duplicate");

    // Members moved, once each; the loser's id lists them and links to the survivor.
    let members =
        |id: &str| ListRelationshipsRequest { parent: Some(Parent::OrganizationId(id.into())), ..Default::default() };
    let moved = contacts.list_relationships(members(&twin.id)).await.unwrap().into_inner().relationships;
    let mut employees: Vec<&str> = moved.iter().map(|link| link.contact_id.as_str()).collect();
    employees.sort();
    let mut expected = [wile.id.as_str(), road.id.as_str()];
    expected.sort();
    assert_eq!(employees, expected, "{moved:?}");
    assert!(moved.iter().all(|link| link.target == Some(Target::OrganizationId(acme.id.clone()))));
    let employees = contacts
        .list_contacts(ListContactsRequest { organization_id: twin.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(employees.contacts.len(), 2);
    let hire = contacts.create_relationship(employ(&road.id, &twin.id)).await.unwrap().into_inner();
    assert_eq!(hire.target, Some(Target::OrganizationId(acme.id.clone())));

    // The merge is in both trails; a merged record is stopped at the door no more.
    let trail = |id: &str| ListAuditEventsRequest {
        parent: Some(list_audit_events_request::Parent::OrganizationId(id.into())),
        ..Default::default()
    };
    let of_survivor = contacts.list_audit_events(trail(&acme.id)).await.unwrap().into_inner().audit_events;
    assert!(
        of_survivor.iter().any(|event| event.action == "merge" && event.note.contains(&twin.id)),
        "{of_survivor:?}"
    );
    let of_loser = contacts.list_audit_events(trail(&twin.id)).await.unwrap().into_inner().audit_events;
    assert!(of_loser.iter().any(|event| event.action == "merged_into" && event.note.contains(&acme.id)));
    let again = CreateOrganizationRequest {
        organization: Some(Organization { name: "Acme Inc".into(), ..Default::default() }),
        ..Default::default()
    };
    let refused = contacts.create_organization(again).await.unwrap_err();
    let info = refused.check_error_details().unwrap().error_info().cloned().unwrap();
    assert_eq!(info.metadata["candidate_ids"], acme.id, "only the survivor is a candidate");
    suite.shutdown().await.unwrap();
}
