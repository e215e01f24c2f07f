//! Text PostgreSQL cannot store (NUL) is refused as the field it is in, on
//! every method, and a bad bulk item is rejected as that item.

use std::collections::HashMap;

use crm_proto::{
    common::v1::ExternalId,
    contacts::v1::{
        CreateContactRequest, CreateOrganizationRequest, DuplicatePolicy, ImportContactsRequest, ImportOptions,
        ImportOutcome, ImportRow, ListContactsRequest, Organization, SearchContactsRequest,
    },
    events::v1::ListEventsRequest,
    gateway::v1::CreateApiKeyRequest,
    interactions::v1::{
        Channel, IngestInteractionsRequest, IngestOutcome, Interaction, Kind, RecordInteractionRequest,
    },
};
use crm_testkit::{TestDb, TestSuite};

use crate::contacts::{person, violated_fields};

const NUL: &str = "Nul\u{0}Name";

fn note(contact_id: &str, external_id: &str, subject: &str) -> Interaction {
    Interaction {
        contact_id: contact_id.into(),
        channel: Channel::Phone as i32,
        kind: Kind::Note as i32,
        occurred_at: Some(prost_types::Timestamp { seconds: 1_767_225_600, nanos: 0 }),
        source: "callcentre".into(),
        external_id: external_id.into(),
        subject: subject.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_nul_character_is_invalid_argument_naming_its_field_on_every_method() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let mut admin = suite.gateway_admin().await.unwrap();
    let create = |change: &dyn Fn(&mut CreateContactRequest)| {
        let mut request =
            CreateContactRequest { contact: Some(person("Ann", "Lee", "ann@example.com", "")), ..Default::default() };
        change(&mut request);
        request
    };

    let cases: Vec<(CreateContactRequest, &str)> = vec![
        (create(&|request| request.contact.as_mut().unwrap().given_name = NUL.into()), "contact.given_name"),
        (create(&|request| request.contact.as_mut().unwrap().tags = vec!["ok".into(), NUL.into()]), "contact.tags[1]"),
        (
            create(&|request| {
                request.contact.as_mut().unwrap().attributes = HashMap::from([(NUL.to_string(), "v".to_string())])
            }),
            "contact.attributes",
        ),
        (
            create(&|request| {
                request.contact.as_mut().unwrap().external_ids =
                    vec![ExternalId { source: "billing".into(), id: NUL.into() }]
            }),
            "contact.external_ids[0].id",
        ),
        (create(&|request| request.request_id = NUL.into()), "request_id"),
    ];
    for (request, field) in cases {
        let refused = contacts.create_contact(request).await.unwrap_err();
        assert_eq!(violated_fields(&refused), [field]);
    }

    let refused =
        contacts.search_contacts(SearchContactsRequest { query: NUL.into(), page_size: 0 }).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["query"]);
    let refused =
        contacts.list_contacts(ListContactsRequest { tag: NUL.into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["tag"]);
    let refused =
        contacts.list_events(ListEventsRequest { aggregate_id: NUL.into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["aggregate_id"]);
    let organization = Organization { name: NUL.into(), ..Default::default() };
    let refused = contacts
        .create_organization(CreateOrganizationRequest { organization: Some(organization), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["organization.name"]);
    let contact_id = uuid::Uuid::now_v7().to_string();
    let refused = interactions
        .record_interaction(RecordInteractionRequest {
            interaction: Some(note(&contact_id, "N-1", NUL)),
            contact_lookup: None,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["interaction.subject"]);
    let refused = admin
        .create_api_key(CreateApiKeyRequest { display_name: NUL.into(), roles: vec!["agent".into()] })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["display_name"]);
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_nul_in_a_bulk_item_rejects_that_item_and_the_stream_goes_on() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let contact_id = uuid::Uuid::now_v7().to_string();

    // Before, the bad item failed its batch with INTERNAL and ended the
    // stream, and a resend failed the same way every time.
    let batches = vec![
        IngestInteractionsRequest {
            batch_id: "b1".into(),
            interactions: vec![note(&contact_id, "I-1", "fine"), note(&contact_id, "I-2", NUL)],
        },
        IngestInteractionsRequest { batch_id: "b2".into(), interactions: vec![note(&contact_id, "I-3", "fine")] },
    ];
    let mut acks = interactions.ingest_interactions(tokio_stream::iter(batches)).await.unwrap().into_inner();
    let first = acks.message().await.unwrap().unwrap();
    let outcomes: Vec<IngestOutcome> = first.results.iter().map(|result| result.outcome()).collect();
    assert_eq!(outcomes, [IngestOutcome::Stored, IngestOutcome::Rejected]);
    assert_eq!(first.results[1].invalid_fields, ["interaction.subject"]);
    let second = acks.message().await.unwrap().unwrap();
    assert_eq!(second.results[0].outcome(), IngestOutcome::Stored);

    let mut contacts = suite.contacts().await.unwrap();
    let mut bad = person("Bad", "Row", "", "");
    bad.family_name = NUL.into();
    let rows = vec![
        ImportRow { row_id: "1".into(), contact: Some(person("Good", "Row", "good@example.com", "")) },
        ImportRow { row_id: "2".into(), contact: Some(bad) },
    ];
    let options =
        ImportOptions { duplicate_policy: DuplicatePolicy::Skip as i32, dry_run: false, source: "legacy".into() };
    let message = ImportContactsRequest { options: Some(options), rows };
    let mut results = contacts.import_contacts(tokio_stream::iter(vec![message])).await.unwrap().into_inner();
    let results = results.message().await.unwrap().unwrap().results;
    assert_eq!(results[0].outcome(), ImportOutcome::Created, "{results:?}");
    assert_eq!(results[1].outcome(), ImportOutcome::Failed, "{results:?}");
    assert_eq!(results[1].invalid_fields, ["contact.family_name"]);
    suite.shutdown().await.unwrap();
}
