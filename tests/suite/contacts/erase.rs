//! The right to be forgotten leaves no personal data in any table of the schema.

use crm_platform::Role;
use crm_proto::contacts::v1::{
    ContactState, CreateContactRequest, EraseContactRequest, GetContactRequest, LookupContactRequest,
    MergeContactsRequest, UpdateContactRequest, lookup_contact_request::Key,
};
use crm_testkit::{TestDb, TestSuite};
use tonic::Code;

use super::{audit_trail, external, person};
use crate::support::whole_schema;

#[tokio::test]
async fn erasing_a_contact_wipes_its_personal_data_everywhere_and_keeps_a_tombstone() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();

    let mut input = person("Zebulon", "Quixotic", "zebulon.quixotic@example.com", "+1 201 555 0123");
    input.external_ids = vec![external("billing", "ZQ-77")];
    input.attributes = [("favourite".to_string(), "Xylophonic".to_string())].into();
    let created = contacts
        .create_contact(CreateContactRequest {
            contact: Some(input),
            request_id: "erase-req".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut change = created.clone();
    change.family_name = "Quixoticus".into();
    contacts
        .update_contact(UpdateContactRequest {
            contact: Some(change),
            update_mask: Some(prost_types::FieldMask { paths: vec!["family_name".into()] }),
        })
        .await
        .unwrap();
    // A second record of the same person, merged in: erased with it.
    let other = contacts
        .create_contact(CreateContactRequest {
            contact: Some(person("Zeb", "Quixotic", "zq.other@example.com", "")),
            allow_duplicate: true,
            override_reason: "test".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    contacts
        .merge_contacts(MergeContactsRequest {
            survivor_id: created.id.clone(),
            loser_ids: vec![other.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();

    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    // The second record's creation entry as entries written before the
    // `created` column hold it (`changes = {"created": …}`): erased alike.
    let legacy = sqlx::query(
        "UPDATE contacts.audit_events SET changes = jsonb_build_object('created', created), created = NULL
         WHERE resource_id = $1::uuid AND created IS NOT NULL",
    )
    .bind(&other.id)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(legacy.rows_affected(), 1);
    let personal = ["zebulon", "quixotic", "zq.other", "2015550123", "zq-77", "xylophonic"];
    let before = whole_schema(&pool, "contacts").await;
    for value in personal {
        assert!(before.contains(value) || before.contains(&hex(value)), "{value} should be stored before erasure");
    }

    let tombstone = contacts
        .erase_contact(EraseContactRequest { id: other.id.clone(), reason: "GDPR request 2026-118".into() })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(tombstone.id, created.id, "erasing a merged id erases the person");
    assert_eq!(tombstone.state, ContactState::Erased as i32);
    assert!(tombstone.given_name.is_empty() && tombstone.emails.is_empty());

    let after = whole_schema(&pool, "contacts").await;
    for value in personal {
        assert!(!after.contains(value), "{value} survived erasure");
        assert!(!after.contains(&hex(value)), "{value} survived erasure in a payload");
    }

    // The tombstone reads, refuses changes, and lookups no longer find it.
    let read = contacts.get_contact(GetContactRequest { id: created.id.clone() }).await.unwrap().into_inner();
    assert_eq!(read.state, ContactState::Erased as i32);
    let mut change = read.clone();
    change.given_name = "Back".into();
    let refused = contacts
        .update_contact(UpdateContactRequest {
            contact: Some(change),
            update_mask: Some(prost_types::FieldMask { paths: vec!["given_name".into()] }),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let lookup = contacts
        .lookup_contact(LookupContactRequest { key: Some(Key::ExternalId(external("billing", "ZQ-77"))) })
        .await
        .unwrap_err();
    assert_eq!(lookup.code(), Code::NotFound);

    // The trail still says who did what, without the values.
    let trail = audit_trail(&contacts, &created.id).await;
    assert_eq!(trail[0].action, "erase");
    assert_eq!(trail[0].note, "GDPR request 2026-118");
    assert!(trail.iter().any(|event| event.action == "create"));
    assert!(
        trail.iter().flat_map(|event| &event.changes).all(|change| change.before.is_empty() && change.after.is_empty())
    );
    let legacy_trail = audit_trail(&contacts, &other.id).await;
    let created_fields: Vec<&str> = legacy_trail
        .iter()
        .filter(|event| event.action == "create")
        .flat_map(|event| event.changes.iter().map(|change| change.field.as_str()))
        .collect();
    assert!(created_fields.contains(&"given_name") && created_fields.contains(&"emails"), "{created_fields:?}");
    assert!(legacy_trail.iter().flat_map(|event| &event.changes).all(|change| change.after.is_empty()));
    suite.shutdown().await.unwrap();
}

fn hex(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}
