//! The customer analytics RPCs (movement, concentration, RFM, lifetime
//! value): validate the
//! period, currency and window, read the totals from the store, let
//! `crate::analytics` decide what they mean, map the answer. Movement and
//! concentration read every purchase of the base: their answers are kept
//! a while (`super::answers`).

use chrono::Duration;
use crm_platform::{
    Error,
    error::Violations,
    local::RoleChannel,
    principal::{Caller, SignedChannel},
    timestamp::{from_proto, to_proto},
};
use crm_proto::{
    contacts::v1::{FindDuplicatesRequest, contacts_service_client::ContactsServiceClient},
    segmentation::v1 as pb,
};
use futures_util::{StreamExt, TryStreamExt, stream};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::SegmentationApi;
use crate::{
    analytics::{
        Comparison, PeriodLength, Span,
        concentration::{self, Gap},
        movement::{self, Counts},
        period, recompute, rfm,
    },
    store::{
        analytics::{self as store, ClvFit, RfmRun},
        read_model,
    },
};

/// The longest churn window or revenue window asked for: ten years.
const MAX_DAYS: i32 = 3660;
/// At most this many core customers listed (each checked for duplicates).
const MAX_CORE_LISTED: i32 = 1000;
/// Duplicate checks of the listed core customers in flight at once.
const DUPLICATE_CHECKS_AT_ONCE: usize = 8;

/// An ISO 4217 code, upper-cased: three letters.
fn currency(violations: &mut Violations, field: &str, raw: &str) -> String {
    let code = raw.trim().to_ascii_uppercase();
    if code.len() != 3 || !code.bytes().all(|byte| byte.is_ascii_uppercase()) {
        violations.add(field, "must be an ISO 4217 currency code of three letters, such as EUR");
    }
    code
}

/// A number of days: 0 means `default`; otherwise 1 to [`MAX_DAYS`].
pub(super) fn days(violations: &mut Violations, field: &str, raw: i32, default: i32) -> Duration {
    match raw {
        0 => Duration::days(default.into()),
        1..=MAX_DAYS => Duration::days(raw.into()),
        _ => {
            violations.add(field, format!("must be 1 to {MAX_DAYS} days, or 0 for {default}"));
            Duration::zero()
        }
    }
}

/// A share in (0, 1]: 0 means `default`.
pub(super) fn share(violations: &mut Violations, field: &str, raw: f64, default: f64) -> f64 {
    if raw == 0.0 {
        return default;
    }
    if !(raw > 0.0 && raw <= 1.0) {
        violations.add(field, format!("must be above 0 and at most 1, or 0 for {default}"));
    }
    raw
}

/// A count in 1..=`max`: 0 means `default`.
pub(super) fn count(violations: &mut Violations, field: &str, raw: i32, default: i32, max: i32) -> i64 {
    match raw {
        0 => default.into(),
        1.. if raw <= max => raw.into(),
        _ => {
            violations.add(field, format!("must be 1 to {max}, or 0 for {default}"));
            default.into()
        }
    }
}

fn to_counts(counts: &Counts) -> pb::MovementCounts {
    pb::MovementCounts {
        active: counts.active,
        revenue: counts.revenue,
        compared_revenue: counts.compared_revenue,
        won: counts.won,
        won_revenue: counts.won_revenue,
        lost: counts.lost,
        lost_revenue: counts.lost_revenue,
        grown: counts.grown,
        grown_revenue_change: counts.grown_change,
        shrunk: counts.shrunk,
        shrunk_revenue_change: counts.shrunk_change,
    }
}

fn to_gap(gap: Gap) -> pb::DataGap {
    match gap {
        Gap::NoEmail => pb::DataGap::NoEmail,
        Gap::NoPhone => pb::DataGap::NoPhone,
        Gap::NoAddress => pb::DataGap::NoAddress,
        Gap::NoConsent => pb::DataGap::NoConsent,
        Gap::LikelyDuplicate => pb::DataGap::LikelyDuplicate,
    }
}

