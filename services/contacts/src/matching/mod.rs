//! Duplicate detection: which contacts might be the same person (blocking
//! keys), and how likely they are (a weighted score with its reasons).
//!
//! - [`keys`]: the blocking keys of a contact; two contacts are compared only
//!   when they share one: the normalised email; the E.164 phone; both names'
//!   phonetic codes (Double Metaphone, nicknames folded to the formal name,
//!   order-free) with the postal code; either name's code with the birth
//!   date; the locality's sound with the birth date; each address line's
//!   sound with the house number in the postal region (the postal code's
//!   first two characters), and with the postal code. Postal codes in keys
//!   have their characters sorted, so a transposition keeps the key. Sounds, not spellings, so
//!   that a typo keeps most keys; several keys, so that a record whose
//!   name, postal code or birth date was changed still meets through the
//!   others (FEBRL3's blocking recall 0.990). A wide key (the sound of an
//!   address line or a locality, [`is_wide`]) held by more than
//!   [`MAX_BLOCK`] contacts brings none (block purging: a value that common
//!   identifies nobody); any other key brings at most [`MAX_FAN_OUT`] (a
//!   company's switchboard number held by hundreds must still bring some),
//!   so one create never compares against thousands.
//!   The store adds trigram similarity of the names for `FindDuplicates`
//!   of one contact.
//! - [`compare`]: each field of two contacts at a graded level (exact,
//!   nickname, close, somewhat, different; missing is no level).
//! - [`model`]: the Fellegi–Sunter weights of those levels (m- and
//!   u-probabilities), and the probability that a pair is one person.
//! - [`fit`]: learning m, u and the prior from an install's own contacts.
//! - [`organizations`]: when two organizations are likely one company.
//! - [`score`]: a pair compared and weighed, with every field's level and
//!   weight as its reasons.
//! - `synthetic`: the labelled benchmark generator, and the test that holds
//!   precision and recall at the default threshold.

pub mod compare;
pub mod fit;
pub mod model;
pub mod names;
pub mod organizations;
pub mod synthetic;

use std::collections::BTreeSet;

use self::model::Model;
use crate::model::ContactData;

/// The most contacts a wide key may be held by and still bring them to be
/// compared; one held by more brings none. The wide keys (a line's
/// sound in a postal code, a birth date in a locality) hold a few contacts
/// each in a small base or a town, and dozens in a city of a big one, where
/// their pairs are left to the narrower keys. Each candidate costs a read
/// and a comparison in every create and import row: at a million generated
/// people (ten cities) a record is compared with 3.9 others (6.2 at 20,
/// 14.6 at 50; 1.2 with the narrower keys before `terms::VERSION` 5), and
/// FEBRL3's blocks never reach it.
pub const MAX_BLOCK: i64 = 10;

/// The most contacts a key that is not wide brings to be compared.
pub const MAX_FAN_OUT: i64 = 200;

/// The kinds of key purged over [`MAX_BLOCK`] holders: the sounds of an
/// address line (with the house number, with the postal code) and of a
/// locality (with the birth date).
const WIDE_KEYS: [&str; 3] = ["sn:", "lp:", "lb:"];

/// Whether a key is wide (see [`WIDE_KEYS`]).
pub fn is_wide(key: &str) -> bool {
    WIDE_KEYS.iter().any(|kind| key.starts_with(kind))
}

/// Whether a key held by `holders` contacts brings them to be compared, as
/// `store::key_holders` decides (the in-memory benchmarks' copy of that rule).
pub fn brings(key: &str, holders: usize) -> bool {
    !is_wide(key) || holders as i64 <= MAX_BLOCK
}

/// The score from which a contact is a likely duplicate, unless configured otherwise.
pub const DEFAULT_THRESHOLD: f64 = 0.8;

