//! Association rules over co-purchases: "of the customers who bought A,
//! 34% also bought B, 3.1 times as many as of all customers". A basket is
//! the set of SKUs one contact bought in the window; a rule A → B between
//! two SKUs has
//!
//! - **support**: the share of baskets holding both;
//! - **confidence**: the share of A's baskets that hold B;
//! - **lift**: confidence over B's share of all baskets (above 1: buying A
//!   makes B likelier).
//!
//! Only SKUs whose own support reaches the minimum can be in a rule that
//! does (the Apriori property), so pairs are counted among those alone.

use std::collections::{BTreeSet, HashMap};

/// A rule found, with the counts it comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub antecedent: String,
    pub consequent: String,
    /// Baskets holding the antecedent.
    pub antecedent_baskets: i64,
    /// Baskets holding both.
    pub both_baskets: i64,
    pub support: f64,
    pub confidence: f64,
    pub lift: f64,
}

/// Every rule over `baskets` with support ≥ `min_support` and confidence ≥
/// `min_confidence`, strongest first (by lift, then confidence, then the SKUs).
pub fn rules(baskets: &[BTreeSet<String>], min_support: f64, min_confidence: f64) -> Vec<Rule> {
    let total = baskets.len() as f64;
    if baskets.is_empty() {
        return Vec::new();
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for basket in baskets {
        for sku in basket {
            *counts.entry(sku.as_str()).or_default() += 1;
        }
    }
    let frequent = |sku: &str| counts.get(sku).is_some_and(|count| *count as f64 / total >= min_support);
    let mut pairs: HashMap<(&str, &str), i64> = HashMap::new();
    for basket in baskets {
        // A basket's SKUs are sorted (a BTreeSet): each pair is counted once, (lower, higher).
        let kept: Vec<&str> = basket.iter().map(String::as_str).filter(|sku| frequent(sku)).collect();
        for (index, first) in kept.iter().enumerate() {
            for second in &kept[index + 1..] {
                *pairs.entry((first, second)).or_default() += 1;
            }
        }
    }
    let mut found = Vec::new();
    for ((low, high), both) in pairs {
        let support = both as f64 / total;
        if support < min_support {
            continue;
        }
        for (antecedent, consequent) in [(low, high), (high, low)] {
            let antecedent_baskets = counts[antecedent];
            let confidence = both as f64 / antecedent_baskets as f64;
            if confidence < min_confidence {
                continue;
            }
            let lift = confidence / (counts[consequent] as f64 / total);
            found.push(Rule {
                antecedent: antecedent.to_string(),
                consequent: consequent.to_string(),
                antecedent_baskets,
                both_baskets: both,
                support,
                confidence,
                lift,
            });
        }
    }
    found.sort_by(|a, b| {
        b.lift
            .total_cmp(&a.lift)
            .then(b.confidence.total_cmp(&a.confidence))
            .then_with(|| (&a.antecedent, &a.consequent).cmp(&(&b.antecedent, &b.consequent)))
    });
    found
}

/// Why a product is offered, in words a call-centre agent can read out.
pub fn reason(rule: &Rule) -> String {
    format!(
        "bought {}; {:.0}% of {}'s buyers also bought {}, lift {:.1}",
        rule.antecedent,
        rule.confidence * 100.0,
        rule.antecedent,
        rule.consequent,
        rule.lift
    )
}

/// The products `bought` suggests, best first: for each SKU not bought, the
/// strongest rule leading to it from one that was (by confidence, then
/// lift); at most `limit`.
pub fn offers<'a>(rules: &'a [Rule], bought: &BTreeSet<String>, limit: usize) -> Vec<&'a Rule> {
    let mut best: HashMap<&str, &Rule> = HashMap::new();
    for rule in rules.iter().filter(|rule| bought.contains(&rule.antecedent) && !bought.contains(&rule.consequent)) {
        let entry = best.entry(rule.consequent.as_str()).or_insert(rule);
        if (rule.confidence, rule.lift) > (entry.confidence, entry.lift) {
            *entry = rule;
        }
    }
    let mut offers: Vec<&Rule> = best.into_values().collect();
    offers.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then(b.lift.total_cmp(&a.lift))
            .then_with(|| a.consequent.cmp(&b.consequent))
    });
    offers.truncate(limit);
    offers
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    fn basket(skus: &[&str]) -> BTreeSet<String> {
        skus.iter().map(|sku| sku.to_string()).collect()
    }

    /// Every ordered pair of distinct SKUs, counted basket by basket.
    fn brute_force(baskets: &[BTreeSet<String>], min_support: f64, min_confidence: f64) -> Vec<Rule> {
        let skus: BTreeSet<&String> = baskets.iter().flatten().collect();
        let total = baskets.len() as f64;
        let holding = |sku: &str| baskets.iter().filter(|basket| basket.contains(sku)).count() as i64;
        let mut found = Vec::new();
        for a in &skus {
            for b in &skus {
                if a == b {
                    continue;
                }
                let both = baskets.iter().filter(|basket| basket.contains(*a) && basket.contains(*b)).count() as i64;
                let support = both as f64 / total;
                let confidence = if holding(a) == 0 { 0.0 } else { both as f64 / holding(a) as f64 };
                if both == 0 || support < min_support || confidence < min_confidence {
                    continue;
                }
                found.push(Rule {
                    antecedent: a.to_string(),
                    consequent: b.to_string(),
                    antecedent_baskets: holding(a),
                    both_baskets: both,
                    support,
                    confidence,
                    lift: confidence / (holding(b) as f64 / total),
                });
            }
        }
        found
    }

    #[test]
    fn rules_equal_a_brute_force_count_on_random_baskets() {
        let mut rng = StdRng::seed_from_u64(16);
        for round in 0..200 {
            let skus = rng.random_range(2..12);
            let baskets: Vec<BTreeSet<String>> = (0..rng.random_range(1..60))
                .map(|_| (0..rng.random_range(0..6)).map(|_| format!("SKU-{}", rng.random_range(0..skus))).collect())
                .collect();
            let min_support = [0.0, 0.02, 0.05, 0.1, 0.3][round % 5];
            let min_confidence = [0.0, 0.1, 0.5][round % 3];
            let mut fast = rules(&baskets, min_support, min_confidence);
            let mut slow = brute_force(&baskets, min_support, min_confidence);
            let key = |rule: &Rule| (rule.antecedent.clone(), rule.consequent.clone());
            fast.sort_by_key(key);
            slow.sort_by_key(key);
            assert_eq!(fast.len(), slow.len(), "round {round}: {baskets:?}");
            for (fast, slow) in fast.iter().zip(&slow) {
                assert_eq!(
                    (&fast.antecedent, &fast.consequent, fast.antecedent_baskets, fast.both_baskets),
                    (&slow.antecedent, &slow.consequent, slow.antecedent_baskets, slow.both_baskets)
                );
                for (x, y) in [(fast.support, slow.support), (fast.confidence, slow.confidence), (fast.lift, slow.lift)]
                {
                    assert!((x - y).abs() < 1e-12, "round {round}: {fast:?} against {slow:?}");
                }
            }
        }
    }

    #[test]
    fn a_hand_checked_shop() {
        // Ten customers: 4 bought a tent and a stove, 1 a tent alone, 2 a stove alone, 3 a lamp.
        let mut baskets = vec![basket(&["stove", "tent"]); 4];
        baskets.push(basket(&["tent"]));
        baskets.extend(vec![basket(&["stove"]); 2]);
        baskets.extend(vec![basket(&["lamp"]); 3]);
        let found = rules(&baskets, 0.1, 0.0);
        assert_eq!(found.len(), 2, "{found:?}");
        let tent_stove = found.iter().find(|rule| rule.antecedent == "tent").unwrap();
        // support 4/10; confidence 4/5; stove in 6 of 10: lift 0.8 / 0.6.
        assert_eq!((tent_stove.antecedent_baskets, tent_stove.both_baskets), (5, 4));
        assert!((tent_stove.support - 0.4).abs() < 1e-12 && (tent_stove.confidence - 0.8).abs() < 1e-12);
        assert!((tent_stove.lift - 0.8 / 0.6).abs() < 1e-12);
        assert_eq!(reason(tent_stove), "bought tent; 80% of tent's buyers also bought stove, lift 1.3");
        assert_eq!(
            found[0].antecedent, "tent",
            "the stronger lift first (stove → tent: 4/6 over 0.5, the same 1.33…; then confidence)"
        );

        let offered = offers(&found, &basket(&["tent"]), 5);
        assert_eq!(offered.iter().map(|rule| rule.consequent.as_str()).collect::<Vec<_>>(), ["stove"]);
        assert!(offers(&found, &basket(&["tent", "stove"]), 5).is_empty(), "nothing already bought is offered");
        assert!(offers(&found, &basket(&["lamp"]), 5).is_empty());
        // A minimum support above every pair's leaves no rule.
        assert!(rules(&baskets, 0.5, 0.0).is_empty());
    }
}
