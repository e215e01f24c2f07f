//! Silences: create (matchers checked with their position; a silence of
//! everything refused), list, expire.

use chrono::{DateTime, Utc};
use crm_platform::{
    Error,
    error::Violations,
    page_token::{Query, page_size},
    principal::Caller,
    timestamp::{from_proto, to_proto},
};
use crm_proto::alerting::v1::{self as pb, alerting_service_server::SERVICE_NAME};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{AlertingApi, MAX_DESCRIPTION, id};
use crate::{
    matchers::{self, Compiled},
    store::silences::{self as store, SilenceRecord},
};

/// The longest a silence may last from now: a forgotten one must end.
const MAX_AHEAD: chrono::Duration = chrono::Duration::days(90);

fn state(silence: &SilenceRecord, now: DateTime<Utc>) -> &'static str {
    if silence.starts_at > now {
        "pending"
    } else if silence.ends_at > now {
        "active"
    } else {
        "expired"
    }
}

fn to_proto_silence(silence: &SilenceRecord, now: DateTime<Utc>) -> pb::Silence {
    pb::Silence {
        id: silence.id.to_string(),
        matchers: silence.matchers.iter().map(matchers::to_proto).collect(),
        starts_at: Some(to_proto(silence.starts_at)),
        ends_at: Some(to_proto(silence.ends_at)),
        comment: silence.comment.clone(),
        created_by: silence.created_by.clone(),
        state: state(silence, now).to_string(),
    }
}

/// A time field of the request: `None` when unset, a violation when not a valid time.
fn time(violations: &mut Violations, field: &str, value: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let value = value?;
    let parsed = from_proto(value);
    if parsed.is_none() {
        violations.add(field, "is not a valid time");
    }
    parsed
}

impl AlertingApi {
    pub(super) async fn create_silence(
        &self,
        request: Request<pb::CreateSilenceRequest>,
    ) -> Result<Response<pb::Silence>, Status> {
        let caller = Caller::of(&request)?;
        let input = request.into_inner().silence.ok_or_else(|| Error::invalid("silence", "is required"))?;
        let now = self.clock.now();
        let mut violations = Violations::new();
        let checked = matchers::check(&mut violations, "silence.matchers", &input.matchers);
        if input.matchers.is_empty() {
            violations.add("silence.matchers", "must have at least one matcher");
        } else if violations.is_empty() && !Compiled::new(checked.clone()).is_selective() {
            violations.add(
                "silence.matchers",
                "match every alert (each also matches an alert without the label); name what to silence, e.g. slo=\"Checkout\"",
            );
        }
        let starts_at = time(&mut violations, "silence.starts_at", input.starts_at.as_ref()).unwrap_or(now);
        match time(&mut violations, "silence.ends_at", input.ends_at.as_ref()) {
            None if input.ends_at.is_none() => violations.add("silence.ends_at", "is required"),
            None => {}
            Some(ends) if ends <= starts_at => violations.add("silence.ends_at", "must be after starts_at"),
            Some(ends) if ends > now + MAX_AHEAD => {
                violations.add("silence.ends_at", "must be at most 90 days from now")
            }
            Some(_) => {}
        }
        let comment = violations.text("silence.comment", &input.comment, 1, MAX_DESCRIPTION);
        violations.into_result()?;
        let silence = SilenceRecord {
            id: Uuid::now_v7(),
            matchers: checked,
            starts_at,
            ends_at: input.ends_at.as_ref().and_then(from_proto).unwrap_or(now),
            comment,
            created_by: caller.principal.actor().to_string(),
        };
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        store::insert(&mut conn, &silence, now).await?;
        Ok(Response::new(to_proto_silence(&silence, now)))
    }

    pub(super) async fn list_silences(
        &self,
        request: Request<pb::ListSilencesRequest>,
    ) -> Result<Response<pb::ListSilencesResponse>, Status> {
        let body = request.into_inner();
        let limit = page_size(body.page_size, 50, 500)?;
        let query = Query::builder(&format!("{SERVICE_NAME}/ListSilences"))
            .field("active_only", body.active_only.to_string())
            .build();
        let before = self.tokens.resume(&query, &body.page_token)?;
        let now = self.clock.now();
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let mut records = store::list(&mut conn, body.active_only.then_some(now), before, limit + 1).await?;
        let next_page_token = self.tokens.next_page(&query, &mut records, limit, |last| last.id)?;
        Ok(Response::new(pb::ListSilencesResponse {
            silences: records.iter().map(|silence| to_proto_silence(silence, now)).collect(),
            next_page_token,
        }))
    }

    pub(super) async fn expire_silence(
        &self,
        request: Request<pb::ExpireSilenceRequest>,
    ) -> Result<Response<pb::Silence>, Status> {
        let silence_id = id("id", &request.get_ref().id)?;
        let now = self.clock.now();
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        store::get(&mut conn, silence_id).await?;
        let expired = store::expire(&mut conn, silence_id, now).await?;
        Ok(Response::new(to_proto_silence(&expired, now)))
    }
}
