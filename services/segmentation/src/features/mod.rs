//! A contact's features: what the read model knows of it, computed by one
//! pure function from its profile (the contacts feed) and its activity (the
//! interactions feed) at a given time.
//!
//! - [`catalogue`]: every feature's name, type and meaning.
//! - [`contacts_feed`], [`interactions_feed`]: the handlers of the two feeds
//!   the read model is built from.
//! - [`compute`]: profile + activity + now → the feature document, and the
//!   next moment a value changes with time alone (a purchase leaving a
//!   window, a day count ticking over, a birthday), which the role schedules;
//!   [`apply`]: one more interaction applied to a current document.
//! - `stored`: a document as the `features.doc` column holds it.

pub mod catalogue;
pub mod contacts_feed;
pub mod interactions_feed;
mod stored;

pub use stored::{
    computed_from_bytes, doc_from_bytes, doc_from_bytes_only, doc_from_json, doc_to_bytes, doc_to_json, patched_bytes,
};

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use crm_proto::{interactions::v1 as interactions, segmentation::v1 as pb};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use self::catalogue::{WINDOWS, Window};

/// What the contacts feed says of a contact, as features need it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Profile {
    pub lifecycle: String,
    pub tags: Vec<String>,
    pub owner: String,
    pub country: String,
    pub region: String,
    pub city: String,
    pub created_time: Option<DateTime<Utc>>,
    /// Channels opted in to: email, phone, sms, post.
    pub consents: Vec<String>,
    pub has_email: bool,
    pub has_phone: bool,
    /// Personal: read only for `age`, and removed with the profile on erasure.
    pub birth_date: Option<NaiveDate>,
}

/// One interaction, as features need it (no free text).
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    pub interaction_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// Short lower-case kind: `purchase`, `complaint`, …
    pub kind: String,
    /// Short lower-case channel: `web`, `store`, …
    pub channel: String,
    /// ISO 4217 code of `amount`; empty when the interaction moved no money.
    pub currency: String,
    /// Minor units.
    pub amount: i64,
    pub sentiment: Option<f64>,
    pub skus: Vec<String>,
}

/// An invoice of the contact, as the interactions feed last told.
#[derive(Clone, Debug, PartialEq)]
pub struct Invoice {
    pub invoice_id: Uuid,
    pub currency: String,
    pub amount: i64,
    /// `open`, `overdue` or `paid`.
    pub status: String,
    /// Settled after its due date, or while overdue.
    pub paid_late: bool,
}

/// A recurring problem detected for the contact.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub detected_at: DateTime<Utc>,
    pub problem: String,
}

/// Revenue of a set of contacts over the last 365 days, and when it next
/// changes by time alone (a purchase leaving the window).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Revenue {
    pub by_currency: BTreeMap<String, i64>,
    pub next_change: Option<DateTime<Utc>>,
}

impl Revenue {
    /// The revenue of `purchases` (any activity; purchases are picked) in the 365 days before `now`.
    pub fn of<'a>(purchases: impl IntoIterator<Item = &'a Activity>, now: DateTime<Utc>) -> Revenue {
        let mut revenue = Revenue::default();
        for row in purchases.into_iter().filter(|row| row.kind == "purchase" && !row.currency.is_empty()) {
            if in_window(row, Window::Days(365), now) {
                *revenue.by_currency.entry(row.currency.clone()).or_default() += row.amount;
                let leaves = row.occurred_at + Duration::days(365);
                if revenue.next_change.is_none_or(|next| leaves < next) {
                    revenue.next_change = Some(leaves);
                }
            }
        }
        revenue
    }
}

/// What a contact's features read of other contacts: the ones it referred,
/// and its organization's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rollups {
    /// Contacts this one referred.
    pub referrals: i64,
    /// Their revenue over the last 365 days.
    pub referred_revenue: Revenue,
    /// The organization the contact works for, its contacts, and their revenue.
    pub organization: Option<(Uuid, i64, Revenue)>,
}

/// What the whole-base analytics last said of a contact (`crate::analytics`):
/// its RFM scores and group, and its predicted lifetime value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Analytics {
    /// Recency, frequency and monetary scores (1 to 5) and the group name.
    pub rfm: Option<([i64; 3], String)>,
    /// Predicted value over the fit's horizon, minor units of its currency.
    pub predicted_value: Option<i64>,
}

