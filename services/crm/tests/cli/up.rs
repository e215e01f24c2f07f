//! `crm up` as an operator runs it: no DATABASE_URL, a private PostgreSQL in
//! the data directory, every role SERVING through the gateway, a clean stop
//! on Ctrl-C, and the same data directory (and admin key) on the next run;
//! the console served, or said not to be built.

use std::{path::Path, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// A started `crm up`, with what its banner said.
struct Up {
    child: Child,
    gateway: String,
    admin_key: String,
    console: String,
}

async fn start_up(data_dir: &Path) -> Up {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crm"));
    command
        .arg("up")
        .env_remove("DATABASE_URL")
        .env("CRM_DATA_DIR", data_dir)
        .env("CRM_METRICS_ADDR", "127.0.0.1:0")
        .env("CRM_LOG", "warn")
        // The console is on under `up`: here on a free port, from a folder with no build.
        .env("CRM_CONSOLE_ADDR", "127.0.0.1:0")
        .env("CRM_CONSOLE_DIR", data_dir.join("no-console"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for role in ["GATEWAY", "CONTACTS", "INTERACTIONS", "SEGMENTATION", "ALERTING"] {
        command.env(format!("CRM_{role}_ADDR"), "127.0.0.1:0");
    }
    let mut child = command.spawn().expect("crm runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut gateway, mut admin_key, mut console) = (String::new(), String::new(), String::new());
    let banner = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(value) = line.trim().strip_prefix("gateway (gRPC):") {
                gateway = value.trim().to_string();
            }
            if let Some(value) = line.trim().strip_prefix("admin API key:") {
                admin_key = value.trim().to_string();
            }
            if let Some(value) = line.trim().strip_prefix("console:") {
                console = value.trim().to_string();
            }
            if line.starts_with("Stop with") {
                return;
            }
        }
        panic!("crm up exited before printing its banner");
    };
    tokio::time::timeout(Duration::from_secs(120), banner).await.expect("crm up prints its banner");
    Up { child, gateway, admin_key, console }
}

async fn assert_every_role_serving(gateway: &str) {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{gateway}")).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    for service in crm_proto::services() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let answer = health.check(HealthCheckRequest { service: service.name.clone() }).await;
            if matches!(&answer, Ok(response) if response.get_ref().status() == ServingStatus::Serving) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{} is not SERVING: {answer:?}", service.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn stop(mut up: Up) {
    let pid = nix::unistd::Pid::from_raw(up.child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), up.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "crm up exits cleanly on Ctrl-C: {status}");
}

#[tokio::test]
async fn up_runs_every_role_on_a_private_postgres_and_reuses_it() {
    // Not a mktemp directory: PostgreSQL's own user must be able to reach it when we are root.
    let data_dir = std::env::temp_dir().join(format!("crm-up-test-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&data_dir).unwrap();

    let first = start_up(&data_dir).await;
    assert!(first.admin_key.starts_with("crm_admin_"), "an admin key is printed");
    assert!(
        first.console.starts_with("not served at http://127.0.0.1:")
            && first.console.contains("npm ci && npm run build"),
        "the banner says the console is not built and how to build it: {}",
        first.console
    );
    assert_every_role_serving(&first.gateway).await;
    let first_key = first.admin_key.clone();
    stop(first).await;
    assert!(data_dir.join("postgres/pgdata/PG_VERSION").exists(), "the cluster is kept");

    let second = start_up(&data_dir).await;
    assert_eq!(second.admin_key, first_key, "the data directory, and its admin key, are reused");
    assert_every_role_serving(&second.gateway).await;
    stop(second).await;

    std::fs::remove_dir_all(&data_dir).unwrap();
}
