//! The interactions role's rules: merges re-key, erasure wipes free text,
//! invoices age and get paid, recurring problems are raised once, the
//! frequency cap holds, and the single customer view adds up.

use std::time::Duration;

use crm_platform::Role;
use crm_proto::{
    common::v1::{Date, Money},
    contacts::v1::{
        Consent, ConsentChannel, ConsentStatus, Contact, CreateContactRequest, EraseContactRequest,
        MergeContactsRequest,
    },
    events::v1::SubscribeRequest,
    interactions::v1::{
        Channel, CheckContactFrequencyRequest, Direction, GetContactSummaryRequest, GetInteractionRequest,
        IngestInteractionsRequest, IngestOutcome, Interaction, Invoice, InvoiceStatus, Kind, ListInteractionsRequest,
        ListOverdueInvoicesRequest, Payment, RecordInteractionRequest, RecurringProblemDetected,
    },
};
use crm_testkit::{TestDb, TestSuite};
use prost::Message;

use crate::support::eventually;

fn ago(days: i64) -> prost_types::Timestamp {
    crm_platform::timestamp::to_proto(chrono::Utc::now() - chrono::Duration::days(days))
}

fn touch(contact: &str, kind: Kind, external_id: &str, days_ago: i64) -> Interaction {
    Interaction {
        contact_id: contact.into(),
        channel: Channel::Web as i32,
        kind: kind as i32,
        occurred_at: Some(ago(days_ago)),
        source: "web".into(),
        external_id: external_id.into(),
        ..Default::default()
    }
}

async fn record(suite: &TestSuite, interaction: Interaction) -> Interaction {
    let mut interactions = suite.interactions().await.unwrap();
    interactions
        .record_interaction(RecordInteractionRequest { interaction: Some(interaction), contact_lookup: None })
        .await
        .unwrap()
        .into_inner()
}

