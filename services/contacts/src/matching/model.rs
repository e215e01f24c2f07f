//! The Fellegi–Sunter model: how much each field's level says for or
//! against two contacts being one person, and the probability that they are.
//!
//! For each field and level, `m` is the probability of that level when the
//! two contacts are one person, `u` when they are two; the level's weight is
//! `log2(m / u)` bits. A pair's weight is the prior's log-odds plus the
//! weights of the fields both sides have; its probability is the logistic of
//! that (base 2). The prior is the chance that two contacts sharing a
//! blocking key are one person.
//!
//! One rule stands beside the weights, because fields are not independent
//! inside a household: members share an address, a landline and a region,
//! siblings a family name, twins a birth date too, so those agreements add
//! up as if they were separate evidence. So when no email agrees and two
//! contacts' given names differ, or their birth dates do (beyond a typo),
//! only the given name counts for them (what siblings, twins, or a parent
//! and child of one name share is withdrawn: family name, birth date,
//! address, phone, region); when their family names differ (a changed
//! family name with the same given name and birth date excepted), what a
//! household shares cannot make the case: the positive weight of the
//! address, phone and region is withdrawn. The reason `household_guard` carries what was withdrawn,
//! negated, so the reasons still sum to the score's log-odds. And names
//! alone are not an identity: in a base of a million, two people of one
//! name in one postal code are common, and so are two of one given name
//! and birth date; so when nothing else identifies the pair (no email or
//! phone at least close, no shared street, no birth date at least close
//! beside family names that are not different), the agreement of the
//! names and the birth date is withdrawn (`no_identifier_agrees`). The cost: a
//! record whose given name was replaced outright is not found by its
//! family name, birth date and address, since that is what twins share.

use std::{collections::HashMap, sync::LazyLock};

use super::{
    Match,
    compare::{Comparison, Field, compare},
    names,
};
use crate::model::ContactData;

/// m- and u-probabilities per field and level, and the prior.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// Which model this is: `builtin`, or the version a fit stored.
    pub version: String,
    /// Chance that two contacts sharing a blocking key are one person.
    pub prior: f64,
    /// Per field (in [`Field::ALL`] order), per level.
    pub m: Vec<Vec<f64>>,
    pub u: Vec<Vec<f64>>,
    /// How common each name is in the base, for term-frequency adjustment
    /// (a fitted model's; the built-in one has none).
    pub names: Option<NameFrequencies>,
}

/// How common names are among an install's contacts: the share of contacts
/// holding each given and family name (folded, see `names::fold`), for the
/// names two or more of the contacts sampled hold.
///
/// Two contacts sharing a name agree by chance as often as that name is
/// held, not as often as names agree on average (the level's u): a shared
/// "smith" says less than a shared "zywicki". So an exact agreement weighs
/// log2(m / frequency) instead of log2(m / u), never less than the next
/// level's weight (a closer value never scores lower); a name not listed
/// is taken to be as rare as one contact of the sample ([`Self::rare`]).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NameFrequencies {
    pub given: HashMap<String, f64>,
    pub family: HashMap<String, f64>,
    /// The share of a name held by one contact of the sample.
    pub rare: f64,
}

impl NameFrequencies {
    /// The frequencies among `contacts`.
    pub fn of<'a>(contacts: impl IntoIterator<Item = &'a ContactData>) -> NameFrequencies {
        let (mut given, mut family, mut sampled) = (HashMap::new(), HashMap::new(), 0usize);
        for contact in contacts {
            sampled += 1;
            for (name, counts) in [(&contact.given_name, &mut given), (&contact.family_name, &mut family)] {
                let folded = names::fold(name);
                if !folded.is_empty() {
                    *counts.entry(folded).or_insert(0usize) += 1;
                }
            }
        }
        let shares = |counts: HashMap<String, usize>| -> HashMap<String, f64> {
            counts
                .into_iter()
                .filter(|(_, count)| *count >= 2)
                .map(|(name, count)| (name, count as f64 / sampled as f64))
                .collect()
        };
        NameFrequencies { given: shares(given), family: shares(family), rare: 1.0 / sampled.max(1) as f64 }
    }

    /// How often a contact holds `name` (folded) as its `field`.
    fn frequency(&self, field: Field, name: &str) -> f64 {
        let listed = if field == Field::GivenName { &self.given } else { &self.family };
        listed.get(name).copied().unwrap_or(self.rare)
    }
}

