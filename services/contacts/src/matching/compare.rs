//! Comparing two contacts field by field, at graded levels.
//!
//! Each [`Field`] is compared at a few levels, from the strongest agreement
//! (index 0, "exact") to disagreement (the last, "different"); a field that
//! either side lacks has no level and counts for nothing (missing is never
//! evidence). Levels are monotonic by construction: each is defined by a
//! similarity at least as strict as the next, so a closer value never lands
//! on a weaker level. A field with several values (emails, phones,
//! addresses) takes the best level over every pair of values.

use strsim::{jaro_winkler, levenshtein};

use super::names;
use crate::model::{Address, ContactData};

/// The fields compared, in the order of [`Comparison::levels`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    GivenName,
    FamilyName,
    Email,
    Phone,
    BirthDate,
    Address,
    Region,
}

impl Field {
    pub const ALL: [Field; 7] = [
        Field::GivenName,
        Field::FamilyName,
        Field::Email,
        Field::Phone,
        Field::BirthDate,
        Field::Address,
        Field::Region,
    ];

    /// What the members of a household often share: an address, a landline.
    pub const HOUSEHOLD: [Field; 3] = [Field::Address, Field::Phone, Field::Region];

    /// The field's name, as reasons and stored models spell it.
    pub fn name(self) -> &'static str {
        match self {
            Field::GivenName => "given_name",
            Field::FamilyName => "family_name",
            Field::Email => "email",
            Field::Phone => "phone",
            Field::BirthDate => "birth_date",
            Field::Address => "address",
            Field::Region => "region",
        }
    }

    /// The field's levels, strongest agreement first, "different" last.
    pub fn levels(self) -> &'static [&'static str] {
        match self {
            Field::GivenName => &["exact", "nickname", "close", "somewhat", "different"],
            Field::FamilyName => &["exact", "close", "somewhat", "different"],
            Field::Email => &["exact", "local_part", "different"],
            Field::Phone => &["exact", "close", "different"],
            Field::BirthDate => &["exact", "close", "different"],
            Field::Address => &["exact", "street", "area", "different"],
            Field::Region => &["exact", "different"],
        }
    }

    /// The index of the "different" level.
    pub fn different(self) -> u8 {
        (self.levels().len() - 1) as u8
    }

    /// The reason naming this field at `level`, e.g. `given_name_nickname`.
    pub fn reason(self, level: u8) -> &'static str {
        REASONS[self as usize][usize::from(level)]
    }
}

/// Every field's reasons, built once (reasons are `&'static str` in answers).
static REASONS: std::sync::LazyLock<Vec<Vec<&'static str>>> = std::sync::LazyLock::new(|| {
    Field::ALL
        .iter()
        .map(|field| {
            field
                .levels()
                .iter()
                .map(|level| &*Box::leak(format!("{}_{level}", field.name()).into_boxed_str()))
                .collect()
        })
        .collect()
});

/// How two contacts compare: a level per field (None: a side lacks it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Comparison {
    pub levels: [Option<u8>; Field::ALL.len()],
    /// The names matched crosswise (one side's given name is the other's family name).
    pub swapped: bool,
}

impl Comparison {
    pub fn level(&self, field: Field) -> Option<u8> {
        self.levels[field as usize]
    }
}

/// Compares `a` with `b`; symmetric.
pub fn compare(a: &ContactData, b: &ContactData) -> Comparison {
    let mut comparison = Comparison::default();
    let mut set = |field: Field, level: Option<u8>| comparison.levels[field as usize] = level;
    let (given, family, swapped) = compare_names(a, b);
    set(Field::GivenName, given);
    set(Field::FamilyName, family);
    set(Field::Email, best(&a.emails, &b.emails, |x, y| email_level(&x.key(), &y.key())));
    set(Field::Phone, best(&a.phones, &b.phones, |x, y| phone_level(&x.number, &y.number)));
    set(Field::BirthDate, a.birth_date.zip(b.birth_date).map(|(x, y)| birth_level(x, y)));
    set(Field::Address, address_level(a, b, place_level));
    set(Field::Region, address_level(a, b, |x, y| text_level_with(&x.region, &y.region, exact_level)));
    comparison.swapped = swapped;
    comparison
}