/// The features [`Analytics`] sets: what a whole-base computation moves.
pub const ANALYTICS_FEATURES: [&str; 5] =
    ["rfm_recency_score", "rfm_frequency_score", "rfm_monetary_score", "rfm_group", "predicted_value"];

/// Sets the [`ANALYTICS_FEATURES`] of `doc` to what `analytics` says (zero
/// and empty for a contact the computation did not score).
pub fn set_analytics(doc: &mut FeatureDoc, analytics: Analytics) {
    let ([recency, frequency, monetary], group) = analytics.rfm.unwrap_or_default();
    let values = [
        Value::Int(recency),
        Value::Int(frequency),
        Value::Int(monetary),
        Value::Str(group),
        Value::Int(analytics.predicted_value.unwrap_or_default()),
    ];
    for (name, value) in ANALYTICS_FEATURES.into_iter().zip(values) {
        doc.insert(name.into(), value);
    }
}

/// Everything a contact's features are computed from.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inputs<'a> {
    /// None: the contacts feed has not told yet.
    pub profile: Option<&'a Profile>,
    pub activity: &'a [Activity],
    pub invoices: &'a [Invoice],
    pub problems: &'a [Problem],
    pub rollups: Option<&'a Rollups>,
    pub analytics: Option<&'a Analytics>,
}

/// One feature's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    /// `None`: nothing to average.
    Double(Option<f64>),
    Str(String),
    Bool(bool),
    /// `None`: never happened.
    Time(Option<DateTime<Utc>>),
    List(Vec<String>),
    Map(BTreeMap<String, i64>),
}

/// Every feature of one contact, by name.
pub type FeatureDoc = BTreeMap<String, Value>;

/// The features of a contact at a time, and when they next change by time alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Computed {
    pub doc: FeatureDoc,
    pub next_change: Option<DateTime<Utc>>,
    /// What applying one more interaction needs beside the document ([`apply`]).
    pub tally: Tally,
}

/// What a document cannot say of itself but applying a new interaction to
/// it needs: the sentiment's sum and count behind its average, and the next
/// change by time alone of everything but the last purchase's day count
/// (which a later purchase replaces). Stored with the document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Sentiments of the last 90 days, in millionths, summed.
    pub sentiment_micros_90d: i64,
    /// How many of the last 90 days' interactions carry a sentiment.
    pub sentiments_90d: i64,
    /// The next change by time alone, the last purchase's day count left out.
    pub steady_next_change: Option<DateTime<Utc>>,
}

/// The names of one window's interaction features, made once (a burst
/// applies thousands of interactions).
struct WindowNames {
    window: Window,
    interactions: String,
    kinds: String,
    channels: String,
    purchases: String,
    revenue: String,
    refunds: String,
}

fn window_names() -> &'static [WindowNames] {
    static NAMES: std::sync::OnceLock<Vec<WindowNames>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        WINDOWS
            .into_iter()
            .map(|window| {
                let suffix = window.suffix();
                WindowNames {
                    window,
                    interactions: format!("interactions_{suffix}"),
                    kinds: format!("kinds_{suffix}"),
                    channels: format!("channels_{suffix}"),
                    purchases: format!("purchases_{suffix}"),
                    revenue: format!("revenue_{suffix}"),
                    refunds: format!("refunds_{suffix}"),
                }
            })
            .collect()
    })
}

/// The short name of an enum value: `KIND_SUPPORT_REQUEST` → `support_request`.
pub fn short_name(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_lowercase()
}

/// Every interaction kind's short name.
pub fn kinds() -> Vec<String> {
    (1..)
        .map_while(|value| interactions::Kind::try_from(value).ok())
        .map(|kind| short_name(kind.as_str_name(), "KIND_"))
        .collect()
}

/// Every channel's short name.
pub fn channels() -> Vec<String> {
    (1..)
        .map_while(|value| interactions::Channel::try_from(value).ok())
        .map(|channel| short_name(channel.as_str_name(), "CHANNEL_"))
        .collect()
}

/// Whole days from `since` to `now` (0 while less than a day, or when `since`
/// is ahead), and the moment that count next grows.
fn days_since(since: DateTime<Utc>, now: DateTime<Utc>) -> (i64, DateTime<Utc>) {
    let days = (now - since).num_days().max(0);
    (days, since + Duration::days(days + 1))
}

