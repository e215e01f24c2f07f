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

/// Checks the pain points of freshly stored interactions (visible to `tx`),
/// in two statements whatever the size of the batch: count each (contact,
/// pain point) within the window, then mark the ones at the threshold as
/// raised unless they were within the window already.
pub async fn check(
    tx: &mut PgConnection,
    stored: &[&InteractionRecord],
    rule: Rule,
    request_id: &str,
) -> Result<(), Error> {
    let mut pairs: Vec<(Uuid, &str)> = stored
        .iter()
        .flat_map(|record| record.data.pain_points.iter().map(|point| (record.contact_id, point.as_str())))
        .collect();
    if pairs.is_empty() {
        return Ok(());
    }
    pairs.sort();
    pairs.dedup();
    let counted: Vec<(Uuid, String, i64, Vec<Uuid>)> = sqlx::query_as(
        "SELECT p.contact_id, p.problem, count(*), array_agg(i.id ORDER BY i.occurred_at, i.id)
         FROM unnest($1::uuid[], $2::text[]) AS p(contact_id, problem)
         JOIN interactions i ON i.contact_id = p.contact_id
              AND i.occurred_at > now() - make_interval(days => $3) AND i.data->'pain_points' ? p.problem
         GROUP BY p.contact_id, p.problem
         HAVING count(*) >= $4",
    )
    .bind(pairs.iter().map(|(contact, _)| *contact).collect::<Vec<_>>())
    .bind(pairs.iter().map(|(_, problem)| *problem).collect::<Vec<_>>())
    .bind(rule.window_days)
    .bind(rule.count)
    .fetch_all(&mut *tx)
    .await?;
    if counted.is_empty() {
        return Ok(());
    }
    let mut recurring: Vec<(Uuid, String, i64, Vec<Uuid>)> = counted;
    recurring.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let raised: Vec<(Uuid, String)> = sqlx::query_as(
        "INSERT INTO recurring_problems (contact_id, problem, last_detected_at)
         SELECT c, p, now() FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS t(c, p, n) ORDER BY n
         ON CONFLICT (contact_id, problem) DO UPDATE SET last_detected_at = now()
         WHERE recurring_problems.last_detected_at < now() - make_interval(days => $3)
         RETURNING contact_id, problem",
    )
    .bind(recurring.iter().map(|(contact, ..)| *contact).collect::<Vec<_>>())
    .bind(recurring.iter().map(|(_, problem, ..)| problem.as_str()).collect::<Vec<_>>())
    .bind(rule.window_days)
    .fetch_all(&mut *tx)
    .await?;
    let raised: std::collections::HashSet<(Uuid, String)> = raised.into_iter().collect();
    let events: Vec<NewEvent> = recurring
        .into_iter()
        .filter(|(contact_id, problem, ..)| raised.contains(&(*contact_id, problem.clone())))
        .map(|(contact_id, problem, occurrences, ids)| {
            let event = pb::RecurringProblemDetected {
                contact_id: contact_id.to_string(),
                problem,
                occurrences,
                window_days: rule.window_days,
                interaction_ids: ids.iter().map(Uuid::to_string).collect(),
            };
            NewEvent::new("interaction", contact_id.to_string(), &event, request_id)
        })
        .collect();
    outbox::append(tx, &events).await?;
    Ok(())
}