impl SegmentationApi {
    pub(super) async fn get_customer_movement(
        &self,
        request: Request<pb::GetCustomerMovementRequest>,
    ) -> Result<Response<pb::CustomerMovement>, Status> {
        let body = request.into_inner();
        let now = self.clock.now();
        let mut violations = Violations::new();
        let at = match &body.at {
            None => now,
            Some(at) => from_proto(at).unwrap_or_else(|| {
                violations.add("at", "must be a valid timestamp");
                now
            }),
        };
        let length = match pb::Period::try_from(body.period) {
            Ok(pb::Period::Unspecified | pb::Period::Month) => PeriodLength::Month,
            Ok(pb::Period::Quarter) => PeriodLength::Quarter,
            Err(_) => {
                violations.add("period", "must be PERIOD_MONTH or PERIOD_QUARTER");
                PeriodLength::Month
            }
        };
        let comparison = match pb::Comparison::try_from(body.comparison) {
            Ok(pb::Comparison::Unspecified | pb::Comparison::PreviousPeriod) => Comparison::PreviousPeriod,
            Ok(pb::Comparison::SamePeriodLastYear) => Comparison::SamePeriodLastYear,
            Err(_) => {
                violations.add("comparison", "must be COMPARISON_PREVIOUS_PERIOD or COMPARISON_SAME_PERIOD_LAST_YEAR");
                Comparison::PreviousPeriod
            }
        };
        let currency = currency(&mut violations, "currency_code", &body.currency_code);
        let churn = days(&mut violations, "churn_days", body.churn_days, 365);
        violations.into_result()?;

        let (period, compared) = period(at, length, comparison);
        let question = (currency.clone(), period, compared, churn.num_days());
        let pool = self.reads.clone();
        let answer = self
            .answers
            .movement
            .get(question, now, async move {
                let mut conn = pool.acquire().await.map_err(Error::from)?;
                let customers = store::bought(&mut conn, &currency, period, compared, churn).await?;
                drop(conn);
                let (total, owners) = movement::count(&customers, period, churn, now);
                Ok(pb::CustomerMovement {
                    period_start: Some(to_proto(period.start)),
                    period_end: Some(to_proto(period.end)),
                    compared_start: Some(to_proto(compared.start)),
                    compared_end: Some(to_proto(compared.end)),
                    currency_code: currency,
                    churn_days: churn.num_days() as i32,
                    total: Some(to_counts(&total)),
                    owners: owners
                        .iter()
                        .map(|(owner, counts)| pb::OwnerMovement {
                            owner: owner.clone(),
                            counts: Some(to_counts(counts)),
                        })
                        .collect(),
                    computed_time: Some(to_proto(now)),
                })
            })
            .await?;
        Ok(Response::new(answer.as_ref().clone()))
    }

    pub(super) async fn get_revenue_concentration(
        &self,
        request: Request<pb::GetRevenueConcentrationRequest>,
    ) -> Result<Response<pb::RevenueConcentration>, Status> {
        let caller = Caller::of(&request)?;
        let body = request.into_inner();
        let mut violations = Violations::new();
        let currency = currency(&mut violations, "currency_code", &body.currency_code);
        let window = days(&mut violations, "window_days", body.window_days, 365);
        let core_share = share(&mut violations, "core_share", body.core_share, 0.2);
        let core_limit = count(&mut violations, "core_limit", body.core_limit, 100, MAX_CORE_LISTED) as usize;
        violations.into_result()?;

        let now = self.clock.now();
        // Whether a core customer is a likely duplicate is asked as the caller: each caller has its own answers.
        let question =
            (currency.clone(), window.num_days(), core_share.to_bits(), core_limit, caller.principal.key_id.clone());
        let (pool, duplicates) = (self.reads.clone(), self.duplicates(caller));
        let answer = self
            .answers
            .concentration
            .get(question, now, async move {
                concentration_answer(
                    pool,
                    duplicates?,
                    currency,
                    Span { start: now - window, end: now },
                    core_share,
                    core_limit,
                )
                .await
                .map_err(Status::from)
            })
            .await?;
        Ok(Response::new(answer.as_ref().clone()))
    }

    /// The contacts role as `caller`, to ask it for duplicates (an error to give when it is not configured).
    fn duplicates(&self, caller: Caller) -> Result<ContactsServiceClient<SignedChannel<RoleChannel>>, Error> {
        let channel = self.contacts.clone().ok_or_else(|| Error::Unavailable {
            message:
                "the contacts role is not configured for this role: core customers cannot be checked for duplicates"
                    .into(),
            retry_after: std::time::Duration::from_secs(1),
        })?;
        Ok(ContactsServiceClient::new(SignedChannel::new(channel, self.identity.clone(), caller.principal)))
    }
}