async fn new_contact(suite: &TestSuite, given: &str, family: &str, consents: Vec<Consent>, cap: i32) -> String {
    let mut contacts = suite.contacts().await.unwrap();
    let contact = Contact {
        given_name: given.into(),
        family_name: family.into(),
        consents,
        max_contacts_per_week: cap,
        ..Default::default()
    };
    contacts
        .create_contact(CreateContactRequest {
            contact: Some(contact),
            allow_duplicate: true,
            override_reason: "test".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id
}

/// The feed of `RecurringProblemDetected` events from now on.
async fn recurring_problems(suite: &TestSuite) -> tonic::Streaming<crm_proto::events::v1::SubscribeResponse> {
    let subscribe = SubscribeRequest {
        after: None,
        event_types: vec!["crm.interactions.v1.RecurringProblemDetected".into()],
        ..Default::default()
    };
    suite.interactions().await.unwrap().subscribe(subscribe).await.unwrap().into_inner()
}

async fn timeline(suite: &TestSuite, contact: &str) -> Vec<Interaction> {
    let mut interactions = suite.interactions().await.unwrap();
    interactions
        .list_interactions(ListInteractionsRequest { contact_id: contact.into(), page_size: 500, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .interactions
}

#[tokio::test]
async fn merged_contacts_bring_their_interactions_and_erased_ones_lose_their_free_text() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let survivor = new_contact(&suite, "Ann", "Survivor", vec![], 0).await;
    let loser = new_contact(&suite, "Anne", "Survivor", vec![], 0).await;
    record(&suite, touch(&survivor, Kind::Inquiry, "s-1", 3)).await;
    let mut noted = touch(&loser, Kind::Complaint, "l-1", 2);
    noted.subject = "Zanzibarian parcel".into();
    noted.notes = "Customer said Quetzalcoatl twice".into();
    let noted = record(&suite, noted).await;

    let mut contacts = suite.contacts().await.unwrap();
    contacts
        .merge_contacts(MergeContactsRequest {
            survivor_id: survivor.clone(),
            loser_ids: vec![loser.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(15), "the loser's interactions to move", || async {
        timeline(&suite, &survivor).await.len() == 2 && timeline(&suite, &loser).await.is_empty()
    })
    .await;
    let mut interactions = suite.interactions().await.unwrap();
    let moved =
        interactions.get_interaction(GetInteractionRequest { id: noted.id.clone() }).await.unwrap().into_inner();
    assert_eq!(moved.contact_id, survivor);

    contacts.erase_contact(EraseContactRequest { id: survivor.clone(), reason: "test".into() }).await.unwrap();
    eventually(Duration::from_secs(15), "the free text to be wiped", || async {
        let read = suite
            .interactions()
            .await
            .unwrap()
            .get_interaction(GetInteractionRequest { id: noted.id.clone() })
            .await
            .unwrap()
            .into_inner();
        read.subject.is_empty() && read.notes.is_empty()
    })
    .await;
    let pool = test_db.role_pool(Role::Interactions).await.unwrap();
    let everything: Vec<String> = sqlx::query_scalar(
        "SELECT t::text FROM interactions.interactions t UNION ALL SELECT encode(payload, 'escape') FROM interactions.outbox",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for value in ["Zanzibarian", "Quetzalcoatl"] {
        assert!(!everything.iter().any(|row| row.contains(value)), "{value} survived the erasure");
    }
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn invoices_become_overdue_by_themselves_and_payments_settle_them() {
    let test_db = TestDb::create().await.unwrap();
    let vars = [("CRM_OVERDUE_CHECK_INTERVAL".to_string(), "200ms".to_string())];
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &vars).await.unwrap();
    let contact = uuid::Uuid::now_v7().to_string();
    let mut events = suite
        .interactions()
        .await
        .unwrap()
        .subscribe(SubscribeRequest { after: None, event_types: vec![], live: false, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let invoice = |number: &str, due: Date| Interaction {
        channel: Channel::Billing as i32,
        kind: Kind::Invoice as i32,
        amount: Some(Money { currency_code: "EUR".into(), minor_units: 5000 }),
        invoice: Some(Invoice { number: number.into(), due_date: Some(due), ..Default::default() }),
        ..touch(&contact, Kind::Invoice, number, 40)
    };
    let today = chrono::Utc::now().date_naive();
    let past = today - chrono::Duration::days(10);
    let future = today + chrono::Duration::days(10);
    use chrono::Datelike;
    let as_date = |d: chrono::NaiveDate| Date { year: d.year(), month: d.month() as i32, day: d.day() as i32 };
    let late = record(&suite, invoice("INV-LATE", as_date(past))).await;
    let paid = record(&suite, invoice("INV-PAID", as_date(future))).await;
    let payment = Interaction {
        channel: Channel::Billing as i32,
        amount: Some(Money { currency_code: "EUR".into(), minor_units: 5000 }),
        payment: Some(Payment { invoice_number: "INV-PAID".into() }),
        ..touch(&contact, Kind::Payment, "PAY-1", 1)
    };
    record(&suite, payment).await;

    let mut interactions = suite.interactions().await.unwrap();
    eventually(Duration::from_secs(15), "the late invoice to become overdue", || async {
        let read = suite
            .interactions()
            .await
            .unwrap()
            .get_interaction(GetInteractionRequest { id: late.id.clone() })
            .await
            .unwrap()
            .into_inner();
        read.invoice.unwrap().status() == InvoiceStatus::Overdue
    })
    .await;
    let settled =
        interactions.get_interaction(GetInteractionRequest { id: paid.id.clone() }).await.unwrap().into_inner();
    assert_eq!(settled.invoice.unwrap().status(), InvoiceStatus::Paid);
    let overdue = interactions.list_overdue_invoices(ListOverdueInvoicesRequest::default()).await.unwrap().into_inner();
    assert_eq!(overdue.invoices.len(), 1);
    assert_eq!(overdue.invoices[0].invoice.as_ref().unwrap().id, late.id);
    assert_eq!(overdue.invoices[0].days_overdue, 10);

    let mut types: Vec<String> = Vec::new();
    let expected: Vec<String> = ["InteractionRecorded", "InvoiceIssued", "PaymentReceived", "InvoiceOverdue"]
        .iter()
        .map(|name| format!("crm.interactions.v1.{name}"))
        .collect();
    while !expected.iter().all(|name| types.contains(name)) {
        let next = tokio::time::timeout(Duration::from_secs(10), events.message()).await;
        let event = next.unwrap_or_else(|_| panic!("only {types:?} arrived")).unwrap().unwrap().event.unwrap();
        types.push(event.r#type);
    }
    assert_eq!(types.iter().filter(|name| name.ends_with("InvoiceOverdue")).count(), 1, "{types:?}");
    let summary = interactions
        .get_contact_summary(GetContactSummaryRequest { contact_id: contact.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((summary.open_invoices, summary.overdue_invoices), (0, 1));
    assert_eq!(summary.overdue_amount[0].minor_units, 5000);
    suite.shutdown().await.unwrap();
}

/// An ingest keeps several batches in flight at once; what one batch does
/// must still be seen by the batches after it.
#[tokio::test]
async fn batches_in_flight_together_still_see_the_batches_before_them() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let contact = uuid::Uuid::now_v7().to_string();
    let mut interactions = suite.interactions().await.unwrap();
    let mut detections = recurring_problems(&suite).await;
    let due = chrono::Utc::now().date_naive() + chrono::Duration::days(30);
    use chrono::Datelike;
    let invoice = Interaction {
        channel: Channel::Billing as i32,
        amount: Some(Money { currency_code: "EUR".into(), minor_units: 900 }),
        invoice: Some(Invoice {
            number: "INV-9".into(),
            due_date: Some(Date { year: due.year(), month: due.month() as i32, day: due.day() as i32 }),
            ..Default::default()
        }),
        ..touch(&contact, Kind::Invoice, "INV-9", 3)
    };
    let payment = Interaction {
        channel: Channel::Billing as i32,
        amount: Some(Money { currency_code: "EUR".into(), minor_units: 900 }),
        payment: Some(Payment { invoice_number: "INV-9".into() }),
        ..touch(&contact, Kind::Payment, "PAY-9", 2)
    };
    let complaint = |n: i64| Interaction {
        pain_points: vec!["broken zip".into()],
        ..touch(&contact, Kind::Complaint, &format!("broken-{n}"), 1)
    };
    // Two batches over the same 200 keys in opposite orders: claimed in one
    // order, they wait for each other instead of deadlocking.
    let others: Vec<Interaction> =
        (0..200).map(|n| touch(&uuid::Uuid::now_v7().to_string(), Kind::Visit, &format!("visit-{n}"), 5)).collect();
    let mut reversed = others.clone();
    reversed.reverse();
    let batches: Vec<Vec<Interaction>> = vec![
        vec![invoice],
        vec![payment],
        vec![complaint(1)],
        vec![complaint(2)],
        vec![complaint(3)],
        others,
        reversed,
    ];
    let requests: Vec<IngestInteractionsRequest> = batches
        .into_iter()
        .enumerate()
        .map(|(n, interactions)| IngestInteractionsRequest { batch_id: format!("b{n}"), interactions })
        .collect();
    let mut stream = interactions.ingest_interactions(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let mut acks = Vec::new();
    while let Some(ack) = stream.message().await.unwrap() {
        acks.push(ack);
    }
    let order: Vec<&str> = acks.iter().map(|ack| ack.batch_id.as_str()).collect();
    assert_eq!(order, ["b0", "b1", "b2", "b3", "b4", "b5", "b6"], "acknowledged in the order sent");
    assert!(acks[..6].iter().flat_map(|ack| &ack.results).all(|r| r.outcome() == IngestOutcome::Stored), "{acks:?}");
    assert!(acks[6].results.iter().all(|r| r.outcome() == IngestOutcome::Duplicate));
    let first_ids: Vec<&str> = acks[5].results.iter().rev().map(|r| r.interaction_id.as_str()).collect();
    let repeat_ids: Vec<&str> = acks[6].results.iter().map(|r| r.interaction_id.as_str()).collect();
    assert_eq!(first_ids, repeat_ids, "a repeat names the interaction stored first");

    let invoice_id = acks[0].results[0].interaction_id.clone();
    let read = interactions.get_interaction(GetInteractionRequest { id: invoice_id }).await.unwrap().into_inner();
    assert_eq!(read.invoice.unwrap().status(), InvoiceStatus::Paid, "the payment saw the invoice of the batch before");
    let event = tokio::time::timeout(Duration::from_secs(10), detections.message())
        .await
        .expect("the third complaint, in the third batch, is a recurring problem")
        .unwrap()
        .unwrap()
        .event
        .unwrap();
    let detected = RecurringProblemDetected::decode(event.payload.unwrap().value.as_slice()).unwrap();
    assert_eq!((detected.problem.as_str(), detected.occurrences), ("broken zip", 3));
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_problem_raised_three_times_in_a_month_is_detected_once() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let contact = uuid::Uuid::now_v7().to_string();
    let mut events = recurring_problems(&suite).await;
    for n in 0..4 {
        let mut complaint = touch(&contact, Kind::Complaint, &format!("c-{n}"), 10 - n);
        complaint.pain_points = vec!["Late Delivery".into()];
        complaint.sentiment = Some(-0.5);
        record(&suite, complaint).await;
    }
    let mut once = touch(&contact, Kind::Complaint, "other", 1);
    once.pain_points = vec!["rude staff".into()];
    record(&suite, once).await;

    let event =
        tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap().unwrap().event.unwrap();
    let detected = RecurringProblemDetected::decode(event.payload.unwrap().value.as_slice()).unwrap();
    assert_eq!((detected.problem.as_str(), detected.occurrences, detected.window_days), ("late delivery", 3, 30));
    assert_eq!(detected.interaction_ids.len(), 3);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), events.message()).await.is_err(),
        "raised once per window"
    );

    let mut interactions = suite.interactions().await.unwrap();
    let summary = interactions
        .get_contact_summary(GetContactSummaryRequest { contact_id: contact.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.open_pain_points, ["late delivery", "rude staff"]);
    assert_eq!(summary.average_sentiment, Some(-0.5));
    assert_eq!(summary.windows[0].by_kind["KIND_COMPLAINT"], 5);
    assert_eq!(summary.last_complaint.unwrap().external_id, "other");
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_frequency_check_follows_consent_and_the_weekly_cap() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let consent = |channel: ConsentChannel, status: ConsentStatus| Consent {
        channel: channel as i32,
        status: status as i32,
        ..Default::default()
    };
    let contact = new_contact(
        &suite,
        "Cap",
        "Tain",
        vec![
            consent(ConsentChannel::Email, ConsentStatus::OptedIn),
            consent(ConsentChannel::Sms, ConsentStatus::OptedOut),
        ],
        2,
    )
    .await;
    let check = |channel: Channel| {
        let contact = contact.clone();
        let suite = &suite;
        async move {
            suite
                .interactions()
                .await
                .unwrap()
                .check_contact_frequency(CheckContactFrequencyRequest { contact_id: contact, channel: channel as i32 })
                .await
                .unwrap()
                .into_inner()
        }
    };
    eventually(Duration::from_secs(15), "the contact's consent to arrive", || async {
        check(Channel::Email).await.allowed
    })
    .await;
    assert_eq!(check(Channel::Sms).await.reason, "opted_out");
    assert_eq!(check(Channel::Phone).await.reason, "no_consent");

    for n in 0..2 {
        let mut mail = touch(&contact, Kind::CampaignResponse, &format!("m-{n}"), 0);
        mail.channel = Channel::Email as i32;
        mail.direction = Direction::Outbound as i32;
        record(&suite, mail).await;
    }
    let capped = check(Channel::Email).await;
    assert!(!capped.allowed);
    assert_eq!(
        (capped.reason.as_str(), capped.outbound_last_7_days, capped.max_per_week),
        ("weekly_cap_reached", 2, 2)
    );
    assert!(capped.next_allowed_time.unwrap().seconds > chrono::Utc::now().timestamp() + 6 * 24 * 3600);
    let bad = suite
        .interactions()
        .await
        .unwrap()
        .check_contact_frequency(CheckContactFrequencyRequest {
            contact_id: contact.clone(),
            channel: Channel::Web as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    suite.shutdown().await.unwrap();
}
