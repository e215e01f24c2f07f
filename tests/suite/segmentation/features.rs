//! Features through the gateway: a contact's, after contacts and
//! interactions change; merges fold, erasures forget.

use std::time::Duration;

use crm_platform::Role;
use crm_proto::{
    common::v1::{Date, Money},
    contacts::v1::{Contact, CreateContactRequest, EraseContactRequest, LifecycleStage, MergeContactsRequest},
    interactions::v1::{Channel, Interaction, Kind, ProductLine, RecordInteractionRequest},
    segmentation::v1::{
        ContactFeatures, FeatureType, FeatureValue, GetContactFeaturesRequest, ListFeaturesRequest,
        feature_value::Value,
    },
};
use crm_testkit::{TestDb, TestSuite};
use tonic::Code;

use crate::{
    contacts::person,
    support::{eventually, whole_schema},
};

fn recent(seconds_ago: i64) -> prost_types::Timestamp {
    let at = chrono::Utc::now() - chrono::Duration::seconds(seconds_ago);
    prost_types::Timestamp { seconds: at.timestamp(), nanos: 0 }
}

fn interaction(contact: &str, kind: Kind, external_id: &str, cents: i64) -> Interaction {
    Interaction {
        contact_id: contact.into(),
        channel: Channel::Web as i32,
        kind: kind as i32,
        occurred_at: Some(recent(3600)),
        amount: (cents > 0).then(|| Money { currency_code: "EUR".into(), minor_units: cents }),
        product_lines: if kind == Kind::Purchase {
            vec![ProductLine { sku: "SKU-9".into(), quantity: 1, unit_price: None }]
        } else {
            Vec::new()
        },
        source: "shop".into(),
        external_id: external_id.into(),
        ..Default::default()
    }
}

fn int(features: &ContactFeatures, name: &str) -> i64 {
    match &features.features[name].value {
        Some(Value::IntValue(value)) => *value,
        other => panic!("{name}: {other:?}"),
    }
}

fn map_entry(features: &ContactFeatures, name: &str, key: &str) -> i64 {
    match &features.features[name].value {
        Some(Value::IntMapValue(map)) => map.values.get(key).copied().unwrap_or_default(),
        other => panic!("{name}: {other:?}"),
    }
}

fn text(value: &FeatureValue) -> &str {
    match &value.value {
        Some(Value::StringValue(text)) => text,
        other => panic!("{other:?}"),
    }
}

