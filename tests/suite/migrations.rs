//! Migrations are idempotent and safe to run concurrently.

use crm_platform::{Role, config::DbSettings, db};
use crm_testkit::TestDb;

#[tokio::test]
async fn migrations_run_twice_and_concurrently() {
    let test_db = TestDb::create().await.unwrap();
    let settings = DbSettings { max_connections: 8, connect_timeout: std::time::Duration::from_secs(10) };
    let pool = db::connect(&test_db.url, Role::Contacts, &settings).await.unwrap();

    // Four runners at once on an empty database: the schema, the tables and the
    // bookkeeping must each be created exactly once.
    let runs = (0..4).map(|_| db::migrate(&pool, Role::Contacts, crm::suite::migrator(Role::Contacts)));
    for outcome in futures_util::future::join_all(runs).await {
        outcome.unwrap();
    }
    // And again, later: nothing to do, no error.
    db::migrate(&pool, Role::Contacts, crm::suite::migrator(Role::Contacts)).await.unwrap();

    let (applied, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT version) FROM contacts._platform_migrations")
            .fetch_one(&pool)
            .await
            .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../libs/platform/migrations"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|ext| ext == "sql"))
        .count() as i64;
    assert_eq!((applied, distinct), (files, files), "each platform migration is recorded once");
    let outbox_exists: bool =
        sqlx::query_scalar("SELECT to_regclass('contacts.outbox') IS NOT NULL").fetch_one(&pool).await.unwrap();
    assert!(outbox_exists);
}

#[tokio::test]
async fn every_role_migrates_into_its_own_schema_only() {
    let test_db = TestDb::create().await.unwrap();
    for role in Role::ALL {
        test_db.role_pool(role).await.unwrap();
    }
    let mut conn = test_db.connect().await.unwrap();
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT table_schema::text FROM information_schema.tables
         WHERE table_name = 'outbox' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(schemas, ["alerting", "contacts", "gateway", "interactions", "segmentation"]);
    let in_public: i64 =
        sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(in_public, 0, "no role writes into the public schema");
}

#[tokio::test]
async fn connecting_retries_until_its_deadline_then_says_what_to_check() {
    // Nothing listens on this port: every attempt is refused, so start-up retries, then gives up.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let settings = DbSettings { max_connections: 1, connect_timeout: std::time::Duration::from_millis(700) };
    let url = format!("postgres://postgres@127.0.0.1:{closed_port}/crm");
    let error = db::connect(&url, Role::Contacts, &settings).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("check DATABASE_URL and that the server is up"), "{message}");
}

#[tokio::test]
async fn connecting_does_not_retry_a_database_that_does_not_exist() {
    let test_db = TestDb::create().await.unwrap();
    let missing = test_db.url.replace("crm_test_", "crm_missing_");
    let settings = DbSettings { max_connections: 1, connect_timeout: std::time::Duration::from_secs(600) };
    // With a 10-minute retry window, only an immediate failure lets this finish within the bound.
    let outcome =
        tokio::time::timeout(std::time::Duration::from_secs(60), db::connect(&missing, Role::Contacts, &settings))
            .await
            .expect("a missing database is not retried");
    assert!(format!("{:#}", outcome.unwrap_err()).contains("does not exist"));
}
