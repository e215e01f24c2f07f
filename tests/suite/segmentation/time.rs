//! Windows move with time, not only with events: with the clock moved past
//! the moment a purchase leaves the 30-day window, the member exits its
//! segment with a `SegmentExited` event, and no event of any feed caused it.

use std::time::Duration;

use chrono::Utc;
use crm_platform::{Role, clock::Clock};
use crm_proto::{
    common::v1::Money,
    contacts::v1::CreateContactRequest,
    events::v1::SubscribeRequest,
    interactions::v1::{Channel, Interaction, Kind, RecordInteractionRequest},
    segmentation::v1::{CreateSegmentRequest, GetContactSegmentsRequest, Segment, SegmentExited},
};
use crm_testkit::{TestDb, TestSuite};
use prost::{Message, Name};

use crate::{contacts::person, support::eventually};

#[tokio::test]
async fn a_membership_that_time_ends_is_exited_when_the_window_closes() {
    let test_db = TestDb::create().await.unwrap();
    let clock = Clock::manual(Utc::now());
    let suite = TestSuite::start_with_clock(&test_db, &Role::ALL, &[], clock.clone()).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let mut segmentation = suite.segmentation().await.unwrap();

    let buyer = contacts
        .create_contact(CreateContactRequest {
            contact: Some(person("Tempus", "Fugit", "tempus@example.com", "")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let bought = clock.now() - chrono::Duration::days(29);
    let purchase = Interaction {
        contact_id: buyer.id.clone(),
        channel: Channel::Store as i32,
        kind: Kind::Purchase as i32,
        occurred_at: Some(prost_types::Timestamp { seconds: bought.timestamp(), nanos: 0 }),
        amount: Some(Money { currency_code: "EUR".into(), minor_units: 4200 }),
        source: "till".into(),
        external_id: "T-1".into(),
        ..Default::default()
    };
    interactions
        .record_interaction(RecordInteractionRequest { interaction: Some(purchase), contact_lookup: None })
        .await
        .unwrap();
    let recent =
        Segment { name: "Bought in the last 30 days".into(), rule: "purchases_30d >= 1".into(), ..Default::default() };
    let recent =
        segmentation.create_segment(CreateSegmentRequest { segment: Some(recent) }).await.unwrap().into_inner();
    let segment_id = recent.id.clone();
    eventually(Duration::from_secs(20), "the buyer in the segment", || {
        let mut client = segmentation.clone();
        let (contact_id, segment_id) = (buyer.id.clone(), segment_id.clone());
        async move {
            let request = GetContactSegmentsRequest { contact_id };
            client
                .get_contact_segments(request)
                .await
                .is_ok_and(|found| found.get_ref().segments.iter().any(|segment| segment.segment_id == segment_id))
        }
    })
    .await;
    let mut feed = segmentation.subscribe(SubscribeRequest::default()).await.unwrap().into_inner();

    // Two days on, by the clock alone: the purchase left the window a day ago.
    clock.advance(chrono::Duration::days(2));
    let exited = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let event = feed.message().await.unwrap().unwrap().event.unwrap();
            if event.r#type == SegmentExited::full_name() {
                return SegmentExited::decode(event.payload.unwrap().value.as_slice()).unwrap();
            }
        }
    })
    .await
    .expect("the member exits within seconds of the clock passing the moment");
    assert_eq!(
        (exited.contact_id.as_str(), exited.segment_id.as_str(), exited.reason.as_str()),
        (buyer.id.as_str(), recent.id.as_str(), "rule")
    );
    let features = segmentation
        .get_contact_features(crm_proto::segmentation::v1::GetContactFeaturesRequest { contact_id: buyer.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let int = |name: &str| match features.features[name].value {
        Some(crm_proto::segmentation::v1::feature_value::Value::IntValue(value)) => value,
        ref other => panic!("{name}: {other:?}"),
    };
    assert_eq!((int("purchases_30d"), int("purchases_90d"), int("days_since_last_purchase")), (0, 1, 31));
    suite.shutdown().await.unwrap();
}
