//! Create, get, update, list, delete, lookup, search, validation, idempotency, audit, events.

use std::time::Duration;

use crm_platform::Role;
use crm_proto::{
    common::v1::{Date, PostalAddress},
    contacts::v1::{
        Contact, ContactState, CreateContactRequest, DeleteContactRequest, Email, GetContactRequest, LifecycleStage,
        ListAuditEventsRequest, ListContactsRequest, LookupContactRequest, Phone, SearchContactsRequest,
        UpdateContactRequest, list_audit_events_request::Parent, lookup_contact_request::Key,
    },
    events::v1::SubscribeRequest,
};
use crm_testkit::{TestDb, TestSuite};
use prost::Message;
use tonic::Code;

use super::{create, external, person, set_owner, violated_fields};

#[tokio::test]
async fn a_contact_is_created_normalised_read_updated_listed_and_deleted() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();

    let mut input = person("  Ada ", " Lovelace ", "Ada.Lovelace@Example.COM", "(201) 555-0123");
    input.tags = vec!["VIP".into(), "vip".into(), "newsletter".into()];
    input.lifecycle_stage = LifecycleStage::Customer as i32;
    input.external_ids = vec![external("Billing", "B-1")];
    let created = create(&mut contacts, input).await;
    assert_eq!(created.given_name, "Ada");
    assert_eq!(created.display_name, "Ada Lovelace");
    assert_eq!(created.emails[0].address, "Ada.Lovelace@example.com");
    assert!(created.emails[0].primary);
    assert_eq!(created.phones[0].number, "+12015550123");
    assert_eq!(created.tags, ["newsletter", "vip"]);
    assert_eq!(created.external_ids[0].source, "billing");
    assert_eq!(created.state, ContactState::Active as i32);

    let read = contacts.get_contact(GetContactRequest { id: created.id.clone() }).await.unwrap().into_inner();
    assert_eq!(read, created);

    // Update one field with the etag; the rest stays.
    let mut change = Contact { id: created.id.clone(), etag: created.etag.clone(), ..Default::default() };
    change.family_name = "King".into();
    let mask = prost_types::FieldMask { paths: vec!["family_name".into()] };
    let updated = contacts
        .update_contact(UpdateContactRequest { contact: Some(change.clone()), update_mask: Some(mask.clone()) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.family_name, "King");
    assert_eq!(updated.emails, created.emails);
    assert_ne!(updated.etag, created.etag);

    // The same etag again is stale.
    let stale = contacts
        .update_contact(UpdateContactRequest { contact: Some(change), update_mask: Some(mask) })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");

    // An unknown mask path is named.
    let bad_mask = contacts
        .update_contact(UpdateContactRequest {
            contact: Some(Contact { id: created.id.clone(), ..Default::default() }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["etag".into()] }),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_mask), ["update_mask.paths[0]"]);

    // Lists: filters and stable pages.
    for (given, family) in
        [("Alan", "Turing"), ("Edsger", "Dijkstra"), ("Barbara", "Liskov"), ("Donald", "Knuth"), ("Frances", "Allen")]
    {
        create(&mut contacts, person(given, family, "", "")).await;
    }
    let vip = contacts
        .list_contacts(ListContactsRequest { tag: "VIP".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(vip.contacts.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [created.id.as_str()]);
    let customers = contacts
        .list_contacts(ListContactsRequest { lifecycle_stage: LifecycleStage::Customer as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(customers.contacts.len(), 1);
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = contacts
            .list_contacts(ListContactsRequest { page_size: 2, page_token: token.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.contacts.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 6);
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "oldest first: {seen:?}");
    let changed_filter = contacts
        .list_contacts(ListContactsRequest { page_size: 2, page_token: token, tag: "vip".into(), ..Default::default() })
        .await;
    assert!(changed_filter.is_ok() || changed_filter.unwrap_err().code() == Code::InvalidArgument);

    // Delete: still readable, gone from lookups and default lists.
    let deleted = contacts
        .delete_contact(DeleteContactRequest { id: created.id.clone(), etag: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.state, ContactState::Deleted as i32);
    let lookup = contacts
        .lookup_contact(LookupContactRequest { key: Some(Key::Email("ada.lovelace@example.com".into())) })
        .await
        .unwrap_err();
    assert_eq!(lookup.code(), Code::NotFound);
    let listed = contacts.list_contacts(ListContactsRequest::default()).await.unwrap().into_inner();
    assert!(!listed.contacts.iter().any(|c| c.id == created.id));
    let with_deleted = contacts
        .list_contacts(ListContactsRequest { show_deleted: true, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(with_deleted.contacts.iter().any(|c| c.id == created.id));

    // Every change is in the audit trail, with who and which request.
    let trail = contacts
        .list_audit_events(ListAuditEventsRequest {
            parent: Some(Parent::ContactId(created.id.clone())),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let actions: Vec<&str> = trail.iter().map(|event| event.action.as_str()).collect();
    assert_eq!(actions, ["delete", "update", "create"]);
    assert!(trail.iter().all(|event| event.actor == "bootstrap" && !event.request_id.is_empty()));
    let family = trail[1].changes.iter().find(|change| change.field == "family_name").unwrap();
    assert_eq!((family.before.as_str(), family.after.as_str()), ("\"Lovelace\"", "\"King\""));
    // The creation lists each field it set, from nothing, in field order; none it left empty.
    let set: Vec<(&str, &str, &str)> =
        trail[2].changes.iter().map(|c| (c.field.as_str(), c.before.as_str(), c.after.as_str())).collect();
    let fields: Vec<&str> = set.iter().map(|(field, ..)| *field).collect();
    assert!(fields.is_sorted() && fields.contains(&"emails") && !fields.contains(&"owner"), "{fields:?}");
    assert!(set.contains(&("given_name", "", "\"Ada\"")), "{set:?}");
    assert!(set.contains(&("tags", "", "[\"newsletter\",\"vip\"]")), "{set:?}");
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_invalid_field_is_reported_at_once() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let contact = Contact {
        given_name: "   ".into(),
        display_name: "x".repeat(201),
        emails: vec![
            Email { address: "not-an-email".into(), ..Default::default() },
            Email { address: "a@b.example".into(), primary: true, ..Default::default() },
            Email { address: "c@d.example".into(), primary: true, ..Default::default() },
        ],
        phones: vec![Phone { number: "12".into(), ..Default::default() }],
        addresses: vec![PostalAddress {
            lines: vec!["1 Road".into()],
            country_code: "XX".into(),
            ..Default::default()
        }],
        birth_date: Some(Date { year: 1990, month: 2, day: 30 }),
        tags: vec![String::new()],
        max_contacts_per_week: -1,
        external_ids: vec![external("", "1")],
        ..Default::default()
    };
    let status = contacts
        .create_contact(CreateContactRequest { contact: Some(contact), ..Default::default() })
        .await
        .unwrap_err();
    let fields = violated_fields(&status);
    for expected in [
        "contact.display_name",
        "contact.emails[0].address",
        "contact.emails",
        "contact.phones[0].number",
        "contact.addresses[0].country_code",
        "contact.birth_date",
        "contact.tags[0]",
        "contact.max_contacts_per_week",
        "contact.external_ids[0].source",
    ] {
        assert!(fields.iter().any(|field| field == expected), "{expected} missing from {fields:?}");
    }

    let too_many = Contact {
        given_name: "Many".into(),
        emails: (0..11).map(|i| Email { address: format!("m{i}@example.com"), ..Default::default() }).collect(),
        ..Default::default()
    };
    let status = contacts
        .create_contact(CreateContactRequest { contact: Some(too_many), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["contact.emails"]);
    let no_name = contacts
        .create_contact(CreateContactRequest { contact: Some(Contact::default()), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_name), ["contact.given_name"]);
    let override_without_reason = contacts
        .create_contact(CreateContactRequest {
            contact: Some(person("A", "B", "", "")),
            allow_duplicate: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&override_without_reason), ["override_reason"]);
    let lookup =
        contacts.lookup_contact(LookupContactRequest { key: Some(Key::Phone("call me".into())) }).await.unwrap_err();
    assert_eq!(violated_fields(&lookup), ["phone"]);
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_create_retried_with_the_same_request_id_creates_one_contact() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let request = CreateContactRequest {
        contact: Some(person("Idem", "Potent", "idem@example.com", "")),
        request_id: "retry-me-1".into(),
        ..Default::default()
    };
    let first = contacts.create_contact(request.clone()).await.unwrap().into_inner();
    let again = contacts.create_contact(request).await.unwrap().into_inner();
    assert_eq!(first.id, again.id);

    // Through the x-request-id header too.
    let mut with_header = tonic::Request::new(CreateContactRequest {
        contact: Some(person("Header", "Retry", "header@example.com", "")),
        ..Default::default()
    });
    with_header.metadata_mut().insert("x-request-id", "header-retry-1".parse().unwrap());
    let first = contacts.create_contact(with_header).await.unwrap().into_inner();
    let mut with_header = tonic::Request::new(CreateContactRequest {
        contact: Some(person("Header", "Retry", "header@example.com", "")),
        ..Default::default()
    });
    with_header.metadata_mut().insert("x-request-id", "header-retry-1".parse().unwrap());
    let again = contacts.create_contact(with_header).await.unwrap().into_inner();
    assert_eq!(first.id, again.id);

    let all = contacts.list_contacts(ListContactsRequest::default()).await.unwrap().into_inner();
    assert_eq!(all.contacts.len(), 2);
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn lookup_finds_by_email_phone_and_external_id_and_search_tolerates_typos() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut input = person("Margaret", "Hamilton", "margaret@apollo.example", "+1 201 555 0123");
    input.external_ids = vec![external("webshop", "W-42")];
    let created = create(&mut contacts, input).await;
    create(&mut contacts, person("Katherine", "Johnson", "kj@example.com", "")).await;

    for key in [
        Key::Email("Margaret@APOLLO.example".into()),
        Key::Phone("(201) 555-0123".into()),
        Key::ExternalId(external("WebShop", "W-42")),
    ] {
        let found =
            contacts.lookup_contact(LookupContactRequest { key: Some(key.clone()) }).await.unwrap().into_inner();
        assert_eq!(found.id, created.id, "{key:?}");
    }
    let missing = contacts
        .lookup_contact(LookupContactRequest { key: Some(Key::Email("nobody@example.com".into())) })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(!missing.message().contains("nobody"), "{}", missing.message());

    for query in ["margaret hamilton", "hamiltn", "Margret", "apollo.example", "201 555 0123"] {
        let results = contacts
            .search_contacts(SearchContactsRequest { query: query.into(), page_size: 5 })
            .await
            .unwrap()
            .into_inner()
            .results;
        assert_eq!(
            results.first().and_then(|r| r.contact.as_ref()).map(|c| c.id.as_str()),
            Some(created.id.as_str()),
            "{query}"
        );
    }
    let short = contacts.search_contacts(SearchContactsRequest { query: "a".into(), page_size: 5 }).await.unwrap_err();
    assert_eq!(violated_fields(&short), ["query"]);
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_lookup_answers_only_with_a_contact_that_holds_the_email_or_phone() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let holder = create(&mut contacts, person("Mary", "Jackson", "mary@langley.example", "+1 757 555 0100")).await;
    let other = create(&mut contacts, person("Dorothy", "Vaughan", "dorothy@langley.example", "")).await;

    // Terms are stored as hashes: plant what a hash collision would look like,
    // the other contact listed under Mary's email and phone.
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    for key in ["e:mary@langley.example", "p:+17575550100"] {
        sqlx::query("INSERT INTO contact_terms (term, contact_id) VALUES ($1, $2::uuid)")
            .bind(crm_contacts::terms::hash(key))
            .bind(&other.id)
            .execute(&pool)
            .await
            .unwrap();
    }
    // Dorothy was updated last, so she would win if the holders were not checked.
    set_owner(&mut contacts, &other, "agent-9").await;
    for key in [Key::Email("mary@langley.example".into()), Key::Phone("+1 757 555 0100".into())] {
        let found =
            contacts.lookup_contact(LookupContactRequest { key: Some(key.clone()) }).await.unwrap().into_inner();
        assert_eq!(found.id, holder.id, "{key:?}");
    }
    sqlx::query("DELETE FROM contact_terms WHERE contact_id = $1::uuid AND term = $2")
        .bind(&holder.id)
        .bind(crm_contacts::terms::hash("e:mary@langley.example"))
        .execute(&pool)
        .await
        .unwrap();
    let missing = contacts
        .lookup_contact(LookupContactRequest { key: Some(Key::Email("mary@langley.example".into())) })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "only the planted entry is left: it names a contact without that email");
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn contact_events_reach_a_subscriber_in_order() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut stream = suite
        .contacts()
        .await
        .unwrap()
        .subscribe(SubscribeRequest { after: None, event_types: vec![], live: false, ..Default::default() })
        .await
        .unwrap()
        .into_inner();

    let a = create(&mut contacts, person("Evt", "One", "evt1@example.com", "")).await;
    let b = create(&mut contacts, person("Other", "Person", "evt2@example.com", "")).await;
    set_owner(&mut contacts, &a, "agent-7").await;
    contacts
        .merge_contacts(crm_proto::contacts::v1::MergeContactsRequest {
            survivor_id: a.id.clone(),
            loser_ids: vec![b.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    contacts
        .erase_contact(crm_proto::contacts::v1::EraseContactRequest { id: a.id.clone(), reason: "ticket 1".into() })
        .await
        .unwrap();

    let mut types = Vec::new();
    while types.len() < 6 {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .event
            .unwrap();
        types.push(event.r#type.clone());
        if event.r#type == "crm.contacts.v1.ContactMerged" {
            let merged =
                crm_proto::contacts::v1::ContactMerged::decode(event.payload.unwrap().value.as_slice()).unwrap();
            assert_eq!(merged.loser_ids, std::slice::from_ref(&b.id));
        }
    }
    assert_eq!(
        types,
        [
            "crm.contacts.v1.ContactCreated",
            "crm.contacts.v1.ContactCreated",
            "crm.contacts.v1.ContactUpdated",
            "crm.contacts.v1.ContactMerged",
            "crm.contacts.v1.ContactErased",
            "crm.contacts.v1.ContactErased",
        ]
    );
    let _ = Role::Contacts;
    suite.shutdown().await.unwrap();
}
