//! `crm.alerting.v1.AlertingService`: each RPC validates, calls the store, maps the result.
//! The event feed is the platform's; this role only names its service.
//!
//! - this module: SLOs, alerts (with WatchAlerts) and the feed;
//! - [`rules`]: rules on customer events;
//! - [`silences`]: the silences;
//! - [`webhooks`]: webhooks and their delivery log.

mod rules;
mod silences;
mod webhooks;

use std::{pin::Pin, sync::Arc, time::Duration};

use crm_platform::{
    Error, RoleContext,
    clock::Clock,
    error::Violations,
    feed_api::{FeedApi, SubscribeStream},
    page_token::{PageTokens, Query, page_size},
    principal::{Caller, SignedChannel},
    timestamp::to_proto,
};
use crm_proto::{
    alerting::v1::{
        self as pb,
        alerting_service_server::{AlertingService, SERVICE_NAME},
    },
    events::v1::Event,
    events::v1::{ListEventsRequest, ListEventsResponse, SubscribeRequest},
    segmentation::v1::segmentation_service_client::SegmentationServiceClient,
};
use futures_util::{Stream, StreamExt};
use prost::{Message, Name};
use sqlx::{PgConnection, PgPool};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    alerts,
    delivery::webhooks::Webhooks,
    evaluator::ALERTS_LOCK,
    silences::Active,
    slo::{
        indicator,
        prometheus::{self as prom, Prometheus},
        status,
    },
    store::{
        alerts::{self as alert_store, AlertRecord, Filter},
        slos::{self as store, SloRecord},
    },
};

const MAX_NAME: usize = 200;
const MAX_OWNER: usize = 200;
const MAX_DESCRIPTION: usize = 2000;
const MIN_WINDOW: Duration = Duration::from_secs(24 * 3600);
const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);
/// Fewer valid events than this in an alert's long window never alert, unless the SLO says otherwise.
const DEFAULT_MIN_EVENTS: u64 = 10;
const MAX_MIN_EVENTS: i64 = 1_000_000_000;
const MAX_QUERY: usize = 4096;

pub struct AlertingApi {
    feed: FeedApi,
    pool: PgPool,
    tokens: PageTokens,
    clock: Clock,
    /// Lists the features a rule may read (checked when it is made).
    segmentation: Option<SegmentationServiceClient<SignedChannel>>,
    /// Where webhooks may go (checked when one is made).
    webhooks: Arc<Webhooks>,
    /// Where Prometheus indicators are read.
    prometheus: Option<Prometheus>,
}

/// The stream of `WatchAlerts`.
pub type AlertChanges = Pin<Box<dyn Stream<Item = Result<pb::AlertChange, Status>> + Send>>;

/// An alert event of the role's feed as a change for `WatchAlerts`.
fn alert_change(event: &Event) -> Result<Option<pb::AlertChange>, prost::DecodeError> {
    let payload = event.payload.as_ref().map(|any| any.value.as_slice()).unwrap_or_default();
    let (kind, alert) = if event.r#type == pb::AlertFired::full_name() {
        (pb::AlertChangeKind::Fired, pb::AlertFired::decode(payload)?.alert)
    } else if event.r#type == pb::AlertResolved::full_name() {
        (pb::AlertChangeKind::Resolved, pb::AlertResolved::decode(payload)?.alert)
    } else if event.r#type == pb::AlertAcknowledged::full_name() {
        (pb::AlertChangeKind::Acknowledged, pb::AlertAcknowledged::decode(payload)?.alert)
    } else {
        return Ok(None);
    };
    Ok(Some(pb::AlertChange { kind: kind as i32, alert, position: event.position, time: event.occurred_at }))
}

impl AlertingApi {
    pub async fn new(
        ctx: &RoleContext,
        segmentation: Option<SignedChannel>,
        webhooks: Arc<Webhooks>,
        prometheus: Option<Prometheus>,
    ) -> anyhow::Result<Self> {
        Ok(AlertingApi {
            feed: FeedApi::start(ctx, SERVICE_NAME).await?,
            pool: ctx.pool.clone(),
            tokens: ctx.page_tokens.clone(),
            clock: ctx.clock.clone(),
            segmentation: segmentation.map(SegmentationServiceClient::new),
            webhooks,
            prometheus,
        })
    }