/// The 80/20 view of `window`: the ranking, the curve, the core customers and their gaps.
async fn concentration_answer(
    pool: crm_platform::db::ReadPool,
    contacts: ContactsServiceClient<SignedChannel<RoleChannel>>,
    currency: String,
    window: Span,
    core_share: f64,
    core_limit: usize,
) -> Result<pb::RevenueConcentration, Error> {
    let mut conn = pool.acquire().await?;
    let ranking = store::revenue_ranking(&mut conn, &currency, window).await?;
    let revenues: Vec<i64> = ranking.iter().map(|(_, revenue)| *revenue).collect();
    let found = concentration::concentration(&revenues, core_share);
    let core: Vec<Uuid> = ranking.iter().take(found.core_customers as usize).map(|(contact, _)| *contact).collect();
    let profiles = read_model::profiles(&mut conn, &core).await?;
    drop(conn);

    let listed = &core[..core.len().min(core_limit)];
    let duplicated = likely_duplicates(contacts, listed).await?;
    let mut gap_counts = std::collections::BTreeMap::<Gap, i64>::new();
    let mut listed_customers = Vec::with_capacity(listed.len());
    for (rank, contact) in core.iter().enumerate() {
        let mut gaps = concentration::gaps(profiles.get(contact));
        if rank < listed.len() && duplicated[rank] {
            gaps.push(Gap::LikelyDuplicate);
        }
        for gap in &gaps {
            *gap_counts.entry(*gap).or_default() += 1;
        }
        if rank < listed.len() {
            listed_customers.push(pb::CoreCustomer {
                contact_id: contact.to_string(),
                revenue: ranking[rank].1,
                rank: rank as i64 + 1,
                gaps: gaps.iter().map(|gap| to_gap(*gap) as i32).collect(),
            });
        }
    }
    Ok(pb::RevenueConcentration {
        window_start: Some(to_proto(window.start)),
        window_end: Some(to_proto(window.end)),
        currency_code: currency,
        customers: found.customers,
        revenue: found.revenue,
        curve: found
            .curve
            .iter()
            .map(|(customer_share, revenue_share)| pb::ConcentrationPoint {
                customer_share: *customer_share,
                revenue_share: *revenue_share,
            })
            .collect(),
        core_customers: found.core_customers,
        core_revenue_share: found.core_revenue_share,
        core_gaps: gap_counts
            .iter()
            .map(|(gap, customers)| pb::GapCount { gap: to_gap(*gap) as i32, customers: *customers })
            .collect(),
        core: listed_customers,
        computed_time: Some(to_proto(window.end)),
    })
}

/// Whether the contacts role finds likely duplicates of each of
/// `contacts` (asked as the caller, a few at once), in order.
async fn likely_duplicates(
    client: ContactsServiceClient<SignedChannel<RoleChannel>>,
    contacts: &[Uuid],
) -> Result<Vec<bool>, Error> {
    if contacts.is_empty() {
        return Ok(Vec::new());
    }
    let requests: Vec<FindDuplicatesRequest> = contacts
        .iter()
        .map(|contact| FindDuplicatesRequest { contact_id: contact.to_string(), ..Default::default() })
        .collect();
    stream::iter(requests.into_iter().map(|request| {
        let mut client = client.clone();
        async move {
            match client.find_duplicates(request).await {
                Ok(found) => Ok(!found.get_ref().pairs.is_empty()),
                // Erased or merged since the read model last heard: no duplicate to fix.
                Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
                Err(status) if status.code() == tonic::Code::PermissionDenied => {
                    Err(Error::PermissionDenied(status.message().to_string()))
                }
                Err(status) => Err(Error::Unavailable {
                    message: format!(
                        "the contacts role could not check core customers for duplicates: {}",
                        status.message()
                    ),
                    retry_after: std::time::Duration::from_millis(500),
                }),
            }
        }
    }))
    .buffered(DUPLICATE_CHECKS_AT_ONCE)
    .try_collect()
    .await
}

fn to_summary(run: Option<&RfmRun>, groups: &[(String, i64, i64)]) -> pb::RfmSummary {
    pb::RfmSummary {
        computed_time: run.map(|run| to_proto(run.computed_at)),
        currency_code: run.map(|run| run.currency.clone()).unwrap_or_default(),
        window_days: run.map_or(0, |run| run.window_days),
        customers: run.map_or(0, |run| run.customers),
        groups: rfm::Group::ALL
            .iter()
            .map(|group| {
                let (customers, revenue) = groups
                    .iter()
                    .find(|(name, _, _)| name == group.name())
                    .map_or((0, 0), |(_, customers, revenue)| (*customers, *revenue));
                pb::RfmGroupCount { group: group.name().to_string(), customers, revenue }
            })
            .collect(),
    }
}

impl SegmentationApi {
    pub(super) async fn compute_rfm(
        &self,
        request: Request<pb::ComputeRfmRequest>,
    ) -> Result<Response<pb::RfmSummary>, Status> {
        let caller = Caller::of(&request)?;
        let body = request.into_inner();
        let mut violations = Violations::new();
        let currency = currency(&mut violations, "currency_code", &body.currency_code);
        let window_days = days(&mut violations, "window_days", body.window_days, 365).num_days() as i32;
        violations.into_result()?;
        let run = recompute::compute_rfm(
            &self.pool,
            &self.segments,
            &currency,
            window_days,
            self.clock.now(),
            caller.principal.actor(),
        )
        .await?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let groups = store::rfm_groups(&mut conn).await?;
        Ok(Response::new(to_summary(Some(&run), &groups)))
    }