/// Whole years from `birth` to `today`, and the next birthday (29 February
/// falls on 1 March in other years), at midnight UTC.
fn age(birth: NaiveDate, now: DateTime<Utc>) -> (i64, DateTime<Utc>) {
    let today = now.date_naive();
    let birthday_in = |year: i32| {
        NaiveDate::from_ymd_opt(year, birth.month(), birth.day())
            .or_else(|| NaiveDate::from_ymd_opt(year, 3, 1))
            .unwrap_or(today)
    };
    let mut years = i64::from(today.year() - birth.year());
    if birthday_in(today.year()) > today {
        years -= 1;
    }
    let next =
        if birthday_in(today.year()) > today { birthday_in(today.year()) } else { birthday_in(today.year() + 1) };
    (years.max(0), next.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

/// A sentiment (-1 to 1) in millionths: sums of them are exact, so an
/// average kept as interactions arrive equals one computed from all of them.
fn sentiment_micros(sentiment: f64) -> i64 {
    (sentiment * 1e6).round() as i64
}

fn sentiment_average(tally: &Tally) -> Option<f64> {
    (tally.sentiments_90d > 0).then(|| tally.sentiment_micros_90d as f64 / tally.sentiments_90d as f64 / 1e6)
}

/// The earlier of two moments, either possibly absent.
fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn in_window(activity: &Activity, window: Window, now: DateTime<Utc>) -> bool {
    match window {
        Window::Days(days) => activity.occurred_at > now - Duration::days(days),
        Window::Total => true,
    }
}

/// The features of a contact with `profile` (None: the contacts feed has not
/// told yet) and `activity` only, at `now`.
pub fn compute(profile: Option<&Profile>, activity: &[Activity], now: DateTime<Utc>) -> Computed {
    compute_all(Inputs { profile, activity, ..Default::default() }, now)
}

/// The features of a contact with `inputs`, at `now`.
pub fn compute_all(inputs: Inputs<'_>, now: DateTime<Utc>) -> Computed {
    let (profile, activity) = (inputs.profile, inputs.activity);
    let mut doc = FeatureDoc::new();
    let mut next: Option<DateTime<Utc>> = None;
    let mut schedule = |at: DateTime<Utc>| {
        if at > now && next.is_none_or(|current| at < current) {
            next = Some(at);
        }
    };
    let empty = Profile::default();
    let profile = profile.unwrap_or(&empty);

    doc.insert("lifecycle".into(), Value::Str(profile.lifecycle.clone()));
    doc.insert("tags".into(), Value::List(sorted(profile.tags.clone())));
    doc.insert("owner".into(), Value::Str(profile.owner.clone()));
    doc.insert("country".into(), Value::Str(profile.country.clone()));
    doc.insert("region".into(), Value::Str(profile.region.clone()));
    doc.insert("city".into(), Value::Str(profile.city.clone()));
    doc.insert("created_time".into(), Value::Time(profile.created_time));
    let days_since_created = match profile.created_time {
        Some(created) => {
            let (days, changes) = days_since(created, now);
            schedule(changes);
            days
        }
        None => -1,
    };
    doc.insert("days_since_created".into(), Value::Int(days_since_created));
    doc.insert("consents".into(), Value::List(sorted(profile.consents.clone())));
    doc.insert("has_email".into(), Value::Bool(profile.has_email));
    doc.insert("has_phone".into(), Value::Bool(profile.has_phone));
    let years = match profile.birth_date {
        Some(birth) => {
            let (years, birthday) = age(birth, now);
            schedule(birthday);
            years
        }
        None => -1,
    };
    doc.insert("age".into(), Value::Int(years));

    let (all_kinds, all_channels) =
        (fixed_keys("kinds_").unwrap_or_default(), fixed_keys("channels_").unwrap_or_default());
    for names in window_names() {
        let window = names.window;
        let mut kinds: BTreeMap<String, i64> = all_kinds.iter().map(|kind| (kind.clone(), 0)).collect();
        let mut channels: BTreeMap<String, i64> = all_channels.iter().map(|channel| (channel.clone(), 0)).collect();
        let (mut count, mut purchases) = (0, 0);
        let (mut revenue, mut refunds) = (BTreeMap::new(), BTreeMap::new());
        for row in activity.iter().filter(|row| in_window(row, window, now)) {
            if let Window::Days(days) = window {
                schedule(row.occurred_at + Duration::days(days));
            }
            count += 1;
            *kinds.entry(row.kind.clone()).or_default() += 1;
            *channels.entry(row.channel.clone()).or_default() += 1;
            if row.kind == "purchase" {
                purchases += 1;
                if !row.currency.is_empty() {
                    *revenue.entry(row.currency.clone()).or_default() += row.amount;
                }
            }
            if row.kind == "refund" && !row.currency.is_empty() {
                *refunds.entry(row.currency.clone()).or_default() += row.amount;
            }
        }
        doc.insert(names.interactions.clone(), Value::Int(count));
        doc.insert(names.kinds.clone(), Value::Map(kinds));
        doc.insert(names.channels.clone(), Value::Map(channels));
        doc.insert(names.purchases.clone(), Value::Int(purchases));
        doc.insert(names.revenue.clone(), Value::Map(revenue));
        doc.insert(names.refunds.clone(), Value::Map(refunds));
    }

    let times = |filter: &dyn Fn(&Activity) -> bool| {
        let mut matching = activity.iter().filter(|row| filter(row)).map(|row| row.occurred_at);
        let first = matching.next();
        matching.fold((first, first), |(low, high), at| (low.min(Some(at)), high.max(Some(at))))
    };
    let (first_interaction, last_interaction) = times(&|_| true);
    let (first_purchase, last_purchase) = times(&|row| row.kind == "purchase");
    doc.insert("first_interaction_time".into(), Value::Time(first_interaction));
    doc.insert("last_interaction_time".into(), Value::Time(last_interaction));
    doc.insert("first_purchase_time".into(), Value::Time(first_purchase));
    doc.insert("last_purchase_time".into(), Value::Time(last_purchase));
    // Scheduled apart: a later purchase replaces it (see `Tally`).
    let (days_since_purchase, purchase_tick) = match last_purchase {
        Some(last) => {
            let (days, changes) = days_since(last, now);
            (days, Some(changes))
        }
        None => (-1, None),
    };
    doc.insert("days_since_last_purchase".into(), Value::Int(days_since_purchase));

    let recent: Vec<&Activity> = activity.iter().filter(|row| in_window(row, Window::Days(90), now)).collect();
    let complaints = recent.iter().filter(|row| row.kind == "complaint").count() as i64;
    doc.insert("complaints_90d".into(), Value::Int(complaints));
    let sentiments: Vec<f64> = recent.iter().filter_map(|row| row.sentiment).collect();
    let mut tally = Tally {
        sentiment_micros_90d: sentiments.iter().map(|sentiment| sentiment_micros(*sentiment)).sum(),
        sentiments_90d: sentiments.len() as i64,
        steady_next_change: None,
    };
    doc.insert("sentiment_avg_90d".into(), Value::Double(sentiment_average(&tally)));
    let mut skus: Vec<String> = activity.iter().flat_map(|row| row.skus.iter().cloned()).collect();
    skus.sort();
    skus.dedup();
    doc.insert("skus".into(), Value::List(skus));

    let amounts = |status: &str| {
        let mut totals = BTreeMap::new();
        let mut count = 0;
        for invoice in inputs.invoices.iter().filter(|invoice| invoice.status == status) {
            count += 1;
            if !invoice.currency.is_empty() {
                *totals.entry(invoice.currency.clone()).or_default() += invoice.amount;
            }
        }
        (count, totals)
    };
    let (open, open_amount) = amounts("open");
    let (overdue, overdue_amount) = amounts("overdue");
    doc.insert("open_invoices".into(), Value::Int(open));
    doc.insert("open_invoice_amount".into(), Value::Map(open_amount));
    doc.insert("overdue_invoices".into(), Value::Int(overdue));
    doc.insert("overdue_invoice_amount".into(), Value::Map(overdue_amount));
    let paid_late = inputs.invoices.iter().filter(|invoice| invoice.paid_late).count() as i64;
    doc.insert("invoices_paid_late".into(), Value::Int(paid_late));
    let mut recurring = 0;
    for problem in inputs.problems.iter().filter(|problem| problem.detected_at > now - Duration::days(90)) {
        recurring += 1;
        schedule(problem.detected_at + Duration::days(90));
    }
    doc.insert("recurring_problems_90d".into(), Value::Int(recurring));

    let none = Rollups::default();
    let rollups = inputs.rollups.unwrap_or(&none);
    doc.insert("referrals".into(), Value::Int(rollups.referrals));
    doc.insert("referred_revenue_365d".into(), Value::Map(rollups.referred_revenue.by_currency.clone()));
    if let Some(at) = rollups.referred_revenue.next_change {
        schedule(at);
    }
    let (organization, members, organization_revenue) = match &rollups.organization {
        Some((id, members, revenue)) => {
            if let Some(at) = revenue.next_change {
                schedule(at);
            }
            (id.to_string(), *members, revenue.by_currency.clone())
        }
        None => (String::new(), 0, BTreeMap::new()),
    };
    doc.insert("organization_id".into(), Value::Str(organization));
    doc.insert("organization_contacts".into(), Value::Int(members));
    doc.insert("organization_revenue_365d".into(), Value::Map(organization_revenue));

    set_analytics(&mut doc, inputs.analytics.cloned().unwrap_or_default());

    tally.steady_next_change = next;
    Computed { doc, next_change: earliest(next, purchase_tick), tally }
}

/// Applies one new interaction to features that are current at `now`
/// (computed earlier, with nothing changed by time alone since: their
/// `next_change` is after `now`), as [`compute_all`] with the interaction
/// added would compute them; the inputs other than this contact's own
/// activity (profile, invoices, problems, roll-ups) are unchanged.
/// Returns false, leaving `current` as it may be, when the document lacks a
/// feature it must update (it was stored by an older catalogue): recompute it.
pub fn apply(current: &mut Computed, row: &Activity, now: DateTime<Utc>) -> bool {
    apply_to(current, row, now).is_some()
}

fn apply_to(current: &mut Computed, row: &Activity, now: DateTime<Utc>) -> Option<()> {
    let doc = &mut current.doc;
    let purchase = row.kind == "purchase";
    let mut steady = current.tally.steady_next_change;
    for names in window_names() {
        let window = names.window;
        if !in_window(row, window, now) {
            continue;
        }
        if let Window::Days(days) = window {
            steady = earliest(steady, Some(row.occurred_at + Duration::days(days)));
        }
        *int_mut(doc, &names.interactions)? += 1;
        *map_mut(doc, &names.kinds)?.entry(row.kind.clone()).or_default() += 1;
        *map_mut(doc, &names.channels)?.entry(row.channel.clone()).or_default() += 1;
        if purchase {
            *int_mut(doc, &names.purchases)? += 1;
            if !row.currency.is_empty() {
                *map_mut(doc, &names.revenue)?.entry(row.currency.clone()).or_default() += row.amount;
            }
        }
        if row.kind == "refund" && !row.currency.is_empty() {
            *map_mut(doc, &names.refunds)?.entry(row.currency.clone()).or_default() += row.amount;
        }
    }
    widen(doc, "first_interaction_time", "last_interaction_time", row.occurred_at)?;
    let mut purchase_tick = None;
    if purchase {
        widen(doc, "first_purchase_time", "last_purchase_time", row.occurred_at)?;
    }
    if let Some(Value::Time(Some(last))) = doc.get("last_purchase_time") {
        let (days, changes) = days_since(*last, now);
        *int_mut(doc, "days_since_last_purchase")? = days;
        purchase_tick = Some(changes);
    }
    if in_window(row, Window::Days(90), now) {
        if row.kind == "complaint" {
            *int_mut(doc, "complaints_90d")? += 1;
        }
        if let Some(sentiment) = row.sentiment {
            current.tally.sentiment_micros_90d += sentiment_micros(sentiment);
            current.tally.sentiments_90d += 1;
            doc.insert("sentiment_avg_90d".into(), Value::Double(sentiment_average(&current.tally)));
        }
    }
    let Some(Value::List(skus)) = doc.get_mut("skus") else { return None };
    for sku in &row.skus {
        if let Err(at) = skus.binary_search(sku) {
            skus.insert(at, sku.clone());
        }
    }
    current.tally.steady_next_change = steady;
    current.next_change = earliest(steady, purchase_tick);
    Some(())
}

/// The features applying `row` at `now` may change ([`apply`] changes no
/// other): a segment whose rule reads none of them keeps its decision.
pub fn moved_by(row: &Activity, now: DateTime<Utc>) -> Vec<&'static str> {
    let mut moved: Vec<&'static str> = Vec::new();
    let purchase = row.kind == "purchase";
    for names in window_names().iter().filter(|names| in_window(row, names.window, now)) {
        moved.extend([names.interactions.as_str(), &names.kinds, &names.channels]);
        if purchase {
            moved.extend([names.purchases.as_str(), &names.revenue]);
        }
        if row.kind == "refund" {
            moved.push(&names.refunds);
        }
    }
    moved.extend(["first_interaction_time", "last_interaction_time"]);
    if purchase {
        moved.extend(["first_purchase_time", "last_purchase_time", "days_since_last_purchase"]);
    }
    if in_window(row, Window::Days(90), now) {
        moved.extend(["complaints_90d", "sentiment_avg_90d"]);
    }
    if !row.skus.is_empty() {
        moved.push("skus");
    }
    moved
}

fn int_mut<'a>(doc: &'a mut FeatureDoc, name: &str) -> Option<&'a mut i64> {
    match doc.get_mut(name) {
        Some(Value::Int(value)) => Some(value),
        _ => None,
    }
}

