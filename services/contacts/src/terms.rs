//! What a contact is found by: its terms, in `contact_terms` (probed by a
//! btree) and recorded in its row (so a change deletes exactly those).
//!
//! - Blocking keys ([`crate::matching::keys`]): `e:` normalised email, `p:`
//!   E.164 phone, `nr:` both phonetic names with the postal code, `nb:`
//!   either with the birth date, `lb:` the locality's sound with the birth
//!   date, `sn:` an address line's sound with the house number, `lp:` with
//!   the postal code.
//!   Duplicate checks read them; lookups by email and phone use the first two.
//! - Search terms ([`search`]):
//!   - `w:<word>`: each word of the names (lower case, accents folded);
//!   - `n2:<a> <b>`: each pair of name words, in order: a query naming two
//!     words reads the few contacts having both, not every "John" and every
//!     "Smith";
//!   - `d:<domain>`: each email's domain, for "everyone at example.com".
//!
//! Name words also go into the `search_words` vocabulary, which search uses
//! to widen a query word to the stored words it is a typo or a prefix of.
//!
//! A term is stored as its [`hash`], a 64-bit integer, not as text: terms are
//! only ever compared for equality, and an integer key makes the btree a
//! third smaller and each insert and probe cheaper (the terms are most of an
//! imported contact's cost). Two terms share a hash with a probability of
//! about 2^-64 per pair; a lookup still checks that the contact it found
//! holds the email or phone asked for, and a duplicate check scores every
//! candidate, so a collision can cost a wasted read, never a wrong answer.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::model::ContactData;

/// Bumped whenever [`all`] or [`hash`] changes: contacts indexed by an older
/// version are indexed again in the background at start (`store::reindex`).
/// Version 2 stores hashes instead of text; version 3 adds the blocking keys
/// of the postal code with the birth date and with the house number;
/// version 4 blocks on the street with the house number instead of the
/// postal code with the house number (FEBRL3's blocking recall 0.932 →
/// 0.945, the same number of keys); version 5 keys on sounds and survives
/// a changed name, postal code or birth date (FEBRL3's blocking recall
/// 0.939 → 0.990, see `matching::keys`).
pub const VERSION: i16 = 5;

/// Name words indexed per contact, at most (pairs grow with their square).
const MAX_WORDS: usize = 6;

/// Every term of a contact (blocking keys and search terms), sorted and unique.
pub fn all(data: &ContactData) -> Vec<String> {
    let mut terms: BTreeSet<String> = crate::matching::keys(data).into_iter().collect();
    terms.extend(search(data));
    terms.into_iter().collect()
}

