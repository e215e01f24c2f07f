//! Strangers trying made-up keys cannot lock out the keys that work.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use crm_platform::Role;
use crm_proto::{
    contacts::v1::contacts_service_client::ContactsServiceClient, events::v1::ListEventsRequest,
    gateway::v1::CreateApiKeyRequest,
};
use crm_testkit::{BearerKey, TestDb, TestSuite};
use tonic::{
    Code,
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

/// A connection to the gateway from the local address `local`.
async fn channel_from(suite: &TestSuite, local: IpAddr) -> Channel {
    Endpoint::from_shared(format!("http://{}", suite.address(Role::Gateway)))
        .unwrap()
        .local_address(Some(local))
        .connect()
        .await
        .unwrap()
}

/// A contacts client connecting from `local` with `key`.
async fn client_from(
    suite: &TestSuite,
    local: IpAddr,
    key: &str,
) -> ContactsServiceClient<InterceptedService<Channel, BearerKey>> {
    ContactsServiceClient::new(InterceptedService::new(channel_from(suite, local).await, BearerKey::new(key)))
}

#[tokio::test]
async fn a_flood_of_made_up_keys_from_one_address_leaves_real_keys_working() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let secret = |n: usize| {
        let created = suite.gateway_admin();
        async move {
            let request = CreateApiKeyRequest { display_name: format!("real key {n}"), roles: vec!["agent".into()] };
            created.await.unwrap().create_api_key(request).await.unwrap().into_inner().secret
        }
    };
    let (warm, fresh) = (secret(1).await, secret(2).await);
    let home = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut warm_client = client_from(&suite, home, &warm).await;
    warm_client.list_events(ListEventsRequest::default()).await.unwrap();

    // Six strangers on 127.0.0.2, each sending well-formed random keys as fast as they can.
    let stop = Arc::new(AtomicBool::new(false));
    let (tried, held_back) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut strangers = Vec::new();
    for _ in 0..6 {
        let mut client =
            ContactsServiceClient::new(channel_from(&suite, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))).await);
        let (stop, tried, held_back) = (stop.clone(), tried.clone(), held_back.clone());
        strangers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A new made-up key every call: none is ever cached.
                let key = format!("Bearer crm_{}_x", uuid::Uuid::now_v7().simple());
                let mut request = tonic::Request::new(ListEventsRequest::default());
                request.metadata_mut().insert("authorization", key.parse().unwrap());
                let refused = client.list_events(request).await.unwrap_err();
                match refused.code() {
                    Code::Unauthenticated => {}
                    Code::Unavailable => {
                        held_back.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("a stranger got {other:?}"),
                }
                tried.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Until the strangers' address is being held back.
    crate::support::eventually(std::time::Duration::from_secs(30), "strangers held back", || {
        let held_back = held_back.load(Ordering::Relaxed);
        async move { held_back > 100 }
    })
    .await;

    // A key used for the first time, and a key in use, from home: every call works.
    let mut fresh_client = client_from(&suite, home, &fresh).await;
    for _ in 0..100 {
        fresh_client.list_events(ListEventsRequest::default()).await.unwrap();
        warm_client.list_events(ListEventsRequest::default()).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for stranger in strangers {
        stranger.await.unwrap();
    }
    assert!(tried.load(Ordering::Relaxed) > held_back.load(Ordering::Relaxed));
    suite.shutdown().await.unwrap();
}
