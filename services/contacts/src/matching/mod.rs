//! Duplicate detection: which contacts might be the same person (blocking
//! keys), and how likely they are (a weighted score with its reasons).
//!
//! - [`keys`]: the blocking keys of a contact; two contacts are compared only
//!   when they share one: the normalised email, the E.164 phone, a
//!   phonetic key of both names (Double Metaphone, nicknames folded to the
//!   formal name, order-free) with the postal code, of either name with
//!   the birth date, the postal code with the birth date, or the street
//!   with the house number. A key read back brings at most [`MAX_FAN_OUT`] contacts
//!   (a common value cannot make one create compare against thousands).
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

/// The most contacts one blocking key brings to be compared.
pub const MAX_FAN_OUT: i64 = 200;

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
    // Both names with the postal code (sorted, so a swap keeps the key): a
    // household or a common surname in one postal code is not one block.
    let pair = codes.iter().cloned().collect::<Vec<_>>().join("+");
    if codes.len() == 2 {
        for address in &contact.addresses {
            if !address.postal_code.is_empty() {
                keys.insert(format!("np:{pair}|{}", postal_key(&address.postal_code)));
            }
        }
    }
    for code in &codes {
        if let Some(birth) = contact.birth_date {
            keys.insert(format!("nb:{code}|{birth}"));
        }
    }
    // Without the names (a typo changes both phonetic codes; a name
    // replaced outright): the postal code with the birth date, and the
    // street with the house number (the street as the address comparison
    // reads it: abbreviations spelt out, spaces dropped, so "Burkitts
    // treet" is "Burkitt Street"; not the postal code, whose typos it
    // outlasts).
    if let Some(birth) = contact.birth_date {
        for address in contact.addresses.iter().filter(|address| !address.postal_code.is_empty()) {
            keys.insert(format!("pb:{}|{birth}", postal_key(&address.postal_code)));
        }
    }
    for address in &contact.addresses {
        if let (Some(number), Some(street)) = (compare::street_number(address), compare::street_name(address)) {
            let region: String = postal_key(&address.postal_code).chars().take(2).collect();
            keys.insert(format!("sn:{region}|{street}|{number}"));
        }
    }
    keys.into_iter().collect()
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
    fn keys_block_on_email_phone_and_phonetic_name() {
        let a = person("Bob", "Smith", "Bob@Example.com", "+442079460018", "SW1A 1AA");
        let b = person("Robert", "Smyth", "", "", "sw1a 1aa");
        let shared: Vec<String> = keys(&a).into_iter().filter(|key| keys(&b).contains(key)).collect();
        assert!(!shared.is_empty(), "{:?} / {:?}", keys(&a), keys(&b));
        assert!(keys(&a).contains(&email_key("bob@example.com")));
    }
}
