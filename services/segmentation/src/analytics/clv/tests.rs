use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Beta, Distribution, Exp, Gamma};

use super::*;

/// The CDNOW summary (tests/data/cdnow): (history in weeks, mean repeat spend).
fn cdnow() -> Vec<(History, f64)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/cdnow/cdnow_summary.csv");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<f64> = line.trim().split(',').map(|field| field.parse().unwrap()).collect();
            (History { x: fields[1], t_x: fields[2], t: fields[3] }, fields[4])
        })
        .collect()
}

fn within(found: f64, expected: f64, relative: f64) -> bool {
    ((found - expected) / expected).abs() <= relative
}

#[test]
fn the_log_likelihood_matches_the_published_cdnow_fit() {
    let customers: Vec<History> = cdnow().into_iter().map(|(history, _)| history).collect();
    assert_eq!(customers.len(), 2357);
    // Fader, Hardie & Lee (2005), table 1: LL −9,582.4 at these parameters.
    let published = BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
    let total: f64 = customers.iter().map(|history| published.log_likelihood(history)).sum();
    assert!((total - -9582.4).abs() < 0.5, "{total}");
}

/// The grouped, per-count, cores-spread totals the fitter uses equal the
/// plain sums of the papers' per-customer closed forms: over CDNOW, and
/// over CDNOW repeated (more than one core's share, histories shared).
#[test]
fn the_fitters_totals_equal_the_per_customer_sums() {
    let data = cdnow();
    for copies in [1, 9] {
        let customers: Vec<History> = (0..copies).flat_map(|_| data.iter().map(|(history, _)| *history)).collect();
        let spenders: Vec<(f64, f64)> =
            (0..copies).flat_map(|_| data.iter().filter(|(h, _)| h.x > 0.0).map(|(h, mean)| (h.x, *mean))).collect();
        let histories = Histories::new(&customers);
        assert!(histories.len() < customers.len() / copies + 1, "{} distinct", histories.len());
        let spends = Spenders::new(&spenders);
        for model in
            [BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 }, BgNbd { r: 1.7, alpha: 0.3, a: 3.1, b: 0.6 }]
        {
            let plain: f64 = customers.iter().map(|history| model.log_likelihood(history)).sum();
            let grouped = model.total_log_likelihood(&histories);
            assert!(within(grouped, plain, 1e-10), "{model:?}: {grouped} against {plain}");
        }
        for model in [GammaGamma { p: 6.25, q: 3.74, gamma: 15.44 }, GammaGamma { p: 0.8, q: 9.0, gamma: 2.0 }] {
            let plain: f64 = spenders.iter().map(|(x, mean)| model.log_likelihood(*x, *mean)).sum();
            let grouped = model.total_log_likelihood(&spends);
            assert!(within(grouped, plain, 1e-10), "{model:?}: {grouped} against {plain}");
        }
    }
}

#[test]
fn the_fitter_finds_the_published_cdnow_parameters() {
    let data = cdnow();
    let customers: Vec<History> = data.iter().map(|(history, _)| *history).collect();
    let (fitted, log_likelihood) = fit_bgnbd(&customers).unwrap();
    eprintln!("CDNOW BG/NBD: {fitted:?}, log-likelihood {log_likelihood:.2}");
    assert!(log_likelihood >= -9582.5, "{log_likelihood}");
    for (found, expected) in [(fitted.r, 0.243), (fitted.alpha, 4.414), (fitted.a, 0.793), (fitted.b, 2.426)] {
        assert!(within(found, expected, 0.01), "{fitted:?}");
    }
    // Gamma-Gamma over the 946 customers with a repeat purchase: p 6.25, q 3.74, γ 15.44.
    let spenders: Vec<(f64, f64)> =
        data.iter().filter(|(history, _)| history.x > 0.0).map(|(history, mean)| (history.x, *mean)).collect();
    assert_eq!(spenders.len(), 946);
    let (spend, _) = fit_gamma_gamma(&spenders).unwrap();
    eprintln!("CDNOW Gamma-Gamma: {spend:?}");
    for (found, expected) in [(spend.p, 6.25), (spend.q, 3.74), (spend.gamma, 15.44)] {
        assert!(within(found, expected, 0.01), "{spend:?}");
    }
}

