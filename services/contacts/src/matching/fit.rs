//! Learning the model from an install's own contacts, as Splink and
//! `recordlinkage` do, with no labels:
//!
//! - [`estimate_u`]: the u-probabilities are how often the levels occur
//!   among random pairs of contacts, nearly all of which are two people;
//! - [`estimate_m`]: the m-probabilities and the prior by
//!   expectation–maximisation over the pairs that blocking brings
//!   together, with u held fixed: each pair is weighed by how likely it is
//!   to be one person under the current parameters (E), and m and the prior
//!   are re-counted with those weights (M), until they stop moving.

use std::collections::HashMap;

use super::{
    compare::{Comparison, Field},
    model::{FLOOR, Model},
};

/// EM stops when no parameter moves by more than this in an iteration.
const TOLERANCE: f64 = 1e-6;

/// Pseudo-count added to every level, so no level's probability is zero.
const SMOOTHING: f64 = 0.5;

/// Level frequencies among `random` pairs (add-half smoothed), per field.
pub fn estimate_u(random: &[Comparison]) -> Vec<Vec<f64>> {
    Field::ALL
        .iter()
        .map(|&field| {
            let mut counts = vec![SMOOTHING; field.levels().len()];
            for comparison in random {
                if let Some(level) = comparison.level(field) {
                    counts[usize::from(level)] += 1.0;
                }
            }
            let total: f64 = counts.iter().sum();
            counts.into_iter().map(|count| count / total).collect()
        })
        .collect()
}

/// What EM found: m per field and level, the prior, and how many rounds it took.
#[derive(Clone, Debug)]
pub struct Estimate {
    pub m: Vec<Vec<f64>>,
    pub prior: f64,
    pub iterations: usize,
}

