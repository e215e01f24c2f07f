//! Any contact message through the contacts validator: no panic, whatever it holds.
#![no_main]

use crm_contacts::validate::{self, Region};
use crm_platform::error::Violations;
use crm_proto::contacts::v1 as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(contact) = pb::Contact::decode(data) else { return };
    let region = Region::parse("GB").expect("GB is a region");
    let mut violations = Violations::new();
    let _ = validate::contact(&mut violations, "contact", &contact, region);
    let _ = violations.into_result();
    let mut violations = Violations::new();
    let organization = pb::Organization::decode(data).unwrap_or_default();
    let _ = validate::organization(&mut violations, "organization", &organization);
});
