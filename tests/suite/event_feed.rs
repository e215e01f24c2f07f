//! Every role's `Subscribe` and `ListEvents`, called through the gateway.

use std::time::Duration;

use crm_platform::Role;
use crm_proto::events::v1::{EventPosition, ListEventsRequest, SubscribeRequest};
use crm_testkit::{TestDb, TestSuite};
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::{commit_events, test_event};

fn amount_of(event: &crm_proto::events::v1::Event) -> i64 {
    use prost::Message;
    let payload = event.payload.as_ref().unwrap();
    assert_eq!(payload.type_url, "type.googleapis.com/crm.common.v1.Money");
    crm_proto::common::v1::Money::decode(payload.value.as_slice()).unwrap().minor_units
}

#[tokio::test]
async fn subscribe_delivers_history_then_live_events_and_resumes_after_a_position() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    for amount in 1..=5 {
        commit_events(&pool, &[test_event("c1", amount)]).await;
    }

    let mut contacts = suite.contacts().await.unwrap();
    let mut stream = contacts.subscribe(SubscribeRequest::default()).await.unwrap().into_inner();
    let mut history = Vec::new();
    for _ in 0..5 {
        history.push(stream.message().await.unwrap().unwrap().event.unwrap());
    }
    assert_eq!(history.iter().map(amount_of).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(history[0].r#type, "crm.common.v1.Money");
    assert_eq!(history[0].aggregate_id, "c1");
    assert_eq!(history[0].request_id, "req-test");

    // A new commit reaches the open stream (woken by NOTIFY).
    commit_events(&pool, &[test_event("c1", 6)]).await;
    let live = tokio::time::timeout(Duration::from_secs(30), stream.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(amount_of(&live.event.unwrap()), 6);
    drop(stream);

    // A consumer that stopped after the third event resumes exactly there.
    let after: EventPosition = history[2].position.unwrap();
    let mut resumed = contacts
        .subscribe(SubscribeRequest { after: Some(after), event_types: vec![], live: false, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut amounts = Vec::new();
    for _ in 0..3 {
        amounts.push(amount_of(&resumed.message().await.unwrap().unwrap().event.unwrap()));
    }
    assert_eq!(amounts, [4, 5, 6]);
    suite.shutdown().await.unwrap();
}

async fn next(
    stream: &mut tonic::Streaming<crm_proto::events::v1::SubscribeResponse>,
) -> crm_proto::events::v1::SubscribeResponse {
    tokio::time::timeout(Duration::from_secs(30), stream.message()).await.unwrap().unwrap().unwrap()
}

#[tokio::test]
async fn subscribe_says_when_it_has_caught_up_if_asked() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    for amount in 1..=3 {
        commit_events(&pool, &[test_event("c1", amount)]).await;
    }
    let mut contacts = suite.contacts().await.unwrap();
    let marked = SubscribeRequest { caught_up_markers: true, ..Default::default() };
    let mut stream = contacts.subscribe(marked).await.unwrap().into_inner();
    let mut history = Vec::new();
    for _ in 0..3 {
        let message = next(&mut stream).await;
        assert!(message.caught_up.is_none(), "no marker before the backlog is delivered");
        history.push(message.event.unwrap());
    }
    let marker = next(&mut stream).await;
    assert!(marker.event.is_none());
    assert_eq!(marker.caught_up, history[2].position, "caught up at the last event");

    // A new event, then the marker again; nothing in between.
    commit_events(&pool, &[test_event("c1", 4)]).await;
    let live = next(&mut stream).await;
    assert_eq!(amount_of(live.event.as_ref().unwrap()), 4);
    let again = next(&mut stream).await;
    assert_eq!(again.caught_up, live.event.unwrap().position);

    // Unasked, no markers: the events only.
    let mut plain = contacts.subscribe(SubscribeRequest::default()).await.unwrap().into_inner();
    for amount in 1..=4 {
        assert_eq!(amount_of(&next(&mut plain).await.event.unwrap()), amount);
    }
    commit_events(&pool, &[test_event("c1", 5)]).await;
    assert_eq!(amount_of(&next(&mut plain).await.event.unwrap()), 5, "no marker before the new event");

    // The live lane is never caught up.
    let live_marked = SubscribeRequest { live: true, caught_up_markers: true, ..Default::default() };
    let refused = contacts.subscribe(live_marked).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(crate::contacts::violated_fields(&refused)[0], "caught_up_markers");
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn subscribe_delivers_only_the_event_types_asked_for() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    let other_type = crm_platform::outbox::NewEvent::new(
        "test",
        "c1",
        &crm_proto::common::v1::ExternalId { source: "billing".into(), id: "b-1".into() },
        "req-test",
    );
    commit_events(&pool, &[other_type.clone(), test_event("c1", 1), other_type, test_event("c1", 2)]).await;

    let mut contacts = suite.contacts().await.unwrap();
    let only_money = SubscribeRequest {
        after: None,
        event_types: vec!["crm.common.v1.Money".into()],
        live: false,
        ..Default::default()
    };
    let mut stream = contacts.subscribe(only_money).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap().event.unwrap();
    let second = stream.message().await.unwrap().unwrap().event.unwrap();
    assert_eq!((amount_of(&first), amount_of(&second)), (1, 2), "the other type is skipped");

    let bad = SubscribeRequest { after: None, event_types: vec![String::new()], live: false, ..Default::default() };
    assert_eq!(contacts.subscribe(bad).await.unwrap_err().code(), Code::InvalidArgument);
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn list_events_pages_with_tokens_bound_to_their_query() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let pool = test_db.role_pool(Role::Interactions).await.unwrap();
    for amount in 1..=5 {
        commit_events(&pool, &[test_event("i1", amount)]).await;
    }
    let mut interactions = suite.interactions().await.unwrap();

    let mut amounts = Vec::new();
    let mut request = ListEventsRequest { page_size: 2, ..Default::default() };
    let mut pages = 0;
    loop {
        let page = interactions.list_events(request.clone()).await.unwrap().into_inner();
        amounts.extend(page.events.iter().map(amount_of));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(amounts, [1, 2, 3, 4, 5]);
    assert_eq!(pages, 3);

    // The token of the first page, replayed with another filter, is refused.
    let first = interactions.list_events(ListEventsRequest { page_size: 2, ..Default::default() }).await.unwrap();
    let forged = ListEventsRequest {
        page_size: 2,
        page_token: first.into_inner().next_page_token,
        aggregate_id: "someone-else".into(),
        ..Default::default()
    };
    let status = interactions.list_events(forged).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = status.check_error_details().unwrap().bad_request().unwrap().field_violations.clone();
    assert_eq!(violations[0].field, "page_token");

    // Bad input names every wrong field.
    let bad = ListEventsRequest { page_size: -1, event_types: vec![String::new()], ..Default::default() };
    let status = interactions.list_events(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = status
        .check_error_details()
        .unwrap()
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|violation| violation.field.clone())
        .collect();
    assert_eq!(fields, ["page_size", "event_types[0]"]);

    // Filters: by aggregate, and by type.
    let by_aggregate = ListEventsRequest { aggregate_id: "nobody".into(), ..Default::default() };
    assert!(interactions.list_events(by_aggregate).await.unwrap().into_inner().events.is_empty());
    let by_type = ListEventsRequest { event_types: vec!["crm.common.v1.Money".into()], ..Default::default() };
    assert_eq!(interactions.list_events(by_type).await.unwrap().into_inner().events.len(), 5);
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_page_waits_for_transactions_running_when_it_was_asked_for() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let pool = test_db.role_pool(Role::Interactions).await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let amounts =
        |page: crm_proto::events::v1::ListEventsResponse| page.events.iter().map(amount_of).collect::<Vec<_>>();

    // An older transaction (it has an id) is running when event 1 commits:
    // event 1 stays behind the horizon until it ends, lest a later commit of
    // the older one land behind a reader's cursor.
    let mut older = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *older).await.unwrap();
    commit_events(&pool, &[test_event("i1", 1)]).await;

    // It ends while the page waits: the event committed before the call is in the page.
    let finish = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        older.commit().await.unwrap();
    };
    let (page, ()) = tokio::join!(interactions.list_events(ListEventsRequest::default()), finish);
    let page = page.unwrap().into_inner();
    let first = page.events[0].position;
    assert_eq!(amounts(page), [1]);

    // One that outlives the page's patience (a second) holds the event back,
    // and the page says nothing more is ready; the next call finds it.
    let mut long = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *long).await.unwrap();
    commit_events(&pool, &[test_event("i1", 2)]).await;
    let after = ListEventsRequest { after: first, ..Default::default() };
    let page = interactions.list_events(after.clone()).await.unwrap().into_inner();
    assert!(page.events.is_empty() && page.next_page_token.is_empty(), "{page:?}");
    long.commit().await.unwrap();
    assert_eq!(amounts(interactions.list_events(after).await.unwrap().into_inner()), [2]);
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_role_serves_only_its_own_feed() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let pool = test_db.role_pool(Role::Segmentation).await.unwrap();
    commit_events(&pool, &[test_event("s1", 1)]).await;

    let segmentation = suite.segmentation().await.unwrap().list_events(ListEventsRequest::default()).await.unwrap();
    assert_eq!(segmentation.into_inner().events.len(), 1);
    let alerting = suite.alerting().await.unwrap().list_events(ListEventsRequest::default()).await.unwrap();
    assert!(alerting.into_inner().events.is_empty());
    let contacts = suite.contacts().await.unwrap().list_events(ListEventsRequest::default()).await.unwrap();
    assert!(contacts.into_inner().events.is_empty());
    let gateway = suite.gateway_admin().await.unwrap().list_events(ListEventsRequest::default()).await.unwrap();
    assert!(gateway.into_inner().events.is_empty());
    suite.shutdown().await.unwrap();
}
