//! Webhooks: create (the URL checked against where webhooks may go, the
//! matchers with their position; the secret shown once), list, delete; the
//! delivery log, and sending a dead letter again.

use crm_platform::{
    Error,
    error::{Violations, quote},
    page_token::{Query, page_size},
    principal::Caller,
    timestamp::to_proto,
};
use crm_proto::alerting::v1::{self as pb, alerting_service_server::SERVICE_NAME};
use rand::RngCore;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{AlertingApi, MAX_NAME, duration, id};
use crate::{
    matchers,
    store::webhooks::{self as store, DeliveryRecord, WebhookRecord},
};

const MAX_URL: usize = 2000;
const STATES: [&str; 3] = ["pending", "delivered", "dead"];

fn to_proto_webhook(record: &WebhookRecord) -> pb::Webhook {
    pb::Webhook {
        id: record.id.to_string(),
        name: record.name.clone(),
        url: record.url.clone(),
        matchers: record.matchers.iter().map(matchers::to_proto).collect(),
        created_by: record.created_by.clone(),
        create_time: Some(to_proto(record.create_time)),
    }
}

fn to_proto_delivery(record: &DeliveryRecord) -> pb::WebhookDelivery {
    pb::WebhookDelivery {
        id: record.id.to_string(),
        webhook_id: record.webhook_id.to_string(),
        alert_id: record.alert_id.to_string(),
        status: record.status.clone(),
        state: record.state.clone(),
        attempts: record
            .attempts
            .iter()
            .map(|attempt| pb::DeliveryAttempt {
                time: Some(to_proto(attempt.time)),
                http_status: i32::from(attempt.http_status),
                latency: Some(duration(std::time::Duration::from_millis(attempt.latency_ms))),
                error: attempt.error.clone(),
            })
            .collect(),
        next_attempt_time: record.next_attempt_at.map(to_proto),
        create_time: Some(to_proto(record.create_time)),
    }
}

impl AlertingApi {
    pub(super) async fn create_webhook(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> Result<Response<pb::CreateWebhookResponse>, Status> {
        let caller = Caller::of(&request)?;
        let input = request.into_inner().webhook.ok_or_else(|| Error::invalid("webhook", "is required"))?;
        let mut violations = Violations::new();
        let name = violations.text("webhook.name", &input.name, 1, MAX_NAME);
        let url = violations.text("webhook.url", &input.url, 1, MAX_URL);
        if violations.is_empty()
            && let Err(problem) = self.webhooks.policy().check_url(&url).await
        {
            violations.add("webhook.url", problem);
        }
        let checked = matchers::check(&mut violations, "webhook.matchers", &input.matchers);
        violations.into_result()?;
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let record = WebhookRecord {
            id: Uuid::now_v7(),
            name,
            url,
            matchers: checked,
            secret: hex::encode(secret),
            created_by: caller.principal.actor().to_string(),
            create_time: self.clock.now(),
        };
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        store::insert(&mut conn, &record).await?;
        tracing::info!(webhook = %record.id, "webhook registered");
        Ok(Response::new(pb::CreateWebhookResponse {
            webhook: Some(to_proto_webhook(&record)),
            secret: record.secret.clone(),
        }))
    }

    pub(super) async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        let body = request.into_inner();
        let limit = page_size(body.page_size, 50, 500)?;
        let query = Query::builder(&format!("{SERVICE_NAME}/ListWebhooks")).build();
        let after = self.tokens.resume(&query, &body.page_token)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let mut records = store::list(&mut conn, after, limit + 1).await?;
        let next_page_token = self.tokens.next_page(&query, &mut records, limit, |last| last.id)?;
        Ok(Response::new(pb::ListWebhooksResponse {
            webhooks: records.iter().map(to_proto_webhook).collect(),
            next_page_token,
        }))
    }

    pub(super) async fn delete_webhook(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        let webhook_id = id("id", &request.get_ref().id)?;
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let deleted = store::delete(&mut tx, webhook_id, self.clock.now()).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(to_proto_webhook(&deleted)))
    }

    pub(super) async fn list_webhook_deliveries(
        &self,
        request: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<pb::ListWebhookDeliveriesResponse>, Status> {
        let body = request.into_inner();
        let webhook_id = id("webhook_id", &body.webhook_id)?;
        let state = match body.state.trim() {
            "" => None,
            known if STATES.contains(&known) => Some(known.to_string()),
            other => {
                return Err(
                    Error::invalid("state", format!("{} is not pending, delivered or dead", quote(other))).into()
                );
            }
        };
        let limit = page_size(body.page_size, 50, 500)?;
        let query = Query::builder(&format!("{SERVICE_NAME}/ListWebhookDeliveries"))
            .field("webhook_id", webhook_id.to_string())
            .field("state", state.clone().unwrap_or_default())
            .build();
        let before = self.tokens.resume(&query, &body.page_token)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let mut records = store::deliveries(&mut conn, webhook_id, state.as_deref(), before, limit + 1).await?;
        if records.is_empty() && body.page_token.is_empty() {
            // An unknown webhook is NOT_FOUND; a deleted one keeps its log.
            if !store::has_deliveries(&mut conn, webhook_id).await? {
                store::get(&mut conn, webhook_id).await?;
            }
        }
        let next_page_token = self.tokens.next_page(&query, &mut records, limit, |last| last.id)?;
        Ok(Response::new(pb::ListWebhookDeliveriesResponse {
            deliveries: records.iter().map(to_proto_delivery).collect(),
            next_page_token,
        }))
    }

    pub(super) async fn retry_webhook_delivery(
        &self,
        request: Request<pb::RetryWebhookDeliveryRequest>,
    ) -> Result<Response<pb::WebhookDelivery>, Status> {
        let delivery_id = id("id", &request.get_ref().id)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let retried = store::retry(&mut conn, delivery_id, self.clock.now()).await?;
        Ok(Response::new(to_proto_delivery(&retried)))
    }
}
