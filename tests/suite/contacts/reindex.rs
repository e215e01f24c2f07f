//! Contacts indexed by an older version of their terms (or before terms
//! existed) are indexed again in the background when the role starts.

use std::time::Duration;

use crm_platform::Role;
use crm_proto::contacts::v1::{LookupContactRequest, SearchContactsRequest, lookup_contact_request::Key};
use crm_testkit::{TestDb, TestSuite};

use super::{create, person};
use crate::support::eventually;

#[tokio::test]
async fn contacts_with_stale_terms_are_indexed_again_at_start() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let grace = create(&mut contacts, person("Grace", "Hopper", "grace@navy.example", "+1 202 555 0147")).await;
    suite.shutdown().await.unwrap();

    // As an install upgraded from before the terms index would hold it.
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    sqlx::query("UPDATE contacts SET terms = '{}', terms_version = 0").execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM contact_terms").execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM search_words").execute(&pool).await.unwrap();

    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    eventually(Duration::from_secs(15), "the contact to be indexed again", || {
        let mut contacts = contacts.clone();
        async move {
            let lookup = LookupContactRequest { key: Some(Key::Email("grace@navy.example".into())) };
            contacts.lookup_contact(lookup).await.is_ok()
        }
    })
    .await;
    let typo = SearchContactsRequest { query: "grace hoper".into(), page_size: 5 };
    let found = contacts.search_contacts(typo).await.unwrap().into_inner().results;
    assert_eq!(found.first().and_then(|r| r.contact.as_ref()).map(|c| c.id.as_str()), Some(grace.id.as_str()));
    let version: i16 = sqlx::query_scalar("SELECT min(terms_version) FROM contacts").fetch_one(&pool).await.unwrap();
    assert_eq!(version, crm_contacts::terms::VERSION);
    suite.shutdown().await.unwrap();
}
