//! Who may do what: API keys, revocation across gateway replicas, the
//! authorization matrix over every method, and identity the roles verify.

use std::time::Duration;

use crm_platform::{
    Role,
    principal::{AccessRole, Principal},
};
use crm_proto::{
    contacts::v1::contacts_service_client::ContactsServiceClient,
    events::v1::ListEventsRequest,
    gateway::v1::{
        CreateApiKeyRequest, GetApiKeyRequest, ListApiKeysRequest, RevokeApiKeyRequest,
        gateway_admin_service_client::GatewayAdminServiceClient,
    },
};
use crm_testkit::{INTERNAL_SECRET, TestDb, TestSuite};
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::eventually;

/// Creates a key with `roles` through `suite`'s gateway; returns (id, secret).
pub async fn create_key(suite: &TestSuite, roles: &[&str]) -> (String, String) {
    let request = CreateApiKeyRequest {
        display_name: format!("test key {}", roles.join("+")),
        roles: roles.iter().map(|role| role.to_string()).collect(),
    };
    let created = suite.gateway_admin().await.unwrap().create_api_key(request).await.unwrap().into_inner();
    (created.api_key.unwrap().id, created.secret)
}

fn violated_fields(status: &tonic::Status) -> Vec<String> {
    status
        .check_error_details()
        .unwrap()
        .bad_request()
        .map(|bad| bad.field_violations.iter().map(|violation| violation.field.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn api_keys_are_created_used_listed_and_revoked() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut admin = suite.gateway_admin().await.unwrap();

    let (agent_id, agent_secret) = create_key(&suite, &["agent"]).await;
    assert!(agent_secret.starts_with("crm_"));
    let mut as_agent = ContactsServiceClient::new(suite.with_key(Role::Gateway, &agent_secret).await.unwrap());
    as_agent.list_events(ListEventsRequest::default()).await.unwrap();

    // An agent is no administrator.
    let mut agent_admin = GatewayAdminServiceClient::new(suite.with_key(Role::Gateway, &agent_secret).await.unwrap());
    let denied = agent_admin.list_api_keys(ListApiKeysRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("gateway.admin"), "{}", denied.message());

    // A key made by a non-bootstrap admin records that admin as its creator.
    let (second_admin_id, second_admin_secret) = create_key(&suite, &["admin"]).await;
    let mut second_admin =
        GatewayAdminServiceClient::new(suite.with_key(Role::Gateway, &second_admin_secret).await.unwrap());
    let made = second_admin
        .create_api_key(CreateApiKeyRequest { display_name: "by the second admin".into(), roles: vec!["sre".into()] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.api_key.unwrap().creator, second_admin_id);

    let listed = admin.list_api_keys(ListApiKeysRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.api_keys.len(), 3);
    assert!(listed.api_keys.windows(2).all(|pair| pair[0].id > pair[1].id), "newest first");

    // Revoked: refused at once by this gateway, hidden from the default list, and revoking again changes nothing.
    let revoked = admin.revoke_api_key(RevokeApiKeyRequest { id: agent_id.clone() }).await.unwrap().into_inner();
    assert!(revoked.revoke_time.is_some());
    assert_eq!(revoked.revoker, "bootstrap");
    let refused = as_agent.list_events(ListEventsRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("revoked"), "{}", refused.message());
    let again = admin.revoke_api_key(RevokeApiKeyRequest { id: agent_id.clone() }).await.unwrap().into_inner();
    assert_eq!(again.revoke_time, revoked.revoke_time);
    let listed = admin.list_api_keys(ListApiKeysRequest::default()).await.unwrap().into_inner();
    assert!(listed.api_keys.iter().all(|key| key.id != agent_id));
    let with_revoked =
        admin.list_api_keys(ListApiKeysRequest { show_revoked: true, ..Default::default() }).await.unwrap();
    assert!(with_revoked.into_inner().api_keys.iter().any(|key| key.id == agent_id));

    // A key whose random part was altered is refused.
    let tampered = format!("{}x", &agent_secret[..agent_secret.len() - 1]);
    let mut as_tampered = ContactsServiceClient::new(suite.with_key(Role::Gateway, &tampered).await.unwrap());
    assert_eq!(as_tampered.list_events(ListEventsRequest::default()).await.unwrap_err().code(), Code::Unauthenticated);

    // Bad input names its fields; unknown ids are NOT_FOUND.
    let bad = CreateApiKeyRequest { display_name: " ".into(), roles: vec!["agent".into(), "root".into()] };
    let status = admin.create_api_key(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["display_name", "roles[1]"]);
    let status = admin.get_api_key(GetApiKeyRequest { id: "not-a-uuid".into() }).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["id"]);
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(admin.get_api_key(GetApiKeyRequest { id: unknown }).await.unwrap_err().code(), Code::NotFound);
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn list_api_keys_pages_through_every_key() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(create_key(&suite, &["analyst"]).await.0);
    }
    let mut admin = suite.gateway_admin().await.unwrap();
    let mut seen = Vec::new();
    let mut request = ListApiKeysRequest { page_size: 2, ..Default::default() };
    loop {
        let page = admin.list_api_keys(request.clone()).await.unwrap().into_inner();
        seen.extend(page.api_keys.into_iter().map(|key| key.id));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    created.reverse();
    assert_eq!(seen, created);
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_revoked_key_is_refused_by_every_gateway_replica() {
    let test_db = TestDb::create().await.unwrap();
    let roles = TestSuite::start_roles(&test_db, &Role::DOMAIN, &[]).await.unwrap();
    let upstreams = roles.upstream_vars();
    let replica_a = TestSuite::start_roles(&test_db, &[Role::Gateway], &upstreams).await.unwrap();
    let replica_b = TestSuite::start_roles(&test_db, &[Role::Gateway], &upstreams).await.unwrap();

    let (id, secret) = create_key(&replica_a, &["integration"]).await;
    let mut via_b = ContactsServiceClient::new(replica_b.with_key(Role::Gateway, &secret).await.unwrap());
    via_b.list_events(ListEventsRequest::default()).await.unwrap(); // replica B now caches the key

    replica_a.gateway_admin().await.unwrap().revoke_api_key(RevokeApiKeyRequest { id }).await.unwrap();
    eventually(Duration::from_secs(10), "replica B to refuse the revoked key", || {
        let mut via_b = via_b.clone();
        async move {
            matches!(via_b.list_events(ListEventsRequest::default()).await,
                Err(status) if status.code() == Code::Unauthenticated)
        }
    })
    .await;

    replica_a.shutdown().await.unwrap();
    replica_b.shutdown().await.unwrap();
    roles.shutdown().await.unwrap();
}

/// Calls every method of every service with a key of every access role: the
/// gateway allows exactly what the policy grants (an allowed call may still
/// fail for its empty request, but never with PERMISSION_DENIED).
#[tokio::test]
async fn the_authorization_matrix_matches_the_policy() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut calls = 0;
    for role in AccessRole::ALL {
        let (_, secret) = create_key(&suite, &[role.as_str()]).await;
        let principal = Principal { key_id: "matrix".into(), roles: vec![role] };
        let mut grpc = tonic::client::Grpc::new(suite.with_key(Role::Gateway, &secret).await.unwrap());
        for service in crm_proto::services() {
            for method in &service.methods {
                let path = service.path(method);
                let scope = crm_gateway::policy::required_scope(&path).unwrap();
                let allowed = crm_gateway::policy::allows(&principal, scope);
                grpc.ready().await.unwrap();
                let path_and_query = http::uri::PathAndQuery::try_from(path.as_str()).unwrap();
                let codec = tonic_prost::ProstCodec::<(), ()>::default();
                let outcome = if method.server_streaming {
                    grpc.server_streaming(tonic::Request::new(()), path_and_query, codec).await.map(|_| ())
                } else {
                    grpc.unary(tonic::Request::new(()), path_and_query, codec).await.map(|_| ())
                };
                let denied = matches!(&outcome, Err(status) if status.code() == Code::PermissionDenied);
                assert_eq!(denied, !allowed, "{role} calling {path}: {outcome:?}");
                if let Err(status) = &outcome {
                    assert_ne!(status.code(), Code::Unauthenticated, "{role} calling {path}");
                }
                calls += 1;
            }
        }
    }
    assert!(calls >= 5 * 14, "the matrix covered {calls} calls");
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_role_refuses_identity_a_gateway_did_not_sign() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let admin = Principal { key_id: "someone".into(), roles: vec![AccessRole::Admin] };

    // Straight to the role without any identity.
    let mut anonymous = ContactsServiceClient::new(suite.channel(Role::Contacts).await.unwrap());
    let status = anonymous.list_events(ListEventsRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // Identity headers signed with a secret that is not the install's.
    let forger = suite.signed(Role::Contacts, admin.clone(), "not-the-internal-secret-at-all-000").await.unwrap();
    let status = ContactsServiceClient::new(forger).list_events(ListEventsRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("forged"), "{}", status.message());

    // A bare header claiming to be admin, with no signature at all.
    let mut request = tonic::Request::new(ListEventsRequest::default());
    request.metadata_mut().insert("x-crm-principal", "v1;someone;admin;0".parse().unwrap());
    assert_eq!(anonymous.list_events(request).await.unwrap_err().code(), Code::Unauthenticated);

    // Signed with the install's secret, as the gateway does: accepted. Health stays open.
    let gateway_like = suite.signed(Role::Contacts, admin, INTERNAL_SECRET).await.unwrap();
    ContactsServiceClient::new(gateway_like).list_events(ListEventsRequest::default()).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(suite.channel(Role::Contacts).await.unwrap());
    health.check(tonic_health::pb::HealthCheckRequest::default()).await.unwrap();
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_key_has_its_own_rate_limit_with_a_retry_delay() {
    let test_db = TestDb::create().await.unwrap();
    let limits = [("CRM_RATE_LIMITS".to_string(), "analyst=1/s:3".to_string())];
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &limits).await.unwrap();
    let (_, first_secret) = create_key(&suite, &["analyst"]).await;
    let (_, second_secret) = create_key(&suite, &["analyst"]).await;
    let mut first = ContactsServiceClient::new(suite.with_key(Role::Gateway, &first_secret).await.unwrap());

    // A burst of 3 passes; well before 20 calls at one token per second the bucket is empty.
    let mut outcomes = Vec::new();
    for _ in 0..20 {
        outcomes.push(first.list_events(ListEventsRequest::default()).await);
    }
    assert!(outcomes[..3].iter().all(Result::is_ok), "the burst is allowed: {outcomes:?}");
    let limited = outcomes.iter().find_map(|outcome| outcome.as_ref().err()).expect("the limit is reached");
    assert_eq!(limited.code(), Code::ResourceExhausted);
    let retry = limited.check_error_details().unwrap().retry_info().cloned().expect("a retry delay");
    let delay = retry.retry_delay.unwrap();
    assert!(delay > Duration::ZERO && delay <= Duration::from_secs(1), "{delay:?}");

    // Another key of the same role has its own bucket.
    let mut second = ContactsServiceClient::new(suite.with_key(Role::Gateway, &second_secret).await.unwrap());
    second.list_events(ListEventsRequest::default()).await.unwrap();
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_key_may_hold_only_so_many_streams_open() {
    let test_db = TestDb::create().await.unwrap();
    let cap = [("CRM_MAX_STREAMS_PER_KEY".to_string(), "2".to_string())];
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &cap).await.unwrap();
    let (_, secret) = create_key(&suite, &["integration"]).await;
    let mut contacts = ContactsServiceClient::new(suite.with_key(Role::Gateway, &secret).await.unwrap());
    let subscribe = || crm_proto::events::v1::SubscribeRequest::default();

    let first = contacts.subscribe(subscribe()).await.unwrap();
    let _second = contacts.subscribe(subscribe()).await.unwrap();
    let third = contacts.subscribe(subscribe()).await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted);
    // Unary calls are not streams.
    contacts.list_events(ListEventsRequest::default()).await.unwrap();
    // Other keys are not affected.
    suite.contacts().await.unwrap().subscribe(subscribe()).await.unwrap();

    drop(first);
    eventually(Duration::from_secs(10), "the closed stream to free its slot", || {
        let mut contacts = contacts.clone();
        async move { contacts.subscribe(subscribe()).await.is_ok() }
    })
    .await;
    suite.shutdown().await.unwrap();
}

/// A token from the identity provider, signed with `secret` under key `kid`.
fn jwt(secret: &[u8], kid: &str, claims: serde_json::Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap()
}

#[tokio::test]
async fn jwts_from_the_identity_provider_are_verified_against_its_jwks() {
    use base64::Engine;
    let test_db = TestDb::create().await.unwrap();
    let secret = b"identity-provider-signing-secret-0123456789";
    let jwks = serde_json::json!({"keys": [{
        "kty": "oct", "kid": "k1", "alg": "HS256",
        "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
    }]});
    let jwks_file = std::env::temp_dir().join(format!("crm-jwks-{}.json", uuid::Uuid::now_v7().simple()));
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    let settings = [
        ("CRM_JWT_JWKS_FILE".to_string(), jwks_file.display().to_string()),
        ("CRM_JWT_ISSUER".to_string(), "https://id.example".to_string()),
        ("CRM_JWT_AUDIENCE".to_string(), "crm".to_string()),
    ];
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &settings).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = |audience: &str, expires: u64| {
        serde_json::json!({"sub": "alice", "iss": "https://id.example", "aud": audience, "exp": expires,
                           "crm_roles": ["agent", "unknown-role"]})
    };
    let call = |token: String| {
        let suite = &suite;
        async move {
            let mut contacts = ContactsServiceClient::new(suite.with_key(Role::Gateway, &token).await.unwrap());
            contacts.list_events(ListEventsRequest::default()).await.map(|_| ())
        }
    };

    call(jwt(secret, "k1", claims("crm", now + 600))).await.unwrap();
    // The roles claim decides the scopes: an agent is no administrator.
    let agent = jwt(secret, "k1", claims("crm", now + 600));
    let mut admin = GatewayAdminServiceClient::new(suite.with_key(Role::Gateway, &agent).await.unwrap());
    assert_eq!(admin.list_api_keys(ListApiKeysRequest::default()).await.unwrap_err().code(), Code::PermissionDenied);

    for (why, token) in [
        ("expired", jwt(secret, "k1", claims("crm", now - 3600))),
        ("another audience", jwt(secret, "k1", claims("billing", now + 600))),
        ("another signing key", jwt(b"someone-else-entirely-0123456789abcdef", "k1", claims("crm", now + 600))),
        ("a key not in the JWKS", jwt(secret, "k2", claims("crm", now + 600))),
    ] {
        let status = call(token).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{why}: {status:?}");
    }
    suite.shutdown().await.unwrap();
    std::fs::remove_file(jwks_file).unwrap();
}

/// Made-up keys cost a database lookup each; the gateway caps those lookups
/// so that a flood of them cannot become a flood of queries.
#[tokio::test]
async fn a_flood_of_made_up_keys_is_capped_and_real_keys_still_work() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let channel = suite.channel(Role::Gateway).await.unwrap();
    let attempts = (0..2000).map(|_| {
        let mut contacts = ContactsServiceClient::new(channel.clone());
        async move {
            let made_up = format!("crm_{}_not-a-real-secret", uuid::Uuid::now_v7().simple());
            let mut request = tonic::Request::new(ListEventsRequest::default());
            request.metadata_mut().insert("authorization", format!("Bearer {made_up}").parse().unwrap());
            contacts.list_events(request).await.unwrap_err().code()
        }
    });
    let codes = futures_util::future::join_all(attempts).await;
    assert!(codes.iter().all(|code| matches!(code, Code::Unauthenticated | Code::Unavailable)), "{codes:?}");
    assert!(codes.contains(&Code::Unavailable), "lookups of unknown keys are capped");
    suite.contacts().await.unwrap().list_events(ListEventsRequest::default()).await.unwrap();
    suite.shutdown().await.unwrap();
}