/// The smallest probability a level is given: a level never seen is rare, not impossible.
pub const FLOOR: f64 = 1e-6;

static BUILTIN: LazyLock<Model> = LazyLock::new(|| {
    // Sensible before any fit: m from how often a person's own records
    // disagree (typos, nicknames, moves), u from how often strangers agree
    // (a common given name one in a hundred, a birth date one in five
    // thousand, a phone or email almost never).
    let fields: [(&[f64], &[f64]); 7] = [
        (&[0.80, 0.03, 0.08, 0.04, 0.05], &[0.008, 0.0005, 0.004, 0.03, 0.9575]),
        (&[0.85, 0.08, 0.03, 0.04], &[0.005, 0.003, 0.02, 0.972]),
        (&[0.90, 0.03, 0.07], &[0.0001, 0.0005, 0.9994]),
        (&[0.85, 0.05, 0.10], &[0.0001, 0.0004, 0.9995]),
        (&[0.85, 0.08, 0.07], &[0.0002, 0.001, 0.9988]),
        (&[0.80, 0.07, 0.06, 0.07], &[0.0005, 0.002, 0.02, 0.9775]),
        (&[0.95, 0.05], &[0.2, 0.8]),
    ];
    Model {
        version: "builtin".into(),
        prior: 0.05,
        m: fields.iter().map(|(m, _)| m.to_vec()).collect(),
        u: fields.iter().map(|(_, u)| u.to_vec()).collect(),
        names: None,
    }
});

