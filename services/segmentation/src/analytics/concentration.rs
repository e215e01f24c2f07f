//! How concentrated revenue is (the 80/20 rule): the share of revenue the
//! top X% of customers bring, the core customers (the top 20% by default),
//! and the gaps in their data. A customer is a contact with purchases in
//! the window, in the currency asked; they rank by what they spent there,
//! ties by contact id.

use crate::features::Profile;

/// The Pareto curve's resolution: a point every 5% of customers.
pub const CURVE_STEPS: i64 = 20;

/// What the revenue of the ranked customers says.
#[derive(Clone, Debug, PartialEq)]
pub struct Concentration {
    pub customers: i64,
    pub revenue: i64,
    /// (top share of customers, their share of revenue), every 5%.
    pub curve: Vec<(f64, f64)>,
    /// The top `core_share` of customers, rounded up.
    pub core_customers: i64,
    pub core_revenue_share: f64,
}

/// How many of `customers` the top `share` is: rounded up, so that a
/// single customer is the top 20% of one, and never more than all.
pub fn top(customers: i64, share: f64) -> i64 {
    // The small allowance keeps 0.2 × 10 at 2 despite binary fractions.
    (((customers as f64) * share - 1e-9).ceil() as i64).clamp(0, customers)
}

/// The curve and the core of `revenues`, best first (every one positive).
pub fn concentration(revenues: &[i64], core_share: f64) -> Concentration {
    let customers = revenues.len() as i64;
    let mut running = Vec::with_capacity(revenues.len() + 1);
    running.push(0i64);
    for revenue in revenues {
        running.push(running.last().copied().unwrap_or(0) + revenue);
    }
    let revenue = running.last().copied().unwrap_or(0);
    let share_of = |top: i64| if revenue == 0 { 0.0 } else { running[top as usize] as f64 / revenue as f64 };
    let curve = (1..=CURVE_STEPS)
        .map(|step| {
            let customer_share = step as f64 / CURVE_STEPS as f64;
            // The top step/20 of customers, rounded up, in integers.
            let top = (step * customers + CURVE_STEPS - 1) / CURVE_STEPS;
            (customer_share, share_of(top))
        })
        .collect();
    let core_customers = top(customers, core_share);
    Concentration { customers, revenue, curve, core_customers, core_revenue_share: share_of(core_customers) }
}

/// A gap in a customer's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Gap {
    NoEmail,
    NoPhone,
    NoAddress,
    NoConsent,
    LikelyDuplicate,
}

/// What a customer's profile lacks (all of it while the contacts feed has
/// not told the role about the contact). Likely duplicates are the
/// contacts role's to say.
pub fn gaps(profile: Option<&Profile>) -> Vec<Gap> {
    let empty = Profile::default();
    let profile = profile.unwrap_or(&empty);
    let mut gaps = Vec::new();
    if !profile.has_email {
        gaps.push(Gap::NoEmail);
    }
    if !profile.has_phone {
        gaps.push(Gap::NoPhone);
    }
    if profile.country.is_empty() && profile.city.is_empty() {
        gaps.push(Gap::NoAddress);
    }
    if profile.consents.is_empty() {
        gaps.push(Gap::NoConsent);
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_customers_by_hand() {
        // 1,000 in all; the top two bring 700.
        let revenues = [400, 300, 100, 50, 50, 40, 30, 20, 5, 5];
        let found = concentration(&revenues, 0.2);
        assert_eq!((found.customers, found.revenue, found.core_customers), (10, 1000, 2));
        assert!((found.core_revenue_share - 0.7).abs() < 1e-12, "{found:?}");
        assert_eq!(found.curve.len(), 20);
        // 5% of 10 is half a customer: rounded up to the best one.
        assert_eq!(found.curve[0], (0.05, 0.4));
        assert_eq!(found.curve[3], (0.2, 0.7));
        assert_eq!(found.curve[9], (0.5, 0.9));
        assert_eq!(found.curve[19], (1.0, 1.0));
        assert!(found.curve.windows(2).all(|pair| pair[0].1 <= pair[1].1), "the curve never falls");
    }

    #[test]
    fn the_core_rounds_up_and_an_empty_base_is_all_zeros() {
        assert_eq!(top(1, 0.2), 1);
        assert_eq!(top(10, 0.2), 2);
        assert_eq!(top(11, 0.2), 3);
        assert_eq!(top(7, 1.0), 7);
        let none = concentration(&[], 0.2);
        assert_eq!((none.customers, none.revenue, none.core_customers, none.core_revenue_share), (0, 0, 0, 0.0));
        assert!(none.curve.iter().all(|(_, share)| *share == 0.0));
    }

    #[test]
    fn gaps_name_what_is_missing() {
        let complete = Profile {
            has_email: true,
            has_phone: true,
            city: "Lyon".into(),
            consents: vec!["email".into()],
            ..Default::default()
        };
        assert!(gaps(Some(&complete)).is_empty());
        let phone_only = Profile { has_phone: true, country: "FR".into(), ..Default::default() };
        assert_eq!(gaps(Some(&phone_only)), [Gap::NoEmail, Gap::NoConsent]);
        assert_eq!(gaps(None), [Gap::NoEmail, Gap::NoPhone, Gap::NoAddress, Gap::NoConsent]);
    }
}
