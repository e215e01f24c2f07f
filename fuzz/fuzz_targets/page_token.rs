//! Any text as a page token: refused or read, never a panic; and a token
//! made for one query is never accepted for another.
#![no_main]

use crm_platform::page_token::{PageTokens, Query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tokens = PageTokens::new(b"fuzzing-secret-0123456789abcdef0123");
    let query = Query::builder("crm.contacts.v1.ContactsService/ListContacts").field("tag", "vip").build();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tokens.decode::<(i64, String)>(&query, text);
    }
    // A real token for this query, bent by the input, still verifies only for it.
    let cursor = (data.len() as i64, String::from_utf8_lossy(data).into_owned());
    let token = tokens.encode(&query, &cursor).expect("a cursor encodes");
    assert_eq!(tokens.decode::<(i64, String)>(&query, &token).ok(), Some(cursor));
    let other = Query::builder("crm.contacts.v1.ContactsService/ListContacts").field("tag", "other").build();
    assert!(tokens.decode::<(i64, String)>(&other, &token).is_err());
});
