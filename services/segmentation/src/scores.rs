//! Scores and service tiers: a score model turns features into a 0–100
//! score by weighted, capped contributions, and the score into a tier with a
//! queue priority. A score orders and explains (each contribution is
//! returned); it never refuses service.
//!
//! Sensitive features (age) are refused in a model unless the model names
//! them in `sensitive_features_allowed`: the choice is part of the model,
//! and of every version of it kept as its audit trail.

use crm_platform::error::{Violations, quote};
use crm_proto::segmentation::v1::{self as pb, FeatureType, Transform};
use serde::{Deserialize, Serialize};

use crate::{
    features::{FeatureDoc, Value, catalogue},
    rules::describe,
};

const MAX_CONTRIBUTIONS: usize = 50;
const MAX_TIERS: usize = 10;
const MAX_BUCKETS: usize = 20;

/// One contribution, as validated and stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContributionDef {
    pub feature: String,
    #[serde(default)]
    pub key: String,
    /// The protobuf name: `TRANSFORM_LINEAR`, …
    pub transform: String,
    pub weight: f64,
    pub cap: f64,
    #[serde(default)]
    pub buckets: Vec<(f64, f64)>,
    #[serde(default)]
    pub half_life_days: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierDef {
    pub name: String,
    pub min_score: f64,
    pub queue_priority: i32,
}

/// A score model's definition: what each version stores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub contributions: Vec<ContributionDef>,
    pub tiers: Vec<TierDef>,
    #[serde(default)]
    pub sensitive_features_allowed: Vec<String>,
    #[serde(default)]
    pub is_default: bool,
}

/// What one contribution gave a contact.
#[derive(Clone, Debug, PartialEq)]
pub struct Given {
    pub feature: String,
    pub key: String,
    pub value: String,
    pub points: f64,
    pub capped: bool,
}

/// A contact's score under a model.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub score: f64,
    pub tier: String,
    pub queue_priority: i32,
    /// Sums to `score`.
    pub contributions: Vec<Given>,
}

fn finite(violations: &mut Violations, field: &str, value: f64, range: std::ops::RangeInclusive<f64>) {
    if !value.is_finite() || !range.contains(&value) {
        violations.add(field, format!("must be a number from {} to {}", range.start(), range.end()));
    }
}