impl Model {
    /// The parameters a new install starts from, until it has fitted its own.
    pub fn builtin() -> &'static Model {
        &BUILTIN
    }

    /// The weight, in bits, of `field` at `level`: never more than a
    /// closer level's (a fitted model may say otherwise of a rare level;
    /// a closer value must never score lower).
    pub fn weight(&self, field: Field, level: u8) -> f64 {
        (0..=usize::from(level))
            .map(|at| (self.m[field as usize][at].max(FLOOR) / self.u[field as usize][at].max(FLOOR)).log2())
            .fold(f64::INFINITY, f64::min)
    }

    /// The weight of an exact agreement on a name `frequency` of the
    /// contacts hold (see [`NameFrequencies`]).
    fn name_weight(&self, field: Field, frequency: f64) -> f64 {
        let exact = (self.m[field as usize][0].max(FLOOR) / frequency.max(FLOOR)).log2();
        exact.max(self.weight(field, 1))
    }

    /// Compares two contacts and scores them, names weighed by how common
    /// they are when the model knows (term-frequency adjustment).
    pub fn score_pair(&self, a: &ContactData, b: &ContactData) -> Match {
        let comparison = compare(a, b);
        let mut weights = self.weights(&comparison);
        if let Some(frequencies) = self.names.as_ref().filter(|_| !comparison.swapped) {
            for (field, name) in [(Field::GivenName, &a.given_name), (Field::FamilyName, &a.family_name)] {
                if comparison.level(field) == Some(0) {
                    weights[field as usize] =
                        Some(self.name_weight(field, frequencies.frequency(field, &names::fold(name))));
                }
            }
        }
        self.score_weighed(&comparison, &weights)
    }

    /// The probability that the compared pair is one person, with every
    /// field's level and weight as the reasons (strongest first).
    pub fn score(&self, comparison: &Comparison) -> Match {
        self.score_weighed(comparison, &self.weights(comparison))
    }

    /// Each field's weight at its level (None: a side lacks it).
    fn weights(&self, comparison: &Comparison) -> [Option<f64>; Field::ALL.len()] {
        Field::ALL.map(|field| comparison.level(field).map(|level| self.weight(field, level)))
    }

    fn score_weighed(&self, comparison: &Comparison, weights: &[Option<f64>; Field::ALL.len()]) -> Match {
        let mut reasons: Vec<(&'static str, f64)> = Field::ALL
            .iter()
            .filter_map(|&field| Some((field.reason(comparison.level(field)?), weights[field as usize]?)))
            .collect();
        // Adds `reason` taking back the positive weight of `fields`, if any.
        let mut withdraw = |fields: &[Field], reason: &'static str| {
            let agreement: f64 =
                fields.iter().filter_map(|&field| weights[field as usize]).filter(|weight| *weight > 0.0).sum();
            if agreement > 0.0 {
                reasons.push((reason, -agreement));
            }
        };
        if let Some(shared_fields) = household_guard(comparison) {
            // What a household shares cannot make the case: its agreement is withdrawn.
            withdraw(shared_fields, "household_guard");
        }
        if !identifier_agrees(comparison) {
            // Names, a birth date and an area alone: namesakes in a big base. Their agreement is withdrawn.
            const NAMESAKES: [Field; 3] = [Field::GivenName, Field::FamilyName, Field::BirthDate];
            withdraw(&NAMESAKES, "no_identifier_agrees");
        }
        if comparison.swapped {
            reasons.push(("name_swapped", 0.0));
        }
        let prior = self.prior.clamp(FLOOR, 1.0 - FLOOR);
        let bits = (prior / (1.0 - prior)).log2() + reasons.iter().map(|(_, weight)| weight).sum::<f64>();
        let probability = 1.0 / (1.0 + (-bits).exp2());
        reasons.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
        Match { score: probability, reasons }
    }
}

/// Whether something besides the names and the area identifies the pair
/// as one person: an email or a phone at least close, the same street, or
/// a birth date at least close with family names not different. A birth
/// date and a given name alone are not an identity: in a base of a
/// million, every given name and birth date is shared by someone.
fn identifier_agrees(comparison: &Comparison) -> bool {
    let close = |field: Field| comparison.level(field).is_some_and(|level| level < field.different());
    close(Field::Email)
        || close(Field::Phone)
        || close(Field::BirthDate) && comparison.level(Field::FamilyName) != Some(Field::FamilyName.different())
        || comparison.level(Field::Address) <= Some(1) && comparison.level(Field::Address).is_some()
}

