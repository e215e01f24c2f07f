//! Any interaction message through the interactions validator: no panic.
#![no_main]

use crm_interactions::validate;
use crm_platform::error::Violations;
use crm_proto::interactions::v1 as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(interaction) = pb::Interaction::decode(data) else { return };
    let mut violations = Violations::new();
    let _ = validate::interaction(&mut violations, "interaction", &interaction, chrono::Utc::now());
    let _ = violations.into_result();
});
