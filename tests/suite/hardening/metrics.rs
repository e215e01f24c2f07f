//! What a caller sends never becomes a metric label unless it names a method.

use crm_platform::Role;
use crm_proto::events::v1::{ListEventsRequest, ListEventsResponse};
use crm_testkit::{TestDb, TestSuite};
use tonic::Code;

use crate::gateway::scrape;

#[tokio::test]
async fn junk_paths_without_a_key_share_one_label_and_do_not_grow_metrics() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    contacts.list_events(ListEventsRequest::default()).await.unwrap();
    let before = scrape(suite.metrics_address().unwrap()).await;

    // 500 made-up paths of 1 KB each, no key: before, each became a series
    // of its own (2,100 grew /metrics from 131 KB to 5.9 MB).
    let channel = suite.channel(Role::Gateway).await.unwrap();
    for index in 0..500 {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let path = format!("/junk{index}.{}/Method{index}", "x".repeat(1000));
        let codec = tonic_prost::ProstCodec::<ListEventsRequest, ListEventsResponse>::default();
        let refused = grpc
            .unary(tonic::Request::new(ListEventsRequest::default()), path.parse().unwrap(), codec)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
    }
    let after = scrape(suite.metrics_address().unwrap()).await;
    assert!(!after.contains("junk"), "a junk path became a label");
    assert!(after.contains("rpc_method=\"unknown\""), "junk calls are counted under one label");
    // A new series or two (the unknown label's), not 500: well under 500 KB more.
    assert!(after.len() < before.len() + 50_000, "{} -> {} bytes", before.len(), after.len());
    // Real methods keep their own series.
    assert!(after.contains("rpc_method=\"ListEvents\""));
    suite.shutdown().await.unwrap();
}
