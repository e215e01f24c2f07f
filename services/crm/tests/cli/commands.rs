//! The `crm` commands as an operator meets them: `migrate`, and the errors
//! that tell what to fix.

use std::process::Output;

use crm_testkit::TestDb;
use tokio::process::Command;

async fn crm(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crm"));
    command.args(args).env_remove("DATABASE_URL").env("CRM_LOG", "warn");
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().await.expect("crm runs")
}

#[tokio::test]
async fn migrate_creates_every_schema_and_can_run_again() {
    let test_db = TestDb::create().await.unwrap();
    for _ in 0..2 {
        let output = crm(&["migrate"], &[("DATABASE_URL", &test_db.url)]).await;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let mut conn = test_db.connect().await.unwrap();
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'outbox' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(schemas, ["alerting", "contacts", "gateway", "interactions", "segmentation"]);
}

#[tokio::test]
async fn migrate_one_target_touches_only_its_schema() {
    let test_db = TestDb::create().await.unwrap();
    let output = crm(&["migrate", "--target", "contacts"], &[("DATABASE_URL", &test_db.url)]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut conn = test_db.connect().await.unwrap();
    let schemas: Vec<String> =
        sqlx::query_scalar("SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'outbox'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(schemas, ["contacts"]);
}

#[tokio::test]
async fn serve_without_a_database_says_how_to_get_one() {
    let output = crm(&["serve", "--target", "contacts"], &[]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL is not set") && stderr.contains("crm up"), "{stderr}");
}

#[tokio::test]
async fn bad_configuration_names_each_variable_and_exits_2() {
    let output = crm(&["migrate"], &[("CRM_REQUEST_TIMEOUT", "soon"), ("CRM_DB_MAX_CONNECTIONS", "-1")]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CRM_REQUEST_TIMEOUT") && stderr.contains("CRM_DB_MAX_CONNECTIONS"), "{stderr}");
}

#[tokio::test]
async fn an_unknown_target_lists_the_roles() {
    let output = crm(&["serve", "--target", "billing"], &[]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown role \"billing\"") && stderr.contains("contacts"), "{stderr}");
}

/// The load generator works end to end (a smoke test of the tool, not a benchmark: no figure is checked).
#[tokio::test]
async fn bench_loads_the_gateway_and_a_role_and_reports_both() {
    let test_db = TestDb::create().await.unwrap();
    let output = crm(&["bench", "--duration", "1s", "--concurrency", "2"], &[("DATABASE_URL", &test_db.url)]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for expected in ["saturation gateway", "saturation direct", "list_events", "gateway throughput at saturation"] {
        let found = stdout.lines().any(|line| line.split_whitespace().collect::<Vec<_>>().join(" ").contains(expected));
        assert!(found, "{expected:?} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("Unauthenticated") && !stdout.contains("PermissionDenied"), "{stdout}");
}