/// Fields whose agreement a pair may not count, when names or birth dates
/// disagree without the email that overrides it: a different given name
/// (a sibling, twins) or birth date (a parent and child of one name)
/// leaves only the names to go on; a different family name, or given names
/// merely alike ("somewhat"), everything but what a household shares.
fn household_guard(comparison: &Comparison) -> Option<&'static [Field]> {
    const SIBLINGS: [Field; 5] = [Field::FamilyName, Field::BirthDate, Field::Address, Field::Phone, Field::Region];
    let differs = |field: Field| comparison.level(field) == Some(field.different());
    if comparison.level(Field::Email).is_some_and(|level| level < Field::Email.different()) {
        return None;
    }
    if differs(Field::GivenName) || differs(Field::BirthDate) {
        return Some(&SIBLINGS);
    }
    // A family name changed (marriage), the given name and birth date the same: one person.
    let renamed = differs(Field::FamilyName) && comparison.level(Field::BirthDate) == Some(0);
    // Given names merely alike (Lars and Laura) are a household's as often as a typo's.
    let given_alike = comparison.level(Field::GivenName) == Some(Field::GivenName.different() - 1);
    ((differs(Field::FamilyName) && !renamed) || given_alike).then_some(&Field::HOUSEHOLD[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_model_is_a_set_of_distributions_with_agreement_for_and_difference_against() {
        let model = Model::builtin();
        for field in Field::ALL {
            let (m, u) = (&model.m[field as usize], &model.u[field as usize]);
            assert_eq!((m.len(), u.len()), (field.levels().len(), field.levels().len()), "{field:?}");
            assert!((m.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{field:?} m sums to {}", m.iter().sum::<f64>());
            assert!((u.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{field:?} u sums to {}", u.iter().sum::<f64>());
            assert!(model.weight(field, 0) > 0.0 && model.weight(field, field.different()) < 0.0, "{field:?}");
            // Monotonic: a closer level never weighs less than a further one.
            let weights: Vec<f64> = (0..=field.different()).map(|level| model.weight(field, level)).collect();
            assert!(weights.windows(2).all(|w| w[0] >= w[1]), "{field:?}: {weights:?}");
        }
    }

    #[test]
    fn namesakes_in_one_area_are_not_one_person_without_an_identifier() {
        let model = Model::builtin();
        let mut comparison = Comparison::default();
        for (field, level) in [
            (Field::GivenName, 0),
            (Field::FamilyName, 0),
            (Field::Address, 2),
            (Field::Region, 0),
            (Field::Email, 2),
            (Field::Phone, 2),
        ] {
            comparison.levels[field as usize] = Some(level);
        }
        let namesakes = model.score(&comparison);
        assert!(namesakes.score < crate::matching::DEFAULT_THRESHOLD, "{namesakes:?}");
        assert!(namesakes.reasons.iter().any(|(reason, _)| *reason == "no_identifier_agrees"), "{namesakes:?}");
        // The same street makes the names count again.
        comparison.levels[Field::Address as usize] = Some(1);
        assert!(!model.score(&comparison).reasons.iter().any(|(reason, _)| *reason == "no_identifier_agrees"));
    }

    #[test]
    fn a_given_name_and_birth_date_shared_by_strangers_are_not_one_person() {
        // In a base of a million, 43 people share each birth date and one in
        // a hundred of them a given name: the commonest false flag there was this.
        let model = Model::builtin();
        let mut comparison = Comparison::default();
        for (field, level) in [
            (Field::GivenName, 0),
            (Field::BirthDate, 0),
            (Field::FamilyName, 3),
            (Field::Address, 2),
            (Field::Region, 0),
            (Field::Email, 2),
        ] {
            comparison.levels[field as usize] = Some(level);
        }
        let strangers = model.score(&comparison);
        assert!(strangers.score < 0.5, "{strangers:?}");
        assert!(strangers.reasons.iter().any(|(reason, _)| *reason == "no_identifier_agrees"), "{strangers:?}");
        // The same family name makes the birth date an identifier again.
        comparison.levels[Field::FamilyName as usize] = Some(0);
        let namesakes_born_the_same_day = model.score(&comparison);
        assert!(
            namesakes_born_the_same_day.score >= crate::matching::DEFAULT_THRESHOLD,
            "{namesakes_born_the_same_day:?}"
        );
        // As does a shared phone.
        comparison.levels[Field::FamilyName as usize] = Some(3);
        comparison.levels[Field::Phone as usize] = Some(0);
        assert!(!model.score(&comparison).reasons.iter().any(|(reason, _)| *reason == "no_identifier_agrees"));
    }

    #[test]
    fn a_shared_rare_family_name_counts_for_more_than_a_shared_common_one() {
        let person = |given: &str, family: &str, phone: &str| ContactData {
            given_name: given.into(),
            family_name: family.into(),
            phones: vec![crate::model::Phone { number: phone.into(), ..Default::default() }],
            ..Default::default()
        };
        // A base where one contact in fifty is a Smith and Zywicki is unheard of.
        let base: Vec<ContactData> = (0..1000)
            .map(|n| person(if n % 2 == 0 { "Anna" } else { "Ben" }, if n % 50 == 0 { "Smith" } else { "Other" }, ""))
            .chain(std::iter::once(person("Carl", "Other", "")))
            .collect();
        let frequencies = NameFrequencies::of(&base);
        assert_eq!(frequencies.family["smith"], 20.0 / 1001.0);
        assert!(!frequencies.given.contains_key("carl"), "one holder: rare, not listed");
        let model = Model { names: Some(frequencies), ..Model::builtin().clone() };

        // The same comparison (given name close, family name exact, phone one digit off).
        let smiths =
            model.score_pair(&person("Ann", "Smith", "+14155550100"), &person("Anne", "Smith", "+14155550101"));
        let zywickis =
            model.score_pair(&person("Ann", "Zywicki", "+14155550100"), &person("Anne", "Zywicki", "+14155550101"));
        let weight = |found: &Match| found.reasons.iter().find(|(reason, _)| *reason == "family_name_exact").unwrap().1;
        assert!(weight(&zywickis) > weight(&smiths) && zywickis.score > smiths.score, "{zywickis:?} {smiths:?}");
        // Monotonic still: however common, an exact name weighs no less than a close one.
        assert!(weight(&smiths) >= model.weight(Field::FamilyName, 1), "{smiths:?}");
        // The reasons still sum to the log-odds.
        let bits: f64 =
            smiths.reasons.iter().map(|(_, weight)| weight).sum::<f64>() + (model.prior / (1.0 - model.prior)).log2();
        assert!((smiths.score - 1.0 / (1.0 + (-bits).exp2())).abs() < 1e-12);
        // Without frequencies (the built-in model), both weigh the level's weight.
        let plain = Model::builtin().score_pair(&person("Ann", "Smith", "+1"), &person("Anne", "Smith", "+1"));
        assert_eq!(weight(&plain), Model::builtin().weight(Field::FamilyName, 0));
    }

    #[test]
    fn missing_fields_weigh_nothing_and_the_guard_holds_a_household_back() {
        let model = Model::builtin();
        let mut comparison = Comparison::default();
        let nothing = model.score(&comparison);
        assert!((nothing.score - model.prior).abs() < 1e-9, "{nothing:?}");
        assert!(nothing.reasons.is_empty());

        // Same family name, phone and address; given names differ: a household.
        for (field, level) in [(Field::FamilyName, 0), (Field::GivenName, 4), (Field::Phone, 0), (Field::Address, 0)] {
            comparison.levels[field as usize] = Some(level);
        }
        let household = model.score(&comparison);
        assert!(household.score < crate::matching::DEFAULT_THRESHOLD, "{household:?}");
        let withdrawn =
            model.weight(Field::FamilyName, 0) + model.weight(Field::Phone, 0) + model.weight(Field::Address, 0);
        assert!(household.reasons.contains(&("household_guard", -withdrawn)), "{household:?}");
        // The reasons sum to the log-odds.
        let bits: f64 = household.reasons.iter().map(|(_, weight)| weight).sum::<f64>()
            + (model.prior / (1.0 - model.prior)).log2();
        assert!((household.score - 1.0 / (1.0 + (-bits).exp2())).abs() < 1e-12);
        // Twins: the same birth date as well; still held back.
        comparison.levels[Field::BirthDate as usize] = Some(0);
        assert!(model.score(&comparison).score < crate::matching::DEFAULT_THRESHOLD, "{:?}", model.score(&comparison));
        // A parent with the child's name: the given names agree, the birth dates do not.
        comparison.levels[Field::GivenName as usize] = Some(0);
        comparison.levels[Field::BirthDate as usize] = Some(2);
        assert!(model.score(&comparison).score < crate::matching::DEFAULT_THRESHOLD, "{:?}", model.score(&comparison));
        comparison.levels[Field::Email as usize] = Some(0);
        assert!(model.score(&comparison).score > 0.99, "{:?}", model.score(&comparison));
    }
}
