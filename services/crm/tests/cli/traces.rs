//! Traces a tracing backend can use: `crm serve` sends its spans by OTLP to
//! a real OTLP/gRPC receiver (OpenTelemetry's own `TraceService`, served by
//! the test), and they follow OpenTelemetry's RPC and database conventions.

use std::{
    collections::HashMap,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use crm_proto::contacts::v1::{CreateContactRequest, contacts_service_client::ContactsServiceClient};
use crm_testkit::{BearerKey, TestDb};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
    trace::v1::{Span, span::SpanKind},
};
use tokio::process::Command;
use tonic::{Request, Response, Status, service::interceptor::InterceptedService};

const ADMIN_KEY: &str = "crm_traces_admin_key_0123456789abcdef";

/// Every span received, with its process's `service.name`.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<(String, Span)>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut received = self.0.lock().unwrap();
        for batch in request.into_inner().resource_spans {
            let attributes = batch.resource.map(|resource| resource.attributes).unwrap_or_default();
            let service = text(&attributes, "service.name").unwrap_or_default();
            for spans in batch.scope_spans {
                received.extend(spans.spans.into_iter().map(|span| (service.clone(), span)));
            }
        }
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes.iter().find(|pair| pair.key == key)?.value.as_ref().and_then(|value: &AnyValue| value.value.as_ref())
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key)? {
        Value::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key)? {
        Value::IntValue(value) => Some(*value),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_traced_as_a_server_client_server_chain_with_its_database_spans_by_the_conventions() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    let receiver = Receiver::default();
    let serving = receiver.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(serving))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });

    let db = TestDb::create().await.unwrap();
    let gateway = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_crm"));
    command
        .args(["serve", "--target", "all"])
        .env("DATABASE_URL", &db.url)
        .env("CRM_BOOTSTRAP_ADMIN_KEY", ADMIN_KEY)
        .env("CRM_INTERNAL_SECRET", "traces-internal-secret-0123456789abcdef")
        .env("CRM_GATEWAY_ADDR", gateway.to_string())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
        .env_remove("OTEL_SERVICE_NAME")
        .env("CRM_METRICS_ADDR", "off")
        .env("CRM_LOG", "warn")
        .env("CRM_SHUTDOWN_GRACE", "1s")
        .env("CRM_DB_MAX_CONNECTIONS", "5")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for role in ["CONTACTS", "INTERACTIONS", "SEGMENTATION", "ALERTING"] {
        command.env(format!("CRM_{role}_ADDR"), "127.0.0.1:0");
    }
    let mut serve = command.spawn().unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let channel = loop {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{gateway}")).unwrap();
        if let Ok(channel) = endpoint.connect().await {
            break channel;
        }
        assert!(tokio::time::Instant::now() < deadline, "crm serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut contacts = ContactsServiceClient::new(InterceptedService::new(channel, BearerKey::new(ADMIN_KEY)));
    let contact = crm_proto::contacts::v1::Contact {
        given_name: "Trace".into(),
        family_name: "Able".into(),
        ..Default::default()
    };
    let created = loop {
        // The roles may still be starting behind the gateway.
        match contacts
            .create_contact(CreateContactRequest { contact: Some(contact.clone()), ..Default::default() })
            .await
        {
            Ok(created) => break created.into_inner(),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                assert!(tokio::time::Instant::now() < deadline, "{status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    };
    assert!(!created.id.is_empty());

    // The spans of the successful call: the batch exporter sends every few seconds.
    const NAME: &str = "crm.contacts.v1.ContactsService/CreateContact";
    let chain = loop {
        let spans = receiver.0.lock().unwrap().clone();
        let servers: Vec<&(String, Span)> = spans
            .iter()
            .filter(|(_, span)| {
                span.name == NAME
                    && span.kind == SpanKind::Server as i32
                    && int(&span.attributes, "rpc.grpc.status_code") == Some(0)
            })
            .collect();
        let by_id: HashMap<&[u8], &(String, Span)> =
            spans.iter().map(|entry| (entry.1.span_id.as_slice(), entry)).collect();
        // The role's server span, whose parent is the gateway's client span, whose parent is the gateway's server span.
        let found = servers.iter().find_map(|role| {
            let client = by_id.get(role.1.parent_span_id.as_slice())?;
            let gateway = by_id.get(client.1.parent_span_id.as_slice())?;
            (client.1.kind == SpanKind::Client as i32 && client.1.name == NAME && gateway.1.name == NAME)
                .then(|| (gateway.1.clone(), client.1.clone(), role.1.clone(), role.0.clone(), spans.clone()))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(tokio::time::Instant::now() < deadline + Duration::from_secs(30), "no such chain in {spans:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (gateway_span, client_span, role_span, service, spans) = chain;
    assert_eq!(gateway_span.kind, SpanKind::Server as i32);
    assert!(gateway_span.parent_span_id.is_empty(), "the client sent no trace: the gateway's span is the root");
    assert!([&client_span, &role_span].iter().all(|span| span.trace_id == gateway_span.trace_id), "one trace");
    assert_eq!(service, "crm", "every role in one process is the service crm");
    for span in [&gateway_span, &client_span, &role_span] {
        assert_eq!(text(&span.attributes, "rpc.system").as_deref(), Some("grpc"), "{span:?}");
        assert_eq!(text(&span.attributes, "rpc.service").as_deref(), Some("crm.contacts.v1.ContactsService"));
        assert_eq!(text(&span.attributes, "rpc.method").as_deref(), Some("CreateContact"));
    }
    assert_eq!(int(&gateway_span.attributes, "rpc.grpc.status_code"), Some(0));

    // The database's time is visible: the store's spans under the role's, by the database conventions.
    let database: Vec<&Span> = spans
        .iter()
        .map(|(_, span)| span)
        .filter(|span| span.trace_id == role_span.trace_id && span.parent_span_id == role_span.span_id)
        .filter(|span| text(&span.attributes, "db.system.name").as_deref() == Some("postgresql"))
        .collect();
    let names: Vec<&str> = database.iter().map(|span| span.name.as_str()).collect();
    assert!(names.contains(&"contacts.create"), "{names:?}");
    assert!(database.iter().all(|span| span.kind == SpanKind::Client as i32
        && text(&span.attributes, "db.operation.name").is_some()
        && text(&span.attributes, "db.query.text").is_none()));
    assert!(spans.iter().all(|(_, span)| span.name != "rpc"), "no span is named only rpc");

    serve.kill().await.unwrap();
}
