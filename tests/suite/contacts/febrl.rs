//! The matcher on data we did not make: FEBRL3 (`tests/data/febrl`), loaded
//! as a migration team would, through `ImportContacts` with
//! `CREATE_AND_FLAG`, then the whole-base `FindDuplicates` scan at the
//! default threshold, with the built-in model, then again with a model the
//! install fitted on its own contacts. Prints precision, recall and F1, on pairs:
//!
//! ```sh
//! cargo test -p crm-e2e --test suite febrl -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crm_platform::Role;
use crm_proto::{
    common::v1::{Date, PostalAddress},
    contacts::v1::{
        Contact, DuplicatePolicy, FindDuplicatesRequest, ImportContactsRequest, ImportOptions, ImportOutcome, ImportRow,
    },
};
use crm_testkit::{TestDb, TestSuite};

use super::Client;

const DATASET3: &str = include_str!("../../data/febrl/dataset3.csv");

/// Rows per import message.
const CHUNK: usize = 1000;

/// What the matcher must keep doing on FEBRL3 (raised as it improves; the
/// targets of issue #15 are precision 0.99 and F1 0.97).
const MIN_PRECISION: f64 = 0.99;
const MIN_SCAN_F1: f64 = 0.85;
const MIN_FITTED_F1: f64 = 0.97;
/// How far the import's own verdicts may fall below the scan's F1.
const MAX_IMPORT_GAP: f64 = 0.01;

/// One FEBRL record: the person it belongs to (from its `rec_id`) and the
/// contact a migration team would make of it.
struct Record {
    person: u32,
    contact: Contact,
}

fn records(csv_text: &str) -> Vec<Record> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(csv_text.as_bytes());
    reader
        .deserialize::<BTreeMap<String, String>>()
        .map(|row| {
            let row = row.expect("FEBRL rows are well formed");
            let field = |name: &str| row.get(name).cloned().unwrap_or_default();
            let person = field("rec_id").split('-').nth(1).and_then(|n| n.parse().ok()).expect("rec-N-…");
            let street = format!("{} {}", field("street_number"), field("address_1")).trim().to_string();
            let lines = [street, field("address_2")].into_iter().filter(|line| !line.is_empty()).collect();
            let birth_date = chrono::NaiveDate::parse_from_str(&field("date_of_birth"), "%Y%m%d").ok().map(|date| {
                use chrono::Datelike;
                Date { year: date.year(), month: date.month() as i32, day: date.day() as i32 }
            });
            let contact = Contact {
                given_name: field("given_name"),
                family_name: field("surname"),
                addresses: vec![PostalAddress {
                    lines,
                    locality: field("suburb"),
                    postal_code: field("postcode"),
                    region: field("state").to_uppercase(),
                    country_code: "AU".into(),
                    ..Default::default()
                }],
                birth_date,
                ..Default::default()
            };
            Record { person, contact }
        })
        .collect()
}

/// Every pair of records (by index) that are one person.
fn true_pairs(records: &[Record]) -> BTreeSet<(usize, usize)> {
    let mut by_person: HashMap<u32, Vec<usize>> = HashMap::new();
    for (index, record) in records.iter().enumerate() {
        by_person.entry(record.person).or_default().push(index);
    }
    by_person.values().flat_map(|members| pairs_within(members)).collect()
}

fn pairs_within(members: &[usize]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for (i, &a) in members.iter().enumerate() {
        for &b in &members[i + 1..] {
            pairs.push((a.min(b), a.max(b)));
        }
    }
    pairs
}

#[derive(Debug)]
struct Figures {
    found: usize,
    precision: f64,
    recall: f64,
    f1: f64,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} pairs, precision {:.3}, recall {:.3}, F1 {:.3}", self.found, self.precision, self.recall, self.f1)
    }
}

fn figures(found: &BTreeSet<(usize, usize)>, truth: &BTreeSet<(usize, usize)>) -> Figures {
    let right = found.intersection(truth).count() as f64;
    let precision = if found.is_empty() { 1.0 } else { right / found.len() as f64 };
    let recall = right / truth.len() as f64;
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    Figures { found: found.len(), precision, recall, f1 }
}

