//! Every feature a contact has: its name, type, meaning and source. The
//! catalogue is served by `ListFeatures`; rules and score models are checked
//! against it, and [`super::compute`] fills exactly these names.

use crm_proto::segmentation::v1::{self as pb, FeatureType};

/// The windows interaction features are counted over, in days, and lifetime.
pub const WINDOWS: [Window; 4] = [Window::Days(30), Window::Days(90), Window::Days(365), Window::Total];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The last N days up to now: an interaction counts while
    /// `occurred_at > now - N days`, and leaves exactly N days after it occurred.
    Days(i64),
    /// Every interaction ever.
    Total,
}

impl Window {
    /// The suffix of the feature names of this window: `30d`, `total`.
    pub fn suffix(self) -> String {
        match self {
            Window::Days(days) => format!("{days}d"),
            Window::Total => "total".into(),
        }
    }

    fn phrase(self) -> String {
        match self {
            Window::Days(days) => format!("in the last {days} days"),
            Window::Total => "ever".into(),
        }
    }
}

/// One feature of the catalogue.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureDef {
    pub name: String,
    pub kind: FeatureType,
    pub description: String,
    pub source: &'static str,
    pub sensitive: bool,
    pub moves_with_time: bool,
}

impl FeatureDef {
    fn new(name: impl Into<String>, kind: FeatureType, source: &'static str, description: impl Into<String>) -> Self {
        FeatureDef {
            name: name.into(),
            kind,
            description: description.into(),
            source,
            sensitive: false,
            moves_with_time: false,
        }
    }

    fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    fn moving(mut self) -> Self {
        self.moves_with_time = true;
        self
    }

    pub fn to_proto(&self) -> pb::Feature {
        pb::Feature {
            name: self.name.clone(),
            r#type: self.kind as i32,
            description: self.description.clone(),
            source: self.source.to_string(),
            sensitive: self.sensitive,
            moves_with_time: self.moves_with_time,
        }
    }
}

/// The catalogue, in its stable order.
pub fn features() -> &'static [FeatureDef] {
    static FEATURES: std::sync::OnceLock<Vec<FeatureDef>> = std::sync::OnceLock::new();
    FEATURES.get_or_init(build)
}

/// The feature named `name`.
pub fn feature(name: &str) -> Option<&'static FeatureDef> {
    static BY_NAME: std::sync::OnceLock<std::collections::HashMap<&'static str, &'static FeatureDef>> =
        std::sync::OnceLock::new();
    BY_NAME
        .get_or_init(|| features().iter().map(|feature| (feature.name.as_str(), feature)).collect())
        .get(name)
        .copied()
}

