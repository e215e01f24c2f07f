//! HTTP/2 abuse from one client does not starve another: a rapid-reset
//! flood (CVE-2023-44487) against the gateway while a normal caller works.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use crm_platform::Role;
use crm_proto::events::v1::ListEventsRequest;
use crm_testkit::{TestDb, TestSuite};

/// Opens streams and resets each at once, on one connection, until `stop`
/// or until the server closes the connection; returns the streams opened
/// and whether the server cut the connection.
async fn rapid_reset(address: std::net::SocketAddr, stop: Arc<AtomicBool>, opened: Arc<AtomicUsize>) -> bool {
    let Ok(tcp) = tokio::net::TcpStream::connect(address).await else { return true };
    let Ok((mut client, connection)) = h2::client::handshake(tcp).await else { return true };
    let connection = tokio::spawn(connection);
    while !stop.load(Ordering::Relaxed) {
        client = match client.ready().await {
            Ok(ready) => ready,
            Err(_) => return true,
        };
        let request = http::Request::post("/crm.contacts.v1.ContactsService/ListEvents")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        match client.send_request(request, false) {
            Ok((_response, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                opened.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => return true,
        }
        if opened.load(Ordering::Relaxed).is_multiple_of(64) {
            tokio::task::yield_now().await;
        }
    }
    drop(client);
    connection.abort();
    false
}

#[tokio::test]
async fn a_rapid_reset_flood_from_one_client_does_not_starve_another() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    contacts.list_events(ListEventsRequest::default()).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let mut flooders = Vec::new();
    for _ in 0..4 {
        let (stop, opened) = (stop.clone(), opened.clone());
        let address = suite.address(Role::Gateway);
        flooders.push(tokio::spawn(async move {
            let mut cut = 0;
            // A flooder that is cut off comes back on a new connection.
            while !stop.load(Ordering::Relaxed) {
                if rapid_reset(address, stop.clone(), opened.clone()).await {
                    cut += 1;
                }
            }
            cut
        }));
    }
    crate::support::eventually(Duration::from_secs(30), "the flood under way", || {
        let opened = opened.load(Ordering::Relaxed);
        async move { opened > 2_000 }
    })
    .await;

    // The other caller is answered throughout (a bound on waiting, not a timing).
    for _ in 0..50 {
        let call = tokio::time::timeout(Duration::from_secs(10), contacts.list_events(ListEventsRequest::default()));
        assert!(matches!(call.await, Ok(Ok(_))), "a normal caller starved during a rapid-reset flood");
    }
    stop.store(true, Ordering::Relaxed);
    let mut cut = 0;
    for flooder in flooders {
        cut += flooder.await.unwrap();
    }
    // The guard closed flooding connections (GOAWAY) instead of serving them on.
    assert!(cut > 0, "no flooding connection was ever cut");
    println!(
        "rapid reset: {} streams opened and reset, connections cut by the server: {cut}",
        opened.load(Ordering::Relaxed)
    );
    suite.shutdown().await.unwrap();
}
