//! A rebuild replays both feeds into an emptied read model and comes back to
//! the same features and members, with no event for a membership that did
//! not really change.

use std::time::Duration;

use crm_proto::{
    common::v1::Money,
    contacts::v1::{CreateContactRequest, MergeContactsRequest},
    events::v1::ListEventsRequest,
    interactions::v1::{Channel, Interaction, Kind, RecordInteractionRequest},
    segmentation::v1::{
        CreateSegmentRequest, GetContactFeaturesRequest, GetReadModelStatusRequest, ListSegmentMembersRequest,
        RebuildReadModelRequest, Segment,
    },
};
use crm_testkit::{TestDb, TestSuite};

use crate::{contacts::person, support::eventually};

async fn event_count(suite: &TestSuite) -> usize {
    let mut segmentation = suite.segmentation().await.unwrap();
    let (mut count, mut token) = (0, String::new());
    loop {
        let page = segmentation
            .list_events(ListEventsRequest { page_size: 1000, page_token: token, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        count += page.events.len();
        if page.next_page_token.is_empty() {
            return count;
        }
        token = page.next_page_token;
    }
}

#[tokio::test]
async fn a_rebuild_comes_back_to_the_same_features_and_members_without_spurious_events() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let mut segmentation = suite.segmentation().await.unwrap();
    let mut ids = Vec::new();
    for (index, (given, email)) in
        [("Rae", "rae@example.com"), ("Sol", "sol@example.com"), ("Tam", "tam@example.com")].iter().enumerate()
    {
        let mut input = person(given, "Rebuilt", email, "");
        input.addresses[0].postal_code = format!("9410{index}");
        let created =
            contacts.create_contact(CreateContactRequest { contact: Some(input), ..Default::default() }).await.unwrap();
        ids.push(created.into_inner().id);
    }
    for (index, contact) in ids.iter().enumerate().take(2) {
        let at = chrono::Utc::now() - chrono::Duration::days(3);
        let purchase = Interaction {
            contact_id: contact.clone(),
            channel: Channel::Web as i32,
            kind: Kind::Purchase as i32,
            occurred_at: Some(prost_types::Timestamp { seconds: at.timestamp(), nanos: 0 }),
            amount: Some(Money { currency_code: "EUR".into(), minor_units: 1000 * (index as i64 + 1) }),
            source: "shop".into(),
            external_id: format!("RB-{index}"),
            ..Default::default()
        };
        interactions
            .record_interaction(RecordInteractionRequest { interaction: Some(purchase), contact_lookup: None })
            .await
            .unwrap();
    }
    contacts
        .merge_contacts(MergeContactsRequest {
            survivor_id: ids[2].clone(),
            loser_ids: vec![ids[1].clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let buyers = Segment { name: "Buyers".into(), rule: "purchases_total >= 1".into(), ..Default::default() };
    let buyers =
        segmentation.create_segment(CreateSegmentRequest { segment: Some(buyers) }).await.unwrap().into_inner();
    let features = || {
        let ids = [ids[0].clone(), ids[2].clone()];
        let mut client = segmentation.clone();
        async move {
            let mut all = Vec::new();
            for id in ids {
                let mut found = client
                    .get_contact_features(GetContactFeaturesRequest { contact_id: id })
                    .await
                    .unwrap()
                    .into_inner();
                found.compute_time = None;
                all.push(found);
            }
            all
        }
    };
    eventually(Duration::from_secs(20), "the merged purchases on the survivor", || {
        let mut client = segmentation.clone();
        let id = ids[2].clone();
        async move {
            client.get_contact_features(GetContactFeaturesRequest { contact_id: id }).await.is_ok_and(|found| {
                found.get_ref().features["purchases_total"].value
                    == Some(crm_proto::segmentation::v1::feature_value::Value::IntValue(1))
            })
        }
    })
    .await;
    let (before, events_before) = (features().await, event_count(&suite).await);
    let members = || {
        let segment_id = buyers.id.clone();
        let mut client = segmentation.clone();
        async move {
            let request = ListSegmentMembersRequest { segment_id, ..Default::default() };
            client.list_segment_members(request).await.unwrap().into_inner().members
        }
    };
    let members_before = members().await;
    assert_eq!(members_before.len(), 2);

    let started = segmentation.clone().rebuild_read_model(RebuildReadModelRequest {}).await.unwrap().into_inner();
    assert!(started.rebuilding);
    assert_eq!(started.generation, 1);
    eventually(Duration::from_secs(30), "the rebuild finished", || {
        let mut client = segmentation.clone();
        async move {
            client
                .get_read_model_status(GetReadModelStatusRequest::default())
                .await
                .is_ok_and(|status| !status.get_ref().rebuilding)
        }
    })
    .await;
    assert_eq!(features().await, before, "the same features from the same events");
    assert_eq!(members().await, members_before);
    assert_eq!(event_count(&suite).await, events_before, "no membership changed, so no event");
    suite.shutdown().await.unwrap();
}