fn build() -> Vec<FeatureDef> {
    use FeatureType::*;
    const C: &str = "contacts";
    const I: &str = "interactions";
    const A: &str = "analytics";
    let mut all = vec![
        FeatureDef::new(
            "lifecycle",
            String,
            C,
            "the lifecycle stage in lower case: prospect, lead, customer, former_customer (empty until the contacts feed has told)",
        ),
        FeatureDef::new("tags", StringList, C, "the contact's tags, lower case, sorted"),
        FeatureDef::new("owner", String, C, "the account owner (empty when none)"),
        FeatureDef::new("country", String, C, "ISO 3166-1 alpha-2 country of the first address (empty when none)"),
        FeatureDef::new("region", String, C, "region of the first address"),
        FeatureDef::new("city", String, C, "locality of the first address"),
        FeatureDef::new(
            "created_time",
            Timestamp,
            C,
            "when the contact was created (null until the contacts feed has told)",
        ),
        FeatureDef::new("days_since_created", Int, C, "whole days since the contact was created; -1 when unknown")
            .moving(),
        FeatureDef::new("consents", StringList, C, "channels the contact opted in to: email, phone, sms, post"),
        FeatureDef::new("has_email", Bool, C, "whether the contact has an email address"),
        FeatureDef::new("has_phone", Bool, C, "whether the contact has a phone number"),
        FeatureDef::new(
            "age",
            Int,
            C,
            "whole years since the birth date; -1 when unknown. Personal: score models use it only when they say so",
        )
        .sensitive()
        .moving(),
    ];
    for window in WINDOWS {
        let suffix = window.suffix();
        let phrase = window.phrase();
        let moving = |feature: FeatureDef| if window == Window::Total { feature } else { feature.moving() };
        all.push(moving(FeatureDef::new(
            format!("interactions_{suffix}"),
            Int,
            I,
            format!("interactions {phrase}, of every kind"),
        )));
        all.push(moving(FeatureDef::new(
            format!("kinds_{suffix}"),
            IntMap,
            I,
            format!("interactions {phrase} by kind (purchase, complaint, …; every kind present, 0 when none)"),
        )));
        all.push(moving(FeatureDef::new(
            format!("channels_{suffix}"),
            IntMap,
            I,
            format!("interactions {phrase} by channel (web, phone, store, …; every channel present, 0 when none)"),
        )));
        all.push(moving(FeatureDef::new(format!("purchases_{suffix}"), Int, I, format!("purchases {phrase}"))));
        all.push(moving(FeatureDef::new(format!("revenue_{suffix}"), IntMap, I, format!("the amounts of purchases {phrase}, in minor units by ISO 4217 currency (a currency without purchases is absent)"))));
        all.push(moving(FeatureDef::new(
            format!("refunds_{suffix}"),
            IntMap,
            I,
            format!("the amounts of refunds {phrase}, in minor units by currency"),
        )));
    }
    all.extend([
        FeatureDef::new("first_interaction_time", Timestamp, I, "when the first interaction occurred (null when none)"),
        FeatureDef::new("last_interaction_time", Timestamp, I, "when the latest interaction occurred (null when none)"),
        FeatureDef::new("first_purchase_time", Timestamp, I, "when the first purchase occurred (null when none)"),
        FeatureDef::new("last_purchase_time", Timestamp, I, "when the latest purchase occurred (null when none)"),
        FeatureDef::new("days_since_last_purchase", Int, I, "whole days since the latest purchase; -1 when none")
            .moving(),
        FeatureDef::new("complaints_90d", Int, I, "complaints in the last 90 days").moving(),
        FeatureDef::new(
            "sentiment_avg_90d",
            Double,
            I,
            "the average sentiment (-1 to 1, each to a millionth) of interactions in the last 90 days that carry one (absent when none)",
        )
        .moving(),
        FeatureDef::new("skus", StringList, I, "every SKU the contact ever bought, sorted"),
        FeatureDef::new("open_invoices", Int, I, "invoices issued and not yet paid nor overdue"),
        FeatureDef::new("open_invoice_amount", IntMap, I, "the amounts of open invoices, minor units by currency"),
        FeatureDef::new("overdue_invoices", Int, I, "invoices past their due date, unpaid"),
        FeatureDef::new("overdue_invoice_amount", IntMap, I, "the amounts of overdue invoices, minor units by currency"),
        FeatureDef::new("invoices_paid_late", Int, I, "invoices ever paid after their due date (or while overdue)"),
        FeatureDef::new("referrals", Int, C, "contacts this contact referred (their REFERRED_BY relationship names it)"),
        FeatureDef::new("referred_revenue_365d", IntMap, I, "the revenue of the contacts this contact referred, in the last 365 days, minor units by currency").moving(),
        FeatureDef::new("organization_id", String, C, "the organization the contact works for (EMPLOYEE_OF; the lowest id when several), empty when none"),
        FeatureDef::new("organization_contacts", Int, C, "contacts who work for that organization, this one included"),
        FeatureDef::new("organization_revenue_365d", IntMap, I, "the revenue of the organization's contacts in the last 365 days, minor units by currency").moving(),
        FeatureDef::new("recurring_problems_90d", Int, I, "recurring problems detected in the last 90 days (the same pain point again and again, as the interactions role counts it)").moving(),
        FeatureDef::new("rfm_recency_score", Int, A, "the recency score (1 to 5, 5 the most recent fifth) of the last RFM computation; 0 when the contact was not a customer of its window"),
        FeatureDef::new("rfm_frequency_score", Int, A, "the frequency score (1 to 5) of the last RFM computation; 0 when none"),
        FeatureDef::new("rfm_monetary_score", Int, A, "the monetary score (1 to 5) of the last RFM computation; 0 when none"),
        FeatureDef::new("rfm_group", String, A, "the RFM group of the last computation: champions, loyal, potential_loyalists, new, promising, need_attention, about_to_sleep, at_risk, cannot_lose, hibernating, lost; empty when none"),
        FeatureDef::new("predicted_value", Int, A, "the lifetime value predicted by the last fit over its horizon, minor units of its currency; 0 when the contact was not a customer then"),
    ]);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_described() {
        let mut names = std::collections::HashSet::new();
        for feature in features() {
            assert!(names.insert(feature.name.as_str()), "{} twice", feature.name);
            assert!(!feature.description.is_empty());
            assert_ne!(feature.kind, FeatureType::Unspecified);
        }
        assert!(feature("revenue_365d").is_some());
        assert!(feature("age").unwrap().sensitive);
        assert!(!feature("interactions_total").unwrap().moves_with_time);
    }
}