/// A model from its message; every wrong field is reported.
pub fn validate(violations: &mut Violations, field: &str, input: &pb::ScoreModel) -> ModelDef {
    let at = |name: &str| format!("{field}.{name}");
    let name = input.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 200 {
        violations.add(at("name"), "must be 1 to 200 characters");
    }
    if input.description.chars().count() > 2000 {
        violations.add(at("description"), "must be at most 2000 characters");
    }
    let allowed: Vec<String> = input.sensitive_features_allowed.iter().map(|name| name.trim().to_string()).collect();
    for (index, name) in violations.within(&at("sensitive_features_allowed"), &allowed, 20).iter().enumerate() {
        if !catalogue::feature(name).is_some_and(|feature| feature.sensitive) {
            violations.add(
                format!("{}[{index}]", at("sensitive_features_allowed")),
                format!("{} is not a sensitive feature", quote(name)),
            );
        }
    }
    if input.contributions.is_empty() {
        violations.add(at("contributions"), "must have at least one contribution");
    }
    let mut contributions = Vec::new();
    let mut positive_caps = 0.0;
    for (index, contribution) in
        violations.within(&at("contributions"), &input.contributions, MAX_CONTRIBUTIONS).iter().enumerate()
    {
        let path = format!("{}[{index}]", at("contributions"));
        let feature = contribution.feature.trim().to_string();
        let transform = Transform::try_from(contribution.transform).unwrap_or_default();
        match catalogue::feature(&feature) {
            None => violations.add(
                format!("{path}.feature"),
                format!("{} is not a feature; ListFeatures lists them", quote(&feature)),
            ),
            Some(def) => {
                if def.sensitive && !allowed.contains(&feature) {
                    violations.add(
                        format!("{path}.feature"),
                        format!("`{feature}` is sensitive: a model reads it only when it names it in sensitive_features_allowed"),
                    );
                }
                let numeric = matches!(
                    def.kind,
                    FeatureType::Int | FeatureType::Double | FeatureType::Bool | FeatureType::IntMap
                );
                if !numeric && transform != Transform::Presence {
                    violations.add(
                        format!("{path}.transform"),
                        format!("`{feature}` is not a number: only TRANSFORM_PRESENCE applies"),
                    );
                }
                if def.kind == FeatureType::IntMap
                    && contribution.key.trim().is_empty()
                    && transform != Transform::Presence
                {
                    violations
                        .add(format!("{path}.key"), format!("`{feature}` is a map: name the key to read, e.g. EUR"));
                }
            }
        }
        if transform == Transform::Unspecified {
            violations.add(format!("{path}.transform"), "must be a transform such as TRANSFORM_LINEAR");
        }
        finite(violations, &format!("{path}.weight"), contribution.weight, -1e9..=1e9);
        finite(violations, &format!("{path}.cap"), contribution.cap, 0.0..=100.0);
        if contribution.weight > 0.0
            || (transform == Transform::Buckets && contribution.buckets.iter().any(|b| b.points > 0.0))
        {
            positive_caps += contribution.cap;
        }
        let buckets: Vec<(f64, f64)> =
            contribution.buckets.iter().map(|bucket| (bucket.at_least, bucket.points)).collect();
        if transform == Transform::Buckets {
            if buckets.is_empty() || buckets.len() > MAX_BUCKETS {
                violations
                    .add(format!("{path}.buckets"), format!("TRANSFORM_BUCKETS needs 1 to {MAX_BUCKETS} buckets"));
            }
            for (bucket_index, pair) in buckets.windows(2).enumerate() {
                if pair[1].0 <= pair[0].0 {
                    violations.add(
                        format!("{path}.buckets[{}].at_least", bucket_index + 1),
                        "must increase from bucket to bucket",
                    );
                }
            }
            for (bucket_index, (at_least, points)) in buckets.iter().enumerate() {
                finite(violations, &format!("{path}.buckets[{bucket_index}].at_least"), *at_least, -1e12..=1e12);
                finite(violations, &format!("{path}.buckets[{bucket_index}].points"), *points, -100.0..=100.0);
            }
        }
        if transform == Transform::RecencyDecay {
            finite(violations, &format!("{path}.half_life_days"), contribution.half_life_days, 0.001..=36500.0);
        }
        contributions.push(ContributionDef {
            feature,
            key: contribution.key.trim().to_string(),
            transform: transform.as_str_name().to_string(),
            weight: contribution.weight,
            cap: contribution.cap,
            buckets,
            half_life_days: contribution.half_life_days,
        });
    }
    if positive_caps > 100.0 + 1e-9 {
        violations.add(
            at("contributions"),
            format!("the caps of the contributions that add points sum to {positive_caps}; at most 100"),
        );
    }
    let mut tiers: Vec<TierDef> = Vec::new();
    if input.tiers.is_empty() {
        violations.add(at("tiers"), "must have at least one tier");
    }
    for (index, tier) in violations.within(&at("tiers"), &input.tiers, MAX_TIERS).iter().enumerate() {
        let path = format!("{}[{index}]", at("tiers"));
        let name = tier.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 64 {
            violations.add(format!("{path}.name"), "must be 1 to 64 characters");
        }
        if tiers.iter().any(|seen| seen.name.eq_ignore_ascii_case(&name)) {
            violations.add(format!("{path}.name"), "is listed twice");
        }
        finite(violations, &format!("{path}.min_score"), tier.min_score, 0.0..=100.0);
        tiers.push(TierDef { name, min_score: tier.min_score, queue_priority: tier.queue_priority });
    }
    if !tiers.is_empty() && !tiers.iter().any(|tier| tier.min_score == 0.0) {
        violations.add(at("tiers"), "one tier must start at min_score 0, so that every score has a tier");
    }
    tiers.sort_by(|a, b| b.min_score.total_cmp(&a.min_score));
    ModelDef {
        name,
        description: input.description.trim().to_string(),
        contributions,
        tiers,
        sensitive_features_allowed: allowed,
        is_default: input.is_default,
    }
}

/// A feature's value as a number for a contribution (a map by its key).
fn number(value: &Value, key: &str) -> f64 {
    match value {
        Value::Int(number) => *number as f64,
        Value::Double(number) => number.unwrap_or(0.0),
        Value::Bool(flag) => f64::from(u8::from(*flag)),
        Value::Map(entries) => entries.get(key).copied().unwrap_or(0) as f64,
        _ => 0.0,
    }
}

