//! Whether a parsed phone number is valid for its country: the answer of
//! `phonenumber::is_valid`, at a fraction of its cost.
//!
//! The crate matches a country's number patterns through one process-wide
//! regex cache: every match takes a mutex and looks the regex up by the
//! pattern's whole text (a North American pattern is over a kilobyte), then
//! searches unanchored; and for a calling code shared by several countries
//! (+1) it types the number twice. Validation was a fifth of the role's CPU
//! in an import (upstream: whisperfish/rust-phonenumber#103, unreleased).
//! Here each pattern of the crate's metadata is compiled once for the
//! process, anchored, and found through a per-thread map keyed by the
//! address of its text (no lock once a thread has met it); the rules are
//! the crate's (`validator::source_for`, then a type other than unknown), and
//! a test compares the two answers on every country's numbers. Compiled
//! lazily: a country's patterns cost memory once its numbers arrive (every
//! country's, 1,375 patterns, about 100 MB).

use std::{
    cell::RefCell,
    collections::HashMap,
    sync::{Arc, LazyLock, RwLock},
};

use phonenumber::{
    Metadata, PhoneNumber, country,
    metadata::{DATABASE, Descriptor},
};
use regex::{Regex, RegexBuilder};

/// A pattern (by the address of its text in the static metadata) -> its
/// regex, anchored at the start (`None`: it does not compile).
type Compiled = HashMap<usize, Option<Arc<Regex>>>;

/// Every pattern compiled so far, once for the process.
static COMPILED: LazyLock<RwLock<Compiled>> = LazyLock::new(|| RwLock::new(HashMap::new()));

thread_local! {
    /// The patterns this thread has used, read without a lock.
    static SEEN: RefCell<Compiled> = RefCell::new(HashMap::new());
}

/// Whether the number is a valid one of the country its calling code and digits name.
pub fn is_valid(number: &PhoneNumber) -> bool {
    let code = number.code().value();
    let national = number.national().to_string();
    let Some(regions) = DATABASE.region(&code) else { return false };
    if let [region] = regions.as_slice() {
        let meta = if *region == "001" {
            DATABASE.by_code(&code).and_then(|metas| metas.into_iter().next())
        } else {
            region.parse::<country::Id>().ok().and_then(|id| DATABASE.by_id(id.as_ref()))
        };
        return meta.is_some_and(|meta| has_type(meta, &national));
    }
    // Several countries share the code: the first whose leading digits
    // match, or (without leading digits) whose types the number has.
    for region in regions {
        let Some(meta) = DATABASE.by_id(region) else { continue };
        match meta.leading_digits() {
            Some(leading) if starts(leading.as_str(), &national) => return has_type(meta, &national),
            Some(_) => {}
            None if has_type(meta, &national) => return true,
            None => {}
        }
    }
    false
}

/// Whether the national number has a type in the country: it matches the
/// general pattern and one of the kinds' (what `validator::number_type`
/// answers with other than unknown).
fn has_type(meta: &'static Metadata, national: &str) -> bool {
    let kinds = meta.descriptors();
    if !matches(kinds.general(), national) {
        return false;
    }
    [
        kinds.premium_rate(),
        kinds.toll_free(),
        kinds.shared_cost(),
        kinds.voip(),
        kinds.personal_number(),
        kinds.pager(),
        kinds.uan(),
        kinds.voicemail(),
        kinds.fixed_line(),
        kinds.mobile(),
    ]
    .into_iter()
    .flatten()
    .any(|kind| matches(kind, national))
}

/// `Descriptor::is_match`: a possible length, and the pattern matching from the first digit.
fn matches(descriptor: &'static Descriptor, national: &str) -> bool {
    let lengths = descriptor.possible_length();
    if !lengths.is_empty() && !lengths.contains(&(national.len() as u16)) {
        return false;
    }
    starts(descriptor.national_number().as_str(), national)
}

/// Whether the pattern (the metadata's, read with whitespace ignored) matches at the start of `text`.
fn starts(pattern: &'static str, text: &str) -> bool {
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        let regex = seen.entry(pattern.as_ptr() as usize).or_insert_with(|| compiled(pattern));
        regex.as_ref().is_some_and(|regex| regex.is_match(text))
    })
}

/// The pattern's regex, compiled by the first thread that needs it.
fn compiled(pattern: &'static str) -> Option<Arc<Regex>> {
    let key = pattern.as_ptr() as usize;
    if let Some(found) = COMPILED.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&key) {
        return found.clone();
    }
    let mut all = COMPILED.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    all.entry(key)
        .or_insert_with(|| {
            // The newline ends a `#` comment the pattern might hold before the group closes.
            RegexBuilder::new(&format!("^(?:{pattern}\n)")).ignore_whitespace(true).build().ok().map(Arc::new)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    /// Every country's example numbers, and random digits of every length
    /// around them, are valid here exactly when the crate says so.
    #[test]
    fn answers_as_the_phonenumber_crate_does() {
        let mut random = StdRng::seed_from_u64(7);
        let (mut checked, mut valid) = (0, 0);
        for meta in DATABASE.iter() {
            let code = meta.country_code();
            let kinds = meta.descriptors();
            let examples = [kinds.general(), kinds.fixed_line().unwrap_or(kinds.general())]
                .into_iter()
                .chain(kinds.mobile())
                .chain(kinds.toll_free())
                .chain(kinds.voip())
                .filter_map(|descriptor| descriptor.example().map(str::to_string));
            let random_digits = (0..12).map(|_| {
                let length = random.random_range(4..=14);
                (0..length).map(|_| char::from(b'0' + random.random_range(0..10u8))).collect::<String>()
            });
            for digits in examples.collect::<Vec<_>>().into_iter().chain(random_digits.collect::<Vec<_>>()) {
                let Ok(number) = phonenumber::parse(None, format!("+{code}{digits}")) else { continue };
                let expected = phonenumber::is_valid(&number);
                assert_eq!(is_valid(&number), expected, "+{code} {digits} ({})", meta.id());
                checked += 1;
                valid += usize::from(expected);
            }
        }
        assert!(checked > 2_000 && valid > 500, "checked {checked} numbers, {valid} valid");
    }
}
