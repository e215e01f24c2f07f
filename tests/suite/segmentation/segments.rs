//! Dynamic segments through the gateway: rules checked with positions,
//! members kept as features change with entries and exits on the feed,
//! explanations, previews, versions, and deletion.

use std::time::Duration;

use crm_proto::{
    common::v1::Money,
    contacts::v1::{CreateContactRequest, LifecycleStage},
    events::v1::SubscribeRequest,
    interactions::v1::{Channel, Interaction, Kind, RecordInteractionRequest},
    segmentation::v1::{
        CreateSegmentRequest, DeleteSegmentRequest, GetContactSegmentsRequest, ListSegmentMembersRequest,
        ListSegmentsRequest, PreviewSegmentRequest, Segment, SegmentEntered, SegmentExited, SegmentPopulated,
        UpdateSegmentRequest,
    },
};
use crm_testkit::{TestDb, TestSuite};
use prost::{Message, Name};
use tonic::Code;

use crate::contacts::{person, violated_fields};

fn purchase(contact: &str, external_id: &str, cents: i64) -> Interaction {
    let at = chrono::Utc::now() - chrono::Duration::hours(1);
    Interaction {
        contact_id: contact.into(),
        channel: Channel::Web as i32,
        kind: Kind::Purchase as i32,
        occurred_at: Some(prost_types::Timestamp { seconds: at.timestamp(), nanos: 0 }),
        amount: Some(Money { currency_code: "EUR".into(), minor_units: cents }),
        source: "shop".into(),
        external_id: external_id.into(),
        ..Default::default()
    }
}

fn segment(name: &str, rule: &str) -> CreateSegmentRequest {
    CreateSegmentRequest { segment: Some(Segment { name: name.into(), rule: rule.into(), ..Default::default() }) }
}