/// Waits until the contact's features satisfy `condition`, returning them
/// (a bound on waiting, not a performance assertion).
async fn features_when(
    suite: &TestSuite,
    contact_id: &str,
    what: &str,
    condition: impl Fn(&ContactFeatures) -> bool,
) -> ContactFeatures {
    let mut segmentation = suite.segmentation().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let request = GetContactFeaturesRequest { contact_id: contact_id.into() };
        if let Ok(features) = segmentation.get_contact_features(request).await
            && condition(features.get_ref())
        {
            return features.into_inner();
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn features_follow_the_contacts_and_interactions_feeds() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut segmentation = suite.segmentation().await.unwrap();
    let catalogue = segmentation.list_features(ListFeaturesRequest {}).await.unwrap().into_inner().features;
    let revenue = catalogue.iter().find(|feature| feature.name == "revenue_365d").unwrap();
    assert_eq!(revenue.r#type(), FeatureType::IntMap);
    assert!(revenue.moves_with_time);
    assert!(catalogue.iter().find(|feature| feature.name == "age").unwrap().sensitive);

    let mut contacts = suite.contacts().await.unwrap();
    let mut input = person("Feature", "Holder", "holder@example.com", "");
    input.tags = vec!["vip".into()];
    input.lifecycle_stage = LifecycleStage::Customer as i32;
    let contact = contacts
        .create_contact(CreateContactRequest { contact: Some(input), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut interactions = suite.interactions().await.unwrap();
    for (kind, external_id, cents) in [(Kind::Purchase, "P-1", 2500), (Kind::Complaint, "C-1", 0)] {
        let request = RecordInteractionRequest {
            interaction: Some(interaction(&contact.id, kind, external_id, cents)),
            contact_lookup: None,
        };
        interactions.record_interaction(request).await.unwrap();
    }
    let features = features_when(&suite, &contact.id, "purchase and complaint counted", |features| {
        features.features.get("interactions_total").is_some_and(|value| value.value == Some(Value::IntValue(2)))
            && features.features.get("lifecycle").is_some_and(|value| text(value) == "customer")
    })
    .await;
    assert_eq!(int(&features, "purchases_30d"), 1);
    assert_eq!(map_entry(&features, "revenue_30d", "EUR"), 2500);
    assert_eq!(int(&features, "complaints_90d"), 1);
    assert_eq!(map_entry(&features, "kinds_30d", "complaint"), 1);
    assert_eq!(int(&features, "days_since_last_purchase"), 0);
    assert_eq!(text(&features.features["country"]), "US");
    assert_eq!(
        features.features["tags"].value,
        Some(Value::StringListValue(crm_proto::segmentation::v1::StringList { values: vec!["vip".into()] }))
    );
    assert!(features.next_change_time.is_some(), "windows and day counts move with time");
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_merge_folds_the_loser_into_the_survivor_and_an_erasure_forgets_the_contact() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let create = |contact: Contact| CreateContactRequest { contact: Some(contact), ..Default::default() };
    let mut survivor_input = person("Ursula", "Survivor", "ursula@example.com", "");
    survivor_input.birth_date = Some(Date { year: 1971, month: 7, day: 19 });
    let survivor = contacts.create_contact(create(survivor_input)).await.unwrap().into_inner();
    let mut loser_input = person("Lorcan", "Loser", "lorcan@example.com", "");
    loser_input.addresses[0].locality = "Quuxville".into();
    loser_input.birth_date = None;
    let loser = contacts.create_contact(create(loser_input)).await.unwrap().into_inner();
    for (contact, external_id, cents) in [(&survivor.id, "S-1", 1000), (&loser.id, "L-1", 700)] {
        let request = RecordInteractionRequest {
            interaction: Some(interaction(contact, Kind::Purchase, external_id, cents)),
            contact_lookup: None,
        };
        interactions.record_interaction(request).await.unwrap();
    }
    features_when(&suite, &loser.id, "the loser's purchase", |features| int(features, "purchases_total") == 1).await;

    contacts
        .merge_contacts(MergeContactsRequest {
            survivor_id: survivor.id.clone(),
            loser_ids: vec![loser.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let merged = features_when(&suite, &survivor.id, "both purchases on the survivor", |features| {
        int(features, "purchases_total") == 2
    })
    .await;
    assert_eq!(map_entry(&merged, "revenue_total", "EUR"), 1700);
    // The loser's id reads the survivor.
    let by_loser = features_when(&suite, &loser.id, "the loser redirected", |_| true).await;
    assert_eq!(by_loser.contact_id, survivor.id);

    // A late interaction naming the loser lands on the survivor.
    let request = RecordInteractionRequest {
        interaction: Some(interaction(&loser.id, Kind::Purchase, "L-2", 300)),
        contact_lookup: None,
    };
    interactions.record_interaction(request).await.unwrap();
    features_when(&suite, &survivor.id, "the late purchase", |features| int(features, "purchases_total") == 3).await;

    let pool = test_db.role_pool(Role::Segmentation).await.unwrap();
    let before = whole_schema(&pool, "segmentation").await;
    assert!(before.contains("1971-07-19"), "the birth date is held before the erasure");
    let erase = EraseContactRequest { id: survivor.id.clone(), reason: "ticket 7".into() };
    contacts.erase_contact(erase).await.unwrap();
    let segmentation = suite.segmentation().await.unwrap();
    eventually(Duration::from_secs(20), "the survivor forgotten", || {
        let mut client = segmentation.clone();
        let request = GetContactFeaturesRequest { contact_id: survivor.id.clone() };
        async move { client.get_contact_features(request).await.is_err_and(|status| status.code() == Code::NotFound) }
    })
    .await;
    let after = whole_schema(&pool, "segmentation").await;
    for personal in ["1971-07-19", "quuxville", "san francisco", "sku-9"] {
        assert!(!after.contains(personal), "{personal} is still in the segmentation schema");
    }
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn invoices_and_recurring_problems_become_features() {
    use crm_proto::interactions::v1::{Invoice, Payment};
    let test_db = TestDb::create().await.unwrap();
    let vars = [
        ("CRM_OVERDUE_CHECK_INTERVAL".to_string(), "200ms".to_string()),
        ("CRM_RECURRING_PROBLEM_COUNT".to_string(), "2".to_string()),
    ];
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &vars).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let payer = contacts
        .create_contact(CreateContactRequest {
            contact: Some(person("Paula", "Payer", "paula@example.com", "")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).date_naive();
    let mut invoice = interaction(&payer.id, Kind::Invoice, "INV-1", 9900);
    invoice.channel = Channel::Billing as i32;
    invoice.invoice = Some(Invoice {
        number: "2026-0042".into(),
        due_date: Some(Date {
            year: chrono::Datelike::year(&yesterday),
            month: chrono::Datelike::month(&yesterday) as i32,
            day: chrono::Datelike::day(&yesterday) as i32,
        }),
        status: 0,
    });
    interactions
        .record_interaction(RecordInteractionRequest { interaction: Some(invoice), contact_lookup: None })
        .await
        .unwrap();
    features_when(&suite, &payer.id, "the invoice overdue", |features| int(features, "overdue_invoices") == 1).await;

    let mut payment = interaction(&payer.id, Kind::Payment, "PAY-1", 9900);
    payment.channel = Channel::Billing as i32;
    payment.payment = Some(Payment { invoice_number: "2026-0042".into() });
    payment.occurred_at = Some(recent(60));
    interactions
        .record_interaction(RecordInteractionRequest { interaction: Some(payment), contact_lookup: None })
        .await
        .unwrap();
    let paid =
        features_when(&suite, &payer.id, "the invoice paid late", |features| int(features, "invoices_paid_late") == 1)
            .await;
    assert_eq!((int(&paid, "overdue_invoices"), int(&paid, "open_invoices")), (0, 0));

    for external_id in ["C-1", "C-2"] {
        let mut complaint = interaction(&payer.id, Kind::Complaint, external_id, 0);
        complaint.pain_points = vec!["late delivery".into()];
        interactions
            .record_interaction(RecordInteractionRequest { interaction: Some(complaint), contact_lookup: None })
            .await
            .unwrap();
    }
    let problem = features_when(&suite, &payer.id, "a recurring problem", |features| {
        int(features, "recurring_problems_90d") == 1
    })
    .await;
    assert_eq!(int(&problem, "complaints_90d"), 2);
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn referrals_and_organizations_roll_revenue_up() {
    use crm_proto::contacts::v1::{
        CreateOrganizationRequest, CreateRelationshipRequest, Organization, Relationship, RelationshipType,
        relationship::Target,
    };
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let create = |given: &str, family: &str, email: &str| CreateContactRequest {
        contact: Some(person(given, family, email, "")),
        ..Default::default()
    };
    let referrer = contacts.create_contact(create("Rita", "Referrer", "rita@example.com")).await.unwrap().into_inner();
    let referee = contacts.create_contact(create("Ezra", "Referee", "ezra@example.com")).await.unwrap().into_inner();
    let colleague =
        contacts.create_contact(create("Cole", "Colleague", "cole@example.com")).await.unwrap().into_inner();
    let company = contacts
        .create_organization(CreateOrganizationRequest {
            organization: Some(Organization { name: "Acme Widgets".into(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let link = |contact: &str, kind: RelationshipType, target: Target| CreateRelationshipRequest {
        relationship: Some(Relationship {
            contact_id: contact.into(),
            r#type: kind as i32,
            target: Some(target),
            ..Default::default()
        }),
    };
    contacts
        .create_relationship(link(
            &referee.id,
            RelationshipType::ReferredBy,
            Target::OtherContactId(referrer.id.clone()),
        ))
        .await
        .unwrap();
    for employee in [&referee.id, &colleague.id] {
        contacts
            .create_relationship(link(
                employee,
                RelationshipType::EmployeeOf,
                Target::OrganizationId(company.id.clone()),
            ))
            .await
            .unwrap();
    }
    let request = RecordInteractionRequest {
        interaction: Some(interaction(&referee.id, Kind::Purchase, "R-1", 40_000)),
        contact_lookup: None,
    };
    interactions.record_interaction(request).await.unwrap();

    let rita = features_when(&suite, &referrer.id, "the referee's revenue", |features| {
        map_entry(features, "referred_revenue_365d", "EUR") == 40_000
    })
    .await;
    assert_eq!(int(&rita, "referrals"), 1);
    let cole = features_when(&suite, &colleague.id, "the organization's revenue", |features| {
        map_entry(features, "organization_revenue_365d", "EUR") == 40_000
    })
    .await;
    assert_eq!(int(&cole, "organization_contacts"), 2);
    assert_eq!(text(&cole.features["organization_id"]), company.id);
    suite.shutdown().await.unwrap();
}

/// Merging two records of one company rolls both records' people up into
/// the survivor: its members, once each, and their revenue together.
#[tokio::test]
async fn an_organization_merge_rolls_both_records_members_into_the_survivor() {
    use crm_proto::contacts::v1::{
        CreateOrganizationRequest, CreateRelationshipRequest, MergeOrganizationsRequest, Organization, Relationship,
        RelationshipType, relationship::Target,
    };
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let mut people = Vec::new();
    for (given, email) in [("Ada", "ada@example.com"), ("Bea", "bea@example.com"), ("Cy", "cy@example.com")] {
        let request = CreateContactRequest { contact: Some(person(given, "Member", email, "")), ..Default::default() };
        people.push(contacts.create_contact(request).await.unwrap().into_inner().id);
    }
    let mut companies = Vec::new();
    for name in ["Globex Corporation", "Globex Corp (old CRM)"] {
        let request = CreateOrganizationRequest {
            organization: Some(Organization { name: name.into(), ..Default::default() }),
            allow_duplicate: true,
            override_reason: "imported twice".into(),
        };
        companies.push(contacts.create_organization(request).await.unwrap().into_inner().id);
    }
    // Ada works for the first record, Bea for the second, Cy for both.
    for (person, company) in [(0, 0), (1, 1), (2, 0), (2, 1)] {
        let request = CreateRelationshipRequest {
            relationship: Some(Relationship {
                contact_id: people[person].clone(),
                r#type: RelationshipType::EmployeeOf as i32,
                target: Some(Target::OrganizationId(companies[company].clone())),
                ..Default::default()
            }),
        };
        contacts.create_relationship(request).await.unwrap();
    }
    for (person, cents) in [(0, 10_000), (1, 30_000)] {
        let request = RecordInteractionRequest {
            interaction: Some(interaction(&people[person], Kind::Purchase, &format!("G-{person}"), cents)),
            contact_lookup: None,
        };
        interactions.record_interaction(request).await.unwrap();
    }
    // The two feeds are followed apart: the purchase may be applied before Cy's employment.
    features_when(&suite, &people[0], "the first record's revenue and both its people", |features| {
        map_entry(features, "organization_revenue_365d", "EUR") == 10_000 && int(features, "organization_contacts") == 2
    })
    .await;

    contacts
        .merge_organizations(MergeOrganizationsRequest {
            survivor_id: companies[0].clone(),
            loser_ids: vec![companies[1].clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    for (index, person) in people.iter().enumerate() {
        let features = features_when(&suite, person, "the merged company's revenue", |features| {
            map_entry(features, "organization_revenue_365d", "EUR") == 40_000
        })
        .await;
        assert_eq!(text(&features.features["organization_id"]), companies[0], "person {index}");
        assert_eq!(int(&features, "organization_contacts"), 3, "person {index}: each member once");
    }
    suite.shutdown().await.unwrap();
}
