//! The console's server: the built page and its files on their own port
//! with a strict Content-Security-Policy, `/config.json` pointing the page
//! at the gateway, the page's origin allowed by the gateway's CORS whatever
//! else is, a clear answer when the console was not built; and `GetCaller`,
//! which tells the page what the caller may do.
//! (The page itself is tested in Chromium: `console/tests/`.)

use crm_platform::Role;
use crm_proto::gateway::v1::GetCallerRequest;
use crm_testkit::{TestDb, TestSuite};

use crate::{access::create_key, gateway::http1_exchange};

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default()
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy_and_points_at_the_gateway() {
    let site = tempdir();
    std::fs::create_dir_all(site.join("assets")).unwrap();
    std::fs::write(site.join("index.html"), "<!doctype html><title>CRM console</title>").unwrap();
    std::fs::write(site.join("assets/app.js"), "console.log('crm')").unwrap();
    let test_db = TestDb::create().await.unwrap();
    let vars = [
        ("CRM_CONSOLE_ADDR".to_string(), "127.0.0.1:0".to_string()),
        ("CRM_CONSOLE_DIR".to_string(), site.display().to_string()),
        // Only another site may call by gRPC-Web: the console's origin is added.
        ("CRM_CORS_ALLOWED_ORIGINS".to_string(), "https://app.example".to_string()),
    ];
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &vars).await.unwrap();
    let console = suite.console_address().expect("the console is served");
    let gateway = suite.address(Role::Gateway);
    let host = format!("127.0.0.1:{}", console.port());

    let page = http1_exchange(console, &get("/", &host)).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(body(&page).contains("<title>CRM console</title>"), "{page}");
    let policy = header(&page, "content-security-policy").expect("a Content-Security-Policy");
    assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains(&format!("connect-src 'self' http://127.0.0.1:{}", gateway.port())), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'") && !policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(header(&page, "x-content-type-options"), Some("nosniff"));

    let script = http1_exchange(console, &get("/assets/app.js", &host)).await;
    assert!(script.starts_with("HTTP/1.1 200") && body(&script).contains("console.log"), "{script}");
    assert!(header(&script, "content-type").unwrap().contains("javascript"), "{script}");
    // A screen's own address reloads the page.
    let deep = http1_exchange(console, &get("/customers/0190aaaa-0000-7000-8000-000000000000", &host)).await;
    assert!(deep.starts_with("HTTP/1.1 200") && body(&deep).contains("CRM console"), "{deep}");

    // The page finds the gateway on the host the browser used.
    let config = http1_exchange(console, &get("/config.json", &format!("localhost:{}", console.port()))).await;
    let config: serde_json::Value = serde_json::from_str(body(&config)).unwrap();
    assert_eq!(config["gateway"], format!("http://localhost:{}", gateway.port()));

    // The gateway lets the console's page call it, and still refuses other sites.
    for (origin, allowed) in [
        (format!("http://127.0.0.1:{}", console.port()), true),
        (format!("http://localhost:{}", console.port()), true),
        ("https://evil.example".to_string(), false),
    ] {
        let preflight = http1_exchange(
            gateway,
            &format!(
                "OPTIONS /crm.gateway.v1.GatewayAdminService/GetCaller HTTP/1.1\r\nHost: {gateway}\r\n\
                 Origin: {origin}\r\nAccess-Control-Request-Method: POST\r\n\
                 Access-Control-Request-Headers: authorization,content-type,x-grpc-web\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(header(&preflight, "access-control-allow-origin") == Some(origin.as_str()), allowed, "{preflight}");
    }
    suite.shutdown().await.unwrap();
    std::fs::remove_dir_all(site).unwrap();
}

#[tokio::test]
async fn an_unbuilt_console_says_how_to_build_it() {
    let test_db = TestDb::create().await.unwrap();
    let missing = tempdir().join("dist");
    let vars = [
        ("CRM_CONSOLE_ADDR".to_string(), "127.0.0.1:0".to_string()),
        ("CRM_CONSOLE_DIR".to_string(), missing.display().to_string()),
    ];
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &vars).await.unwrap();
    let console = suite.console_address().unwrap();
    let answer = http1_exchange(console, &get("/", "127.0.0.1")).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(body(&answer).contains("npm ci && npm run build"), "{answer}");
    assert!(body(&answer).contains(&missing.display().to_string()), "{answer}");
    suite.shutdown().await.unwrap();

    // Without CRM_CONSOLE_ADDR `serve` serves no console.
    let suite = TestSuite::start(&test_db).await.unwrap();
    assert_eq!(suite.console_address(), None);
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn get_caller_says_who_the_caller_is_and_what_it_may_do() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let (sre_id, sre_secret) = create_key(&suite, &["sre"]).await;
    let mut as_sre = crm_proto::gateway::v1::gateway_admin_service_client::GatewayAdminServiceClient::new(
        suite.with_key(Role::Gateway, &sre_secret).await.unwrap(),
    );
    let sre = as_sre.get_caller(GetCallerRequest {}).await.unwrap().into_inner();
    assert_eq!(sre.key_id, sre_id);
    assert_eq!(sre.roles, vec!["sre"]);
    assert_eq!(sre.scopes, vec!["alerts.read", "alerts.write"]);

    let (_, agent_secret) = create_key(&suite, &["agent", "analyst"]).await;
    let mut as_agent = crm_proto::gateway::v1::gateway_admin_service_client::GatewayAdminServiceClient::new(
        suite.with_key(Role::Gateway, &agent_secret).await.unwrap(),
    );
    let agent = as_agent.get_caller(GetCallerRequest {}).await.unwrap().into_inner();
    assert_eq!(agent.roles, vec!["agent", "analyst"]);
    for scope in ["contacts.write", "interactions.write", "segments.read", "segments.write", "alerts.read"] {
        assert!(agent.scopes.iter().any(|given| given == scope), "{scope} in {:?}", agent.scopes);
    }
    assert_eq!(agent.scopes.iter().filter(|scope| *scope == "contacts.read").count(), 1, "each scope once");
    assert!(!agent.scopes.iter().any(|scope| scope == "gateway.admin" || scope == "authenticated"));

    let admin = suite.gateway_admin().await.unwrap().get_caller(GetCallerRequest {}).await.unwrap().into_inner();
    assert_eq!(admin.roles, vec!["admin"]);
    assert_eq!(admin.scopes.len(), 11, "{:?}", admin.scopes);
    // Without a key: who it is cannot be said.
    let mut anonymous = crm_proto::gateway::v1::gateway_admin_service_client::GatewayAdminServiceClient::new(
        suite.channel(Role::Gateway).await.unwrap(),
    );
    let refused = anonymous.get_caller(GetCallerRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    suite.shutdown().await.unwrap();
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("crm-console-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
