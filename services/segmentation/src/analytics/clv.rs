//! Customer lifetime value from two published models, fitted by maximum
//! likelihood on the install's own customers:
//!
//! - **BG/NBD** (Fader, Hardie & Lee, "Counting Your Customers the Easy
//!   Way", Marketing Science, 2005): while alive, a customer buys at a rate
//!   λ drawn from Gamma(r, α); after each purchase it drops out with
//!   probability p drawn from Beta(a, b). From a customer's repeat
//!   purchases `x`, the time of the latest `t_x` and its age `T` (both from
//!   its first purchase) it gives the probability the customer is still
//!   alive and the purchases it is expected to make in the next `t`.
//! - **Gamma-Gamma** (Fader, Hardie & Lee, "RFM and CLV", Journal of
//!   Marketing Research, 2005): the spend per purchase varies around a
//!   customer's mean, itself drawn across customers, independent of how
//!   often it buys; from a customer's mean spend over `x` repeat purchases
//!   it gives the spend expected of its next ones.
//!
//! Predicted value over a horizon = expected purchases × expected spend
//! (undiscounted). The likelihoods are the papers' closed forms; the
//! fitter minimises their negation over the logarithms of the parameters
//! (so they stay positive) with Nelder–Mead (`argmin`). A base's histories
//! repeat (days are whole, repeat counts small), so each distinct one is
//! computed once per step, weighted by how many customers share it; the
//! terms that depend on the repeat count alone once per count; the sum
//! spread over the cores (a fit takes a few hundred steps over the whole
//! base). `total_log_likelihood` equals the sum of the per-customer
//! closed forms, which a test checks.

use std::collections::BTreeMap;

use argmin::{
    core::{CostFunction, Executor},
    solver::neldermead::NelderMead,
};
use chrono::{DateTime, Utc};
use libm::lgamma;

use crate::parallel;

/// The fewest customers (and repeat customers, for spend) a fit needs.
pub const MIN_CUSTOMERS: usize = 10;

const SECONDS_A_DAY: f64 = 86_400.0;

/// A customer as the models see it, in days: purchases on one day count as one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub history: History,
    /// The mean spend of the repeat purchase days (0 without one).
    pub repeat_mean: f64,
    /// Everything spent.
    pub total: i64,
}

/// A customer's summary from its purchase days (in order, each with that
/// day's spend) as of `now`.
pub fn summarise(days: &[(DateTime<Utc>, i64)], now: DateTime<Utc>) -> Summary {
    let since = |at: DateTime<Utc>, from: DateTime<Utc>| (at - from).num_seconds() as f64 / SECONDS_A_DAY;
    let total = days.iter().map(|(_, spend)| spend).sum();
    let Some(((first, _), repeats)) = days.split_first() else {
        return Summary { history: History { x: 0.0, t_x: 0.0, t: 0.0 }, repeat_mean: 0.0, total };
    };
    let x = repeats.len() as f64;
    let t_x = repeats.last().map_or(0.0, |(last, _)| since(*last, *first));
    let repeat_mean =
        if repeats.is_empty() { 0.0 } else { repeats.iter().map(|(_, spend)| *spend as f64).sum::<f64>() / x };
    Summary { history: History { x, t_x, t: since(now, *first) }, repeat_mean, total }
}

/// One customer's purchase history, in any unit of time (weeks, days).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct History {
    /// Repeat purchases (purchases after the first).
    pub x: f64,
    /// When the latest purchase was, from the first (0 when `x` is 0).
    pub t_x: f64,
    /// The customer's age: from the first purchase to now.
    pub t: f64,
}

/// BG/NBD parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Gamma-Gamma parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

/// ln(e^x + e^y), safely.
fn log_add_exp(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY {
        return y;
    }
    let (high, low) = if x > y { (x, y) } else { (y, x) };
    high + (low - high).exp().ln_1p()
}

