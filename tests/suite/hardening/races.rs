//! A lost race on a unique key is the caller's error, named, never INTERNAL.

use crm_proto::contacts::v1::CreateContactRequest;
use crm_testkit::{TestDb, TestSuite};
use tonic::Code;
use tonic_types::StatusExt;

use crate::contacts::{external, person};

#[tokio::test]
async fn concurrent_creates_with_one_external_id_give_one_contact_and_external_id_taken() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let contacts = suite.contacts().await.unwrap();

    for round in 0..4 {
        // Different people (no shared blocking key, so no lock serialises
        // them), one external id: each checks it is free, then inserts it.
        let creates =
            (0..8).map(|index| {
                let mut client = contacts.clone();
                let mut contact = person(&format!("Racer{round}x{index}"), &format!("Lane{index}q{round}"), "", "");
                contact.addresses.clear();
                contact.birth_date = None;
                contact.external_ids = vec![external("billing", &format!("RACE-{round}"))];
                async move {
                    client.create_contact(CreateContactRequest { contact: Some(contact), ..Default::default() }).await
                }
            });
        let outcomes = futures_util::future::join_all(creates).await;
        let created = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
        assert_eq!(created, 1, "round {round}: {outcomes:?}");
        for refused in outcomes.iter().filter_map(|outcome| outcome.as_ref().err()) {
            assert_eq!(refused.code(), Code::AlreadyExists, "round {round}: {refused:?}");
            assert_eq!(refused.get_details_error_info().unwrap().reason, "EXTERNAL_ID_TAKEN");
        }
    }
    suite.shutdown().await.unwrap();
}
