//! Recurring problems: the same pain point raised `count` times within
//! `window_days` for one contact raises `RecurringProblemDetected`, once per
//! window.

use crm_platform::{
    Error,
    outbox::{self, NewEvent},
};
use crm_proto::interactions::v1 as pb;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::model::InteractionRecord;

#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub count: i64,
    pub window_days: i32,
}

/// Checks the pain points of freshly stored interactions.
pub async fn check(
    tx: &mut PgConnection,
    stored: &[&InteractionRecord],
    rule: Rule,
    request_id: &str,
) -> Result<(), Error> {
    let mut pairs: Vec<(Uuid, String)> = stored
        .iter()
        .flat_map(|record| record.data.pain_points.iter().map(|point| (record.contact_id, point.clone())))
        .collect();
    pairs.sort();
    pairs.dedup();
    let mut events = Vec::new();
    for (contact_id, problem) in pairs {
        let (occurrences, ids): (i64, Vec<Uuid>) = sqlx::query_as(
            "SELECT count(*), coalesce(array_agg(id ORDER BY occurred_at), '{}') FROM interactions
             WHERE contact_id = $1 AND occurred_at > now() - make_interval(days => $3) AND data->'pain_points' ? $2",
        )
        .bind(contact_id)
        .bind(&problem)
        .bind(rule.window_days)
        .fetch_one(&mut *tx)
        .await?;
        if occurrences < rule.count {
            continue;
        }
        let raised = sqlx::query(
            "INSERT INTO recurring_problems (contact_id, problem, last_detected_at) VALUES ($1, $2, now())
             ON CONFLICT (contact_id, problem) DO UPDATE SET last_detected_at = now()
             WHERE recurring_problems.last_detected_at < now() - make_interval(days => $3)",
        )
        .bind(contact_id)
        .bind(&problem)
        .bind(rule.window_days)
        .execute(&mut *tx)
        .await?;
        if raised.rows_affected() == 1 {
            let event = pb::RecurringProblemDetected {
                contact_id: contact_id.to_string(),
                problem,
                occurrences,
                window_days: rule.window_days,
                interaction_ids: ids.iter().map(Uuid::to_string).collect(),
            };
            events.push(NewEvent::new("interaction", contact_id.to_string(), &event, request_id));
        }
    }
    outbox::append(tx, &events).await?;
    Ok(())
}
