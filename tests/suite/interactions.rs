//! The interactions role end to end: recording, bulk ingest through the
//! gateway's streaming proxy, the timeline, events.

use std::time::Duration;

use crm_proto::{
    common::v1::{Date, Money},
    events::v1::SubscribeRequest,
    interactions::v1::{
        Channel, Direction, GetInteractionRequest, IngestInteractionsRequest, IngestOutcome, Interaction, Invoice,
        Kind, ListInteractionsRequest, RecordInteractionRequest,
    },
};
use crm_testkit::{TestDb, TestSuite};
use tonic::Code;
use tonic_types::StatusExt;

fn at(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: 1_767_225_600 + seconds, nanos: 0 } // 2026-01-01 onwards
}

fn purchase(contact: &str, external_id: &str, seconds: i64, cents: i64) -> Interaction {
    Interaction {
        contact_id: contact.into(),
        channel: Channel::Store as i32,
        kind: Kind::Purchase as i32,
        direction: Direction::Inbound as i32,
        occurred_at: Some(at(seconds)),
        amount: Some(Money { currency_code: "eur".into(), minor_units: cents }),
        source: "billing".into(),
        external_id: external_id.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_recorded_interaction_is_stored_once_and_read_back() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let contact = uuid::Uuid::now_v7().to_string();

    let mut events = interactions.subscribe(SubscribeRequest::default()).await.unwrap().into_inner();
    let request =
        RecordInteractionRequest { interaction: Some(purchase(&contact, "INV-1", 0, 1999)), contact_lookup: None };
    let first = interactions.record_interaction(request.clone()).await.unwrap().into_inner();
    assert_eq!(first.amount.as_ref().unwrap().currency_code, "EUR");
    let again = interactions.record_interaction(request).await.unwrap().into_inner();
    assert_eq!(again.id, first.id, "a retry returns the first result");
    let read = interactions.get_interaction(GetInteractionRequest { id: first.id.clone() }).await.unwrap().into_inner();
    assert_eq!(read, first);

    let event =
        tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap().unwrap().event.unwrap();
    assert_eq!(event.r#type, "crm.interactions.v1.InteractionRecorded");
    assert_eq!(event.aggregate_id, contact);
    let timeline = interactions
        .list_interactions(ListInteractionsRequest { contact_id: contact.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(timeline.interactions.len(), 1, "stored once");

    // Bad input names every field.
    let bad = Interaction {
        contact_id: "nobody".into(),
        kind: Kind::Invoice as i32,
        sentiment: Some(2.0),
        amount: Some(Money { currency_code: "euro".into(), minor_units: -5 }),
        invoice: Some(Invoice {
            number: String::new(),
            due_date: Some(Date { year: 2026, month: 2, day: 30 }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let status = interactions
        .record_interaction(RecordInteractionRequest { interaction: Some(bad), contact_lookup: None })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = status
        .check_error_details()
        .unwrap()
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    for expected in [
        "interaction.contact_id",
        "interaction.channel",
        "interaction.occurred_at",
        "interaction.amount.currency_code",
        "interaction.amount.minor_units",
        "interaction.invoice.number",
        "interaction.invoice.due_date",
        "interaction.sentiment",
    ] {
        assert!(fields.iter().any(|field| field == expected), "{expected} missing from {fields:?}");
    }
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn bulk_ingest_acknowledges_each_batch_and_a_resend_after_a_crash_duplicates_nothing() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let contact = uuid::Uuid::now_v7().to_string();
    let batch = |id: &str, range: std::ops::Range<i64>| IngestInteractionsRequest {
        batch_id: id.into(),
        interactions: range.map(|n| purchase(&contact, &format!("B-{n}"), n * 60, 100 + n)).collect(),
    };

    // The sender gets two batches acknowledged, then its connection dies mid-stream.
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut acks = interactions
        .ingest_interactions(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    sender.send(batch("b1", 0..100)).await.unwrap();
    let ack = acks.message().await.unwrap().unwrap();
    assert_eq!(ack.batch_id, "b1");
    assert!(ack.results.iter().all(|r| r.outcome() == IngestOutcome::Stored));
    sender.send(batch("b2", 100..200)).await.unwrap();
    assert_eq!(acks.message().await.unwrap().unwrap().batch_id, "b2");
    drop(acks);
    drop(sender);

    // It reconnects and resends from an earlier point (b2 again), then the rest,
    // with a bad item and an in-batch repeat in the last batch.
    let mut last = batch("b3", 200..250);
    let mut broken = purchase(&contact, "B-bad", 0, 1);
    broken.occurred_at = None;
    last.interactions.push(broken);
    last.interactions.push(purchase(&contact, "B-200", 200 * 60, 300));
    let acks: Vec<_> = {
        let mut stream = interactions
            .ingest_interactions(tokio_stream::iter(vec![batch("b2", 100..200), last]))
            .await
            .unwrap()
            .into_inner();
        let mut acks = Vec::new();
        while let Some(ack) = stream.message().await.unwrap() {
            acks.push(ack);
        }
        acks
    };
    assert_eq!(acks.len(), 2);
    assert!(acks[0].results.iter().all(|r| r.outcome() == IngestOutcome::Duplicate), "b2 was stored before the crash");
    let outcomes: Vec<IngestOutcome> = acks[1].results.iter().map(|r| r.outcome()).collect();
    assert!(outcomes[..50].iter().all(|o| *o == IngestOutcome::Stored));
    assert_eq!(outcomes[50], IngestOutcome::Rejected);
    assert_eq!(acks[1].results[50].invalid_fields, ["interaction.occurred_at"]);
    assert_eq!(outcomes[51], IngestOutcome::Duplicate);
    assert_eq!(acks[1].results[51].interaction_id, acks[1].results[0].interaction_id);

    // Every item is on the timeline exactly once, newest first, in stable pages.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = interactions
            .list_interactions(ListInteractionsRequest {
                contact_id: contact.clone(),
                page_size: 64,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.interactions);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 250);
    let mut external: Vec<&str> = seen.iter().map(|i| i.external_id.as_str()).collect();
    assert_eq!(external[0], "B-249");
    external.sort();
    external.dedup();
    assert_eq!(external.len(), 250);
    assert!(
        seen.windows(2)
            .all(|w| w[0].occurred_at.as_ref().unwrap().seconds >= w[1].occurred_at.as_ref().unwrap().seconds)
    );

    // Filters: a time range and a channel.
    let window = interactions
        .list_interactions(ListInteractionsRequest {
            contact_id: contact.clone(),
            start_time: Some(at(10 * 60)),
            end_time: Some(at(20 * 60)),
            channels: vec![Channel::Store as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(window.interactions.len(), 10);
    let none = interactions
        .list_interactions(ListInteractionsRequest {
            contact_id: contact.clone(),
            channels: vec![Channel::Web as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.interactions.is_empty());
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_contact_can_be_named_by_email_or_phone_and_created_as_a_prospect() {
    use crm_proto::{
        contacts::v1::{
            Contact, CreateContactRequest, Email, LifecycleStage, LookupContactRequest, lookup_contact_request::Key,
        },
        interactions::v1::{ContactLookup, contact_lookup},
    };
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let known = contacts
        .create_contact(CreateContactRequest {
            contact: Some(Contact {
                given_name: "Known".into(),
                emails: vec![Email { address: "known@example.com".into(), ..Default::default() }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut interactions = suite.interactions().await.unwrap();
    let by = |email: &str, create_prospect: bool| ContactLookup {
        key: Some(contact_lookup::Key::Email(email.into())),
        create_prospect,
    };
    let recorded = interactions
        .record_interaction(RecordInteractionRequest {
            interaction: Some(purchase("", "L-1", 0, 500)),
            contact_lookup: Some(by("KNOWN@example.com", false)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recorded.contact_id, known.id);

    let unknown = interactions
        .record_interaction(RecordInteractionRequest {
            interaction: Some(purchase("", "L-2", 0, 500)),
            contact_lookup: Some(by("stranger@example.com", false)),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let bad = interactions
        .record_interaction(RecordInteractionRequest {
            interaction: Some(purchase("", "L-2", 0, 500)),
            contact_lookup: Some(by("not an email", true)),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    let created = interactions
        .record_interaction(RecordInteractionRequest {
            interaction: Some(purchase("", "L-3", 0, 500)),
            contact_lookup: Some(by("stranger@example.com", true)),
        })
        .await
        .unwrap()
        .into_inner();
    let prospect = contacts
        .lookup_contact(LookupContactRequest { key: Some(Key::Email("stranger@example.com".into())) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.contact_id, prospect.id);
    assert_eq!(prospect.lifecycle_stage(), LifecycleStage::Prospect);
    suite.shutdown().await.unwrap();
}

/// The client-streaming upload, through the gateway: many batches in, one
/// answer out; a resend of everything stores nothing twice.
#[tokio::test]
async fn an_upload_streams_batches_in_and_gets_one_answer_and_a_resend_duplicates_nothing() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let contact = uuid::Uuid::now_v7().to_string();
    let batches = || {
        let mut batches: Vec<IngestInteractionsRequest> = (0..4)
            .map(|b| IngestInteractionsRequest {
                batch_id: format!("file-1:{b}"),
                interactions: (b * 25..(b + 1) * 25)
                    .map(|n| purchase(&contact, &format!("U-{n}"), n * 60, 500))
                    .collect(),
            })
            .collect();
        let mut broken = purchase(&contact, "U-bad", 0, 1);
        broken.amount = None;
        batches[2].interactions.insert(3, broken);
        batches
    };

    let first = interactions.upload_interactions(tokio_stream::iter(batches())).await.unwrap().into_inner();
    assert_eq!((first.batches, first.stored, first.duplicates, first.rejected), (4, 100, 0, 1));
    assert_eq!(first.rejections.len(), 1);
    assert_eq!((first.rejections[0].batch_id.as_str(), first.rejections[0].index), ("file-1:2", 3));
    assert_eq!(first.rejections[0].invalid_fields, ["interaction.amount"]);

    let again = interactions.upload_interactions(tokio_stream::iter(batches())).await.unwrap().into_inner();
    assert_eq!(
        (again.stored, again.duplicates, again.rejected),
        (0, 100, 1),
        "everything stored came back as a duplicate"
    );
    let timeline = interactions
        .list_interactions(ListInteractionsRequest {
            contact_id: contact.clone(),
            page_size: 200,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(timeline.interactions.len(), 100);

    // A batch over the limit fails the upload with the field named.
    let oversized = IngestInteractionsRequest {
        batch_id: "too-big".into(),
        interactions: (0..5001).map(|n| purchase(&contact, &format!("X-{n}"), n, 1)).collect(),
    };
    let status = interactions.upload_interactions(tokio_stream::iter(vec![oversized])).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    suite.shutdown().await.unwrap();
}
