//! Duplicate detection: which contacts might be the same person (blocking
//! keys), and how likely they are (a weighted score with its reasons).
//!
//! - [`keys`]: the blocking keys of a contact; two contacts are compared only
//!   when they share one: the normalised email, the E.164 phone, or a
//!   phonetic key of both names (Double Metaphone, nicknames folded to the
//!   formal name, order-free) with the postal code, or of either name with
//!   the birth date. The store
//!   adds trigram similarity of the names for single creates.
//! - [`score`]: log-likelihood-style weights for agreement and disagreement
//!   of name (Jaro–Winkler, nicknames, given/family swapped), email, phone
//!   (transposed digits), birth date and address, squashed to 0..1.
//! - `synthetic`: the labelled benchmark generator, and the test that holds
//!   precision and recall at the default threshold.

pub mod names;
pub mod synthetic;

use std::collections::BTreeSet;

use strsim::{jaro_winkler, levenshtein};

use crate::model::ContactData;

/// The score from which a contact is a likely duplicate, unless configured otherwise.
pub const DEFAULT_THRESHOLD: f64 = 0.8;

/// The weighted evidence is centred here: total evidence of `MIDPOINT` scores 0.5.
const MIDPOINT: f64 = 4.0;

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
    /// 0 to 1.
    pub score: f64,
    /// Each signal and its weight, strongest first.
    pub reasons: Vec<(&'static str, f64)>,
}