/// Two addresses as one field, since their parts agree together (people
/// who share a street share its postal code and locality: counted apart,
/// one move would weigh as four disagreements and one household as four
/// agreements). Exact: the same house (number and street, in the same
/// area); street: the same street in the same area, the number differing
/// or missing; area: the same postal code or locality (one typo allowed);
/// different. None when neither a street nor an area is on both sides.
fn place_level(a: &Address, b: &Address) -> Option<u8> {
    let street = optional(street_name(a), street_name(b), street_level);
    let number = optional(street_number(a), street_number(b), exact_level);
    let postal = text_level_with(&a.postal_code, &b.postal_code, code_level);
    let locality = text_level(&a.locality, &b.locality);
    let area = [postal, locality].into_iter().flatten().min();
    let same_area = area.is_some_and(|level| level <= 1);
    let same_street = street.is_some_and(|level| level <= 1);
    if street.is_none() && area.is_none() {
        return None;
    }
    Some(match (same_street, same_area || area.is_none(), number) {
        (true, true, Some(0)) => 0,
        (true, true, _) => 1,
        (_, true, _) if area.is_some() => 2,
        _ => 3,
    })
}

/// The best level over every pair of values (None when a side has none).
fn best<T>(a: &[T], b: &[T], level: impl Fn(&T, &T) -> u8) -> Option<u8> {
    a.iter().flat_map(|x| b.iter().map(|y| level(x, y))).min()
}

/// The best level over every pair of addresses at which both sides have the part compared.
fn address_level(a: &ContactData, b: &ContactData, level: impl Fn(&Address, &Address) -> Option<u8>) -> Option<u8> {
    a.addresses.iter().flat_map(|x| b.addresses.iter().filter_map(|y| level(x, y))).min()
}

fn optional<T>(a: Option<T>, b: Option<T>, level: impl Fn(&T, &T) -> u8) -> Option<u8> {
    Some(level(&a?, &b?))
}

fn text_level(a: &str, b: &str) -> Option<u8> {
    text_level_with(a, b, |x, y| similarity_level(x, y, &[0.92]))
}

fn text_level_with(a: &str, b: &str, level: impl Fn(&String, &String) -> u8) -> Option<u8> {
    let (a, b) = (squash(a), squash(b));
    (!a.is_empty() && !b.is_empty()).then(|| level(&a, &b))
}

/// Lower case, letters and digits only.
fn squash(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

fn exact_level(a: &String, b: &String) -> u8 {
    if a == b { 0 } else { 1 }
}

/// 0 when equal, then one level per bound that the Jaro–Winkler similarity
/// reaches (bounds descending), else the last.
fn similarity_level(a: &str, b: &str, bounds: &[f64]) -> u8 {
    if a == b {
        return 0;
    }
    let similarity = jaro_winkler(a, b);
    let reached = bounds.iter().position(|bound| similarity >= *bound).unwrap_or(bounds.len());
    (reached + 1) as u8
}

/// Close: one edit (substitution, insertion, deletion) or two neighbours swapped.
fn one_typo(a: &str, b: &str) -> bool {
    levenshtein(a, b) <= 1 || transposed(a, b)
}

/// Same length, differing only by two neighbouring characters swapped.
fn transposed(a: &str, b: &str) -> bool {
    let (x, y): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if x.len() != y.len() {
        return false;
    }
    let differing: Vec<usize> = (0..x.len()).filter(|&i| x[i] != y[i]).collect();
    matches!(differing.as_slice(), [i, j] if *j == i + 1 && x[*i] == y[*j] && x[*j] == y[*i])
}

/// Postal codes and the like: exact, one typo, different.
fn code_level(a: &String, b: &String) -> u8 {
    if a == b {
        0
    } else if a.len() >= 3 && one_typo(a, b) {
        1
    } else {
        2
    }
}

/// Names: given and family compared straight and crosswise; the crosswise
/// reading is taken when it is clearly the better one.
fn compare_names(a: &ContactData, b: &ContactData) -> (Option<u8>, Option<u8>, bool) {
    let (given_a, family_a) = (names::fold(&a.given_name), names::fold(&a.family_name));
    let (given_b, family_b) = (names::fold(&b.given_name), names::fold(&b.family_name));
    let straight = (given_level(&given_a, &given_b), family_level(&family_a, &family_b));
    if given_a.is_empty() || family_a.is_empty() || given_b.is_empty() || family_b.is_empty() {
        return (straight.0, straight.1, false);
    }
    let crosswise = (given_level(&given_a, &family_b), given_level(&family_a, &given_b));
    let strength = |(g, f): (Option<u8>, Option<u8>), family_levels: u8| {
        // Agreement as a fraction of each field's scale: 1 exact, 0 different.
        let of = |level: Option<u8>, scale: u8| level.map_or(0.0, |l| 1.0 - f64::from(l) / f64::from(scale));
        of(g, Field::GivenName.different()) + of(f, family_levels)
    };
    let crosswise_is_better = crosswise.0.is_some_and(|l| l <= 2)
        && crosswise.1.is_some_and(|l| l <= 2)
        && strength(crosswise, Field::GivenName.different()) > strength(straight, Field::FamilyName.different());
    if crosswise_is_better {
        // The crosswise family level is on the given-name scale: nickname counts as close.
        let family = crosswise.1.map(|level| if level == 0 { 0 } else { 1 });
        (crosswise.0, family, true)
    } else {
        (straight.0, straight.1, false)
    }
}

/// Given names: exact, nickname (or formal name), close (one typo or
/// Jaro–Winkler ≥ 0.92), somewhat (Jaro–Winkler ≥ 0.8, or an initial of
/// the other), different.
fn given_level(a: &str, b: &str) -> Option<u8> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    Some(if a == b {
        0
    } else if names::same_formal(a, b) {
        1
    } else if one_typo(a, b) || jaro_winkler(a, b) >= 0.92 {
        2
    } else if jaro_winkler(a, b) >= 0.8 || ((a.len() == 1 || b.len() == 1) && a[..1] == b[..1]) {
        3
    } else {
        4
    })
}