/// Customers drawn from a BG/NBD with `model`: each is watched for `age`
/// (calibration), then for `horizon` more; returns their calibration
/// histories, the purchases each made in the holdout, and whether each was
/// alive at the calibration's end.
fn simulate(model: &BgNbd, customers: usize, horizon: f64, seed: u64) -> Vec<(History, f64, bool)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let rates = Gamma::new(model.r, 1.0 / model.alpha).unwrap();
    let dropouts = Beta::new(model.a, model.b).unwrap();
    (0..customers)
        .map(|_| {
            let age = rng.random_range(20.0..52.0);
            let lambda: f64 = rates.sample(&mut rng);
            let p: f64 = dropouts.sample(&mut rng);
            let gaps = Exp::new(lambda).unwrap();
            let (mut now, mut x, mut t_x, mut holdout, mut alive_at_age) = (0.0, 0.0, 0.0, 0.0, true);
            loop {
                now += gaps.sample(&mut rng);
                if now >= age + horizon {
                    break;
                }
                if now < age {
                    x += 1.0;
                    t_x = now;
                } else {
                    holdout += 1.0;
                }
                // Drops out just after a repeat purchase with probability p.
                if rng.random::<f64>() < p {
                    alive_at_age &= now >= age;
                    break;
                }
            }
            (History { x, t_x, t: age }, holdout, alive_at_age)
        })
        .collect()
}

#[test]
fn the_fitter_recovers_known_parameters_and_predicts_the_holdout() {
    let truth = BgNbd { r: 0.6, alpha: 5.0, a: 0.7, b: 2.8 };
    let simulated = simulate(&truth, 20_000, 26.0, 13);
    let histories: Vec<History> = simulated.iter().map(|(history, _, _)| *history).collect();
    let (fitted, _) = fit_bgnbd(&histories).unwrap();
    eprintln!("simulated from {truth:?}: fitted {fitted:?}");
    for (found, expected) in
        [(fitted.r, truth.r), (fitted.alpha, truth.alpha), (fitted.a, truth.a), (fitted.b, truth.b)]
    {
        assert!(within(found, expected, 0.15), "{fitted:?} against {truth:?}");
    }
    // The next 26 weeks, predicted from the calibration alone, against what the simulation did.
    let predicted: f64 = histories.iter().map(|history| fitted.expected_purchases(history, 26.0)).sum();
    let actual: f64 = simulated.iter().map(|(_, holdout, _)| holdout).sum();
    eprintln!("holdout purchases: predicted {predicted:.0}, actual {actual}");
    assert!(within(predicted, actual, 0.05), "predicted {predicted}, actual {actual}");
    let alive_predicted: f64 = histories.iter().map(|history| fitted.probability_alive(history)).sum();
    let alive: f64 = simulated.iter().filter(|(_, _, alive)| *alive).count() as f64;
    eprintln!("alive: predicted {alive_predicted:.0}, actual {alive}");
    assert!(within(alive_predicted, alive, 0.05), "alive: predicted {alive_predicted}, actual {alive}");
}

#[test]
fn gamma_gamma_recovers_known_parameters() {
    let truth = GammaGamma { p: 4.0, q: 3.0, gamma: 20.0 };
    let mut rng = StdRng::seed_from_u64(14);
    let means = Gamma::new(truth.q, 1.0 / truth.gamma).unwrap();
    let customers: Vec<(f64, f64)> = (0..10_000)
        .map(|_| {
            let nu: f64 = means.sample(&mut rng);
            let spend = Gamma::new(truth.p, 1.0 / nu).unwrap();
            let x = rng.random_range(1..8) as f64;
            let total: f64 = (0..x as usize).map(|_| spend.sample(&mut rng)).sum();
            (x, total / x)
        })
        .collect();
    let (fitted, _) = fit_gamma_gamma(&customers).unwrap();
    eprintln!("simulated from {truth:?}: fitted {fitted:?}");
    for (found, expected) in [(fitted.p, truth.p), (fitted.q, truth.q), (fitted.gamma, truth.gamma)] {
        assert!(within(found, expected, 0.15), "{fitted:?} against {truth:?}");
    }
    // A customer's expected spend lies between its own mean and the population's (shrinkage).
    let population = truth.p * truth.gamma / (truth.q - 1.0);
    let expected = truth.expected_spend(2.0, 100.0);
    assert!(expected < 100.0 && expected > population, "{expected} against {population}");
}

#[test]
fn predictions_behave_at_the_edges() {
    let model = BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
    let fresh = History { x: 0.0, t_x: 0.0, t: 10.0 };
    assert_eq!(model.probability_alive(&fresh), 1.0);
    assert_eq!(model.expected_purchases(&fresh, 0.0), 0.0);
    let loyal = History { x: 10.0, t_x: 38.0, t: 39.0 };
    let lapsed = History { x: 10.0, t_x: 5.0, t: 39.0 };
    assert!(model.probability_alive(&loyal) > 0.9 && model.probability_alive(&lapsed) < 0.1);
    assert!(model.expected_purchases(&loyal, 52.0) > 5.0 * model.expected_purchases(&lapsed, 52.0));
    let longer = model.expected_purchases(&loyal, 104.0);
    assert!(longer > model.expected_purchases(&loyal, 52.0), "more time, more purchases");
}