fn present(value: &Value, key: &str) -> bool {
    match value {
        Value::Int(number) => *number > 0,
        Value::Double(number) => number.is_some(),
        Value::Str(text) => !text.is_empty(),
        Value::Bool(flag) => *flag,
        Value::Time(at) => at.is_some(),
        Value::List(items) => !items.is_empty(),
        Value::Map(entries) if key.is_empty() => entries.values().any(|count| *count != 0),
        Value::Map(entries) => entries.get(key).is_some_and(|count| *count != 0),
    }
}

/// `doc`'s score under `model`, its tier, and each contribution.
pub fn score(model: &ModelDef, doc: &FeatureDoc) -> Scored {
    let mut contributions = Vec::with_capacity(model.contributions.len() + 1);
    for contribution in &model.contributions {
        let value = doc.get(&contribution.feature).cloned().unwrap_or(Value::Int(0));
        let x = number(&value, &contribution.key);
        let raw = match Transform::from_str_name(&contribution.transform).unwrap_or_default() {
            Transform::Linear => contribution.weight * x,
            Transform::Log => contribution.weight * (1.0 + x.max(0.0)).ln(),
            Transform::Buckets => contribution
                .buckets
                .iter()
                .rev()
                .find(|(at_least, _)| x >= *at_least)
                .map_or(0.0, |(_, points)| *points),
            Transform::RecencyDecay if x < 0.0 => 0.0,
            Transform::RecencyDecay => contribution.weight * 0.5f64.powf(x / contribution.half_life_days),
            Transform::Presence => {
                if present(&value, &contribution.key) {
                    contribution.weight
                } else {
                    0.0
                }
            }
            Transform::Unspecified => 0.0,
        };
        let capped = raw.abs() > contribution.cap;
        let points = if capped { contribution.cap.copysign(raw) } else { raw };
        let shown = match (&value, contribution.key.as_str()) {
            (Value::Map(_), key) if !key.is_empty() => (x as i64).to_string(),
            _ => describe(&value),
        };
        contributions.push(Given {
            feature: contribution.feature.clone(),
            key: contribution.key.clone(),
            value: shown,
            points,
            capped,
        });
    }
    let sum: f64 = contributions.iter().map(|given| given.points).sum();
    if sum < 0.0 {
        contributions.push(Given {
            feature: "(floor)".into(),
            key: String::new(),
            value: String::new(),
            points: -sum,
            capped: false,
        });
    }
    let score: f64 = contributions.iter().map(|given| given.points).sum();
    let tier = model.tiers.iter().find(|tier| score >= tier.min_score).or(model.tiers.last());
    Scored {
        score,
        tier: tier.map(|tier| tier.name.clone()).unwrap_or_default(),
        queue_priority: tier.map_or(0, |tier| tier.queue_priority),
        contributions,
    }
}

// === to and from the contract ===

impl ModelDef {
    pub fn contributions_proto(&self) -> Vec<pb::Contribution> {
        self.contributions
            .iter()
            .map(|contribution| pb::Contribution {
                feature: contribution.feature.clone(),
                key: contribution.key.clone(),
                transform: Transform::from_str_name(&contribution.transform).unwrap_or_default() as i32,
                weight: contribution.weight,
                cap: contribution.cap,
                buckets: contribution
                    .buckets
                    .iter()
                    .map(|(at_least, points)| pb::Bucket { at_least: *at_least, points: *points })
                    .collect(),
                half_life_days: contribution.half_life_days,
            })
            .collect()
    }

