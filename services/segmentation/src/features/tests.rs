use super::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn purchase(occurred_at: &str, cents: i64) -> Activity {
    Activity {
        interaction_id: Uuid::now_v7(),
        occurred_at: at(occurred_at),
        kind: "purchase".into(),
        channel: "web".into(),
        currency: "EUR".into(),
        amount: cents,
        sentiment: None,
        skus: vec!["SKU-2".into(), "SKU-1".into()],
    }
}

fn int(doc: &FeatureDoc, name: &str) -> i64 {
    match &doc[name] {
        Value::Int(value) => *value,
        other => panic!("{name} is {other:?}"),
    }
}

fn map(doc: &FeatureDoc, name: &str) -> BTreeMap<String, i64> {
    match &doc[name] {
        Value::Map(values) => values.clone(),
        other => panic!("{name} is {other:?}"),
    }
}

#[test]
fn every_catalogue_feature_is_computed_and_nothing_else() {
    let computed = compute(None, &[], at("2026-06-01T00:00:00Z"));
    let names: Vec<&String> = computed.doc.keys().collect();
    let mut catalogue: Vec<&String> = catalogue::features().iter().map(|feature| &feature.name).collect();
    catalogue.sort();
    assert_eq!(names, catalogue);
    assert_eq!(computed.next_change, None, "nothing moves without profile or activity");
}

#[test]
fn a_purchase_counts_in_each_window_until_it_leaves_it() {
    let activity = vec![purchase("2026-05-20T12:00:00Z", 1500), purchase("2026-01-10T08:00:00Z", 500)];
    let now = at("2026-06-01T00:00:00Z");
    let computed = compute(None, &activity, now);
    let doc = &computed.doc;
    assert_eq!(int(doc, "purchases_30d"), 1);
    assert_eq!(int(doc, "purchases_365d"), 2);
    assert_eq!(map(doc, "revenue_30d")["EUR"], 1500);
    assert_eq!(map(doc, "revenue_total")["EUR"], 2000);
    assert_eq!(map(doc, "kinds_30d")["purchase"], 1);
    assert_eq!(map(doc, "kinds_30d")["complaint"], 0, "every kind is present");
    assert_eq!(map(doc, "channels_90d")["web"], 1);
    assert_eq!(int(doc, "days_since_last_purchase"), 11);
    assert_eq!(doc["skus"], Value::List(vec!["SKU-1".into(), "SKU-2".into()]));
    // The next change: 12 whole days since the last purchase, at 12:00.
    assert_eq!(computed.next_change, Some(at("2026-06-01T12:00:00Z")));

    // Exactly 30 days after it occurred, the purchase has left the 30-day window.
    let later = compute(None, &activity, at("2026-06-19T12:00:00Z"));
    assert_eq!(int(&later.doc, "purchases_30d"), 0);
    assert_eq!(int(&later.doc, "purchases_90d"), 1);
    let just_before = compute(None, &activity, at("2026-06-19T11:59:59Z"));
    assert_eq!(int(&just_before.doc, "purchases_30d"), 1);
}

#[test]
fn the_next_change_is_the_earliest_moment_anything_moves() {
    // No day counts: a complaint only, leaving the 30-day window first.
    let complaint = Activity {
        kind: "complaint".into(),
        currency: String::new(),
        amount: 0,
        sentiment: Some(-0.5),
        skus: Vec::new(),
        ..purchase("2026-05-31T00:00:00Z", 0)
    };
    let now = at("2026-06-01T00:00:00Z");
    let computed = compute(None, std::slice::from_ref(&complaint), now);
    assert_eq!(computed.next_change, Some(at("2026-06-30T00:00:00Z")));
    assert_eq!(int(&computed.doc, "complaints_90d"), 1);
    assert_eq!(computed.doc["sentiment_avg_90d"], Value::Double(Some(-0.5)));
    // At that moment the value has changed, and the next one is 60 days on.
    let then = compute(None, &[complaint], at("2026-06-30T00:00:00Z"));
    assert_eq!(int(&then.doc, "interactions_30d"), 0);
    assert_eq!(then.next_change, Some(at("2026-08-29T00:00:00Z")));
}

