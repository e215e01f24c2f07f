//! Static segments, snapshots, exports and daily sizes.

use std::time::Duration;

use chrono::Utc;
use crm_platform::{Role, clock::Clock};
use crm_proto::{
    contacts::v1::{CreateContactRequest, LifecycleStage, MergeContactsRequest, UpdateContactRequest},
    segmentation::v1::{
        AddSegmentMembersRequest, CreateSegmentRequest, ExportSegmentRequest, GetContactFeaturesRequest,
        GetSegmentSizesRequest, ListSegmentMembersRequest, RemoveSegmentMembersRequest, Segment, SegmentKind,
    },
};
use crm_testkit::{TestDb, TestSuite};
use tonic::Code;

use crate::{contacts::person, support::eventually};

async fn members(suite: &TestSuite, segment_id: &str) -> Vec<String> {
    let mut segmentation = suite.segmentation().await.unwrap();
    let request = ListSegmentMembersRequest { segment_id: segment_id.into(), ..Default::default() };
    let members = segmentation.list_segment_members(request).await.unwrap().into_inner().members;
    members.into_iter().map(|member| member.contact_id).collect()
}

#[tokio::test]
async fn static_segments_snapshots_exports_and_sizes() {
    let test_db = TestDb::create().await.unwrap();
    let clock = Clock::manual(Utc::now());
    let suite = TestSuite::start_with_clock(&test_db, &Role::ALL, &[], clock.clone()).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut segmentation = suite.segmentation().await.unwrap();
    let mut people = Vec::new();
    for (given, email) in [("Amy", "amy@example.com"), ("Ben", "ben@example.com"), ("Cai", "cai@example.com")] {
        let mut input = person(given, "Listed", email, "");
        input.lifecycle_stage = LifecycleStage::Lead as i32;
        input.addresses[0].postal_code = format!("9410{}", people.len());
        let created =
            contacts.create_contact(CreateContactRequest { contact: Some(input), ..Default::default() }).await;
        people.push(created.unwrap().into_inner());
    }
    let ids: Vec<String> = people.iter().map(|person| person.id.clone()).collect();

    // A static list bought for a campaign: members by hand, no rule.
    let create = |name: &str, kind: SegmentKind, rule: &str, source: &str| CreateSegmentRequest {
        segment: Some(Segment {
            name: name.into(),
            kind: kind as i32,
            rule: rule.into(),
            source_segment_id: source.into(),
            ..Default::default()
        }),
    };
    let refused = segmentation.create_segment(create("with rule", SegmentKind::Static, "true", "")).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let list =
        segmentation.create_segment(create("Trade fair list", SegmentKind::Static, "", "")).await.unwrap().into_inner();
    let added = segmentation
        .add_segment_members(AddSegmentMembersRequest { segment_id: list.id.clone(), contact_ids: ids[..2].to_vec() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((added.changed, added.member_count), (2, 2));
    let again = segmentation
        .add_segment_members(AddSegmentMembersRequest { segment_id: list.id.clone(), contact_ids: ids.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.changed, again.member_count), (1, 3), "only Cai is new");
    let removed = segmentation
        .remove_segment_members(RemoveSegmentMembersRequest {
            segment_id: list.id.clone(),
            contact_ids: vec![ids[2].clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((removed.changed, removed.member_count), (1, 2));

    // Leads, dynamic, once the read model has the three (it follows the contacts feed);
    // a snapshot of it stays as it was when taken.
    for id in &ids {
        eventually(Duration::from_secs(20), "the contact in the read model", || {
            let mut segmentation = segmentation.clone();
            let request = GetContactFeaturesRequest { contact_id: id.clone() };
            async move { segmentation.get_contact_features(request).await.is_ok() }
        })
        .await;
    }
    let leads = segmentation
        .create_segment(create("Leads", SegmentKind::Dynamic, r#"lifecycle == "lead""#, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(leads.member_count, 3);
    let refused = segmentation
        .add_segment_members(AddSegmentMembersRequest { segment_id: leads.id.clone(), contact_ids: ids[..1].to_vec() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let snapshot = segmentation
        .create_segment(create("Leads at mailing", SegmentKind::Snapshot, "", &leads.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((snapshot.member_count, snapshot.source_segment_id.as_str()), (3, leads.id.as_str()));

    // The next day, Amy becomes a customer: she leaves Leads, not the snapshot.
    clock.advance(chrono::Duration::days(1));
    let mut change = people[0].clone();
    change.lifecycle_stage = LifecycleStage::Customer as i32;
    contacts
        .update_contact(UpdateContactRequest {
            contact: Some(change),
            update_mask: Some(prost_types::FieldMask { paths: vec!["lifecycle_stage".into()] }),
        })
        .await
        .unwrap();
    eventually(std::time::Duration::from_secs(20), "Amy out of Leads", || async {
        members(&suite, &leads.id).await.len() == 2
    })
    .await;
    assert_eq!(members(&suite, &snapshot.id).await.len(), 3, "a snapshot is frozen");

    // Merged: Ben's place in the static list and the snapshot goes to Cai, the survivor.
    contacts
        .merge_contacts(MergeContactsRequest {
            survivor_id: ids[2].clone(),
            loser_ids: vec![ids[1].clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    eventually(std::time::Duration::from_secs(20), "Cai in Ben's place", || async {
        members(&suite, &list.id).await == {
            let mut expected = vec![ids[0].clone(), ids[2].clone()];
            expected.sort();
            expected
        }
    })
    .await;

    let exported: Vec<String> = {
        let mut stream = segmentation
            .export_segment(ExportSegmentRequest { segment_id: snapshot.id.clone() })
            .await
            .unwrap()
            .into_inner();
        let mut all = Vec::new();
        while let Some(part) = stream.message().await.unwrap() {
            all.extend(part.members.into_iter().map(|member| member.contact_id));
        }
        all
    };
    assert_eq!(exported, members(&suite, &snapshot.id).await);

    // Sizes per day: Leads had 3 yesterday; today Amy left and Ben merged into Cai.
    let sizes = segmentation
        .get_segment_sizes(GetSegmentSizesRequest { segment_id: leads.id.clone(), days: 3 })
        .await
        .unwrap()
        .into_inner()
        .sizes;
    let counts: Vec<i64> = sizes.iter().map(|size| size.members).collect();
    assert_eq!(counts, [3, 1], "{sizes:?}");
    assert_eq!(members(&suite, &leads.id).await, [ids[2].clone()]);
    suite.shutdown().await.unwrap();
}