/// The blocking keys of a contact (see the module documentation).
pub fn keys(contact: &ContactData) -> Vec<String> {
    let mut keys = BTreeSet::new();
    for email in &contact.emails {
        keys.insert(format!("e:{}", email.key()));
    }
    for phone in &contact.phones {
        keys.insert(format!("p:{}", phone.number));
    }
    let given = names::fold(&contact.given_name);
    let family = names::fold(&contact.family_name);
    let codes: BTreeSet<String> = [names::phonetic(names::formal(&given)), names::phonetic(&family)]
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect();
    if let Some(birth) = contact.birth_date {
        for code in &codes {
            keys.insert(format!("nb:{code}|{birth}"));
        }
    }
    // Both names sorted, so a swap keeps the key.
    let both = (codes.len() == 2).then(|| codes.iter().cloned().collect::<Vec<_>>().join("+"));
    for address in &contact.addresses {
        let postal = postal_key(&address.postal_code);
        // The postal region (the first two characters) outlasts the typos,
        // which fall mostly on the last ones; the postal code with its
        // characters sorted outlasts a transposition.
        let region: String = postal.chars().take(2).collect();
        let postal_sorted = sorted_chars(&postal);
        let locality = sound(&address.locality);
        let number = compare::street_number(address);
        if let Some(both) = &both
            && !postal_sorted.is_empty()
        {
            keys.insert(format!("nr:{both}|{postal_sorted}"));
        }
        if let Some(birth) = contact.birth_date
            && !locality.is_empty()
        {
            keys.insert(format!("lb:{locality}|{birth}"));
        }
        // Each line as it sounds: a street with a typo, or the lines in
        // another order, still meet.
        for line in address.lines.iter().map(|line| sound(line)).filter(|line| !line.is_empty()) {
            if let Some(number) = &number {
                keys.insert(format!("sn:{region}|{line}|{number}"));
            }
            if !postal_sorted.is_empty() {
                keys.insert(format!("lp:{line}|{postal_sorted}"));
            }
        }
    }
    keys.into_iter().collect()
}

/// The Double Metaphone code (four sounds) of a text's letters.
fn sound(text: &str) -> String {
    names::phonetic(&names::fold(text))
}

/// The kinds of key whose pairs the fitter learns m and the prior from
/// (`fit::estimate_m`): the ones that tie two records by an identifier or
/// by name (both names with the postal code, a name and the birth date). The
/// address keys bring neighbours who agree on the street's sound, postal
/// code, locality and region all at once; EM, which assumes the fields
/// agree independently, reads such a cluster as matches and learns a model
/// that finds fewer duplicates (on FEBRL3, F1 0.963 fitted with the street
/// key among these, 0.908 with every key, 0.987 with these). Decisions
/// still compare every blocked pair.
const FITTING_KEYS: [&str; 4] = ["e:", "p:", "nr:", "nb:"];

/// The blocking keys the fitter learns from (see [`FITTING_KEYS`]).
pub fn fitting_keys(contact: &ContactData) -> Vec<String> {
    let mut all = keys(contact);
    all.retain(|key| FITTING_KEYS.iter().any(|kind| key.starts_with(kind)));
    all
}

/// The key of an email or phone lookup, as [`keys`] writes it.
pub fn email_key(normalised: &str) -> String {
    format!("e:{}", normalised.to_lowercase())
}

pub fn phone_key(e164: &str) -> String {
    format!("p:{e164}")
}

/// Whether a contact holds this email or phone key: what a lookup checks of
/// the contacts its term's hash found (see `terms::hash`).
pub fn holds_key(contact: &ContactData, key: &str) -> bool {
    if let Some(email) = key.strip_prefix("e:") {
        return contact.emails.iter().any(|held| held.key() == email);
    }
    if let Some(phone) = key.strip_prefix("p:") {
        return contact.phones.iter().any(|held| held.number == phone);
    }
    false
}

fn sorted_chars(text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort_unstable();
    chars.into_iter().collect()
}

fn postal_key(postal_code: &str) -> String {
    postal_code.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_uppercase()
}

/// How likely two contacts are one person, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    /// The probability that both are one person, 0 to 1.
    pub score: f64,
    /// Each signal and its weight, strongest first.
    pub reasons: Vec<(&'static str, f64)>,
}