/// Family names: exact, close (one typo or Jaro–Winkler ≥ 0.92), somewhat (≥ 0.8), different.
fn family_level(a: &str, b: &str) -> Option<u8> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    Some(if a == b {
        0
    } else if one_typo(a, b) || jaro_winkler(a, b) >= 0.92 {
        1
    } else if jaro_winkler(a, b) >= 0.8 {
        2
    } else {
        3
    })
}

/// Emails: exact, the same local part (of five characters or more, dots
/// ignored) at another domain, different.
fn email_level(a: &str, b: &str) -> u8 {
    if a == b {
        return 0;
    }
    let local = |email: &str| email.split('@').next().unwrap_or_default().replace('.', "");
    let (x, y) = (local(a), local(b));
    if x.len() >= 5 && x == y { 1 } else { 2 }
}

/// Phones (E.164): exact, one typo (one digit wrong or two swapped), different.
fn phone_level(a: &str, b: &str) -> u8 {
    if a == b {
        0
    } else if a.len() == b.len() && a.len() >= 8 && (levenshtein(a, b) == 1 || transposed(a, b)) {
        1
    } else {
        2
    }
}

/// Birth dates: exact, close (day and month swapped, one digit wrong or
/// two neighbouring digits swapped), different.
fn birth_level(a: chrono::NaiveDate, b: chrono::NaiveDate) -> u8 {
    if a == b {
        return 0;
    }
    let (x, y) = (a.format("%Y%m%d").to_string(), b.format("%Y%m%d").to_string());
    let day_month_swapped = x[..4] == y[..4] && x[4..6] == y[6..8] && x[6..8] == y[4..6];
    if day_month_swapped || one_typo(&x, &y) { 1 } else { 2 }
}

/// The house number of an address: the first word of its first line when
/// that starts with a digit ("12a Market Street" → "12a").
pub fn street_number(address: &Address) -> Option<String> {
    let first = address.lines.first()?.split_whitespace().next()?;
    first.starts_with(|c: char| c.is_ascii_digit()).then(|| squash(first))
}

/// The street of an address: its first line without the house number,
/// common abbreviations spelt out, words joined.
pub fn street_name(address: &Address) -> Option<String> {
    let line = address.lines.first()?;
    let mut words = line.split_whitespace().peekable();
    if words.peek().is_some_and(|word| word.starts_with(|c: char| c.is_ascii_digit())) {
        words.next();
    }
    let street: String = words
        .flat_map(|word| word.split(|c: char| !c.is_alphanumeric()))
        .filter(|word| !word.is_empty())
        .map(|word| match word.to_lowercase().as_str() {
            "st" => "street".to_string(),
            "rd" => "road".to_string(),
            "ave" | "av" => "avenue".to_string(),
            "ln" => "lane".to_string(),
            "dr" => "drive".to_string(),
            "ct" => "court".to_string(),
            "pl" => "place".to_string(),
            "sq" => "square".to_string(),
            other => other.to_string(),
        })
        .collect();
    (!street.is_empty()).then_some(street)
}