/// A term as `contact_terms` and the contact's row store it: the first eight
/// bytes of its SHA-256, read as a big-endian signed integer. Stable: the
/// stored hashes depend on it (changing it means bumping [`VERSION`]).
pub fn hash(term: &str) -> i64 {
    let digest = Sha256::digest(term.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// What a duplicate check probes: the hashes of a contact's blocking keys,
/// each with whether it is a wide key (`matching::is_wide`), sorted and unique.
pub fn probes(data: &ContactData) -> Vec<(i64, bool)> {
    let mut probes: Vec<(i64, bool)> =
        crate::matching::keys(data).iter().map(|key| (hash(key), crate::matching::is_wide(key))).collect();
    probes.sort_unstable();
    probes.dedup();
    probes
}

/// The hashes of terms, sorted and unique.
pub fn hashes<S: AsRef<str>>(terms: &[S]) -> Vec<i64> {
    let mut hashes: Vec<i64> = terms.iter().map(|term| hash(term.as_ref())).collect();
    hashes.sort_unstable();
    hashes.dedup();
    hashes
}

/// The search terms of a contact, sorted and unique.
pub fn search(data: &ContactData) -> Vec<String> {
    let mut terms: BTreeSet<String> = BTreeSet::new();
    for email in &data.emails {
        if let Some((_, domain)) = email.address.rsplit_once('@') {
            terms.insert(domain_term(domain));
        }
    }
    let words = words(data);
    for word in &words {
        terms.insert(word_term(word));
    }
    let words: Vec<&String> = words.iter().collect();
    for (at, first) in words.iter().enumerate() {
        for second in &words[at + 1..] {
            terms.insert(pair_term(first, second));
        }
    }
    terms.into_iter().collect()
}

/// The distinct name words of a contact (given, family and display name), at most [`MAX_WORDS`].
pub fn words(data: &ContactData) -> BTreeSet<String> {
    [&data.given_name, &data.family_name, &data.display_name]
        .into_iter()
        .flat_map(|name| split(name))
        .take(MAX_WORDS)
        .collect()
}

/// The words of free text: apostrophes dropped ("O'Brien" is one word),
/// split at anything else but letters and digits, lower case, accents
/// folded; words of one character are dropped.
pub fn split(text: &str) -> Vec<String> {
    let joined: String = text.chars().filter(|c| !matches!(c, '\'' | '’')).collect();
    joined.split(|c: char| !c.is_alphanumeric()).map(word).filter(|word| word.chars().count() >= 2).collect()
}

/// One word as indexed: lower case, Latin accents folded ("Müller" -> "muller").
fn word(raw: &str) -> String {
    raw.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            'ß' => 's',
            other => other,
        })
        .collect()
}

pub fn word_term(word: &str) -> String {
    format!("w:{word}")
}

/// The term of two name words, whichever order they come in.
pub fn pair_term(a: &str, b: &str) -> String {
    if a <= b { format!("n2:{a} {b}") } else { format!("n2:{b} {a}") }
}

pub fn domain_term(domain: &str) -> String {
    format!("d:{}", domain.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Email;

    #[test]
    fn a_contact_is_found_by_its_words_pairs_and_domain() {
        let data = ContactData {
            given_name: "José María".into(),
            family_name: "Müller".into(),
            emails: vec![Email { address: "jm@Example.COM".into(), ..Default::default() }],
            ..Default::default()
        };
        let terms = search(&data);
        for expected in ["w:jose", "w:maria", "w:muller", "n2:jose maria", "n2:jose muller", "n2:maria muller"] {
            assert!(terms.contains(&expected.to_string()), "{expected} in {terms:?}");
        }
        assert!(terms.contains(&"d:example.com".to_string()), "{terms:?}");
        assert!(!terms.iter().any(|term| term.starts_with("e:")), "blocking keys are not search terms: {terms:?}");
        let everything = all(&data);
        assert!(everything.iter().any(|term| term.starts_with("e:")) && everything.contains(&"w:muller".to_string()));
        assert!(terms.windows(2).all(|pair| pair[0] < pair[1]), "sorted and unique");
        assert_eq!(pair_term("smith", "john"), pair_term("john", "smith"));
    }

    #[test]
    fn hashes_are_stable_and_tell_terms_apart() {
        // The stored hashes depend on these values: a change needs a new VERSION.
        assert_eq!(hash("w:smith"), hash("w:smith"));
        assert_eq!(hash(""), i64::from_be_bytes([0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14]));
        assert_ne!(hash("w:smith"), hash("w:smyth"));
        assert_eq!(hashes(&["b", "a", "b"]).len(), 2);
        assert!(hashes(&["b", "a", "c"]).is_sorted());
    }

    #[test]
    fn words_are_split_folded_and_bounded() {
        assert_eq!(split("O'Brien-Smith, a Zoë"), ["obrien", "smith", "zoe"]);
        assert_eq!(split("Иван Петров"), ["иван", "петров"]);
        let many = ContactData { display_name: "a1 b2 c3 d4 e5 f6 g7 h8".into(), ..Default::default() };
        assert_eq!(words(&many).len(), MAX_WORDS);
    }
}