/// Scores `a` against `b` with the built-in model; symmetric.
pub fn score(a: &ContactData, b: &ContactData) -> Match {
    Model::builtin().score_pair(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Address, Email, Phone};

    fn person(given: &str, family: &str, email: &str, phone: &str, postal: &str) -> ContactData {
        ContactData {
            given_name: given.into(),
            family_name: family.into(),
            emails: (!email.is_empty())
                .then(|| Email { address: email.into(), ..Default::default() })
                .into_iter()
                .collect(),
            phones: (!phone.is_empty())
                .then(|| Phone { number: phone.into(), ..Default::default() })
                .into_iter()
                .collect(),
            addresses: (!postal.is_empty())
                .then(|| Address {
                    lines: vec!["1 High Street".into()],
                    postal_code: postal.into(),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn nickname_with_the_same_phone_is_a_likely_duplicate_and_says_why() {
        let a = person("Robert", "Smith", "", "+442079460018", "SW1A 1AA");
        let b = person("Bob", "Smith", "", "+442079460018", "SW1A1AA");
        let found = score(&a, &b);
        assert!(found.score >= DEFAULT_THRESHOLD, "{found:?}");
        let signals: Vec<&str> = found.reasons.iter().map(|(signal, _)| *signal).collect();
        assert!(signals.contains(&"given_name_nickname") && signals.contains(&"phone_exact"), "{signals:?}");
        assert_eq!(score(&a, &b), score(&b, &a));
    }

    #[test]
    fn a_household_member_sharing_phone_and_address_is_not_a_duplicate() {
        let a = person("Robert", "Smith", "rob@example.com", "+442079460018", "SW1A 1AA");
        let b = person("Helen", "Smith", "helen@example.com", "+442079460018", "SW1A 1AA");
        assert!(score(&a, &b).score < DEFAULT_THRESHOLD, "{:?}", score(&a, &b));
    }

    #[test]
    fn swapped_names_and_transposed_digits_still_match() {
        let a = person("Anna", "Kowalski", "anna.k@example.com", "+442079460018", "");
        let b = person("Kowalski", "Anna", "anna.k@example.com", "+442079460081", "");
        let found = score(&a, &b);
        assert!(found.score >= DEFAULT_THRESHOLD, "{found:?}");
        assert!(found.reasons.iter().any(|(signal, _)| *signal == "name_swapped"));
        assert!(found.reasons.iter().any(|(signal, _)| *signal == "phone_close"));
    }

    #[test]
    fn a_record_with_its_name_postal_code_and_birth_date_changed_still_shares_a_key() {
        let mut a = person("Nathan", "Priest", "", "", "4750");
        a.addresses[0].lines = vec!["363 Banks Street".into(), "Manresa".into()];
        a.addresses[0].locality = "Malvern East".into();
        a.birth_date = chrono::NaiveDate::from_ymd_opt(1971, 4, 28);
        // Another given name, the postal code's digits transposed, another
        // birth date, the street misspelt and the lines in another order.
        let mut b = person("Noah", "Priest", "", "", "4570");
        b.addresses[0].lines = vec!["363 Manresa".into(), "Banks Streat".into()];
        b.addresses[0].locality = "Malvern East".into();
        b.birth_date = chrono::NaiveDate::from_ymd_opt(1916, 5, 3);
        let shared: Vec<String> = keys(&a).into_iter().filter(|key| keys(&b).contains(key)).collect();
        assert!(!shared.is_empty(), "{:?} / {:?}", keys(&a), keys(&b));
        assert!(shared.iter().all(|key| is_wide(key)), "only the address's sound is left: {shared:?}");
        assert!(!is_wide(&phone_key("+442079460018")) && !is_wide(&email_key("a@example.com")));
    }

    #[test]
    fn keys_block_on_email_phone_and_phonetic_name() {
        let a = person("Bob", "Smith", "Bob@Example.com", "+442079460018", "SW1A 1AA");
        let b = person("Robert", "Smyth", "", "", "sw1a 1aa");
        let shared: Vec<String> = keys(&a).into_iter().filter(|key| keys(&b).contains(key)).collect();
        assert!(!shared.is_empty(), "{:?} / {:?}", keys(&a), keys(&b));
        assert!(keys(&a).contains(&email_key("bob@example.com")));
    }
}
