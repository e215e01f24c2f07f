//! What a contact is found by: its terms, in `contact_terms` (probed by a
//! btree) and recorded in its row (so a change deletes exactly those).
//!
//! - Blocking keys ([`crate::matching::keys`]): `e:` normalised email, `p:`
//!   E.164 phone, `np:`/`nb:` phonetic names with postal code or birth date.
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

use std::collections::BTreeSet;

use crate::model::ContactData;

/// Bumped whenever [`all`] changes: contacts indexed by an older version are
/// indexed again in the background at start (`store::reindex`).
pub const VERSION: i16 = 1;

/// Name words indexed per contact, at most (pairs grow with their square).
const MAX_WORDS: usize = 6;

/// Every term of a contact (blocking keys and search terms), sorted and unique.
pub fn all(data: &ContactData) -> Vec<String> {
    let mut terms: BTreeSet<String> = crate::matching::keys(data).into_iter().collect();
    terms.extend(search(data));
    terms.into_iter().collect()
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
    fn words_are_split_folded_and_bounded() {
        assert_eq!(split("O'Brien-Smith, a Zoë"), ["obrien", "smith", "zoe"]);
        assert_eq!(split("Иван Петров"), ["иван", "петров"]);
        let many = ContactData { display_name: "a1 b2 c3 d4 e5 f6 g7 h8".into(), ..Default::default() };
        assert_eq!(words(&many).len(), MAX_WORDS);
    }
}
