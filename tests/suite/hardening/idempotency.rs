//! Request ids and idempotency keys: bounded, scoped to their caller, and
//! bound to the request they first came with.

use crm_platform::{
    Role,
    principal::{AccessRole, Principal},
};
use crm_proto::contacts::v1::{CreateContactRequest, contacts_service_client::ContactsServiceClient};
use crm_testkit::{INTERNAL_SECRET, TestDb, TestSuite};
use tonic::Code;

use crate::contacts::{person, violated_fields};

fn with_request_id<T>(message: T, request_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("x-request-id", request_id.parse().unwrap());
    request
}

#[tokio::test]
async fn a_request_id_too_long_to_store_is_invalid_argument_at_the_gateway_and_at_the_role() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut through_gateway = suite.contacts().await.unwrap();
    let principal = Principal { key_id: "direct".into(), roles: vec![AccessRole::Admin] };
    let mut direct =
        ContactsServiceClient::new(suite.signed(Role::Contacts, principal, INTERNAL_SECRET).await.unwrap());

    let long = "r".repeat(3000);
    let create = || CreateContactRequest { contact: Some(person("Long", "Request", "", "")), ..Default::default() };
    let refused = through_gateway.create_contact(with_request_id(create(), &long)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(violated_fields(&refused), ["x-request-id"]);
    let refused = direct.create_contact(with_request_id(create(), &long)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    // The longest accepted id works, and names the contact's creation.
    let longest = "r".repeat(200);
    through_gateway.create_contact(with_request_id(create(), &longest)).await.unwrap();
    suite.shutdown().await.unwrap();
}

/// Creates a key with `roles`; returns its secret.
async fn key_with(suite: &TestSuite, roles: &[&str]) -> String {
    let request = crm_proto::gateway::v1::CreateApiKeyRequest {
        display_name: "idempotency test".into(),
        roles: roles.iter().map(|role| role.to_string()).collect(),
    };
    suite.gateway_admin().await.unwrap().create_api_key(request).await.unwrap().into_inner().secret
}

#[tokio::test]
async fn a_request_id_belongs_to_its_caller_and_to_the_request_it_came_with() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut alice_key =
        ContactsServiceClient::new(suite.with_key(Role::Gateway, &key_with(&suite, &["agent"]).await).await.unwrap());
    let mut bob_key =
        ContactsServiceClient::new(suite.with_key(Role::Gateway, &key_with(&suite, &["agent"]).await).await.unwrap());
    let request = |given: &str| CreateContactRequest {
        contact: Some(person(given, "Shared", "", "")),
        request_id: "R-1".into(),
        ..Default::default()
    };

    // Another caller's key R-1 is not Bob's: he gets his own contact, not Alice.
    let alice = alice_key.create_contact(request("Alice")).await.unwrap().into_inner();
    let bob = bob_key.create_contact(request("Bob")).await.unwrap().into_inner();
    assert_eq!(bob.given_name, "Bob");
    assert_ne!(bob.id, alice.id);

    // A retry of the same request gets the first answer, whatever the order of its maps ...
    let mut with_attributes = CreateContactRequest {
        contact: Some(person("Zed", "Mapped", "zed@example.com", "")),
        request_id: "R-2".into(),
        ..Default::default()
    };
    let attributes: Vec<(String, String)> = (0..20).map(|n| (format!("k{n}"), format!("v{n}"))).collect();
    with_attributes.contact.as_mut().unwrap().attributes = attributes.iter().cloned().collect();
    let first = alice_key.create_contact(with_attributes.clone()).await.unwrap().into_inner();
    with_attributes.contact.as_mut().unwrap().attributes = attributes.iter().rev().cloned().collect();
    let retried = alice_key.create_contact(with_attributes).await.unwrap().into_inner();
    assert_eq!(retried.id, first.id);

    // ... and the same key with another request is refused, saying so.
    let reused = alice_key.create_contact(request("Alicia")).await.unwrap_err();
    assert_eq!(reused.code(), Code::FailedPrecondition, "{reused:?}");
    assert_eq!(tonic_types::StatusExt::get_details_error_info(&reused).unwrap().reason, "IDEMPOTENCY_KEY_REUSED");
    assert!(reused.message().contains("request_id \"R-1\""), "{}", reused.message());

    // The default key, x-request-id, follows the same rules.
    let by_header = alice_key
        .create_contact(with_request_id(CreateContactRequest { request_id: String::new(), ..request("Carol") }, "H-1"))
        .await
        .unwrap()
        .into_inner();
    let again = alice_key
        .create_contact(with_request_id(CreateContactRequest { request_id: String::new(), ..request("Carol") }, "H-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, by_header.id);
    let other = alice_key
        .create_contact(with_request_id(CreateContactRequest { request_id: String::new(), ..request("Dave") }, "H-1"))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::FailedPrecondition);
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn prospects_of_two_lookups_under_one_request_id_are_two_prospects() {
    use crm_proto::interactions::v1::{
        Channel, ContactLookup, Interaction, Kind, RecordInteractionRequest, contact_lookup,
    };
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let record = |email: &str, external_id: &str| RecordInteractionRequest {
        interaction: Some(Interaction {
            channel: Channel::Email as i32,
            kind: Kind::Note as i32,
            occurred_at: Some(prost_types::Timestamp { seconds: 1_767_225_600, nanos: 0 }),
            source: "mail".into(),
            external_id: external_id.into(),
            ..Default::default()
        }),
        contact_lookup: Some(ContactLookup {
            key: Some(contact_lookup::Key::Email(email.into())),
            create_prospect: true,
        }),
    };
    let one = interactions.record_interaction(with_request_id(record("one@example.com", "M-1"), "X-1")).await.unwrap();
    let two = interactions.record_interaction(with_request_id(record("two@example.com", "M-2"), "X-1")).await.unwrap();
    assert_ne!(one.get_ref().contact_id, two.get_ref().contact_id, "the second prospect was never created");
    // A retry of the first call lands on the first prospect again.
    let retried =
        interactions.record_interaction(with_request_id(record("one@example.com", "M-1"), "X-1")).await.unwrap();
    assert_eq!(retried.get_ref().contact_id, one.get_ref().contact_id);
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_external_id_resent_with_other_content_is_refused_not_dropped() {
    use crm_proto::{
        common::v1::Money,
        interactions::v1::{
            Channel, IngestInteractionsRequest, IngestOutcome, Interaction, Kind, RecordInteractionRequest,
        },
    };
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let contact_id = uuid::Uuid::now_v7().to_string();
    let purchase = |external_id: &str, cents: i64| Interaction {
        contact_id: contact_id.clone(),
        channel: Channel::Web as i32,
        kind: Kind::Purchase as i32,
        occurred_at: Some(prost_types::Timestamp { seconds: 1_767_225_600, nanos: 0 }),
        amount: Some(Money { currency_code: "EUR".into(), minor_units: cents }),
        source: "billing".into(),
        external_id: external_id.into(),
        attributes: (0..10).map(|n| (format!("k{n}"), format!("v{n}"))).collect(),
        ..Default::default()
    };
    let batch = |items: Vec<Interaction>| IngestInteractionsRequest { batch_id: "b".into(), interactions: items };
    let batches = vec![
        batch(vec![purchase("P-1", 100), purchase("P-2", 200)]),
        // The same items again (a resend), then P-2 with another amount.
        batch(vec![purchase("P-1", 100), purchase("P-2", 999)]),
    ];
    let mut acks = interactions.ingest_interactions(tokio_stream::iter(batches)).await.unwrap().into_inner();
    let first = acks.message().await.unwrap().unwrap();
    assert!(first.results.iter().all(|result| result.outcome() == IngestOutcome::Stored));
    let second = acks.message().await.unwrap().unwrap();
    assert_eq!(second.results[0].outcome(), IngestOutcome::Duplicate);
    assert_eq!(second.results[1].outcome(), IngestOutcome::Rejected, "{:?}", second.results[1]);
    assert_eq!(second.results[1].invalid_fields, ["interaction.external_id"]);
    assert!(second.results[1].error.contains(&first.results[1].interaction_id), "{}", second.results[1].error);

    let single = interactions
        .record_interaction(RecordInteractionRequest { interaction: Some(purchase("P-1", 555)), contact_lookup: None })
        .await
        .unwrap_err();
    assert_eq!(single.code(), Code::FailedPrecondition, "{single:?}");
    let same = interactions
        .record_interaction(RecordInteractionRequest { interaction: Some(purchase("P-1", 100)), contact_lookup: None })
        .await
        .unwrap();
    assert_eq!(same.get_ref().id, first.results[0].interaction_id);
    suite.shutdown().await.unwrap();
}
