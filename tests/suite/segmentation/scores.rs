//! Scores and service tiers through the gateway: versioned, audited models;
//! contributions that sum to the score; sensitive features refused unless
//! named; tiers by id and by phone; scopes.

use std::time::Duration;

use crm_platform::Role;
use crm_proto::{
    common::v1::Money,
    contacts::v1::CreateContactRequest,
    interactions::v1::{Channel, Interaction, Kind, RecordInteractionRequest},
    segmentation::v1::{
        Contribution, CreateScoreModelRequest, GetContactScoreRequest, GetServiceTierRequest,
        ListScoreModelVersionsRequest, ScoreModel, Tier, Transform, UpdateScoreModelRequest,
        get_service_tier_request::Contact, segmentation_service_client::SegmentationServiceClient,
    },
};
use crm_testkit::{TestDb, TestSuite};
use tonic::Code;

use crate::{
    contacts::{person, violated_fields},
    support::eventually,
};

fn contribution(feature: &str, key: &str, transform: Transform, weight: f64, cap: f64) -> Contribution {
    Contribution {
        feature: feature.into(),
        key: key.into(),
        transform: transform as i32,
        weight,
        cap,
        ..Default::default()
    }
}

fn model(name: &str) -> ScoreModel {
    ScoreModel {
        name: name.into(),
        contributions: vec![
            contribution("revenue_365d", "EUR", Transform::Log, 4.0, 50.0),
            Contribution {
                half_life_days: 30.0,
                ..contribution("days_since_last_purchase", "", Transform::RecencyDecay, 30.0, 30.0)
            },
            contribution("complaints_90d", "", Transform::Linear, -10.0, 20.0),
            contribution("has_phone", "", Transform::Presence, 5.0, 5.0),
        ],
        tiers: vec![
            Tier { name: "standard".into(), min_score: 0.0, queue_priority: 1 },
            Tier { name: "gold".into(), min_score: 40.0, queue_priority: 5 },
            Tier { name: "platinum".into(), min_score: 75.0, queue_priority: 9 },
        ],
        is_default: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn scores_explain_themselves_and_tiers_answer_by_id_or_phone() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let mut segmentation = suite.segmentation().await.unwrap();

    // Sensitive features are refused unless the model names them.
    let mut with_age = model("with age");
    with_age.contributions.push(contribution("age", "", Transform::Linear, 0.1, 5.0));
    with_age.contributions[0].cap = 45.0;
    let refused = segmentation
        .create_score_model(CreateScoreModelRequest { score_model: Some(with_age.clone()) })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["score_model.contributions[4].feature"]);
    assert!(refused.message().contains("sensitive"), "{}", refused.message());
    with_age.sensitive_features_allowed = vec!["age".into()];
    with_age.is_default = false;
    let allowed = segmentation
        .create_score_model(CreateScoreModelRequest { score_model: Some(with_age) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(allowed.sensitive_features_allowed, ["age"], "the choice is visible in the model");

    let created =
        segmentation.create_score_model(CreateScoreModelRequest { score_model: Some(model("customer value")) }).await;
    let created = created.unwrap().into_inner();
    assert_eq!((created.version, created.is_default), (1, true));

    let customer = contacts
        .create_contact(CreateContactRequest {
            contact: Some(person("Priya", "Platinum", "priya@example.com", "(201) 555-0188")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let at = chrono::Utc::now() - chrono::Duration::days(2);
    let purchase = Interaction {
        contact_id: customer.id.clone(),
        channel: Channel::Web as i32,
        kind: Kind::Purchase as i32,
        occurred_at: Some(prost_types::Timestamp { seconds: at.timestamp(), nanos: 0 }),
        amount: Some(Money { currency_code: "EUR".into(), minor_units: 2_500_000 }),
        source: "shop".into(),
        external_id: "PP-1".into(),
        ..Default::default()
    };
    interactions
        .record_interaction(RecordInteractionRequest { interaction: Some(purchase), contact_lookup: None })
        .await
        .unwrap();

    eventually(Duration::from_secs(20), "the purchase scored", || {
        let mut client = segmentation.clone();
        let request = GetContactScoreRequest { contact_id: customer.id.clone(), model_id: String::new() };
        async move { client.get_contact_score(request).await.is_ok_and(|score| score.get_ref().score > 40.0) }
    })
    .await;
    let scored = segmentation
        .get_contact_score(GetContactScoreRequest { contact_id: customer.id.clone(), model_id: String::new() })
        .await
        .unwrap()
        .into_inner();
    let sum: f64 = scored.contributions.iter().map(|given| given.points).sum();
    assert!((sum - scored.score).abs() < 1e-9, "contributions {sum} sum to the score {}", scored.score);
    // ln(2,500,001) x 4 = 58.9: capped at 50.
    let revenue = &scored.contributions[0];
    assert_eq!(
        (revenue.feature.as_str(), revenue.key.as_str(), revenue.value.as_str()),
        ("revenue_365d", "EUR", "2500000")
    );
    assert!(revenue.capped && revenue.points == 50.0, "{revenue:?}");
    assert_eq!(scored.tier, "platinum", "{scored:?}");
    assert_eq!(scored.queue_priority, 9);

    // The call-centre screen pop: by phone, in another format.
    let tier = segmentation
        .get_service_tier(GetServiceTierRequest {
            contact: Some(Contact::Phone("+1 201-555-0188".into())),
            model_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (tier.contact_id.as_str(), tier.tier.as_str(), tier.queue_priority),
        (customer.id.as_str(), "platinum", 9)
    );
    let unknown = segmentation
        .get_service_tier(GetServiceTierRequest {
            contact: Some(Contact::Email("nobody@example.com".into())),
            model_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // A new version, audited; the old one is kept.
    let mut change = created.clone();
    change.tiers.iter_mut().find(|tier| tier.name == "platinum").unwrap().min_score = 95.0;
    let updated =
        segmentation.update_score_model(UpdateScoreModelRequest { score_model: Some(change.clone()) }).await.unwrap();
    assert_eq!(updated.get_ref().version, 2);
    let stale =
        segmentation.update_score_model(UpdateScoreModelRequest { score_model: Some(change) }).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let versions = segmentation
        .list_score_model_versions(ListScoreModelVersionsRequest { id: created.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(versions.iter().map(|version| version.version).collect::<Vec<_>>(), [2, 1]);
    assert!(versions.iter().all(|version| version.updated_by == "bootstrap"), "{versions:?}");
    let demoted = segmentation
        .get_contact_score(GetContactScoreRequest { contact_id: customer.id.clone(), model_id: created.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((demoted.model_version, demoted.tier.as_str()), (2, "gold"));

    // Scopes: an agent reads tiers, only an analyst or admin changes models.
    let agent = suite
        .gateway_admin()
        .await
        .unwrap()
        .create_api_key(crm_proto::gateway::v1::CreateApiKeyRequest {
            display_name: "agent".into(),
            roles: vec!["agent".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let mut as_agent = SegmentationServiceClient::new(suite.with_key(Role::Gateway, &agent).await.unwrap());
    as_agent
        .get_service_tier(GetServiceTierRequest {
            contact: Some(Contact::ContactId(customer.id.clone())),
            model_id: String::new(),
        })
        .await
        .unwrap();
    let denied =
        as_agent.create_score_model(CreateScoreModelRequest { score_model: Some(model("mine")) }).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    suite.shutdown().await.unwrap();
}

/// With the contacts role in another process's worth of servers, a tier by
/// phone still finds the caller (over the network, not in process); a
/// contact the read model does not know yet gets the lowest tier; a model
/// that is not there, or no default, is a clear error.
#[tokio::test]
async fn tiers_by_phone_reach_a_contacts_role_elsewhere_and_models_missing_are_named() {
    let test_db = TestDb::create().await.unwrap();
    let contacts_apart = TestSuite::start_roles(&test_db, &[Role::Contacts], &[]).await.unwrap();
    let suite = TestSuite::start_roles(
        &test_db,
        &[Role::Gateway, Role::Interactions, Role::Segmentation, Role::Alerting],
        &contacts_apart.upstream_vars(),
    )
    .await
    .unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut segmentation = suite.segmentation().await.unwrap();
    let by_phone = |model_id: &str| GetServiceTierRequest {
        contact: Some(Contact::Phone("(201) 555-0142".into())),
        model_id: model_id.into(),
    };

    let customer = contacts
        .create_contact(CreateContactRequest {
            contact: Some(person("Omar", "Osei", "omar@example.com", "201-555-0142")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let none = segmentation.get_service_tier(by_phone("")).await.unwrap_err();
    assert_eq!(none.code(), Code::FailedPrecondition, "{none:?}");
    assert!(none.message().contains("no score model is the default"), "{}", none.message());
    let absent = uuid::Uuid::now_v7().to_string();
    let missing = segmentation.get_service_tier(by_phone(&absent)).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert!(missing.message().contains(&absent), "{}", missing.message());

    let created =
        segmentation.create_score_model(CreateScoreModelRequest { score_model: Some(model("by phone")) }).await;
    let created = created.unwrap().into_inner();
    let unknown_id = uuid::Uuid::now_v7().to_string();
    let unknown = segmentation
        .get_service_tier(GetServiceTierRequest {
            contact: Some(Contact::ContactId(unknown_id.clone())),
            model_id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (unknown.contact_id.as_str(), unknown.tier.as_str(), unknown.score),
        (unknown_id.as_str(), "standard", 0.0)
    );

    // Once the contacts feed has told the role about the phone, it scores.
    eventually(Duration::from_secs(20), "the contact's phone counted", || {
        let mut client = segmentation.clone();
        async move { client.get_service_tier(by_phone("")).await.is_ok_and(|tier| tier.get_ref().score == 5.0) }
    })
    .await;
    let tier = segmentation.get_service_tier(by_phone(&created.id)).await.unwrap().into_inner();
    assert_eq!(
        (tier.contact_id.as_str(), tier.tier.as_str(), tier.model_id.as_str(), tier.model_version),
        (customer.id.as_str(), "standard", created.id.as_str(), 1)
    );
    suite.shutdown().await.unwrap();
    contacts_apart.shutdown().await.unwrap();
}