impl BgNbd {
    /// One customer's log-likelihood (Fader, Hardie & Lee 2005, equation 6).
    pub fn log_likelihood(&self, h: &History) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let x = h.x;
        let ln_a1 = lgamma(r + x) - lgamma(r) + r * alpha.ln();
        let ln_a2 = lgamma(a + b) + lgamma(b + x) - lgamma(b) - lgamma(a + b + x);
        let ln_a3 = -(r + x) * (alpha + h.t).ln();
        let ln_a4 = if x > 0.0 { (a / (b + x - 1.0)).ln() - (r + x) * (alpha + h.t_x).ln() } else { f64::NEG_INFINITY };
        ln_a1 + ln_a2 + log_add_exp(ln_a3, ln_a4)
    }

    /// The probability that the customer has not dropped out.
    pub fn probability_alive(&self, h: &History) -> f64 {
        if h.x == 0.0 {
            return 1.0;
        }
        let BgNbd { r, alpha, a, b } = *self;
        1.0 / (1.0 + (a / (b + h.x - 1.0)) * ((alpha + h.t) / (alpha + h.t_x)).powf(r + h.x))
    }

    /// The purchases expected of the customer in the next `horizon`
    /// (Fader, Hardie & Lee 2005, equation 10).
    pub fn expected_purchases(&self, h: &History, horizon: f64) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let x = h.x;
        let z = horizon / (alpha + h.t + horizon);
        let hyper = hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let numerator =
            (a + b + x - 1.0) / (a - 1.0) * (1.0 - ((alpha + h.t) / (alpha + h.t + horizon)).powf(r + x) * hyper);
        let denominator =
            1.0 + if x > 0.0 { (a / (b + x - 1.0)) * ((alpha + h.t) / (alpha + h.t_x)).powf(r + x) } else { 0.0 };
        numerator / denominator
    }
}

/// Distinct histories, each with how many customers share it, ordered by
/// repeat purchases first (so the terms of one count are made once).
#[derive(Clone, Debug)]
pub struct Histories(Vec<(History, f64)>);

impl Histories {
    pub fn new(customers: &[History]) -> Self {
        // Positive floats order as their bits do.
        let mut counts: BTreeMap<(u64, u64, u64), f64> = BTreeMap::new();
        for h in customers {
            *counts.entry((h.x.to_bits(), h.t_x.to_bits(), h.t.to_bits())).or_default() += 1.0;
        }
        let distinct = counts
            .into_iter()
            .map(|((x, t_x, t), n)| {
                (History { x: f64::from_bits(x), t_x: f64::from_bits(t_x), t: f64::from_bits(t) }, n)
            })
            .collect();
        Histories(distinct)
    }

    /// How many distinct histories there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl BgNbd {
    /// The log-likelihood of every customer of `histories`: the sum of
    /// [`BgNbd::log_likelihood`] over them, computed by distinct history.
    pub fn total_log_likelihood(&self, histories: &Histories) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let shared = -lgamma(r) + r * alpha.ln() + lgamma(a + b) - lgamma(b);
        parallel::sum(&histories.0, |chunk| {
            // (x, the terms of x alone, ln(a / (b + x - 1)))
            let mut of_x = (f64::NAN, 0.0, 0.0);
            let mut total = 0.0;
            for (h, n) in chunk {
                let x = h.x;
                if x != of_x.0 {
                    let ln_a4 = if x > 0.0 { (a / (b + x - 1.0)).ln() } else { f64::NEG_INFINITY };
                    of_x = (x, lgamma(r + x) + lgamma(b + x) - lgamma(a + b + x), ln_a4);
                }
                let ln_a3 = -(r + x) * (alpha + h.t).ln();
                let ln_a4 = if x > 0.0 { of_x.2 - (r + x) * (alpha + h.t_x).ln() } else { f64::NEG_INFINITY };
                total += n * (shared + of_x.1 + log_add_exp(ln_a3, ln_a4));
            }
            total
        })
    }
}

/// Repeat customers for Gamma-Gamma: distinct (repeat purchases, mean
/// spend), each with how many share it and the mean's logarithm, by
/// repeat purchases first.
#[derive(Clone, Debug)]
pub struct Spenders(Vec<(f64, f64, f64, f64)>);

impl Spenders {
    pub fn new(customers: &[(f64, f64)]) -> Self {
        let mut counts: BTreeMap<(u64, u64), f64> = BTreeMap::new();
        for (x, mean) in customers {
            *counts.entry((x.to_bits(), mean.to_bits())).or_default() += 1.0;
        }
        let distinct = counts
            .into_iter()
            .map(|((x, mean), n)| {
                let (x, mean) = (f64::from_bits(x), f64::from_bits(mean));
                (x, mean, mean.ln(), n)
            })
            .collect();
        Spenders(distinct)
    }
}

