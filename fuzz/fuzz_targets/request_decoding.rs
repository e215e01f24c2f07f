//! Any bytes, decoded as any request of the suite the way its codec does:
//! the NUL walk over the wire bytes and prost's decoding never panic, and a
//! message the walk passes never holds a NUL once decoded (re-encoded and
//! walked again).
#![no_main]

use crm_proto::{
    contacts::v1 as contacts, gateway::v1 as gateway, interactions::v1 as interactions, storable,
};
use libfuzzer_sys::fuzz_target;
use prost::{Message, Name};

fn check<M: Message + Name + Default>(bytes: &[u8]) {
    let found = storable::first_nul(&M::full_name(), bytes);
    if let Ok(message) = M::decode(bytes)
        && found.is_none()
    {
        assert_eq!(storable::nul_in_message(&message), None, "the walk missed a NUL in {}", M::full_name());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    match which % 8 {
        0 => check::<contacts::CreateContactRequest>(bytes),
        1 => check::<contacts::UpdateContactRequest>(bytes),
        2 => check::<contacts::ImportContactsRequest>(bytes),
        3 => check::<contacts::MergeContactsRequest>(bytes),
        4 => check::<interactions::RecordInteractionRequest>(bytes),
        5 => check::<interactions::IngestInteractionsRequest>(bytes),
        6 => check::<gateway::CreateApiKeyRequest>(bytes),
        _ => check::<contacts::SearchContactsRequest>(bytes),
    }
});