#[test]
fn age_counts_whole_years_and_moves_on_the_birthday() {
    let profile = Profile { birth_date: NaiveDate::from_ymd_opt(1984, 2, 29), ..Default::default() };
    let computed = compute(Some(&profile), &[], at("2026-02-28T10:00:00Z"));
    assert_eq!(int(&computed.doc, "age"), 41);
    assert_eq!(computed.next_change, Some(at("2026-03-01T00:00:00Z")), "29 February falls on 1 March");
    assert_eq!(int(&compute(Some(&profile), &[], at("2026-03-01T00:00:00Z")).doc, "age"), 42);
    assert_eq!(int(&compute(None, &[], at("2026-03-01T00:00:00Z")).doc, "age"), -1);
}

#[test]
fn a_stored_document_reads_back_the_same() {
    let profile = Profile {
        lifecycle: "customer".into(),
        tags: vec!["vip".into()],
        created_time: Some(at("2025-01-01T00:00:00.123456Z")),
        ..Default::default()
    };
    let computed =
        compute(Some(&profile), &[purchase("2026-05-20T12:00:00.654321Z", 1500)], at("2026-06-01T00:00:00Z"));
    assert_eq!(doc_from_json(&doc_to_json(&computed.doc)), computed.doc);
    assert_eq!(doc_from_bytes(&doc_to_bytes(&computed)), computed.doc);
    assert_eq!(computed_from_bytes(&doc_to_bytes(&computed), computed.next_change), Some(computed.clone()));
    // The direct path writes what the `serde_json::Value` path does, with the tally beside.
    let written: serde_json::Value = serde_json::from_slice(&doc_to_bytes(&computed)).unwrap();
    let mut reference = doc_to_json(&computed.doc);
    reference["_tally"] = serde_json::to_value(&computed.tally).unwrap();
    assert_eq!(written, reference);
    // A document stored before tallies reads back, but is recomputed rather than applied to.
    let older = doc_to_json(&computed.doc).to_string().into_bytes();
    assert_eq!(doc_from_bytes(&older), computed.doc);
    assert_eq!(computed_from_bytes(&older, computed.next_change), None);
    // A value of another type than the catalogue's falls back to the lenient reading.
    let mut retyped = doc_to_json(&computed.doc);
    retyped["sentiment_avg_90d"] = serde_json::json!("n/a");
    let mut expected = computed.doc.clone();
    expected.remove("sentiment_avg_90d");
    expected.insert("sentiment_avg_90d".into(), Value::Double(None));
    assert_eq!(doc_from_bytes(retyped.to_string().as_bytes()), expected);
    assert!(doc_from_bytes(b"not json").is_empty(), "a document that does not parse reads as empty");

    // A rule's features alone read as the whole document has them, also through the fallback.
    let wanted = vec!["kinds_30d".to_string(), "sentiment_avg_90d".to_string(), "tags".to_string()];
    let mut only = computed.doc.clone();
    only.retain(|name, _| wanted.contains(name));
    assert_eq!(only.len(), 3);
    assert_eq!(doc_from_bytes_only(&doc_to_bytes(&computed), &wanted), only);
    let mut expected_only = expected.clone();
    expected_only.retain(|name, _| wanted.contains(name));
    assert_eq!(doc_from_bytes_only(retyped.to_string().as_bytes(), &wanted), expected_only);
    assert!(doc_from_bytes_only(b"not json", &wanted).is_empty());
}