impl GammaGamma {
    /// The log-likelihood of every repeat customer of `spenders`: the sum
    /// of [`GammaGamma::log_likelihood`] over them.
    pub fn total_log_likelihood(&self, spenders: &Spenders) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        let shared = -lgamma(q) + q * gamma.ln();
        parallel::sum(&spenders.0, |chunk| {
            // (x, the terms of x alone)
            let mut of_x = (f64::NAN, 0.0);
            let mut total = 0.0;
            for (x, mean, ln_mean, n) in chunk {
                let px = p * x;
                if *x != of_x.0 {
                    of_x = (*x, lgamma(px + q) - lgamma(px) + px * x.ln());
                }
                total += n * (shared + of_x.1 + (px - 1.0) * ln_mean - (px + q) * (x * mean + gamma).ln());
            }
            total
        })
    }
}

/// Gauss's hypergeometric function ₂F₁(a, b; c; z) for 0 ≤ z < 1, by its series.
fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let (mut term, mut sum) = (1.0, 1.0);
    for j in 0..100_000 {
        let j = j as f64;
        term *= (a + j) * (b + j) / ((c + j) * (j + 1.0)) * z;
        sum += term;
        if term.abs() <= 1e-15 * sum.abs() {
            break;
        }
    }
    sum
}

impl GammaGamma {
    /// One customer's log-likelihood given its mean spend `mean` over `x` ≥ 1
    /// repeat purchases (Fader & Hardie, "The Gamma-Gamma Model of Monetary
    /// Value", 2013, equation 4).
    pub fn log_likelihood(&self, x: f64, mean: f64) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        lgamma(p * x + q) - lgamma(p * x) - lgamma(q) + q * gamma.ln() + (p * x - 1.0) * mean.ln() + (p * x) * x.ln()
            - (p * x + q) * (x * mean + gamma).ln()
    }

    /// The spend expected of the customer's next purchases.
    pub fn expected_spend(&self, x: f64, mean: f64) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        p * (gamma + x * mean) / (p * x + q - 1.0)
    }
}

/// The negated total log-likelihood of a model over its data, as a
/// function of the logarithms of its parameters.
struct Negated<F: Fn(&[f64]) -> f64>(F);

impl<F: Fn(&[f64]) -> f64> CostFunction for Negated<F> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, logs: &Self::Param) -> Result<f64, argmin::core::Error> {
        let total = (self.0)(&logs.iter().map(|log| log.exp()).collect::<Vec<_>>());
        // A region where the likelihood is not a number is as bad as can be.
        Ok(if total.is_finite() { -total } else { f64::MAX })
    }
}

/// Minimises `negated` from all parameters 1; returns the parameters and
/// the log-likelihood there.
fn fit_params<F: Fn(&[f64]) -> f64>(dimensions: usize, log_likelihood: F) -> anyhow::Result<(Vec<f64>, f64)> {
    let start = vec![0.0; dimensions];
    let mut simplex = vec![start.clone()];
    for dimension in 0..dimensions {
        let mut vertex = start.clone();
        vertex[dimension] = 0.5;
        simplex.push(vertex);
    }
    let solver = NelderMead::new(simplex).with_sd_tolerance(1e-10)?;
    let result = Executor::new(Negated(log_likelihood), solver).configure(|state| state.max_iters(20_000)).run()?;
    let best = result.state().best_param.clone().ok_or_else(|| anyhow::anyhow!("the fit found no parameters"))?;
    let cost = result.state().best_cost;
    Ok((best.iter().map(|log| log.exp()).collect(), -cost))
}

/// BG/NBD fitted to `customers`, with its log-likelihood.
pub fn fit_bgnbd(customers: &[History]) -> anyhow::Result<(BgNbd, f64)> {
    let histories = Histories::new(customers);
    let (params, log_likelihood) = fit_params(4, |params| {
        BgNbd { r: params[0], alpha: params[1], a: params[2], b: params[3] }.total_log_likelihood(&histories)
    })?;
    Ok((BgNbd { r: params[0], alpha: params[1], a: params[2], b: params[3] }, log_likelihood))
}

/// Gamma-Gamma fitted to the customers with a repeat purchase: (x, mean spend).
pub fn fit_gamma_gamma(customers: &[(f64, f64)]) -> anyhow::Result<(GammaGamma, f64)> {
    let spenders = Spenders::new(customers);
    let (params, log_likelihood) = fit_params(3, |params| {
        GammaGamma { p: params[0], q: params[1], gamma: params[2] }.total_log_likelihood(&spenders)
    })?;
    Ok((GammaGamma { p: params[0], q: params[1], gamma: params[2] }, log_likelihood))
}

#[cfg(test)]
mod tests;