    fn prometheus(&self) -> Result<&Prometheus, Error> {
        self.prometheus.as_ref().ok_or_else(|| Error::FailedPrecondition {
            reason: "PROMETHEUS_NOT_CONFIGURED",
            message: "this SLO reads Prometheus; set CRM_PROMETHEUS_URL for the alerting role".into(),
        })
    }

    /// Runs both queries once over a 5-minute window: what Prometheus
    /// refuses is refused here, with its message (which names the position).
    async fn check_queries(&self, queries: &prom::Queries) -> Result<(), Error> {
        let prometheus = self.prometheus()?;
        let mut violations = Violations::new();
        for (field, query) in [("slo.prometheus.good", &queries.good), ("slo.prometheus.total", &queries.total)] {
            if let Err(problem) = prometheus.count(query, Duration::from_secs(300), self.clock.now()).await {
                violations.add(field, problem);
            }
        }
        violations.into_result()
    }

    /// Alerts as answered: each with the active silences that hold it back.
    async fn answer(&self, conn: &mut PgConnection, records: &[AlertRecord]) -> Result<Vec<pb::Alert>, Error> {
        let silences = Active::load(conn, self.clock.now()).await?;
        Ok(records
            .iter()
            .map(|record| {
                let mut alert = alerts::to_proto(record);
                if record.firing {
                    alert.silenced_by = silences.silencing(&record.labels).iter().map(Uuid::to_string).collect();
                }
                alert
            })
            .collect())
    }

    /// A transaction that may change alerts (it holds the alerts lock).
    async fn alerts_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(ALERTS_LOCK).execute(&mut *tx).await?;
        Ok(tx)
    }

    async fn read(&self, id: Uuid) -> Result<SloRecord, Error> {
        let mut conn = self.pool.acquire().await?;
        store::get(&mut conn, id).await
    }
}

/// An alert's id and a note about it (up to 2,000 characters).
fn noted(alert: &str, note: &str) -> Result<(Uuid, String), Error> {
    let alert_id = id("id", alert)?;
    let mut violations = Violations::new();
    let note = violations.text("note", note, 0, MAX_DESCRIPTION);
    violations.into_result()?;
    Ok((alert_id, note))
}

fn id(field: &str, raw: &str) -> Result<Uuid, Error> {
    Uuid::try_parse(raw.trim()).map_err(|_| Error::invalid(field, "must be an id (a UUID)"))
}

/// A new SLO from the request, every wrong field named.
fn new_slo(input: pb::Slo) -> Result<SloRecord, Error> {
    let mut violations = Violations::new();
    let name = violations.text("slo.name", &input.name, 1, MAX_NAME);
    let owner = violations.text("slo.owner", &input.owner, 0, MAX_OWNER);
    let description = violations.text("slo.description", &input.description, 0, MAX_DESCRIPTION);
    if !(input.objective > 0.0 && input.objective < 1.0) {
        violations.add("slo.objective", format!("must be above 0 and below 1, e.g. 0.999 (got {})", input.objective));
    }
    let window = match input.window.map(Duration::try_from) {
        None => {
            violations.add("slo.window", "is required, e.g. 28 days");
            Duration::ZERO
        }
        Some(Err(_)) => {
            violations.add("slo.window", "must be a positive duration");
            Duration::ZERO
        }
        Some(Ok(window)) => {
            if !(MIN_WINDOW..=MAX_WINDOW).contains(&window) || window.subsec_nanos() != 0 || window.as_secs() % 60 != 0
            {
                violations.add("slo.window", "must be whole minutes from 1 day to 366 days");
            }
            window
        }
    };
    let (mut valid_rule, mut good_rule, mut prometheus) = (String::new(), String::new(), None);
    match input.indicator {
        Some(pb::slo::Indicator::Prometheus(queries)) => {
            for (field, query) in [("slo.prometheus.good", &queries.good), ("slo.prometheus.total", &queries.total)] {
                let query = violations.text(field, query, 1, MAX_QUERY);
                if !query.is_empty() && !query.contains(prom::WINDOW) {
                    violations.add(
                        field,
                        format!(
                            "must write its range as {} (e.g. [{}]), where each alert window goes",
                            prom::WINDOW,
                            prom::WINDOW
                        ),
                    );
                }
            }
            prometheus =
                Some(prom::Queries { good: queries.good.trim().to_string(), total: queries.total.trim().to_string() });
        }
        Some(pb::slo::Indicator::Business(business)) => {
            for (field, rule, kept) in [
                ("slo.business.valid", business.valid, &mut valid_rule),
                ("slo.business.good", business.good, &mut good_rule),
            ] {
                if let Err(error) = indicator::check(&rule) {
                    violations.add(field, error.to_string());
                }
                *kept = rule.trim().to_string();
            }
        }
        None => violations.add(
            "slo.indicator",
            "is required: business (conditions over interactions) or prometheus (PromQL for good and total)",
        ),
    }
    let min_events = match input.min_events {
        0 => DEFAULT_MIN_EVENTS,
        n if (1..=MAX_MIN_EVENTS).contains(&n) => n as u64,
        n => {
            violations.add("slo.min_events", format!("must be 0 (the default, 10) to {MAX_MIN_EVENTS} (got {n})"));
            0
        }
    };
    violations.into_result()?;
    Ok(SloRecord {
        id: Uuid::now_v7(),
        name,
        owner,
        description,
        objective: input.objective,
        window,
        valid_rule,
        good_rule,
        prometheus,
        min_events,
        create_time: chrono::DateTime::UNIX_EPOCH,
    })
}