/// Applying interactions one at a time to current features gives what
/// computing from all of them gives: the same document, the same next
/// change, the same tally (random interactions over two years, some ahead
/// of now, some with sentiments, SKUs, refunds and other currencies).
#[test]
fn applying_an_interaction_equals_computing_with_it() {
    use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
    let now = at("2026-06-01T09:30:00Z");
    let profile = Profile { created_time: Some(at("2024-03-01T00:00:00Z")), ..Default::default() };
    let mut applied_rows = 0;
    for seed in 0..200 {
        let mut rng = StdRng::seed_from_u64(seed);
        let rows: Vec<Activity> = (0..rng.random_range(1..30))
            .map(|_| Activity {
                interaction_id: Uuid::now_v7(),
                occurred_at: now - Duration::seconds(rng.random_range(-86_400 * 3..86_400 * 730)),
                kind: ["purchase", "refund", "complaint", "inquiry"].choose(&mut rng).unwrap().to_string(),
                channel: ["web", "store", "phone"].choose(&mut rng).unwrap().to_string(),
                currency: ["EUR", "USD", ""].choose(&mut rng).unwrap().to_string(),
                amount: rng.random_range(1..100_000),
                sentiment: rng.random_bool(0.4).then(|| rng.random_range(-1.0..1.0)),
                skus: (0..rng.random_range(0..3)).map(|_| format!("SKU-{}", rng.random_range(0..5))).collect(),
            })
            .collect();
        let split = rng.random_range(0..rows.len());
        let mut current = compute(Some(&profile), &rows[..split], now);
        for row in &rows[split..] {
            // As the consumer does: the stored document read back, then the row applied.
            current = computed_from_bytes(&doc_to_bytes(&current), current.next_change).expect("reads back whole");
            let before = current.doc.clone();
            assert!(apply(&mut current, row, now), "seed {seed}: a complete document takes a row");
            let moved = moved_by(row, now);
            for (name, value) in &current.doc {
                assert!(
                    before[name] == *value || moved.contains(&name.as_str()),
                    "seed {seed}: {name} moved unannounced"
                );
            }
            applied_rows += 1;
        }
        assert_eq!(current, compute(Some(&profile), &rows, now), "seed {seed}, {split} computed, the rest applied");
    }
    assert!(applied_rows > 1000, "the rows were applied ({applied_rows})");
}

#[test]
fn a_document_missing_a_feature_is_not_applied_to() {
    let now = at("2026-06-01T00:00:00Z");
    let mut computed = compute(None, &[], now);
    computed.doc.remove("skus");
    assert!(!apply(&mut computed, &purchase("2026-05-30T00:00:00Z", 100), now));
    let bytes = doc_to_bytes(&computed);
    assert_eq!(computed_from_bytes(&bytes, None), None, "an older catalogue's document is recomputed");
}

#[test]
fn a_patched_document_is_byte_for_byte_the_document_written_whole() {
    let activity = vec![purchase("2026-05-20T12:00:00Z", 1500), purchase("2026-01-10T08:00:00Z", 500)];
    let computed = compute(None, &activity, at("2026-06-01T00:00:00Z"));
    let stored = doc_to_bytes(&computed);
    for analytics in [
        Analytics { rfm: Some(([5, 4, 3], "champions".into())), predicted_value: Some(12_345) },
        Analytics::default(),
        Analytics { rfm: Some(([1, 1, 1], "quote \" and \\ backslash".into())), predicted_value: None },
    ] {
        let mut values = FeatureDoc::new();
        set_analytics(&mut values, analytics);
        let mut whole = computed.clone();
        whole.doc.extend(values.clone());
        assert_eq!(patched_bytes(&stored, &values).as_deref(), Some(doc_to_bytes(&whole).as_slice()));
    }
    // Not a document of this catalogue: read whole (recomputed) instead.
    let mut older = computed.clone();
    older.doc.remove("purchases_30d");
    let mut values = FeatureDoc::new();
    set_analytics(&mut values, Analytics::default());
    assert_eq!(patched_bytes(&doc_to_bytes(&older), &values), None);
    assert_eq!(patched_bytes(b"{\"rfm_group\": 1", &values), None, "not JSON");
}
