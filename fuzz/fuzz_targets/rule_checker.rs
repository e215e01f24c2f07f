//! Any text as a segment rule: checked (refused with a position, or
//! accepted), and an accepted rule run over a contact's features: never a
//! panic or a stack overflow.
#![no_main]

use crm_segmentation::{
    features::{Profile, compute},
    rules::{check, evaluate},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rule) = std::str::from_utf8(data) else { return };
    let Ok(checked) = check(rule) else { return };
    let profile = Profile { lifecycle: "customer".into(), tags: vec!["vip".into()], ..Default::default() };
    let doc = compute(Some(&profile), &[], chrono::Utc::now()).doc;
    let _ = evaluate(&checked, &doc);
});