/// m and the prior over the `blocked` pairs by EM, from `start`'s, with `u` held fixed.
pub fn estimate_m(blocked: &[Comparison], u: &[Vec<f64>], start: &Model, max_iterations: usize) -> Estimate {
    // Many pairs compare alike: work on the distinct comparisons and their counts.
    let mut distinct: HashMap<Comparison, f64> = HashMap::new();
    for comparison in blocked {
        *distinct.entry(*comparison).or_default() += 1.0;
    }
    let pairs: f64 = blocked.len() as f64;
    let mut m = start.m.clone();
    let mut prior = start.prior.clamp(0.001, 0.999);
    let mut iterations = 0;
    while iterations < max_iterations && pairs > 0.0 {
        iterations += 1;
        let mut counts: Vec<Vec<f64>> = Field::ALL.iter().map(|field| vec![0.0; field.levels().len()]).collect();
        let mut matched = 0.0;
        for (comparison, &count) in &distinct {
            let (mut log_m, mut log_u) = (prior.ln(), (1.0 - prior).ln());
            for field in Field::ALL {
                if let Some(level) = comparison.level(field) {
                    log_m += m[field as usize][usize::from(level)].max(FLOOR).ln();
                    log_u += u[field as usize][usize::from(level)].max(FLOOR).ln();
                }
            }
            let probability = 1.0 / (1.0 + (log_u - log_m).exp());
            matched += probability * count;
            for field in Field::ALL {
                if let Some(level) = comparison.level(field) {
                    counts[field as usize][usize::from(level)] += probability * count;
                }
            }
        }
        let next_prior = (matched / pairs).clamp(0.001, 0.999);
        let next_m: Vec<Vec<f64>> = counts
            .into_iter()
            .zip(&m)
            .map(|(levels, previous)| {
                let total: f64 = levels.iter().sum();
                if total < 1e-9 {
                    return previous.clone(); // no pair has this field: keep what we had
                }
                let smoothed = total + SMOOTHING * 1e-3 * levels.len() as f64;
                levels.iter().map(|count| (count + SMOOTHING * 1e-3) / smoothed).collect()
            })
            .collect();
        let moved = next_m
            .iter()
            .flatten()
            .zip(m.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold((next_prior - prior).abs(), f64::max);
        m = next_m;
        prior = next_prior;
        if moved < TOLERANCE {
            break;
        }
    }
    Estimate { m, prior, iterations }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    /// A level drawn from `probabilities`.
    fn draw(rng: &mut StdRng, probabilities: &[f64]) -> u8 {
        let mut at: f64 = rng.random();
        for (level, p) in probabilities.iter().enumerate() {
            if at < *p {
                return level as u8;
            }
            at -= p;
        }
        (probabilities.len() - 1) as u8
    }

    /// A pair drawn from `m` (one person) or `u` (two), each field missing one time in ten.
    fn pair(rng: &mut StdRng, levels: &[Vec<f64>]) -> Comparison {
        let mut comparison = Comparison::default();
        for field in Field::ALL {
            if rng.random::<f64>() >= 0.1 {
                comparison.levels[field as usize] = Some(draw(rng, &levels[field as usize]));
            }
        }
        comparison
    }

    #[test]
    fn em_recovers_the_parameters_the_pairs_were_drawn_from() {
        let mut rng = StdRng::seed_from_u64(15);
        // Known parameters, not the built-in ones: m flatter, u as built in.
        let truth = Model::builtin();
        let known_m: Vec<Vec<f64>> = truth
            .m
            .iter()
            .map(|levels| {
                let flat: Vec<f64> = levels.iter().map(|p| 0.6 * p + 0.4 / levels.len() as f64).collect();
                flat
            })
            .collect();
        let known_prior = 0.3;
        let blocked: Vec<Comparison> = (0..60_000)
            .map(|_| {
                let one_person = rng.random::<f64>() < known_prior;
                pair(&mut rng, if one_person { &known_m } else { &truth.u })
            })
            .collect();
        let random: Vec<Comparison> = (0..200_000).map(|_| pair(&mut rng, &truth.u)).collect();

        let u = estimate_u(&random);
        for (estimated, known) in u.iter().flatten().zip(truth.u.iter().flatten()) {
            assert!((estimated - known).abs() < 0.01, "u {estimated} against {known}");
        }
        let estimate = estimate_m(&blocked, &u, Model::builtin(), 500);
        assert!((estimate.prior - known_prior).abs() < 0.02, "prior {} against {known_prior}", estimate.prior);
        for field in Field::ALL {
            for (estimated, known) in estimate.m[field as usize].iter().zip(&known_m[field as usize]) {
                assert!(
                    (estimated - known).abs() < 0.02,
                    "{field:?}: m {:?} against {:?}",
                    estimate.m[field as usize],
                    known_m[field as usize]
                );
            }
        }
        assert!(estimate.iterations < 500, "EM converged");
    }
}

/// The fitter on data we did not make: FEBRL3 (`tests/data/febrl`, 5,000
/// records of 2,000 people), its m and prior learned from its own blocked
/// pairs and its u from random pairs of it, with no labels; the labels only
/// score the result. The figures:
/// `cargo test -p crm-contacts --release febrl3 -- --nocapture`.
#[cfg(test)]
mod febrl3 {
    use std::collections::{BTreeMap, HashMap, HashSet};

    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;
    use crate::{
        matching::{DEFAULT_THRESHOLD, brings, compare::compare, fitting_keys, keys, model::NameFrequencies},
        model::{Address, ContactData},
    };

    fn records() -> Vec<(u32, ContactData)> {
        let text = include_str!("../../../../tests/data/febrl/dataset3.csv");
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        reader
            .deserialize::<BTreeMap<String, String>>()
            .map(|row| {
                let row = row.expect("FEBRL rows are well formed");
                let field = |name: &str| row.get(name).cloned().unwrap_or_default();
                let person = field("rec_id").split('-').nth(1).and_then(|n| n.parse().ok()).expect("rec-N-…");
                let street = format!("{} {}", field("street_number"), field("address_1")).trim().to_string();
                let address = Address {
                    lines: [street, field("address_2")].into_iter().filter(|line| !line.is_empty()).collect(),
                    locality: field("suburb"),
                    postal_code: field("postcode"),
                    region: field("state").to_uppercase(),
                    country_code: "AU".into(),
                    ..Default::default()
                };
                let contact = ContactData {
                    given_name: field("given_name"),
                    family_name: field("surname"),
                    addresses: vec![address],
                    birth_date: chrono::NaiveDate::parse_from_str(&field("date_of_birth"), "%Y%m%d").ok(),
                    ..Default::default()
                };
                (person, contact)
            })
            .collect()
    }

    /// The true pairs no blocking key brings together, side by side:
    /// `cargo test -p crm-contacts --release unblocked -- --ignored --nocapture`.
    #[test]
    #[ignore = "a diagnosis, printed"]
    fn unblocked_true_pairs() {
        let records = records();
        let keyed: Vec<HashSet<String>> =
            records.iter().map(|(_, contact)| keys(contact).into_iter().collect()).collect();
        let mut missed = 0;
        for a in 0..records.len() {
            for b in a + 1..records.len() {
                if records[a].0 == records[b].0 && keyed[a].is_disjoint(&keyed[b]) {
                    missed += 1;
                    if missed <= 40 {
                        let show = |contact: &ContactData| {
                            format!(
                                "{} | {} | {:?} | {} {} | {:?}",
                                contact.given_name,
                                contact.family_name,
                                contact.addresses[0].lines,
                                contact.addresses[0].locality,
                                contact.addresses[0].postal_code,
                                contact.birth_date
                            )
                        };
                        println!("{}\n{}\n", show(&records[a].1), show(&records[b].1));
                    }
                }
            }
        }
        println!("{missed} true pairs share no key");
        // What each kind of key adds: the true pairs no other key brings together.
        for kind in ["nr:", "nb:", "lb:", "sn:", "lp:"] {
            let without: Vec<HashSet<&String>> =
                keyed.iter().map(|keys| keys.iter().filter(|key| !key.starts_with(kind)).collect()).collect();
            let lost = (0..records.len())
                .flat_map(|a| (a + 1..records.len()).map(move |b| (a, b)))
                .filter(|&(a, b)| records[a].0 == records[b].0 && without[a].is_disjoint(&without[b]))
                .count();
            println!("without the {kind} keys {lost} true pairs share no key");
        }
    }

    /// Every pair of records that shares a key.
    fn pairs_sharing(records: &[(u32, ContactData)], keys: fn(&ContactData) -> Vec<String>) -> HashSet<(usize, usize)> {
        let mut holders: HashMap<String, Vec<usize>> = HashMap::new();
        for (at, (_, contact)) in records.iter().enumerate() {
            for key in keys(contact) {
                holders.entry(key).or_default().push(at);
            }
        }
        let mut pairs = HashSet::new();
        for (_, members) in holders.iter().filter(|(key, members)| brings(key, members.len())) {
            for (i, &a) in members.iter().enumerate() {
                pairs.extend(members[i + 1..].iter().map(|&b| (a.min(b), a.max(b))));
            }
        }
        pairs
    }

    #[test]
    fn a_model_fitted_on_febrl3_finds_its_duplicates_without_labels() {
        let records = records();
        let blocked: Vec<(usize, usize)> = pairs_sharing(&records, keys).into_iter().collect();
        // EM learns from the pairs the fitting keys bring, as the store's fit does.
        let training = pairs_sharing(&records, fitting_keys);
        let comparisons: Vec<Comparison> =
            training.iter().map(|&(a, b)| compare(&records[a].1, &records[b].1)).collect();
        let mut rng = StdRng::seed_from_u64(3);
        let random: Vec<Comparison> = (0..100_000)
            .map(|_| {
                let a = rng.random_range(0..records.len());
                let b = (a + rng.random_range(1..records.len())) % records.len();
                compare(&records[a].1, &records[b].1)
            })
            .collect();
        let u = estimate_u(&random);
        let estimate = estimate_m(&comparisons, &u, Model::builtin(), 200);
        let fitted = Model { version: "febrl3".into(), prior: estimate.prior, m: estimate.m, u, names: None };
        let with_frequencies =
            Model { names: Some(NameFrequencies::of(records.iter().map(|(_, contact)| contact))), ..fitted.clone() };

        let mut people: HashMap<u32, usize> = HashMap::new();
        for (person, _) in &records {
            *people.entry(*person).or_default() += 1;
        }
        let truth: usize = people.values().map(|n| n * (n - 1) / 2).sum();
        let same = |&(a, b): &(usize, usize)| records[a].0 == records[b].0;
        let blocking_recall = blocked.iter().filter(|pair| same(pair)).count() as f64 / truth as f64;
        let quality = |model: &Model| {
            let found: Vec<&(usize, usize)> = blocked
                .iter()
                .filter(|&&(a, b)| model.score_pair(&records[a].1, &records[b].1).score >= DEFAULT_THRESHOLD)
                .collect();
            let right = found.iter().filter(|pair| same(pair)).count() as f64;
            let (precision, recall) = (right / found.len() as f64, right / truth as f64);
            (precision, recall, 2.0 * precision * recall / (precision + recall))
        };
        let (builtin, learned, adjusted) = (quality(Model::builtin()), quality(&fitted), quality(&with_frequencies));
        println!(
            "FEBRL3, {truth} true pairs, blocking recall {blocking_recall:.3} ({} blocked pairs); \
             built-in model: precision {:.3} recall {:.3} F1 {:.3}; fitted (prior {:.3}, {} EM rounds): \
             precision {:.3} recall {:.3} F1 {:.3}; with name frequencies: precision {:.3} recall {:.3} F1 {:.3}",
            blocked.len(),
            builtin.0,
            builtin.1,
            builtin.2,
            fitted.prior,
            estimate.iterations,
            learned.0,
            learned.1,
            learned.2,
            adjusted.0,
            adjusted.1,
            adjusted.2
        );
        assert!(learned.0 >= 0.99 && builtin.0 >= 0.99, "precision: {builtin:?} {learned:?}");
        assert!(learned.2 >= builtin.2, "fitting must not lose what the built-in model finds");
        assert!(blocking_recall >= 0.99, "blocking recall {blocking_recall}");
        assert!(learned.2 >= 0.97, "{learned:?}");
        assert!(adjusted.0 >= 0.99, "precision with name frequencies: {adjusted:?}");
    }
}
