//! RFM: each customer scored 1 to 5 on **recency** (days since the latest
//! purchase: the more recent, the higher), **frequency** (purchases in the
//! window) and **monetary** value (spent in the window), by quintile of the
//! customers of the window, and named by the R–F segment map widely used
//! in RFM analysis (champions, loyal, potential loyalists, new, promising,
//! need attention, about to sleep, at risk, cannot lose, hibernating, lost).
//!
//! A score is the quintile of the customer's rank among all customers,
//! worst first: rank `i` of `n` (from 0) scores `i × 5 / n + 1`; customers
//! with equal values share the rank of the first of them, so a tie never
//! splits across scores.

/// One customer's purchases in the window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Totals {
    pub recency_days: i64,
    pub frequency: i64,
    pub monetary: i64,
}

/// A customer's scores and group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scores {
    pub recency: i32,
    pub frequency: i32,
    pub monetary: i32,
    pub group: Group,
}

/// The named groups of the R–F map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    Champions,
    Loyal,
    PotentialLoyalists,
    New,
    Promising,
    NeedAttention,
    AboutToSleep,
    AtRisk,
    CannotLose,
    Hibernating,
    Lost,
}

impl Group {
    pub const ALL: [Group; 11] = [
        Group::Champions,
        Group::Loyal,
        Group::PotentialLoyalists,
        Group::New,
        Group::Promising,
        Group::NeedAttention,
        Group::AboutToSleep,
        Group::AtRisk,
        Group::CannotLose,
        Group::Hibernating,
        Group::Lost,
    ];

    /// The name used in answers and stored.
    pub fn name(self) -> &'static str {
        match self {
            Group::Champions => "champions",
            Group::Loyal => "loyal",
            Group::PotentialLoyalists => "potential_loyalists",
            Group::New => "new",
            Group::Promising => "promising",
            Group::NeedAttention => "need_attention",
            Group::AboutToSleep => "about_to_sleep",
            Group::AtRisk => "at_risk",
            Group::CannotLose => "cannot_lose",
            Group::Hibernating => "hibernating",
            Group::Lost => "lost",
        }
    }

    /// The group of a recency and a frequency score (each 1 to 5).
    pub fn of(recency: i32, frequency: i32) -> Group {
        match (recency, frequency) {
            (1, 1) => Group::Lost,
            (1..=2, 1..=2) => Group::Hibernating,
            (1..=2, 3..=4) => Group::AtRisk,
            (1..=2, _) => Group::CannotLose,
            (3, 1..=2) => Group::AboutToSleep,
            (3, 3) => Group::NeedAttention,
            (3..=4, 4..=5) => Group::Loyal,
            (4, 1) => Group::Promising,
            (5, 1) => Group::New,
            (4..=5, 2..=3) => Group::PotentialLoyalists,
            _ => Group::Champions,
        }
    }
}

/// The quintile scores of `values` (higher is better), in their order.
fn quintiles(values: &[i64]) -> Vec<i32> {
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&index| values[index]);
    let mut scores = vec![0; n];
    let mut rank = 0;
    for (position, &index) in order.iter().enumerate() {
        if position > 0 && values[index] != values[order[position - 1]] {
            rank = position;
        }
        scores[index] = (rank * 5 / n) as i32 + 1;
    }
    scores
}

/// Every customer's scores, in the order given.
pub fn score(customers: &[Totals]) -> Vec<Scores> {
    // Fewer days since the latest purchase is better: scored on the negation.
    let recency = quintiles(&customers.iter().map(|totals| -totals.recency_days).collect::<Vec<_>>());
    let frequency = quintiles(&customers.iter().map(|totals| totals.frequency).collect::<Vec<_>>());
    let monetary = quintiles(&customers.iter().map(|totals| totals.monetary).collect::<Vec<_>>());
    (0..customers.len())
        .map(|index| Scores {
            recency: recency[index],
            frequency: frequency[index],
            monetary: monetary[index],
            group: Group::of(recency[index], frequency[index]),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(recency_days: i64, frequency: i64, monetary: i64) -> Totals {
        Totals { recency_days, frequency, monetary }
    }

    #[test]
    fn ten_customers_by_hand() {
        // Two customers a quintile: recency 1..10 days ago, frequency 10..1, spend 100..1000.
        let customers: Vec<Totals> = (0..10).map(|i| totals(i + 1, 10 - i, 100 * (i + 1))).collect();
        let scores = score(&customers);
        let recency: Vec<i32> = scores.iter().map(|s| s.recency).collect();
        let frequency: Vec<i32> = scores.iter().map(|s| s.frequency).collect();
        let monetary: Vec<i32> = scores.iter().map(|s| s.monetary).collect();
        assert_eq!(recency, [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]);
        assert_eq!(frequency, [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]);
        assert_eq!(monetary, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        let groups: Vec<&str> = scores.iter().map(|s| s.group.name()).collect();
        assert_eq!(
            groups,
            [
                "champions",
                "champions",
                "loyal",
                "loyal",
                "need_attention",
                "need_attention",
                "hibernating",
                "hibernating",
                "lost",
                "lost"
            ]
        );
    }

    #[test]
    fn ties_share_a_score_and_one_customer_is_the_bottom_quintile() {
        // Seven buy once, three twice: the seven share the lowest rank.
        let customers: Vec<Totals> = (0..10).map(|i| totals(5, if i < 7 { 1 } else { 2 }, 10)).collect();
        let frequency: Vec<i32> = score(&customers).iter().map(|s| s.frequency).collect();
        assert_eq!(frequency, [1, 1, 1, 1, 1, 1, 1, 4, 4, 4]);
        assert_eq!(score(&[totals(0, 1, 1)])[0].recency, 1);
        assert!(score(&[]).is_empty());
    }

    #[test]
    fn the_map_names_every_cell() {
        let named: Vec<(i32, i32, &str)> =
            [(5, 5), (5, 1), (4, 1), (3, 3), (3, 1), (2, 4), (1, 5), (2, 2), (1, 1), (4, 2), (3, 5)]
                .iter()
                .map(|&(r, f)| (r, f, Group::of(r, f).name()))
                .collect();
        assert_eq!(
            named,
            [
                (5, 5, "champions"),
                (5, 1, "new"),
                (4, 1, "promising"),
                (3, 3, "need_attention"),
                (3, 1, "about_to_sleep"),
                (2, 4, "at_risk"),
                (1, 5, "cannot_lose"),
                (2, 2, "hibernating"),
                (1, 1, "lost"),
                (4, 2, "potential_loyalists"),
                (3, 5, "loyal")
            ]
        );
        let mut seen = std::collections::HashSet::new();
        for r in 1..=5 {
            for f in 1..=5 {
                seen.insert(Group::of(r, f));
            }
        }
        assert_eq!(seen.len(), Group::ALL.len(), "every group names some cell");
    }
}