fn map_mut<'a>(doc: &'a mut FeatureDoc, name: &str) -> Option<&'a mut BTreeMap<String, i64>> {
    match doc.get_mut(name) {
        Some(Value::Map(values)) => Some(values),
        _ => None,
    }
}

/// Moves the `first` and `last` times out to include `at`.
fn widen(doc: &mut FeatureDoc, first: &str, last: &str, at: DateTime<Utc>) -> Option<()> {
    for (name, earlier) in [(first, true), (last, false)] {
        let Some(Value::Time(time)) = doc.get_mut(name) else { return None };
        let replace = time.is_none_or(|current| if earlier { at < current } else { at > current });
        if replace {
            *time = Some(at);
        }
    }
    Some(())
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values.dedup();
    values
}

// === impl Value ===

impl Value {
    /// The value as stored in the `features.doc` column.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Value::Int(value) => json!(value),
            Value::Double(value) => json!(value),
            Value::Str(value) => json!(value),
            Value::Bool(value) => json!(value),
            Value::Time(value) => json!(value.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))),
            Value::List(values) => json!(values),
            Value::Map(values) => json!(values),
        }
    }

    /// A stored value read back as the catalogue types it.
    pub fn from_json(kind: pb::FeatureType, json: &serde_json::Value) -> Option<Value> {
        use pb::FeatureType as T;
        Some(match kind {
            T::Int => Value::Int(json.as_i64()?),
            T::Double => Value::Double(json.as_f64()),
            T::String => Value::Str(json.as_str()?.to_string()),
            T::Bool => Value::Bool(json.as_bool()?),
            T::Timestamp => Value::Time(match json.as_str() {
                Some(text) => Some(DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc)),
                None => None,
            }),
            T::StringList => Value::List(serde_json::from_value(json.clone()).ok()?),
            T::IntMap => Value::Map(serde_json::from_value(json.clone()).ok()?),
            T::Unspecified => return None,
        })
    }

    pub fn to_proto(&self) -> pb::FeatureValue {
        use pb::feature_value::Value as V;
        let value = match self {
            Value::Int(value) => Some(V::IntValue(*value)),
            Value::Double(value) => value.map(V::DoubleValue),
            Value::Str(value) => Some(V::StringValue(value.clone())),
            Value::Bool(value) => Some(V::BoolValue(*value)),
            Value::Time(value) => value.map(|at| V::TimestampValue(crm_platform::timestamp::to_proto(at))),
            Value::List(values) => Some(V::StringListValue(pb::StringList { values: values.clone() })),
            Value::Map(values) => {
                Some(V::IntMapValue(pb::IntMap { values: values.iter().map(|(k, v)| (k.clone(), *v)).collect() }))
            }
        };
        pb::FeatureValue { value }
    }
}

/// The keys a map feature always has (0 when nothing was counted), if it has fixed ones.
pub(crate) fn fixed_keys(name: &str) -> Option<&'static [String]> {
    static KINDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    static CHANNELS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    if name.starts_with("kinds_") {
        Some(KINDS.get_or_init(kinds))
    } else if name.starts_with("channels_") {
        Some(CHANNELS.get_or_init(channels))
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
