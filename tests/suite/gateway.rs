//! The suite through its front door: health of every role, authentication,
//! routing, graceful shutdown, a split topology, and metrics.

use std::time::Duration;

use crm_platform::{
    Role,
    principal::{AccessRole, Principal},
};
use crm_proto::{
    contacts::v1::contacts_service_client::ContactsServiceClient,
    events::v1::{ListEventsRequest, ListEventsResponse, SubscribeRequest},
    interactions::v1::interactions_service_client::InteractionsServiceClient,
};
use crm_testkit::{INTERNAL_SECRET, TestDb, TestSuite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::support::eventually;

/// Waits until the gateway reports every service of the suite as SERVING.
async fn wait_until_serving(suite: &TestSuite) {
    let mut health = suite.gateway_health().await.unwrap();
    let mut names: Vec<String> = crm_proto::services().into_iter().map(|service| service.name).collect();
    names.push(String::new()); // the gateway itself
    for name in names {
        eventually(Duration::from_secs(45), &format!("{name:?} to be SERVING at the gateway"), || {
            let mut health = health.clone();
            let name = name.clone();
            async move {
                let answer = health.check(HealthCheckRequest { service: name }).await;
                matches!(answer, Ok(response) if response.get_ref().status() == ServingStatus::Serving)
            }
        })
        .await;
    }
    // A service that does not exist is NOT_FOUND, not SERVING.
    let unknown = health.check(HealthCheckRequest { service: "crm.billing.v1.Nope".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn every_role_answers_health_through_the_gateway() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    wait_until_serving(&suite).await;
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_call_without_a_valid_key_is_unauthenticated() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();

    let mut anonymous = ContactsServiceClient::new(suite.channel(Role::Gateway).await.unwrap());
    let status = anonymous.list_events(ListEventsRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let mut request = tonic::Request::new(ListEventsRequest::default());
    request.metadata_mut().insert("authorization", "Bearer not-the-key".parse().unwrap());
    let status = anonymous.list_events(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let mut admin_anonymous = crm_proto::gateway::v1::gateway_admin_service_client::GatewayAdminServiceClient::new(
        suite.channel(Role::Gateway).await.unwrap(),
    );
    let status = admin_anonymous.list_events(ListEventsRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // With the key, the same call goes through.
    suite.contacts().await.unwrap().list_events(ListEventsRequest::default()).await.unwrap();
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_service_no_role_serves_is_unimplemented() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut grpc = tonic::client::Grpc::new(suite.authed(Role::Gateway).await.unwrap());
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<ListEventsRequest, ListEventsResponse, _>(
            tonic::Request::new(ListEventsRequest::default()),
            http::uri::PathAndQuery::from_static("/crm.billing.v1.BillingService/ListEvents"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    suite.shutdown().await.unwrap();
}

/// A call is held in flight by a table lock; shutdown starts and closes the
/// listener; the lock is released; the call still completes with OK.
#[tokio::test]
async fn shutdown_drains_a_call_in_flight() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    wait_until_serving(&suite).await;
    let gateway = suite.address(Role::Gateway);
    let mut contacts = suite.contacts().await.unwrap();

    let mut blocker = test_db.connect().await.unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("LOCK TABLE contacts.outbox IN ACCESS EXCLUSIVE MODE").execute(&mut blocker).await.unwrap();

    let in_flight = tokio::spawn(async move { contacts.list_events(ListEventsRequest::default()).await });
    let watcher = sqlx::PgPool::connect(&test_db.url).await.unwrap();
    eventually(Duration::from_secs(15), "the call to wait on the lock", || {
        let watcher = watcher.clone();
        async move {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&watcher)
            .await
            .unwrap();
            waiting > 0
        }
    })
    .await;

    let shutdown = tokio::spawn(suite.shutdown());
    eventually(Duration::from_secs(15), "the gateway to stop accepting connections", || async move {
        tokio::net::TcpStream::connect(gateway).await.is_err()
    })
    .await;
    assert!(!in_flight.is_finished(), "the call is still in flight while the suite shuts down");

    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();
    let response = in_flight.await.unwrap().expect("the call in flight completes");
    assert!(response.into_inner().events.is_empty());
    shutdown.await.unwrap().unwrap();
}

/// Feeds never end by themselves; shutdown must end them (with UNAVAILABLE, so
/// consumers resume elsewhere) instead of waiting out the grace period.
#[tokio::test]
async fn shutdown_ends_open_feeds_with_unavailable() {
    let test_db = TestDb::create().await.unwrap();
    // A grace period far longer than the bound below: only ending the streams lets shutdown finish in time.
    let long_grace = [("CRM_SHUTDOWN_GRACE".to_string(), "1h".to_string())];
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &long_grace).await.unwrap();
    wait_until_serving(&suite).await;

    let mut through_gateway =
        suite.contacts().await.unwrap().subscribe(SubscribeRequest::default()).await.unwrap().into_inner();
    let principal = Principal { key_id: "test".into(), roles: vec![AccessRole::Admin] };
    let direct_channel = suite.signed(Role::Interactions, principal, INTERNAL_SECRET).await.unwrap();
    let mut direct = InteractionsServiceClient::new(direct_channel)
        .subscribe(SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();

    tokio::time::timeout(Duration::from_secs(60), suite.shutdown())
        .await
        .expect("shutdown does not wait for open feeds")
        .unwrap();
    for stream in [&mut through_gateway, &mut direct] {
        let ended = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap();
        assert_eq!(ended.unwrap_err().code(), Code::Unavailable);
    }
}

/// The same calls work when the gateway and the roles run in different processes' worth of servers.
#[tokio::test]
async fn a_split_topology_routes_to_remote_roles() {
    let test_db = TestDb::create().await.unwrap();
    let roles = TestSuite::start_roles(&test_db, &Role::DOMAIN, &[]).await.unwrap();
    let upstreams = roles.upstream_vars();
    let gateway = TestSuite::start_roles(&test_db, &[Role::Gateway], &upstreams).await.unwrap();

    wait_until_serving(&gateway).await;
    let page = gateway.alerting().await.unwrap().list_events(ListEventsRequest::default()).await.unwrap();
    assert!(page.into_inner().events.is_empty());

    gateway.shutdown().await.unwrap();
    roles.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_count_calls_by_server_method_and_status() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    contacts.list_events(ListEventsRequest::default()).await.unwrap();
    let bad = ListEventsRequest { page_size: -5, ..Default::default() };
    assert_eq!(contacts.list_events(bad).await.unwrap_err().code(), Code::InvalidArgument);

    let metrics = scrape(suite.metrics_address().unwrap()).await;
    let has_line = |prefix: &str, parts: &[&str]| {
        metrics.lines().any(|line| line.starts_with(prefix) && parts.iter().all(|part| line.contains(part)))
    };
    for server in ["gateway", "contacts"] {
        let server_label = format!("server=\"{server}\"");
        assert!(
            has_line(
                "crm_rpc_requests_total{",
                &[&server_label, "rpc_method=\"ListEvents\"", "rpc_grpc_status=\"OK\""]
            ),
            "{metrics}"
        );
        assert!(
            has_line(
                "crm_rpc_errors_total{",
                &[&server_label, "rpc_method=\"ListEvents\"", "rpc_grpc_status=\"INVALID_ARGUMENT\""]
            ),
            "{metrics}"
        );
    }
    assert!(has_line("crm_rpc_duration_seconds_bucket{", &["rpc_service=\"crm.contacts.v1.ContactsService\""]));
    suite.shutdown().await.unwrap();
}

/// A web page's call: gRPC-Web over HTTP/1.1, after a CORS preflight.
#[tokio::test]
async fn a_browser_calls_the_suite_by_grpc_web() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let gateway = suite.address(Role::Gateway);

    let preflight = http1_exchange(
        gateway,
        &format!(
            "OPTIONS /crm.contacts.v1.ContactsService/ListEvents HTTP/1.1\r\nHost: {gateway}\r\n\
             Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: authorization,content-type,x-grpc-web\r\nConnection: close\r\n\r\n"
        ),
    )
    .await
    .to_ascii_lowercase();
    assert!(preflight.starts_with("http/1.1 200"), "{preflight}");
    assert!(preflight.contains("access-control-allow-origin: *"), "{preflight}");
    assert!(preflight.contains("authorization"), "{preflight}");

    // HTTP/1.1 only: the client cannot speak HTTP/2, so only gRPC-Web can work.
    let http1 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<tonic_web::GrpcWebCall<tonic::body::Body>>();
    let grpc_web = tower::ServiceBuilder::new().layer(tonic_web::GrpcWebClientLayer::new()).service(http1);
    let origin = http::Uri::try_from(format!("http://{gateway}")).unwrap();
    let mut contacts = ContactsServiceClient::with_origin(grpc_web, origin);

    let mut request = tonic::Request::new(ListEventsRequest::default());
    request.metadata_mut().insert("authorization", format!("Bearer {}", suite.admin_key).parse().unwrap());
    let page = contacts.list_events(request).await.unwrap();
    assert!(page.metadata().get("x-request-id").is_some(), "the request id comes back to the browser");
    // Errors come back as gRPC statuses too.
    let status = contacts.list_events(ListEventsRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    suite.shutdown().await.unwrap();
}

/// Sends one raw HTTP/1.1 request and reads the whole answer.
pub async fn http1_exchange(address: std::net::SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// `GET /metrics` over a plain TCP connection.
pub async fn scrape(address: std::net::SocketAddr) -> String {
    let response = http1_exchange(address, "GET /metrics HTTP/1.1\r\nHost: crm\r\nConnection: close\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// Holds `contacts.outbox` locked so that feed reads wait, until dropped.
struct OutboxLock(sqlx::PgConnection);

impl OutboxLock {
    async fn take(test_db: &TestDb) -> OutboxLock {
        let mut conn = test_db.connect().await.unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sqlx::query("LOCK TABLE contacts.outbox IN ACCESS EXCLUSIVE MODE").execute(&mut conn).await.unwrap();
        OutboxLock(conn)
    }

    async fn release(mut self) {
        sqlx::query("ROLLBACK").execute(&mut self.0).await.unwrap();
    }
}

fn timed_out(status: &tonic::Status) -> bool {
    matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled)
}

#[tokio::test]
async fn unary_calls_get_a_default_deadline_capped_at_the_maximum_and_streams_keep_none() {
    let test_db = TestDb::create().await.unwrap();
    let deadlines = [
        ("CRM_REQUEST_TIMEOUT".to_string(), "1s".to_string()),
        ("CRM_MAX_REQUEST_TIMEOUT".to_string(), "2s".to_string()),
    ];
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &deadlines).await.unwrap();
    wait_until_serving(&suite).await;
    let mut contacts = suite.contacts().await.unwrap();
    let bound = Duration::from_secs(60); // a guard against hanging, not a speed check

    // A feed opened before the lock is not cut by either deadline.
    let mut feed = contacts.subscribe(SubscribeRequest::default()).await.unwrap().into_inner();

    let lock = OutboxLock::take(&test_db).await;
    let without = tokio::time::timeout(bound, contacts.list_events(ListEventsRequest::default())).await.unwrap();
    let without = without.unwrap_err();
    assert!(timed_out(&without), "a unary call without a deadline gets the default: {without:?}");
    let mut long = tonic::Request::new(ListEventsRequest::default());
    long.set_timeout(Duration::from_secs(3600));
    let capped = tokio::time::timeout(bound, contacts.list_events(long)).await.unwrap();
    assert!(timed_out(&capped.unwrap_err()), "an hour is cut to the maximum");
    lock.release().await;

    // Longer than both deadlines later, the feed still delivers.
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    crate::support::commit_events(&pool, &[crate::support::test_event("late", 1)]).await;
    let event = tokio::time::timeout(bound, feed.message()).await.unwrap().unwrap().unwrap().event.unwrap();
    assert_eq!(event.aggregate_id, "late");
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn trace_context_and_request_ids_come_back() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut request = tonic::Request::new(ListEventsRequest::default());
    request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
    request.metadata_mut().insert("x-request-id", "req-42".parse().unwrap());
    let response = contacts.list_events(request).await.unwrap();
    assert_eq!(response.metadata().get("traceparent").unwrap(), traceparent);
    assert_eq!(response.metadata().get("x-request-id").unwrap(), "req-42");

    let minted = contacts.list_events(ListEventsRequest::default()).await.unwrap();
    let request_id = minted.metadata().get("x-request-id").unwrap().to_str().unwrap();
    assert!(uuid::Uuid::try_parse(request_id).is_ok(), "a request id is minted when none is sent: {request_id}");
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn losing_a_role_gives_unavailable_until_it_returns() {
    let test_db = TestDb::create().await.unwrap();
    let roles = TestSuite::start_roles(&test_db, &Role::DOMAIN, &[]).await.unwrap();
    let addresses: Vec<(Role, std::net::SocketAddr)> =
        Role::DOMAIN.iter().map(|role| (*role, roles.address(*role))).collect();
    let upstreams = roles.upstream_vars();
    let gateway = TestSuite::start_roles(&test_db, &[Role::Gateway], &upstreams).await.unwrap();
    let mut contacts = gateway.contacts().await.unwrap();
    contacts.list_events(ListEventsRequest::default()).await.unwrap();

    roles.shutdown().await.unwrap();
    let lost = contacts.list_events(ListEventsRequest::default()).await.unwrap_err();
    assert_eq!(lost.code(), Code::Unavailable, "{lost:?}");

    // The roles come back on the same addresses; the gateway reconnects by itself.
    let same_addresses: Vec<(String, String)> =
        addresses.iter().map(|(role, addr)| (format!("{}_ADDR", role.env_prefix()), addr.to_string())).collect();
    let back = TestSuite::start_roles(&test_db, &Role::DOMAIN, &same_addresses).await.unwrap();
    eventually(Duration::from_secs(30), "calls through the gateway to succeed again", || {
        let mut contacts = contacts.clone();
        async move { contacts.list_events(ListEventsRequest::default()).await.is_ok() }
    })
    .await;
    wait_until_serving(&gateway).await;
    gateway.shutdown().await.unwrap();
    back.shutdown().await.unwrap();
}

/// Two replicas of a role behind one gateway: when one dies it is ejected,
/// calls keep succeeding on the other, and the role stays SERVING.
#[tokio::test]
async fn a_failing_replica_is_ejected_and_the_other_serves() {
    let test_db = TestDb::create().await.unwrap();
    let first = TestSuite::start_roles(&test_db, &Role::DOMAIN, &[]).await.unwrap();
    let second = TestSuite::start_roles(&test_db, &[Role::Contacts], &[]).await.unwrap();
    let mut upstreams = first.upstream_vars();
    upstreams.retain(|(name, _)| name != "CRM_CONTACTS_UPSTREAMS");
    upstreams.push((
        "CRM_CONTACTS_UPSTREAMS".into(),
        format!("http://{},http://{}", first.address(Role::Contacts), second.address(Role::Contacts)),
    ));
    let gateway = TestSuite::start_roles(&test_db, &[Role::Gateway], &upstreams).await.unwrap();
    wait_until_serving(&gateway).await;
    let mut contacts = gateway.contacts().await.unwrap();
    for _ in 0..10 {
        contacts.list_events(ListEventsRequest::default()).await.unwrap();
    }

    second.shutdown().await.unwrap();
    // Once the dead replica is out of the set, every call lands on the live one.
    eventually(Duration::from_secs(30), "20 calls in a row to succeed on the remaining replica", || {
        let mut contacts = contacts.clone();
        async move {
            for _ in 0..20 {
                if contacts.list_events(ListEventsRequest::default()).await.is_err() {
                    return false;
                }
            }
            true
        }
    })
    .await;
    wait_until_serving(&gateway).await;

    gateway.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_oversized_request_is_refused_through_the_gateway() {
    let test_db = TestDb::create().await.unwrap();
    let limit = [("CRM_MAX_MESSAGE_BYTES".to_string(), "4096".to_string())];
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &limit).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let oversized = ListEventsRequest { event_types: vec!["x".repeat(150); 40], ..Default::default() };
    let status = contacts.list_events(oversized).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "a 6 kB message over a 4 kB limit is refused: {status:?}"
    );
    // The gateway's own service has the same limit.
    let mut admin = suite.gateway_admin().await.unwrap();
    let big_name = crm_proto::gateway::v1::CreateApiKeyRequest { display_name: "n".repeat(8000), roles: vec![] };
    let status = admin.create_api_key(big_name).await.unwrap_err();
    assert!(matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted), "{status:?}");
    // Within the limit, the same call works.
    contacts.list_events(ListEventsRequest::default()).await.unwrap();
    suite.shutdown().await.unwrap();
}

/// A feed through the gateway stays open for minutes, across idle gaps longer
/// than the HTTP/2 keep-alive interval, and delivers every event.
#[tokio::test]
async fn a_feed_through_the_gateway_runs_for_minutes() {
    const ROUNDS: i64 = 5;
    const IDLE: Duration = Duration::from_secs(30);
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    let mut feed = suite.contacts().await.unwrap().subscribe(SubscribeRequest::default()).await.unwrap().into_inner();

    for round in 0..ROUNDS {
        tokio::time::sleep(IDLE).await;
        crate::support::commit_events(&pool, &[crate::support::test_event("long-lived", round)]).await;
        let message = tokio::time::timeout(Duration::from_secs(30), feed.message()).await;
        let event = message.expect("the event arrives").expect("the stream is healthy").expect("the stream is open");
        let payload = event.event.unwrap().payload.unwrap();
        let amount = <crm_proto::common::v1::Money as prost::Message>::decode(payload.value.as_slice()).unwrap();
        assert_eq!(amount.minor_units, round);
    }
    suite.shutdown().await.unwrap();
}

/// One trace runs from the caller through the gateway to the role: the
/// gateway's span continues the caller's, and the role's continues the gateway's.
#[tokio::test]
async fn one_trace_runs_from_the_caller_through_the_gateway_to_the_role() {
    let exporter = crate::support::recorded_spans();

    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let trace_id = uuid::Uuid::now_v7().simple().to_string(); // 32 hex digits, unique to this test
    let caller_span = "00f067aa0ba902b7";
    let mut request = tonic::Request::new(ListEventsRequest::default());
    request.metadata_mut().insert("traceparent", format!("00-{trace_id}-{caller_span}-01").parse().unwrap());
    suite.contacts().await.unwrap().list_events(request).await.unwrap();
    suite.shutdown().await.unwrap();

    use opentelemetry::trace::SpanKind;
    let spans = exporter.get_finished_spans().unwrap();
    // Named by the method, as OpenTelemetry's RPC conventions name them.
    let in_trace: Vec<_> = spans
        .iter()
        .filter(|span| {
            span.name == "crm.contacts.v1.ContactsService/ListEvents"
                && span.span_context.trace_id().to_string() == trace_id
        })
        .collect();
    let gateway = in_trace
        .iter()
        .find(|span| span.parent_span_id.to_string() == caller_span && span.span_kind == SpanKind::Server)
        .unwrap_or_else(|| panic!("no span continues the caller's: {in_trace:#?}"));
    let hop = in_trace
        .iter()
        .find(|span| span.parent_span_id == gateway.span_context.span_id() && span.span_kind == SpanKind::Client)
        .unwrap_or_else(|| panic!("the gateway's call to the role is no client span of its own: {in_trace:#?}"));
    let role = in_trace
        .iter()
        .find(|span| span.parent_span_id == hop.span_context.span_id() && span.span_kind == SpanKind::Server)
        .unwrap_or_else(|| panic!("the role's span does not continue the gateway's call: {in_trace:#?}"));
    let principal = |span: &opentelemetry_sdk::trace::SpanData| {
        span.attributes.iter().find(|kv| kv.key.as_str() == "principal").map(|kv| kv.value.to_string())
    };
    assert_eq!(principal(gateway).as_deref(), Some("bootstrap"));
    assert_eq!(principal(role).as_deref(), Some("bootstrap"), "the role records the principal the gateway signed");
}

/// Standard tools (grpcurl, Postman) start by asking reflection what the
/// gateway serves: every service of the suite, in both reflection versions.
#[tokio::test]
async fn reflection_at_the_gateway_lists_every_service_of_the_suite() {
    use tonic_reflection::pb::{v1, v1alpha};

    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let channel = suite.channel(Role::Gateway).await.unwrap();

    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let mut answers = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(listed)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("reflection did not list services");
    };
    let listed: Vec<String> = listed.service.into_iter().map(|service| service.name).collect();
    for service in crm_proto::services() {
        assert!(listed.contains(&service.name), "{} missing from {listed:?}", service.name);
    }
    assert!(listed.contains(&"grpc.health.v1.Health".to_string()), "{listed:?}");

    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let mut answers = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    assert!(matches!(
        answers.message().await.unwrap().unwrap().message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(_))
    ));
    suite.shutdown().await.unwrap();
}