/// Imports every record, returning each one's contact id and the contact
/// the import flagged it as a likely duplicate of (both empty for a row the
/// import refused: a record with neither name is not a contact).
async fn import(contacts: &mut Client, records: &[Record], model_version: &str) -> Vec<(String, String)> {
    let options = ImportOptions {
        duplicate_policy: DuplicatePolicy::CreateAndFlag.into(),
        source: "febrl".into(),
        ..Default::default()
    };
    let messages: Vec<ImportContactsRequest> = records
        .chunks(CHUNK)
        .enumerate()
        .map(|(chunk, records)| ImportContactsRequest {
            options: (chunk == 0).then(|| options.clone()),
            rows: records
                .iter()
                .enumerate()
                .map(|(n, record)| ImportRow {
                    row_id: (chunk * CHUNK + n).to_string(),
                    contact: Some(record.contact.clone()),
                })
                .collect(),
        })
        .collect();
    let mut stream = contacts.import_contacts(tokio_stream::iter(messages)).await.unwrap().into_inner();
    let mut results = Vec::new();
    while let Some(response) = stream.message().await.unwrap() {
        results.extend(response.results);
    }
    assert_eq!(results.len(), records.len());
    results
        .into_iter()
        .map(|result| {
            let outcome = result.outcome();
            let refused = outcome == ImportOutcome::Failed && result.invalid_fields == ["contact.given_name"];
            assert!(matches!(outcome, ImportOutcome::Created | ImportOutcome::Flagged) || refused, "{result:?}");
            // Every row the duplicate check decided names the model that decided it.
            assert_eq!(result.model_version, if refused { "" } else { model_version }, "{result:?}");
            (result.contact_id, result.matched_contact_id)
        })
        .collect()
}

/// The record each imported contact id was made from.
fn record_of(verdicts: &[(String, String)]) -> HashMap<String, usize> {
    verdicts
        .iter()
        .enumerate()
        .filter(|(_, (contact, _))| !contact.is_empty())
        .map(|(index, (contact, _))| (contact.clone(), index))
        .collect()
}

/// The pairs of the import's verdicts grouped into clusters: rows joined by
/// a "flagged as a duplicate of" link are one person.
fn import_pairs(verdicts: &[(String, String)], index_of: &HashMap<String, usize>) -> BTreeSet<(usize, usize)> {
    let mut parent: Vec<usize> = (0..verdicts.len()).collect();
    fn root(parent: &mut [usize], mut at: usize) -> usize {
        while parent[at] != at {
            parent[at] = parent[parent[at]];
            at = parent[at];
        }
        at
    }
    for (index, (_, matched)) in verdicts.iter().enumerate() {
        if let Some(&other) = index_of.get(matched) {
            let (a, b) = (root(&mut parent, index), root(&mut parent, other));
            parent[a] = b;
        }
    }
    let mut clusters: HashMap<usize, Vec<usize>> = HashMap::new();
    for index in 0..verdicts.len() {
        let top = root(&mut parent, index);
        clusters.entry(top).or_default().push(index);
    }
    clusters.values().flat_map(|members| pairs_within(members)).collect()
}