    pub fn tiers_proto(&self) -> Vec<pb::Tier> {
        self.tiers
            .iter()
            .map(|tier| pb::Tier {
                name: tier.name.clone(),
                min_score: tier.min_score,
                queue_priority: tier.queue_priority,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::features::{Activity, Profile, compute};

    fn model(contributions: Vec<pb::Contribution>) -> pb::ScoreModel {
        pb::ScoreModel {
            name: "value".into(),
            contributions,
            tiers: vec![
                pb::Tier { name: "standard".into(), min_score: 0.0, queue_priority: 1 },
                pb::Tier { name: "gold".into(), min_score: 40.0, queue_priority: 5 },
                pb::Tier { name: "platinum".into(), min_score: 75.0, queue_priority: 9 },
            ],
            ..Default::default()
        }
    }

    fn contribution(feature: &str, key: &str, transform: Transform, weight: f64, cap: f64) -> pb::Contribution {
        pb::Contribution {
            feature: feature.into(),
            key: key.into(),
            transform: transform as i32,
            weight,
            cap,
            ..Default::default()
        }
    }

    fn valid(input: &pb::ScoreModel) -> ModelDef {
        let mut violations = Violations::new();
        let def = validate(&mut violations, "score_model", input);
        violations.into_result().unwrap();
        def
    }

    fn doc(complaints: usize) -> FeatureDoc {
        let now = DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let mut activity = vec![Activity {
            interaction_id: uuid::Uuid::now_v7(),
            occurred_at: now - chrono::Duration::days(10),
            kind: "purchase".into(),
            channel: "web".into(),
            currency: "EUR".into(),
            amount: 250_000,
            sentiment: None,
            skus: vec![],
        }];
        for _ in 0..complaints {
            activity.push(Activity {
                kind: "complaint".into(),
                currency: String::new(),
                amount: 0,
                interaction_id: uuid::Uuid::now_v7(),
                ..activity[0].clone()
            });
        }
        let profile = Profile { tags: vec!["vip".into()], has_email: true, ..Default::default() };
        compute(Some(&profile), &activity, now).doc
    }

    #[test]
    fn contributions_are_capped_and_sum_to_the_score_which_picks_the_tier() {
        let def = valid(&model(vec![
            contribution("revenue_365d", "EUR", Transform::Log, 4.0, 50.0),
            contribution("days_since_last_purchase", "", Transform::RecencyDecay, 30.0, 30.0)
                .clone()
                .tap(|c| c.half_life_days = 30.0),
            contribution("tags", "", Transform::Presence, 20.0, 20.0),
            contribution("complaints_90d", "", Transform::Linear, -15.0, 30.0),
        ]));
        let scored = score(&def, &doc(0));
        let sum: f64 = scored.contributions.iter().map(|given| given.points).sum();
        assert!((sum - scored.score).abs() < 1e-9);
        // ln(250001) * 4 = 49.7 (under its cap), 30 * 0.5^(10/30) = 23.8, 20 for the tags.
        assert!((scored.contributions[0].points - 4.0 * 250_001f64.ln()).abs() < 1e-9);
        assert!(!scored.contributions[0].capped);
        assert_eq!(scored.contributions[0].value, "250000");
        assert_eq!(scored.tier, "platinum");
        assert_eq!(scored.queue_priority, 9);

        // Complaints take points away, capped at 30; the sum still is the score.
        let unhappy = score(&def, &doc(3));
        assert!(unhappy.contributions[3].capped);
        assert_eq!(unhappy.contributions[3].points, -30.0);
        assert_eq!(unhappy.tier, "gold");
        let sum: f64 = unhappy.contributions.iter().map(|given| given.points).sum();
        assert!((sum - unhappy.score).abs() < 1e-9);
    }

    #[test]
    fn a_score_below_zero_is_lifted_by_a_floor_that_still_sums() {
        let def = valid(&model(vec![contribution("complaints_90d", "", Transform::Linear, -20.0, 60.0)]));
        let scored = score(&def, &doc(2));
        assert_eq!(scored.score, 0.0);
        assert_eq!(scored.contributions.last().unwrap().feature, "(floor)");
        assert_eq!(scored.tier, "standard");
    }

    #[test]
    fn sensitive_features_need_naming_and_caps_stay_within_100() {
        let mut violations = Violations::new();
        validate(&mut violations, "score_model", &model(vec![contribution("age", "", Transform::Linear, 1.0, 10.0)]));
        let error = format!("{:?}", violations.into_result().unwrap_err());
        assert!(error.contains("`age` is sensitive"), "{error}");
        let mut allowed = model(vec![contribution("age", "", Transform::Linear, 1.0, 10.0)]);
        allowed.sensitive_features_allowed = vec!["age".into()];
        valid(&allowed);

        let mut violations = Violations::new();
        let too_much = model(vec![
            contribution("purchases_total", "", Transform::Linear, 1.0, 60.0),
            contribution("interactions_total", "", Transform::Linear, 1.0, 60.0),
        ]);
        validate(&mut violations, "score_model", &too_much);
        let error = format!("{:?}", violations.into_result().unwrap_err());
        assert!(error.contains("sum to 120"), "{error}");
        let mut violations = Violations::new();
        validate(
            &mut violations,
            "score_model",
            &model(vec![contribution("revenue_365d", "", Transform::Linear, 1.0, 10.0)]),
        );
        assert!(format!("{:?}", violations.into_result().unwrap_err()).contains("name the key"));
    }

    trait Tap: Sized {
        fn tap(mut self, change: impl FnOnce(&mut Self)) -> Self {
            change(&mut self);
            self
        }
    }
    impl Tap for pb::Contribution {}
}