#[tokio::test]
async fn a_bad_rule_is_refused_with_its_position() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut segmentation = suite.segmentation().await.unwrap();
    for (rule, position, words) in [
        (r#"lifecycle == "customer" && revnue_365d["EUR"] > 5"#, "line 1, column 28", "unknown name `revnue_365d`"),
        ("complaints_90d == \"none\"", "line 1", "never equal"),
        ("lifecycle ==", "line 1", "syntax error"),
        ("purchases_30d", "line 1, column 1", "must be a condition"),
    ] {
        let refused = segmentation.create_segment(segment("bad", rule)).await.unwrap_err();
        assert_eq!(violated_fields(&refused), ["segment.rule"], "{rule}");
        assert!(refused.message().contains(position), "{rule}: {}", refused.message());
        assert!(refused.message().contains(words), "{rule}: {}", refused.message());
    }
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn members_enter_and_exit_as_features_change_and_every_answer_says_why() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let mut segmentation = suite.segmentation().await.unwrap();

    let mut vip = person("Vera", "Important", "vera@example.com", "");
    vip.tags = vec!["vip".into()];
    vip.lifecycle_stage = LifecycleStage::Customer as i32;
    let vip = contacts.create_contact(CreateContactRequest { contact: Some(vip), ..Default::default() }).await.unwrap();
    let vip = vip.into_inner();
    let other = person("Otto", "Ordinary", "otto@example.com", "");
    let other = contacts.create_contact(CreateContactRequest { contact: Some(other), ..Default::default() }).await;
    let other = other.unwrap().into_inner();
    // The read model has both before the segment is made.
    crate::support::eventually(Duration::from_secs(20), "features of both", || {
        let mut client = segmentation.clone();
        let ids = [vip.id.clone(), other.id.clone()];
        async move {
            for id in ids {
                let request = crm_proto::segmentation::v1::GetContactFeaturesRequest { contact_id: id };
                if client.get_contact_features(request).await.is_err() {
                    return false;
                }
            }
            true
        }
    })
    .await;

    let rule = r#"lifecycle == "customer" && "vip" in tags && revenue_365d["EUR"] >= 10000"#;
    let preview = segmentation
        .preview_segment(PreviewSegmentRequest { rule: rule.into(), sample_size: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((preview.count, preview.evaluated), (0, 2));

    let big_spenders = segmentation.create_segment(segment("Big VIP spenders", rule)).await.unwrap().into_inner();
    assert_eq!((big_spenders.version, big_spenders.member_count), (1, 0));
    let taken = segmentation.create_segment(segment("big vip SPENDERS", "true")).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);

    // Follow the role's feed from its start: the new segment was announced,
    // empty. Then make Vera a big spender.
    let mut feed = segmentation.subscribe(SubscribeRequest::default()).await.unwrap().into_inner();
    let event = tokio::time::timeout(Duration::from_secs(20), feed.message()).await.unwrap().unwrap().unwrap();
    let event = event.event.unwrap();
    assert_eq!(event.r#type, SegmentPopulated::full_name());
    let populated = SegmentPopulated::decode(event.payload.unwrap().value.as_slice()).unwrap();
    assert_eq!((populated.segment_id.as_str(), populated.member_count), (big_spenders.id.as_str(), 0));
    for (external_id, cents) in [("V-1", 6000), ("V-2", 5000)] {
        let request =
            RecordInteractionRequest { interaction: Some(purchase(&vip.id, external_id, cents)), contact_lookup: None };
        interactions.record_interaction(request).await.unwrap();
    }
    let event = tokio::time::timeout(Duration::from_secs(20), feed.message()).await.unwrap().unwrap().unwrap();
    let event = event.event.unwrap();
    assert_eq!(event.r#type, SegmentEntered::full_name());
    let entered = SegmentEntered::decode(event.payload.unwrap().value.as_slice()).unwrap();
    assert_eq!((entered.segment_id.as_str(), entered.contact_id.as_str()), (big_spenders.id.as_str(), vip.id.as_str()));
    assert!(
        entered.why.iter().any(|reading| reading.feature == "revenue_365d" && reading.value == "{EUR: 11000}"),
        "{:?}",
        entered.why
    );

    let members = segmentation
        .list_segment_members(ListSegmentMembersRequest { segment_id: big_spenders.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.iter().map(|member| member.contact_id.as_str()).collect::<Vec<_>>(), [vip.id.as_str()]);
    let hers = segmentation
        .get_contact_segments(GetContactSegmentsRequest { contact_id: vip.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .segments;
    assert_eq!(hers.len(), 1);
    assert!(
        hers[0].why.iter().any(|reading| reading.feature == "tags" && reading.value.contains("vip")),
        "{:?}",
        hers[0].why
    );

    // A new rule is a new version: Vera no longer meets it and exits.
    let mut change = big_spenders.clone();
    change.rule = r#"revenue_365d["EUR"] >= 50000"#.into();
    let updated = segmentation
        .update_segment(UpdateSegmentRequest {
            segment: Some(change.clone()),
            update_mask: Some(prost_types::FieldMask { paths: vec!["rule".into()] }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((updated.version, updated.member_count), (2, 0));
    let stale = segmentation
        .update_segment(UpdateSegmentRequest {
            segment: Some(change),
            update_mask: Some(prost_types::FieldMask { paths: vec!["name".into()] }),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let event = tokio::time::timeout(Duration::from_secs(20), feed.message()).await.unwrap().unwrap().unwrap();
    let event = event.event.unwrap();
    assert_eq!(event.r#type, SegmentExited::full_name());
    assert_eq!(SegmentExited::decode(event.payload.unwrap().value.as_slice()).unwrap().reason, "rule");

    // Everyone is in `true`: its first members are announced by one event,
    // not an entry each (creating a segment is nothing its members did).
    let everyone = segmentation.create_segment(segment("Everyone", "true")).await.unwrap().into_inner();
    assert_eq!(everyone.member_count, 2);
    let event = tokio::time::timeout(Duration::from_secs(20), feed.message()).await.unwrap().unwrap().unwrap();
    let event = event.event.unwrap();
    assert_eq!(event.r#type, SegmentPopulated::full_name());
    assert_eq!((event.aggregate_type.as_str(), event.aggregate_id.as_str()), ("segment", everyone.id.as_str()));
    let populated = SegmentPopulated::decode(event.payload.unwrap().value.as_slice()).unwrap();
    assert_eq!(
        (populated.segment_id.as_str(), populated.segment_version, populated.member_count),
        (everyone.id.as_str(), 1, 2)
    );
    // Deleting it empties it with events.
    let listed = segmentation.list_segments(ListSegmentsRequest::default()).await.unwrap().into_inner().segments;
    assert_eq!(
        listed.iter().map(|segment| segment.name.as_str()).collect::<Vec<_>>(),
        ["Big VIP spenders", "Everyone"]
    );
    segmentation
        .delete_segment(DeleteSegmentRequest { id: everyone.id.clone(), etag: everyone.etag.clone() })
        .await
        .unwrap();
    let mut exits = 0;
    while exits < 2 {
        let event = tokio::time::timeout(Duration::from_secs(20), feed.message()).await.unwrap().unwrap().unwrap();
        let event = event.event.unwrap();
        if event.r#type == SegmentExited::full_name() {
            let exited = SegmentExited::decode(event.payload.unwrap().value.as_slice()).unwrap();
            if exited.reason == "segment_deleted" {
                exits += 1;
            }
        }
    }
    suite.shutdown().await.unwrap();
}

/// Many new memberships at once (a broad segment's first evaluation, a
/// snapshot) go by COPY, streamed page by page as they are decided: stored
/// and counted in the day's size exactly as those entered by the statement
/// a burst uses, and as a few held to the end are.
#[tokio::test]
async fn many_new_members_at_once_are_stored_and_counted_as_a_few_are() {
    use crm_segmentation::store::segments::{NewMembers, count_added, enter, enter_new, list_members, sizes};

    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let pool = test_db.role_pool(crm_platform::Role::Segmentation).await.unwrap();
    // Two pages and a half before a COPY is worth it, then two pages copied.
    let contacts: Vec<uuid::Uuid> =
        (0..crm_platform::copy::WORTH_COPYING + 4_003).map(|_| uuid::Uuid::now_v7()).collect();
    let (copied, inserted, streamed, few) =
        (uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let now = chrono::Utc::now();
    let mut tx = pool.begin().await.unwrap();
    let pairs = |segment: uuid::Uuid| contacts.iter().map(|contact| (*contact, segment)).collect::<Vec<_>>();
    enter_new(&mut tx, &pairs(copied), now).await.unwrap();
    enter(&mut tx, &pairs(inserted), now).await.unwrap();
    for (segment, count) in [(streamed, contacts.len()), (few, 10)] {
        let mut new_members = NewMembers::new(&mut tx, segment, now);
        for page in contacts[..count].chunks(2_000) {
            for contact in page {
                new_members.push(*contact);
            }
            new_members.end_page().await.unwrap();
        }
        let added = new_members.finish().await.unwrap();
        assert_eq!(added, count as i64);
        count_added(&mut tx, segment, added, now).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut conn = pool.acquire().await.unwrap();
    let day = now.date_naive();
    for (segment, count) in
        [(copied, contacts.len()), (inserted, contacts.len()), (streamed, contacts.len()), (few, 10)]
    {
        let members = list_members(&mut conn, segment, None, 100_000).await.unwrap();
        assert_eq!(members.len(), count, "segment {segment}");
        let expected: std::collections::HashSet<&uuid::Uuid> = contacts[..count].iter().collect();
        for (contact, since) in members {
            assert!(expected.contains(&contact));
            // The timestamp's text (COPY) and binary (the statement) forms round alike to the microsecond.
            assert!((since - now).num_microseconds().unwrap().abs() <= 1, "since {since:?} is not {now:?}");
        }
        assert_eq!(sizes(&mut conn, segment, day, day).await.unwrap(), vec![(day, count as i64)]);
    }
    drop(conn);
    suite.shutdown().await.unwrap();
}