fn duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(duration).unwrap_or_default()
}

fn to_proto_slo(record: &SloRecord) -> pb::Slo {
    pb::Slo {
        id: record.id.to_string(),
        name: record.name.clone(),
        owner: record.owner.clone(),
        description: record.description.clone(),
        objective: record.objective,
        window: Some(duration(record.window)),
        indicator: Some(match &record.prometheus {
            Some(queries) => pb::slo::Indicator::Prometheus(pb::PrometheusIndicator {
                good: queries.good.clone(),
                total: queries.total.clone(),
            }),
            None => pb::slo::Indicator::Business(pb::BusinessIndicator {
                valid: record.valid_rule.clone(),
                good: record.good_rule.clone(),
            }),
        }),
        min_events: record.min_events as i64,
        alerts: status::thresholds(record)
            .iter()
            .map(|threshold| pb::AlertThreshold {
                severity: threshold.severity.as_str().into(),
                budget_fraction: threshold.budget_fraction,
                burn_rate: threshold.burn_rate,
                long_window: Some(duration(threshold.long)),
                short_window: Some(duration(threshold.short)),
                derived: threshold.derived,
            })
            .collect(),
        create_time: Some(to_proto(record.create_time)),
    }
}

#[tonic::async_trait]
impl AlertingService for AlertingApi {
    type SubscribeStream = SubscribeStream;

    async fn create_slo(&self, request: Request<pb::CreateSloRequest>) -> Result<Response<pb::Slo>, Status> {
        let input = request.into_inner().slo.ok_or_else(|| Error::invalid("slo", "is required"))?;
        let slo = new_slo(input)?;
        if let Some(queries) = &slo.prometheus {
            self.check_queries(queries).await?;
        }
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        store::insert(&mut conn, &slo).await?;
        Ok(Response::new(to_proto_slo(&store::get(&mut conn, slo.id).await?)))
    }

    async fn get_slo(&self, request: Request<pb::GetSloRequest>) -> Result<Response<pb::Slo>, Status> {
        let slo_id = id("id", &request.get_ref().id)?;
        Ok(Response::new(to_proto_slo(&self.read(slo_id).await?)))
    }

    async fn list_slos(&self, request: Request<pb::ListSlosRequest>) -> Result<Response<pb::ListSlosResponse>, Status> {
        let body = request.into_inner();
        let limit = page_size(body.page_size, 50, 500)?;
        let query = Query::builder(&format!("{SERVICE_NAME}/ListSlos")).build();
        let after: Option<(String, Uuid)> = self.tokens.resume(&query, &body.page_token)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let mut records = store::list(&mut conn, after, limit + 1).await?;
        let next_page_token =
            self.tokens.next_page(&query, &mut records, limit, |last| (last.name.clone(), last.id))?;
        Ok(Response::new(pb::ListSlosResponse { slos: records.iter().map(to_proto_slo).collect(), next_page_token }))
    }

