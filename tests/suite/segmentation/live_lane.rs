//! An interaction recorded by a single call moves segments and fires the
//! rules that read its features while a bulk ingest's transaction, still
//! open, holds the interactions feed: both roles take it from the feed's
//! live lane, ahead of its turn, and apply it once.

use std::time::Duration;

use crm_platform::{
    Role,
    outbox::{self, Position},
};
use crm_proto::{
    alerting::v1::{AlertRule, CreateAlertRuleRequest, ListAlertsRequest},
    contacts::v1::CreateContactRequest,
    events::v1::{EventPosition, ListEventsRequest, SubscribeRequest},
    interactions::v1::{
        Channel, IngestInteractionsRequest, Interaction, InteractionRecorded, Kind, RecordInteractionRequest,
    },
    segmentation::v1::{
        CreateSegmentRequest, GetContactFeaturesRequest, GetContactSegmentsRequest, GetReadModelStatusRequest, Segment,
        feature_value::Value,
    },
};
use crm_testkit::{TestDb, TestSuite};
use prost::Name;
use tonic::Code;

use crate::{
    contacts::{person, violated_fields},
    support::{eventually, test_event},
};

#[tokio::test]
async fn a_single_calls_interaction_moves_segments_and_fires_rules_while_a_bulk_transaction_holds_the_feed() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let mut segmentation = suite.segmentation().await.unwrap();
    let mut alerting = suite.alerting().await.unwrap();
    let segment =
        Segment { name: "Called us".into(), rule: r#"channels_total["phone"] >= 1"#.into(), ..Default::default() };
    let segment = segmentation.create_segment(CreateSegmentRequest { segment: Some(segment) }).await.unwrap();
    let segment = segment.into_inner().id;
    let rule = AlertRule {
        name: "First call".into(),
        owner: "customer-care".into(),
        event_types: vec![InteractionRecorded::full_name()],
        condition: r#"features.channels_total["phone"] == 1"#.into(),
        ..Default::default()
    };
    let rule = alerting.create_alert_rule(CreateAlertRuleRequest { rule: Some(rule) }).await.unwrap().into_inner().id;
    let caller = contacts
        .create_contact(CreateContactRequest {
            contact: Some(person("Ines", "Laneway", "ines@example.com", "")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id;

    // A bulk batch of the interactions role, still being written.
    let pool = test_db.role_pool(Role::Interactions).await.unwrap();
    let mut bulk = pool.begin().await.unwrap();
    outbox::mark_bulk(&mut bulk).await.unwrap();
    outbox::append(&mut bulk, &[test_event("held", 1)]).await.unwrap();

    let lane = SubscribeRequest {
        live: true,
        event_types: vec![InteractionRecorded::full_name()],
        after: None,
        ..Default::default()
    };
    let mut lane = interactions.subscribe(lane).await.unwrap().into_inner();
    let call = Interaction {
        contact_id: caller.clone(),
        channel: Channel::Phone as i32,
        kind: Kind::Inquiry as i32,
        source: "care".into(),
        external_id: "CALL-1".into(),
        occurred_at: Some(crm_platform::timestamp::to_proto(chrono::Utc::now())),
        ..Default::default()
    };
    interactions
        .record_interaction(RecordInteractionRequest { interaction: Some(call.clone()), contact_lookup: None })
        .await
        .unwrap();
    let recorded = tokio::time::timeout(Duration::from_secs(20), lane.message()).await.unwrap().unwrap().unwrap();
    let position: EventPosition = recorded.event.unwrap().position.unwrap();

    eventually(Duration::from_secs(30), "the caller in the segment", || {
        let mut segmentation = segmentation.clone();
        let request = GetContactSegmentsRequest { contact_id: caller.clone() };
        let segment = segment.clone();
        async move {
            // NOT_FOUND until the contacts feed brings the caller.
            let found = segmentation.get_contact_segments(request).await.map(|found| found.into_inner().segments);
            found.is_ok_and(|found| found.iter().any(|membership| membership.segment_id == segment))
        }
    })
    .await;
    eventually(Duration::from_secs(30), "the rule's alert", || {
        let mut alerting = alerting.clone();
        let request = ListAlertsRequest { source_id: rule.clone(), ..Default::default() };
        async move { !alerting.list_alerts(request).await.unwrap().into_inner().alerts.is_empty() }
    })
    .await;
    let asked = GetReadModelStatusRequest { interactions_events: vec![position] };
    let status = segmentation.get_read_model_status(asked.clone()).await.unwrap().into_inner();
    assert!(
        Position::from(status.interactions_applied) < Position::from(Some(position)),
        "applied ahead of its turn: the feed is held behind the open batch"
    );
    assert_eq!(status.interactions_events_applied, [true]);
    let too_many = GetReadModelStatusRequest { interactions_events: vec![position; 1001] };
    let refused = segmentation.get_read_model_status(too_many).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["interactions_events"]);

    bulk.commit().await.unwrap();
    eventually(Duration::from_secs(30), "the feed past the batch and the call", || {
        let mut segmentation = segmentation.clone();
        let asked = asked.clone();
        async move {
            let status = segmentation.get_read_model_status(asked).await.unwrap().into_inner();
            Position::from(status.interactions_applied) >= Position::from(Some(position))
        }
    })
    .await;
    let features = segmentation
        .get_contact_features(GetContactFeaturesRequest { contact_id: caller.clone() })
        .await
        .unwrap()
        .into_inner()
        .features;
    let calls = features.get("channels_total").and_then(|value| value.value.clone());
    let Some(Value::IntMapValue(calls)) = calls else { panic!("channels_total: {calls:?}") };
    assert_eq!(calls.values.get("phone"), Some(&1), "counted once, not again in its turn");
    let request = ListAlertsRequest { source_id: rule, ..Default::default() };
    assert_eq!(alerting.list_alerts(request).await.unwrap().into_inner().alerts.len(), 1, "one alert");

    // An ingest's events are bulk, out of the lane; the call's are not.
    let ingested = Interaction { external_id: "BILL-1".into(), ..call };
    let batch = IngestInteractionsRequest { batch_id: "b1".into(), interactions: vec![ingested] };
    let mut acks = interactions.ingest_interactions(tokio_stream::iter(vec![batch])).await.unwrap().into_inner();
    while acks.message().await.unwrap().is_some() {}
    let listed = ListEventsRequest { event_types: vec![InteractionRecorded::full_name()], ..Default::default() };
    let listed = interactions.list_events(listed).await.unwrap().into_inner().events;
    let bulk: Vec<bool> = listed.iter().map(|event| event.bulk).collect();
    assert_eq!(bulk, [false, true], "the call's, then the ingest's");
    suite.shutdown().await.unwrap();
}
