//! Rules on customer events: create (validated field by field, the
//! condition with its position, the annotations against what the author may
//! read), get, list, delete; and the event types rules can name.

use std::time::Duration;

use crm_platform::{
    Error,
    error::{Violations, quote},
    page_token::{Query, page_size},
    principal::Caller,
    scope::allows,
    timestamp::to_proto,
};
use crm_proto::{
    alerting::v1::{self as pb, alerting_service_server::SERVICE_NAME},
    segmentation::v1 as seg,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{AlertingApi, MAX_DESCRIPTION, MAX_NAME, MAX_OWNER, duration, id};
use crate::{
    alerts,
    event_rules::{CompiledRule, catalogue::catalogue},
    matchers::is_label_name,
    store::{
        alerts::Pairs,
        rules::{self as store, RuleRecord},
    },
};

const MAX_EVENT_TYPES: usize = 20;
const MAX_PAIRS: usize = 20;
const MAX_LABEL_VALUE: usize = 200;
const SEVERITIES: [&str; 3] = ["page", "ticket", "info"];
/// Labels the server sets on every alert of a rule.
const RESERVED_LABELS: [&str; 4] = ["alertname", "severity", "rule_id", "contact_id"];
const MIN_RESOLVE_AFTER: Duration = Duration::from_secs(60);
const MAX_RESOLVE_AFTER: Duration = Duration::from_secs(366 * 24 * 3600);

fn pairs(
    violations: &mut Violations,
    field: &str,
    entries: &std::collections::HashMap<String, String>,
    max_value: usize,
    reserved: &[&str],
) -> Pairs {
    if entries.len() > MAX_PAIRS {
        violations.add(field, format!("must have at most {MAX_PAIRS} entries (got {})", entries.len()));
        return Pairs::new();
    }
    let mut kept = Pairs::new();
    for (name, value) in entries {
        let at = format!("{field}[{name}]");
        if !is_label_name(name) {
            violations.add(&at, "names are letters, digits and `_`, not starting with a digit");
        } else if reserved.contains(&name.as_str()) {
            violations.add(&at, format!("{} is set by the server", quote(name)));
        }
        kept.insert(name.clone(), violations.text(&at, value, 0, max_value));
    }
    kept
}

fn to_proto_rule(record: &RuleRecord) -> pb::AlertRule {
    pb::AlertRule {
        id: record.id.to_string(),
        name: record.name.clone(),
        owner: record.owner.clone(),
        description: record.description.clone(),
        event_types: record.event_types.clone(),
        condition: record.condition.clone(),
        severity: record.severity.clone(),
        labels: record.labels.iter().map(|(name, value)| (name.clone(), value.clone())).collect(),
        annotations: record.annotations.iter().map(|(name, value)| (name.clone(), value.clone())).collect(),
        resolve_after: record.resolve_after.map(duration),
        create_time: Some(to_proto(record.create_time)),
        created_by: record.created_by.clone(),
    }
}

impl AlertingApi {
    /// The feature catalogue's names, from segmentation (none when it cannot say: features are then not checked).
    async fn feature_names(&self) -> Option<Vec<String>> {
        let mut client = self.segmentation.clone()?;
        match client.list_features(seg::ListFeaturesRequest {}).await {
            Ok(found) => Some(found.into_inner().features.into_iter().map(|feature| feature.name).collect()),
            Err(status) => {
                tracing::warn!(%status, "segmentation did not list its features; a rule's feature names go unchecked");
                None
            }
        }
    }

    pub(super) async fn create_alert_rule(
        &self,
        request: Request<pb::CreateAlertRuleRequest>,
    ) -> Result<Response<pb::AlertRule>, Status> {
        let caller = Caller::of(&request)?;
        let input = request.into_inner().rule.ok_or_else(|| Error::invalid("rule", "is required"))?;
        let mut violations = Violations::new();
        let name = violations.text("rule.name", &input.name, 1, MAX_NAME);
        let owner = violations.text("rule.owner", &input.owner, 0, MAX_OWNER);
        let description = violations.text("rule.description", &input.description, 0, MAX_DESCRIPTION);
        let event_types: Vec<String> = violations
            .within("rule.event_types", &input.event_types, MAX_EVENT_TYPES)
            .iter()
            .map(|name| name.trim().to_string())
            .collect();
        if input.event_types.is_empty() {
            violations.add("rule.event_types", "must name at least one event type; ListEventTypes lists them");
        }
        let severity = match input.severity.trim() {
            "" => "ticket".to_string(),
            known if SEVERITIES.contains(&known) => known.to_string(),
            other => {
                violations.add("rule.severity", format!("{} is not page, ticket or info", quote(other)));
                String::new()
            }
        };
        let labels = pairs(&mut violations, "rule.labels", &input.labels, MAX_LABEL_VALUE, &RESERVED_LABELS);
        let annotations = pairs(&mut violations, "rule.annotations", &input.annotations, MAX_DESCRIPTION, &[]);
        let resolve_after = match input.resolve_after.map(Duration::try_from) {
            None => None,
            Some(Ok(after)) if (MIN_RESOLVE_AFTER..=MAX_RESOLVE_AFTER).contains(&after) => Some(after),
            Some(_) => {
                violations.add("rule.resolve_after", "must be 1 minute to 366 days, or unset (resolved by hand)");
                None
            }
        };
        let record = RuleRecord {
            id: Uuid::now_v7(),
            name,
            owner,
            description,
            event_types,
            condition: input.condition,
            severity,
            labels,
            annotations,
            resolve_after,
            created_by: caller.principal.actor().to_string(),
            create_time: chrono::DateTime::UNIX_EPOCH,
        };
        let features = self.feature_names().await;
        let compiled = match CompiledRule::compile(record.clone(), features.as_deref()) {
            Ok(compiled) => Some(compiled),
            Err(problems) => {
                for (field, problem) in problems {
                    violations.add(field, problem);
                }
                None
            }
        };
        violations.into_result()?;
        if let Some(compiled) = &compiled {
            let types = compiled.event_types();
            for (name, template) in &compiled.annotations {
                if let Some(missing) =
                    template.scopes(&types).into_iter().find(|scope| !allows(&caller.principal, *scope))
                {
                    return Err(Error::PermissionDenied(format!(
                        "annotation {} quotes data that needs {}, which this key does not have: quote contact_id instead, or have a key with {} write the rule",
                        quote(name),
                        missing.as_str(),
                        missing.as_str()
                    ))
                    .into());
                }
            }
        }
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        store::insert(&mut conn, &record).await?;
        Ok(Response::new(to_proto_rule(&store::get(&mut conn, record.id).await?)))
    }

    pub(super) async fn get_alert_rule(
        &self,
        request: Request<pb::GetAlertRuleRequest>,
    ) -> Result<Response<pb::AlertRule>, Status> {
        let rule_id = id("id", &request.get_ref().id)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        Ok(Response::new(to_proto_rule(&store::get(&mut conn, rule_id).await?)))
    }

    pub(super) async fn list_alert_rules(
        &self,
        request: Request<pb::ListAlertRulesRequest>,
    ) -> Result<Response<pb::ListAlertRulesResponse>, Status> {
        let body = request.into_inner();
        let limit = page_size(body.page_size, 50, 500)?;
        let query = Query::builder(&format!("{SERVICE_NAME}/ListAlertRules")).build();
        let after = self.tokens.resume(&query, &body.page_token)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let mut records = store::list(&mut conn, after, limit + 1).await?;
        let next_page_token =
            self.tokens.next_page(&query, &mut records, limit, |last| (last.name.clone(), last.id))?;
        Ok(Response::new(pb::ListAlertRulesResponse {
            rules: records.iter().map(to_proto_rule).collect(),
            next_page_token,
        }))
    }

    pub(super) async fn delete_alert_rule(
        &self,
        request: Request<pb::DeleteAlertRuleRequest>,
    ) -> Result<Response<pb::AlertRule>, Status> {
        let rule_id = id("id", &request.get_ref().id)?;
        let mut tx = self.alerts_tx().await?;
        let current = store::get(&mut tx, rule_id).await?;
        store::delete(&mut tx, rule_id).await?;
        alerts::resolve_all(&mut tx, rule_id, self.clock.now()).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(to_proto_rule(&current)))
    }

    pub(super) fn list_event_types(&self) -> pb::ListEventTypesResponse {
        pb::ListEventTypesResponse {
            event_types: catalogue()
                .all()
                .map(|event| pb::EventType {
                    name: event.name.clone(),
                    description: event.description.clone(),
                    fields: event.fields.clone(),
                })
                .collect(),
        }
    }
}