    pub(super) async fn get_rfm_summary(
        &self,
        _request: Request<pb::GetRfmSummaryRequest>,
    ) -> Result<Response<pb::RfmSummary>, Status> {
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let run = store::last_rfm_run(&mut conn).await?;
        let groups = store::rfm_groups(&mut conn).await?;
        Ok(Response::new(to_summary(run.as_ref(), &groups)))
    }

    pub(super) async fn get_contact_rfm(
        &self,
        request: Request<pb::GetContactRfmRequest>,
    ) -> Result<Response<pb::ContactRfm>, Status> {
        let contact_id = super::id("contact_id", &request.get_ref().contact_id)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let run = store::last_rfm_run(&mut conn).await?.ok_or_else(|| Error::FailedPrecondition {
            reason: "RFM_NOT_COMPUTED",
            message: "RFM scores have not been computed yet: call ComputeRfm with a currency first".into(),
        })?;
        let (contact_id, scores) = store::contact_rfm(&mut conn, contact_id).await?;
        let mut answer = pb::ContactRfm {
            contact_id: contact_id.to_string(),
            computed_time: Some(to_proto(run.computed_at)),
            ..Default::default()
        };
        if let Some((totals, [recency, frequency, monetary], group)) = scores {
            answer.customer = true;
            answer.recency_days = totals.recency_days;
            answer.frequency = totals.frequency;
            answer.monetary = totals.monetary;
            (answer.recency_score, answer.frequency_score, answer.monetary_score) = (recency, frequency, monetary);
            answer.group = group;
        }
        Ok(Response::new(answer))
    }
}

fn to_clv_model(fit: Option<&ClvFit>) -> pb::LifetimeValueModel {
    let Some(fit) = fit else { return pb::LifetimeValueModel::default() };
    pb::LifetimeValueModel {
        fitted_time: Some(to_proto(fit.fitted_at)),
        currency_code: fit.currency.clone(),
        horizon_days: fit.horizon_days,
        customers: fit.customers,
        repeat_customers: fit.repeat_customers,
        r: fit.purchases.r,
        alpha: fit.purchases.alpha,
        a: fit.purchases.a,
        b: fit.purchases.b,
        bgnbd_log_likelihood: fit.bgnbd_log_likelihood,
        p: fit.spend.p,
        q: fit.spend.q,
        gamma: fit.spend.gamma,
        gamma_gamma_log_likelihood: fit.gamma_gamma_log_likelihood,
    }
}

impl SegmentationApi {
    pub(super) async fn fit_lifetime_value(
        &self,
        request: Request<pb::FitLifetimeValueRequest>,
    ) -> Result<Response<pb::LifetimeValueModel>, Status> {
        let caller = Caller::of(&request)?;
        let body = request.into_inner();
        let mut violations = Violations::new();
        let currency = currency(&mut violations, "currency_code", &body.currency_code);
        let horizon_days = days(&mut violations, "horizon_days", body.horizon_days, 365).num_days() as i32;
        violations.into_result()?;
        let fit = recompute::fit_clv(
            &self.pool,
            &self.segments,
            &currency,
            horizon_days,
            self.clock.now(),
            caller.principal.actor(),
        )
        .await?;
        Ok(Response::new(to_clv_model(Some(&fit))))
    }

    pub(super) async fn get_lifetime_value_model(
        &self,
        _request: Request<pb::GetLifetimeValueModelRequest>,
    ) -> Result<Response<pb::LifetimeValueModel>, Status> {
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        Ok(Response::new(to_clv_model(store::last_clv_fit(&mut conn).await?.as_ref())))
    }

    pub(super) async fn get_contact_lifetime_value(
        &self,
        request: Request<pb::GetContactLifetimeValueRequest>,
    ) -> Result<Response<pb::ContactLifetimeValue>, Status> {
        let contact_id = super::id("contact_id", &request.get_ref().contact_id)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let fit = store::last_clv_fit(&mut conn).await?.ok_or_else(|| Error::FailedPrecondition {
            reason: "LIFETIME_VALUE_NOT_FITTED",
            message: "lifetime value has not been fitted yet: call FitLifetimeValue with a currency first".into(),
        })?;
        let (contact_id, value) = store::contact_clv(&mut conn, contact_id).await?;
        let mut answer = pb::ContactLifetimeValue {
            contact_id: contact_id.to_string(),
            fitted_time: Some(to_proto(fit.fitted_at)),
            ..Default::default()
        };
        if let Some(value) = value {
            answer.customer = true;
            answer.historic_value = value.historic_value;
            answer.repeat_purchases = value.repeat_purchases;
            answer.probability_alive = value.probability_alive;
            answer.expected_purchases = value.expected_purchases;
            answer.expected_spend = value.expected_spend;
            answer.predicted_value = value.predicted_value;
        }
        Ok(Response::new(answer))
    }
}
