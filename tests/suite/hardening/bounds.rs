//! Every request's work is bounded before it is done, and an error never
//! echoes an input without bound.

use std::{collections::HashMap, time::Duration};

use crm_proto::contacts::v1::{Contact, CreateContactRequest, Email, GetContactRequest, UpdateContactRequest};
use crm_testkit::{TestDb, TestSuite};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_types::StatusExt;

use crate::contacts::{create, person};

/// A contact whose `emails` hold `count` entries, every one of them invalid
/// and distinct: examining them all would list `count` violations.
fn with_emails(count: usize) -> Contact {
    let emails = (0..count).map(|index| Email { address: format!("not-an-email-{index}"), ..Default::default() });
    Contact { given_name: "Many".into(), emails: emails.collect(), ..Default::default() }
}

/// Health and a read answer on fresh connections while `work` runs.
async fn others_keep_answering<F: std::future::Future>(suite: &TestSuite, known_id: &str, work: F) -> F::Output {
    let probes = async {
        for _ in 0..5 {
            // A bound on waiting, not a performance assertion: before the fix
            // these waited 20 s to 2 minutes behind one request.
            let mut health = suite.gateway_health().await.unwrap();
            let answered = tokio::time::timeout(
                Duration::from_secs(5),
                health.check(HealthCheckRequest { service: "crm.contacts.v1.ContactsService".into() }),
            )
            .await;
            assert!(matches!(answered, Ok(Ok(_))), "health did not answer while a huge request ran: {answered:?}");
            let mut contacts = suite.contacts().await.unwrap();
            let read = tokio::time::timeout(
                Duration::from_secs(5),
                contacts.get_contact(GetContactRequest { id: known_id.to_string() }),
            )
            .await;
            assert!(matches!(read, Ok(Ok(_))), "a read did not answer while a huge request ran: {read:?}");
        }
    };
    let (output, ()) = tokio::join!(work, probes);
    output
}

#[tokio::test]
async fn lists_over_their_limit_are_refused_before_any_entry_is_examined() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let known = create(&mut contacts, person("Known", "Reader", "known@example.com", "")).await;

    // The largest list accepted (10 entries) is examined entry by entry ...
    let at_limit = contacts
        .create_contact(CreateContactRequest { contact: Some(with_emails(10)), ..Default::default() })
        .await
        .unwrap_err();
    let listed = at_limit.get_details_bad_request().unwrap().field_violations;
    assert_eq!(listed.len(), 10, "{listed:?}");
    assert!(listed.iter().all(|violation| violation.field.starts_with("contact.emails[")));

    // ... one more is refused by its count alone, and so are 100,000: work
    // bounded by the limits, while other callers keep being answered.
    for count in [11, 100_000] {
        let mut big = contacts.clone();
        let refused = others_keep_answering(&suite, &known.id, async move {
            big.create_contact(CreateContactRequest { contact: Some(with_emails(count)), ..Default::default() })
                .await
                .unwrap_err()
        })
        .await;
        assert_eq!(refused.code(), Code::InvalidArgument);
        let listed = refused.get_details_bad_request().unwrap().field_violations;
        assert_eq!(listed.len(), 1, "{count} entries: {listed:?}");
        assert_eq!(listed[0].field, "contact.emails");
        assert_eq!(listed[0].description, format!("must have at most 10 entries (got {count})"));
    }

    // An update validates the same way, inside its transaction: bounded too.
    let mut change = with_emails(100_000);
    change.id = known.id.clone();
    change.etag = known.etag.clone();
    let mut updater = contacts.clone();
    let refused = others_keep_answering(&suite, &known.id, async move {
        updater
            .update_contact(UpdateContactRequest {
                contact: Some(change),
                update_mask: Some(prost_types::FieldMask { paths: vec!["emails".into()] }),
            })
            .await
            .unwrap_err()
    })
    .await;
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(refused.get_details_bad_request().unwrap().field_violations.len(), 1);
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_error_quotes_a_short_prefix_of_a_huge_input() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();

    // A 256 KB attribute key: before, it came back whole in a 262 KB
    // grpc-message, over the client's metadata limit (RESOURCE_EXHAUSTED).
    let huge_key = "k".repeat(256 * 1024);
    let mut contact = person("Long", "Key", "", "");
    contact.attributes = HashMap::from([(huge_key.clone(), "v".into())]);
    let refused = contacts
        .create_contact(CreateContactRequest { contact: Some(contact), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().len() < 1024, "{} bytes", refused.message().len());
    let listed = refused.get_details_bad_request().unwrap().field_violations;
    assert!(listed[0].field.starts_with("contact.attributes[\"kkkk"), "{}", listed[0].field);
    assert!(listed[0].field.len() < 200, "{}", listed[0].field.len());
    assert!(listed[0].field.ends_with("(262144 characters)]"), "{}", listed[0].field);
    suite.shutdown().await.unwrap();
}