/// The pairs the whole-base scan reports at the default threshold, and the
/// model versions that scored them.
async fn scan_pairs(
    contacts: &mut Client,
    index_of: &HashMap<String, usize>,
) -> (BTreeSet<(usize, usize)>, BTreeSet<String>) {
    let mut found = BTreeSet::new();
    let mut versions = BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let request = FindDuplicatesRequest { page_size: 1000, page_token: page_token.clone(), ..Default::default() };
        let page = contacts.find_duplicates(request).await.unwrap().into_inner();
        for pair in &page.pairs {
            let (a, b) = (index_of[&pair.contact_id], index_of[&pair.other_contact_id]);
            found.insert((a.min(b), a.max(b)));
            versions.insert(pair.model_version.clone());
        }
        if page.next_page_token.is_empty() {
            return (found, versions);
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn febrl3_through_the_import_and_the_scan() {
    let records = records(DATASET3);
    let truth = true_pairs(&records);
    assert_eq!((records.len(), truth.len()), (5000, 6538), "FEBRL3 as published");

    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let verdicts = import(&mut contacts, &records, "builtin").await;
    let index_of = record_of(&verdicts);
    let refused = records.len() - index_of.len();

    let (scanned, versions) = scan_pairs(&mut contacts, &index_of).await;
    assert_eq!(versions, BTreeSet::from(["builtin".to_string()]));
    let scan = figures(&scanned, &truth);
    // A contact with a likely duplicate, to see which model decides later.
    let (with_duplicate, _) = *scanned.iter().next().expect("the scan found pairs");
    let imported = figures(&import_pairs(&verdicts, &index_of), &truth);
    println!(
        "FEBRL3, {} true pairs, {refused} records refused (no name), built-in model: scan: {scan}; import verdicts as clusters: {imported}",
        truth.len()
    );
    assert!(scan.precision >= MIN_PRECISION && imported.precision >= MIN_PRECISION, "{scan:?} {imported:?}");
    assert!(scan.f1 >= MIN_SCAN_F1, "{scan:?}");
    suite.shutdown().await.unwrap();

    // The install fits its own model: the role's leader does it on its own
    // once the base holds enough contacts (at this start, or in the first
    // suite already if the import outlasted its first minute).
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    let fitted = scheduled_fit(&pool, &mut contacts, &verdicts[with_duplicate].0).await;
    let (scanned, versions) = scan_pairs(&mut contacts, &index_of).await;
    assert_eq!(versions, BTreeSet::from([fitted.version.clone()]), "the scan names the fitted model");
    let refitted = figures(&scanned, &truth);
    println!(
        "FEBRL3, model {} fitted by the role's schedule on {} contacts ({} blocked pairs, prior {:.3}): scan: {refitted}",
        fitted.version, fitted.contacts, fitted.blocked_pairs, fitted.prior
    );
    assert!(refitted.precision >= MIN_PRECISION, "{refitted:?}");
    assert!(refitted.f1 >= MIN_FITTED_F1 && refitted.f1 >= scan.f1, "{refitted:?} against {scan:?}");
    let model = sqlx::query_scalar::<_, String>(
        "SELECT to_jsonb(stored)::text FROM matcher_models stored WHERE version::text = $1",
    )
    .bind(&fitted.version)
    .fetch_one(&pool)
    .await
    .unwrap();
    suite.shutdown().await.unwrap();

    // The same records imported into a new install that decides with that
    // model from its start: its per-row verdicts, grouped into clusters.
    let second_db = TestDb::create().await.unwrap();
    TestSuite::start(&second_db).await.unwrap().shutdown().await.unwrap();
    sqlx::query("INSERT INTO matcher_models OVERRIDING SYSTEM VALUE SELECT * FROM jsonb_populate_record(NULL::matcher_models, $1::jsonb)")
        .bind(&model)
        .execute(&second_db.role_pool(Role::Contacts).await.unwrap())
        .await
        .unwrap();
    let suite = TestSuite::start(&second_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let verdicts = import(&mut contacts, &records, &fitted.version).await;
    let index_of = record_of(&verdicts);
    let imported = figures(&import_pairs(&verdicts, &index_of), &truth);
    println!("FEBRL3, model {} from its start, import verdicts as clusters: {imported}", fitted.version);
    assert!(imported.precision >= MIN_PRECISION, "{imported:?}");
    assert!(imported.f1 >= refitted.f1 - MAX_IMPORT_GAP, "{imported:?} against the scan's {refitted:?}");
    suite.shutdown().await.unwrap();
}

/// The model the contacts role fitted on its own schedule, once the role decides with it.
#[derive(sqlx::FromRow)]
struct ScheduledFit {
    version: String,
    contacts: i32,
    blocked_pairs: i32,
    prior: f64,
}

/// Waits (five minutes at most: a restarted role's leader may wait a
/// minute for the old one's lock) for the role's leader to store a fitted
/// model and decide with it (`contact_id`'s duplicates name its version).
async fn scheduled_fit(pool: &sqlx::PgPool, contacts: &mut Client, contact_id: &str) -> ScheduledFit {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let stored: Option<ScheduledFit> = sqlx::query_as(
            "SELECT version::text AS version, contacts, blocked_pairs, prior FROM matcher_models
             ORDER BY version DESC LIMIT 1",
        )
        .fetch_optional(pool)
        .await
        .unwrap();
        if let Some(fitted) = stored {
            let request =
                FindDuplicatesRequest { contact_id: contact_id.into(), min_score: 0.01, ..Default::default() };
            let pairs = contacts.find_duplicates(request).await.unwrap().into_inner().pairs;
            if !pairs.is_empty() && pairs.iter().all(|pair| pair.model_version == fitted.version) {
                return fitted;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let state: (i64, Option<i64>, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM matcher_models),
                        (SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'contacts'::regclass),
                        (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
                          AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            panic!("the role fitted no model within five minutes (models, live rows, advisory locks): {state:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