    async fn delete_slo(&self, request: Request<pb::DeleteSloRequest>) -> Result<Response<pb::Slo>, Status> {
        let slo_id = id("id", &request.get_ref().id)?;
        let mut tx = self.alerts_tx().await?;
        let current = store::get(&mut tx, slo_id).await?;
        store::delete(&mut tx, slo_id).await?;
        alerts::resolve_all(&mut tx, slo_id, self.clock.now()).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(to_proto_slo(&current)))
    }

    async fn get_slo_status(
        &self,
        request: Request<pb::GetSloStatusRequest>,
    ) -> Result<Response<pb::SloStatus>, Status> {
        let slo_id = id("id", &request.get_ref().id)?;
        let now = self.clock.now();
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let slo = store::get(&mut conn, slo_id).await?;
        let counts = match &slo.prometheus {
            None => store::counts(&mut conn, slo_id, now, &status::windows(&slo)).await?,
            Some(queries) => {
                self.prometheus()?.counts(queries, &status::windows(&slo), now).await.map_err(|error| {
                    Error::Unavailable {
                        message: format!("Prometheus did not give this SLO's counts: {error}"),
                        retry_after: Duration::from_secs(10),
                    }
                })?
            }
        };
        let found = status::status(&slo, |window| counts.get(&window).copied().unwrap_or_default());
        Ok(Response::new(pb::SloStatus {
            slo_id: slo.id.to_string(),
            sli: found.sli,
            valid_events: found.total.valid as i64,
            good_events: (found.total.valid - found.total.bad) as i64,
            budget_left: found.budget_left,
            alerts: found
                .alerts
                .iter()
                .map(|alert| pb::WindowBurn {
                    severity: alert.threshold.severity.as_str().into(),
                    threshold: alert.threshold.burn_rate,
                    long_burn_rate: alert.long_burn,
                    short_burn_rate: alert.short_burn,
                    long_valid_events: alert.long_valid as i64,
                    firing: alert.firing,
                    windows: alert.threshold.windows_label(),
                })
                .collect(),
            exhausted_in: found.exhausted_in.map(duration),
            evaluate_time: Some(to_proto(now)),
        }))
    }

    async fn create_alert_rule(
        &self,
        request: Request<pb::CreateAlertRuleRequest>,
    ) -> Result<Response<pb::AlertRule>, Status> {
        AlertingApi::create_alert_rule(self, request).await
    }

    async fn get_alert_rule(
        &self,
        request: Request<pb::GetAlertRuleRequest>,
    ) -> Result<Response<pb::AlertRule>, Status> {
        AlertingApi::get_alert_rule(self, request).await
    }

    async fn list_alert_rules(
        &self,
        request: Request<pb::ListAlertRulesRequest>,
    ) -> Result<Response<pb::ListAlertRulesResponse>, Status> {
        AlertingApi::list_alert_rules(self, request).await
    }

    async fn delete_alert_rule(
        &self,
        request: Request<pb::DeleteAlertRuleRequest>,
    ) -> Result<Response<pb::AlertRule>, Status> {
        AlertingApi::delete_alert_rule(self, request).await
    }

    async fn list_event_types(
        &self,
        _request: Request<pb::ListEventTypesRequest>,
    ) -> Result<Response<pb::ListEventTypesResponse>, Status> {
        Ok(Response::new(AlertingApi::list_event_types(self)))
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let body = request.into_inner();
        let limit = page_size(body.page_size, 50, 500)?;
        let filter = Filter {
            firing: match pb::AlertState::try_from(body.state) {
                Ok(pb::AlertState::Unspecified) => None,
                Ok(pb::AlertState::Firing) => Some(true),
                Ok(pb::AlertState::Resolved) => Some(false),
                Err(_) => return Err(Error::invalid("state", format!("{} is not an alert state", body.state)).into()),
            },
            source_id: if body.source_id.trim().is_empty() { None } else { Some(id("source_id", &body.source_id)?) },
        };
        let query = Query::builder(&format!("{SERVICE_NAME}/ListAlerts"))
            .field("state", body.state.to_string())
            .field("source_id", filter.source_id.map(|id| id.to_string()).unwrap_or_default())
            .build();
        let before = self.tokens.resume(&query, &body.page_token)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let mut records = alert_store::list(&mut conn, &filter, before, limit + 1).await?;
        let next_page_token = self.tokens.next_page(&query, &mut records, limit, |last| (last.starts_at, last.id))?;
        Ok(Response::new(pb::ListAlertsResponse { alerts: self.answer(&mut conn, &records).await?, next_page_token }))
    }

    async fn get_alert(&self, request: Request<pb::GetAlertRequest>) -> Result<Response<pb::Alert>, Status> {
        let alert_id = id("id", &request.get_ref().id)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let record = alert_store::get(&mut conn, alert_id, false).await?;
        let mut answered = self.answer(&mut conn, std::slice::from_ref(&record)).await?;
        Ok(Response::new(answered.remove(0)))
    }

    async fn acknowledge_alert(
        &self,
        request: Request<pb::AcknowledgeAlertRequest>,
    ) -> Result<Response<pb::Alert>, Status> {
        let caller = Caller::of(&request)?;
        let (alert_id, note) = noted(&request.get_ref().id, &request.get_ref().note)?;
        let mut tx = self.alerts_tx().await?;
        let acknowledged =
            alerts::acknowledge(&mut tx, alert_id, caller.principal.actor(), &note, self.clock.now()).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(alerts::to_proto(&acknowledged)))
    }

    async fn resolve_alert(&self, request: Request<pb::ResolveAlertRequest>) -> Result<Response<pb::Alert>, Status> {
        let caller = Caller::of(&request)?;
        let (alert_id, note) = noted(&request.get_ref().id, &request.get_ref().note)?;
        let mut tx = self.alerts_tx().await?;
        let current = alert_store::get(&mut tx, alert_id, true).await?;
        if current.source == "slo" {
            return Err(Error::FailedPrecondition {
                reason: "ALERT_RESOLVES_ITSELF",
                message: format!(
                    "alert {alert_id} belongs to an SLO and resolves when its burn rate falls; acknowledge it, or silence it in Alertmanager"
                ),
            }
            .into());
        }
        let resolved =
            alerts::resolve_by_hand(&mut tx, alert_id, caller.principal.actor(), &note, self.clock.now()).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(alerts::to_proto(&resolved)))
    }

    type WatchAlertsStream = AlertChanges;

    async fn watch_alerts(
        &self,
        request: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let types = [pb::AlertFired::full_name(), pb::AlertResolved::full_name(), pb::AlertAcknowledged::full_name()];
        let events = self.feed.watch(request.into_inner().after, types.to_vec()).await?;
        let changes = events.filter_map(|event| async move {
            match event {
                Ok(event) => match alert_change(&event) {
                    Ok(change) => change.map(Ok),
                    Err(error) => Some(Err(Status::internal(format!("an alert event did not decode: {error}")))),
                },
                Err(error) => Some(Err(Status::from(error))),
            }
        });
        Ok(Response::new(Box::pin(changes)))
    }

    async fn create_silence(
        &self,
        request: Request<pb::CreateSilenceRequest>,
    ) -> Result<Response<pb::Silence>, Status> {
        AlertingApi::create_silence(self, request).await
    }

    async fn list_silences(
        &self,
        request: Request<pb::ListSilencesRequest>,
    ) -> Result<Response<pb::ListSilencesResponse>, Status> {
        AlertingApi::list_silences(self, request).await
    }

    async fn expire_silence(
        &self,
        request: Request<pb::ExpireSilenceRequest>,
    ) -> Result<Response<pb::Silence>, Status> {
        AlertingApi::expire_silence(self, request).await
    }

    async fn create_webhook(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> Result<Response<pb::CreateWebhookResponse>, Status> {
        AlertingApi::create_webhook(self, request).await
    }

    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        AlertingApi::list_webhooks(self, request).await
    }

    async fn delete_webhook(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        AlertingApi::delete_webhook(self, request).await
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<pb::ListWebhookDeliveriesResponse>, Status> {
        AlertingApi::list_webhook_deliveries(self, request).await
    }

    async fn retry_webhook_delivery(
        &self,
        request: Request<pb::RetryWebhookDeliveryRequest>,
    ) -> Result<Response<pb::WebhookDelivery>, Status> {
        AlertingApi::retry_webhook_delivery(self, request).await
    }

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<SubscribeStream>, Status> {
        self.feed.subscribe(request)
    }

    async fn list_events(&self, request: Request<ListEventsRequest>) -> Result<Response<ListEventsResponse>, Status> {
        self.feed.list_events(request).await
    }
}
