//! Backups: a physical copy of a loaded install (`pg_basebackup`, as
//! CloudNativePG's backups are) restored into a fresh cluster serves the
//! same contacts and timelines, and the feeds' followers resume where they
//! were, neither missing nor repeating an event; a logical dump restored
//! into another cluster is refused at start, with what to do.

use std::{path::PathBuf, process::Command, time::Duration};

use crm_localpg::{LocalPostgres, Options};
use crm_proto::{
    contacts::v1::{Contact, CreateContactRequest, ListContactsRequest},
    interactions::v1::{Channel, Interaction, Kind, ListInteractionsRequest, RecordInteractionRequest},
    segmentation::v1::{GetContactFeaturesRequest, feature_value::Value},
};
use crm_testkit::{TestDb, TestSuite};

use crate::contacts::person;

fn scratch(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("crm-backups-{test}-{}", uuid::Uuid::now_v7().simple()))
}

async fn cluster(dir: PathBuf) -> LocalPostgres {
    tokio::task::spawn_blocking(move || LocalPostgres::start(&dir, &Options { unsafe_no_fsync: true }))
        .await
        .unwrap()
        .unwrap()
}

async fn record(suite: &TestSuite, contact: &Contact, external_id: &str) {
    let interaction = Interaction {
        contact_id: contact.id.clone(),
        channel: Channel::Phone as i32,
        kind: Kind::Call as i32,
        occurred_at: Some(prost_types::Timestamp { seconds: chrono::Utc::now().timestamp() - 60, nanos: 0 }),
        source: "switchboard".into(),
        external_id: external_id.into(),
        ..Default::default()
    };
    let request = RecordInteractionRequest { interaction: Some(interaction), contact_lookup: None };
    suite.interactions().await.unwrap().record_interaction(request).await.unwrap();
}

/// Waits until segmentation counts `count` interactions of the contact.
async fn counted(suite: &TestSuite, contact: &Contact, count: i64) {
    let mut segmentation = suite.segmentation().await.unwrap();
    crate::support::eventually(Duration::from_secs(30), &format!("{count} interactions in the features"), || {
        let (mut segmentation, id) = (segmentation.clone(), contact.id.clone());
        async move {
            let request = GetContactFeaturesRequest { contact_id: id };
            segmentation.get_contact_features(request).await.is_ok_and(|features| {
                features.get_ref().features.get("interactions_total").map(|total| &total.value)
                    == Some(&Some(Value::IntValue(count)))
            })
        }
    })
    .await;
    // And not more a moment later: nothing applied twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let request = GetContactFeaturesRequest { contact_id: contact.id.clone() };
    let features = segmentation.get_contact_features(request).await.unwrap().into_inner();
    assert_eq!(features.features["interactions_total"].value, Some(Value::IntValue(count)));
}

async fn everything(suite: &TestSuite, contact: &Contact) -> (Vec<Contact>, Vec<Interaction>) {
    let contacts = suite.contacts().await.unwrap().list_contacts(ListContactsRequest::default()).await.unwrap();
    let request = ListInteractionsRequest { contact_id: contact.id.clone(), ..Default::default() };
    let timeline = suite.interactions().await.unwrap().list_interactions(request).await.unwrap();
    (contacts.into_inner().contacts, timeline.into_inner().interactions)
}

/// Runs a PostgreSQL client tool (`pg_dump`, `pg_restore`) from the PATH.
fn tool(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn a_physical_backup_restores_into_a_fresh_cluster_and_a_logical_dump_is_refused_there() {
    let dir = scratch("restore");
    let original = cluster(dir.join("original")).await;
    let db = TestDb::create_on(&original.url()).await.unwrap();
    // A cluster in service has run many transactions; a fresh one, few.
    let mut conn = db.connect().await.unwrap();
    for _ in 0..3_000 {
        sqlx::query("SELECT pg_current_xact_id()").execute(&mut conn).await.unwrap();
    }
    drop(conn);
    let suite = TestSuite::start(&db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut people = Vec::new();
    for (given, family) in [("Bea", "Kopp"), ("Cas", "Smit"), ("Dirk", "Vos")] {
        let request = CreateContactRequest { contact: Some(person(given, family, "", "")), ..Default::default() };
        people.push(contacts.create_contact(request).await.unwrap().into_inner());
    }
    let caller = &people[0];
    record(&suite, caller, "CALL-1").await;
    record(&suite, caller, "CALL-2").await;
    counted(&suite, caller, 2).await;
    let before = everything(&suite, caller).await;
    suite.shutdown().await.unwrap();

    // Physical: the whole cluster copied, its transaction counter with it.
    original.base_backup(&dir.join("restored")).unwrap();
    let restored = cluster(dir.join("restored")).await;
    let copy = db.copy_on(&restored.url());
    let suite = TestSuite::start(&copy).await.unwrap();
    assert_eq!(everything(&suite, caller).await, before, "the same contacts and timeline");
    // A new call reaches segmentation: its follower resumed after its stored position.
    record(&suite, caller, "CALL-3").await;
    counted(&suite, caller, 3).await;
    suite.shutdown().await.unwrap();

    // Logical: the rows copied into a cluster whose counter starts afresh.
    let dump = dir.join("crm.dump");
    std::fs::create_dir_all(&dir).unwrap();
    tool("pg_dump", &["--format=custom", "--file", dump.to_str().unwrap(), &db.url]);
    let elsewhere = cluster(dir.join("elsewhere")).await;
    let target = TestDb::create_on(&elsewhere.url()).await.unwrap();
    tool("pg_restore", &["--no-owner", "--dbname", &target.url, dump.to_str().unwrap()]);
    let refused = TestSuite::start(&target).await.err().expect("a logical dump in another cluster is refused");
    let message = format!("{refused:#}");
    assert!(message.contains("restored from a logical dump") && message.contains("physical backup"), "{message}");

    drop((copy, target, db));
    for server in [restored, elsewhere, original] {
        server.stop().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