/// Streets: exact, close (Jaro–Winkler ≥ 0.9, or one typo), different.
fn street_level(a: &String, b: &String) -> u8 {
    if a == b {
        0
    } else if one_typo(a, b) || jaro_winkler(a, b) >= 0.9 {
        1
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_exact_first_and_different_last() {
        for field in Field::ALL {
            assert_eq!(field.levels()[0], "exact", "{field:?}");
            assert_eq!(field.levels()[usize::from(field.different())], "different", "{field:?}");
            assert_eq!(field.reason(0), format!("{}_exact", field.name()));
        }
    }

    #[test]
    fn levels_never_rise_as_a_value_moves_away() {
        // Each sequence moves one value further from the first: its levels must not go down.
        let given = ["katherine", "kate", "katherina", "kathleen", "zoe"];
        let levels: Vec<u8> = given.iter().map(|name| given_level("katherine", name).unwrap()).collect();
        assert_eq!(levels, [0, 1, 2, 3, 4]);
        let family = ["smith", "smyth", "smithson", "jones"];
        let levels: Vec<u8> = family.iter().map(|other| family_level("smith", other).unwrap()).collect();
        assert!(levels.windows(2).all(|w| w[0] <= w[1]), "{levels:?}");
        // Any pair of strings: a higher similarity never gets a weaker level.
        let words = ["green", "greene", "gren", "grean", "reeng", "brown", "grenn", "g", "gr"];
        for a in words {
            let mut by_similarity: Vec<(f64, u8)> = words
                .iter()
                .map(|b| (if a == *b { 1.01 } else { jaro_winkler(a, b) }, family_level(a, b).unwrap()))
                .collect();
            by_similarity.sort_by(|x, y| y.0.total_cmp(&x.0));
            for pair in by_similarity.windows(2) {
                // One typo may lift a lower Jaro–Winkler to "close": allowed; the reverse is not.
                assert!(pair[0].1 <= pair[1].1 || pair[1].1 == 1, "{a}: {by_similarity:?}");
            }
        }
    }

    #[test]
    fn codes_dates_and_streets_have_their_typo_levels() {
        assert_eq!(code_level(&"2119".into(), &"2119".into()), 0);
        assert_eq!(code_level(&"2119".into(), &"2191".into()), 1);
        assert_eq!(code_level(&"2119".into(), &"3165".into()), 2);
        let date = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y%m%d").unwrap();
        assert_eq!(birth_level(date("19560409"), date("19560409")), 0);
        assert_eq!(birth_level(date("19560409"), date("19560904")), 1, "day and month swapped");
        assert_eq!(birth_level(date("19560409"), date("19650409")), 1, "two digits swapped");
        assert_eq!(birth_level(date("19560409"), date("19720101")), 2);
        let at = |line: &str| Address { lines: vec![line.into()], postal_code: "2119".into(), ..Default::default() };
        assert_eq!(place_level(&at("7 wallaby place"), &at("7 wallaby pl")), Some(0));
        assert_eq!(place_level(&at("7 wallaby place"), &at("wallaby place")), Some(1), "no number");
        assert_eq!(place_level(&at("7 wallaby place"), &at("9 banksia street")), Some(2));
        let moved = Address { postal_code: "3165".into(), ..at("7 wallaby place") };
        assert_eq!(place_level(&at("7 wallaby place"), &moved), Some(3));
        assert_eq!(street_number(&at("177 pridhamstreet")).as_deref(), Some("177"));
        assert_eq!(street_name(&at("177 pridham street")), street_name(&at("pridham st")));
        assert_eq!(street_level(&street_name(&at("7 wallaby place")).unwrap(), &"wallabyplace".into()), 0);
    }

    #[test]
    fn names_compare_crosswise_when_swapped_and_missing_is_no_level() {
        let person = |given: &str, family: &str| ContactData {
            given_name: given.into(),
            family_name: family.into(),
            ..Default::default()
        };
        let found = compare(&person("Anna", "Kowalski"), &person("Kowalski", "Anna"));
        assert!(found.swapped);
        assert_eq!((found.level(Field::GivenName), found.level(Field::FamilyName)), (Some(0), Some(0)));
        let found = compare(&person("Bob", "Smith"), &person("Robert", ""));
        assert_eq!((found.level(Field::GivenName), found.level(Field::FamilyName)), (Some(1), None));
        assert_eq!(found.level(Field::Email), None);
        assert_eq!(compare(&person("Bob", "Smith"), &person("Robert", "Smyth")).level(Field::FamilyName), Some(1));
    }
}