/// Scores `a` against `b`; symmetric.
pub fn score(a: &ContactData, b: &ContactData) -> Match {
    let mut reasons: Vec<(&'static str, f64)> = Vec::new();
    name_evidence(a, b, &mut reasons);
    email_evidence(a, b, &mut reasons);
    phone_evidence(a, b, &mut reasons);
    birth_evidence(a, b, &mut reasons);
    address_evidence(a, b, &mut reasons);
    let total: f64 = reasons.iter().map(|(_, weight)| weight).sum();
    reasons.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
    Match { score: 1.0 / (1.0 + (-(total - MIDPOINT)).exp()), reasons }
}

/// Similarity of two folded given names: 1 when equal, 0.95 for nickname and formal name.
fn given_similarity(a: &str, b: &str) -> (f64, bool) {
    if a.is_empty() || b.is_empty() {
        return (0.0, false);
    }
    if a == b {
        return (1.0, false);
    }
    if names::same_formal(a, b) {
        return (0.95, true);
    }
    let initial = (a.len() == 1 || b.len() == 1) && a[..1] == b[..1];
    if initial {
        return (0.88, false);
    }
    (jaro_winkler(a, b), false)
}

fn family_similarity(a: &str, b: &str) -> f64 {
    if a.is_empty() || b.is_empty() { 0.0 } else { jaro_winkler(a, b) }
}

fn name_evidence(a: &ContactData, b: &ContactData, reasons: &mut Vec<(&'static str, f64)>) {
    let (given_a, family_a) = (names::fold(&a.given_name), names::fold(&a.family_name));
    let (given_b, family_b) = (names::fold(&b.given_name), names::fold(&b.family_name));
    if (given_a.is_empty() && family_a.is_empty()) || (given_b.is_empty() && family_b.is_empty()) {
        return;
    }
    let (straight_given, nickname) = given_similarity(&given_a, &given_b);
    let straight = (straight_given, family_similarity(&family_a, &family_b));
    let swapped = (given_similarity(&given_a, &family_b).0.min(1.0), given_similarity(&family_a, &given_b).0.min(1.0));
    let is_swapped = swapped.0 + swapped.1 > straight.0 + straight.1 + 0.1;
    let (given, family) = if is_swapped { swapped } else { straight };
    if is_swapped && given >= 0.9 && family >= 0.9 {
        reasons.push(("name_swapped", 0.0));
    }
    let both_given = !given_a.is_empty() && !given_b.is_empty();
    let both_family = !family_a.is_empty() && !family_b.is_empty();
    match (given, family) {
        (g, f) if g >= 0.999 && f >= 0.999 => reasons.push(("name_exact", 3.0)),
        (g, f) if g >= 0.9 && f >= 0.92 => {
            reasons.push((if nickname && !is_swapped { "name_nickname" } else { "name_similar" }, 2.75))
        }
        (g, f) if g >= 0.85 && f >= 0.85 => reasons.push(("name_similar", 1.75)),
        (g, f) if f >= 0.92 && g < 0.75 && both_given => reasons.push(("given_name_differs", -4.0)),
        (g, f) if g >= 0.9 && f < 0.75 && both_family => reasons.push(("family_name_differs", -1.5)),
        (g, f) if (g >= 0.9 || !both_given) && (f >= 0.92 || !both_family) => reasons.push(("name_partial", 0.5)),
        _ => reasons.push(("name_differs", -4.0)),
    }
}

fn email_evidence(a: &ContactData, b: &ContactData, reasons: &mut Vec<(&'static str, f64)>) {
    if a.emails.is_empty() || b.emails.is_empty() {
        return;
    }
    let shared = a.emails.iter().any(|x| b.emails.iter().any(|y| x.key() == y.key()));
    if shared {
        reasons.push(("email_exact", 4.5));
        return;
    }
    let locals = |contact: &ContactData| -> Vec<String> {
        contact.emails.iter().map(|email| email.key().split('@').next().unwrap_or_default().replace('.', "")).collect()
    };
    let (locals_a, locals_b) = (locals(a), locals(b));
    if locals_a.iter().any(|x| x.len() >= 5 && locals_b.contains(x)) {
        reasons.push(("email_local_part", 1.0));
    } else {
        reasons.push(("email_differs", -0.25));
    }
}

/// Two numbers one typo apart: same length and one transposition or substitution.
fn digits_close(a: &str, b: &str) -> bool {
    if a.len() != b.len() || a.len() < 8 {
        return false;
    }
    let (x, y): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let differing: Vec<usize> = (0..x.len()).filter(|&i| x[i] != y[i]).collect();
    match differing.as_slice() {
        [_] => true,
        [i, j] => *j == i + 1 && x[*i] == y[*j] && x[*j] == y[*i],
        _ => false,
    }
}

fn phone_evidence(a: &ContactData, b: &ContactData, reasons: &mut Vec<(&'static str, f64)>) {
    if a.phones.is_empty() || b.phones.is_empty() {
        return;
    }
    if a.phones.iter().any(|x| b.phones.iter().any(|y| x.number == y.number)) {
        reasons.push(("phone_exact", 3.0));
    } else if a.phones.iter().any(|x| b.phones.iter().any(|y| digits_close(&x.number, &y.number))) {
        reasons.push(("phone_similar", 1.5));
    } else {
        reasons.push(("phone_differs", -0.5));
    }
}

fn birth_evidence(a: &ContactData, b: &ContactData, reasons: &mut Vec<(&'static str, f64)>) {
    let (Some(x), Some(y)) = (a.birth_date, b.birth_date) else { return };
    if x == y {
        reasons.push(("birth_date_exact", 3.0));
        return;
    }
    let (sx, sy) = (x.format("%Y%m%d").to_string(), y.format("%Y%m%d").to_string());
    let day_month_swapped = sx[..4] == sy[..4] && sx[4..6] == sy[6..8] && sx[6..8] == sy[4..6];
    if day_month_swapped || levenshtein(&sx, &sy) == 1 {
        reasons.push(("birth_date_similar", 0.5));
    } else {
        reasons.push(("birth_date_differs", -5.0));
    }
}

fn address_evidence(a: &ContactData, b: &ContactData, reasons: &mut Vec<(&'static str, f64)>) {
    let postal = |contact: &ContactData| -> Vec<String> {
        contact
            .addresses
            .iter()
            .filter(|address| !address.postal_code.is_empty())
            .map(|a| postal_key(&a.postal_code))
            .collect()
    };
    let (postal_a, postal_b) = (postal(a), postal(b));
    if postal_a.is_empty() || postal_b.is_empty() {
        return;
    }
    if !postal_a.iter().any(|code| postal_b.contains(code)) {
        reasons.push(("address_differs", -1.0));
        return;
    }
    let street = |contact: &ContactData| -> Vec<String> {
        contact.addresses.iter().filter_map(|address| address.lines.first()).map(|line| street_key(line)).collect()
    };
    let same_street = street(a).iter().any(|x| street(b).iter().any(|y| jaro_winkler(x, y) >= 0.9));
    if same_street {
        reasons.push(("address_similar", 3.0));
    } else {
        reasons.push(("postal_code_exact", 0.75));
    }
}

/// A street line for comparison: lower case, common abbreviations expanded, punctuation dropped.
fn street_key(line: &str) -> String {
    line.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| match word {
            "st" => "street",
            "rd" => "road",
            "ave" | "av" => "avenue",
            "ln" => "lane",
            "dr" => "drive",
            "ct" => "court",
            "pl" => "place",
            "sq" => "square",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(" ")
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
        assert!(signals.contains(&"name_nickname") && signals.contains(&"phone_exact"), "{signals:?}");
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
        assert!(found.reasons.iter().any(|(signal, _)| *signal == "phone_similar"));
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
