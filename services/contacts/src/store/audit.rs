//! The audit trail: who changed what, when, under which request, with the
//! value of each changed field before and after (as JSON).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use crm_platform::{Error, timestamp::to_proto};
use crm_proto::contacts::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::{PgConnection, Row, types::Json};
use uuid::Uuid;

/// Who is making a change: the principal the gateway vouched for, and the request.
#[derive(Clone, Debug)]
pub struct Actor {
    pub actor: String,
    pub request_id: String,
}

impl Actor {
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Actor, Error> {
        let caller = crm_platform::principal::Caller::of(request)?;
        Ok(Actor { actor: caller.principal.actor().to_string(), request_id: caller.request_id })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: String,
    pub after: String,
}

fn render(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(text)) if text.is_empty() => String::new(),
        Some(serde_json::Value::Array(items)) if items.is_empty() => String::new(),
        Some(serde_json::Value::Object(map)) if map.is_empty() => String::new(),
        Some(serde_json::Value::Number(number)) if number.as_i64() == Some(0) => String::new(),
        Some(value) => value.to_string(),
    }
}

/// The fields whose value differs between `before` and `after`.
pub fn diff(
    before: &BTreeMap<String, serde_json::Value>,
    after: &BTreeMap<String, serde_json::Value>,
) -> Vec<FieldChange> {
    let mut fields: Vec<&String> = before.keys().chain(after.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter_map(|field| {
            let (was, is) = (render(before.get(field)), render(after.get(field)));
            (was != is).then(|| FieldChange { field: field.clone(), before: was, after: is })
        })
        .collect()
}

/// What an entry says changed.
pub enum Changes {
    /// Field by field, before and after (updates, merges).
    Fields(Vec<FieldChange>),
    /// A record created with these values: its JSON document as its row
    /// stores it, in the entry's `created` column. Kept as it is rather than
    /// as one before/after pair of escaped JSON text per field, which cost as
    /// much to build, store and parse as the contact itself; read back as
    /// exactly those pairs (from nothing to each non-empty value).
    Created(Box<RawValue>),
}

impl Changes {
    pub fn none() -> Changes {
        Changes::Fields(Vec::new())
    }

    /// The values of a new record.
    pub fn created(record: &impl Serialize) -> Result<Changes, Error> {
        serde_json::value::to_raw_value(record)
            .map(Changes::Created)
            .map_err(|error| Error::Internal(anyhow::Error::new(error).context("writing an audit entry")))
    }

    /// The `changes` and `created` columns of the entry.
    fn columns(&self) -> (Json<&[FieldChange]>, Option<Json<&RawValue>>) {
        match self {
            Changes::Fields(fields) => (Json(fields), None),
            Changes::Created(document) => (Json(&[][..]), Some(Json(&**document))),
        }
    }
}

/// The field changes of a stored entry: its `created` document, or its
/// `changes` (an array of field changes, or the older `{"created": document}`).
fn read_changes(
    changes: serde_json::Value,
    created: Option<serde_json::Value>,
) -> Result<Vec<FieldChange>, serde_json::Error> {
    let document = match (created, changes) {
        (Some(document), _) => document,
        (None, serde_json::Value::Object(mut object)) if object.contains_key("created") => {
            object.remove("created").unwrap_or_default()
        }
        (None, other) => return serde_json::from_value(other),
    };
    let fields = match document {
        serde_json::Value::Object(document) => document.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    Ok(diff(&BTreeMap::new(), &fields))
}

/// One entry to write.
pub struct Entry<'a> {
    pub resource_type: &'static str,
    pub resource_id: Uuid,
    pub action: &'static str,
    pub changes: Changes,
    pub note: String,
    pub actor: &'a Actor,
}

/// The trail of a merge of `resource_type`s: `merge` on the survivor (its
/// field changes, the losers named), `merged_into` on each loser.
pub fn merge_entries<'a>(
    resource_type: &'static str,
    survivor_id: Uuid,
    losers: &[Uuid],
    changes: Changes,
    actor: &'a Actor,
) -> Vec<Entry<'a>> {
    let names: Vec<String> = losers.iter().map(Uuid::to_string).collect();
    let merge = Entry {
        resource_type,
        resource_id: survivor_id,
        action: "merge",
        changes,
        note: format!("merged {}", names.join(", ")),
        actor,
    };
    std::iter::once(merge)
        .chain(losers.iter().map(|loser| Entry {
            resource_type,
            resource_id: *loser,
            action: "merged_into",
            changes: Changes::none(),
            note: format!("merged into {survivor_id}"),
            actor,
        }))
        .collect()
}

pub async fn record(tx: &mut PgConnection, entries: &[Entry<'_>]) -> Result<(), Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = entries.iter().map(|_| Uuid::now_v7()).collect();
    let types: Vec<&str> = entries.iter().map(|entry| entry.resource_type).collect();
    let resources: Vec<Uuid> = entries.iter().map(|entry| entry.resource_id).collect();
    let actions: Vec<&str> = entries.iter().map(|entry| entry.action).collect();
    let actors: Vec<&str> = entries.iter().map(|entry| entry.actor.actor.as_str()).collect();
    let requests: Vec<&str> = entries.iter().map(|entry| entry.actor.request_id.as_str()).collect();
    let (changes, created): (Vec<_>, Vec<_>) = entries.iter().map(|entry| entry.changes.columns()).unzip();
    let notes: Vec<&str> = entries.iter().map(|entry| entry.note.as_str()).collect();
    sqlx::query(
        "INSERT INTO audit_events (id, resource_type, resource_id, action, actor, request_id, changes, note, created)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::jsonb[],
                              $8::text[], $9::jsonb[])",
    )
    .bind(ids)
    .bind(types)
    .bind(resources)
    .bind(actions)
    .bind(actors)
    .bind(requests)
    .bind(changes)
    .bind(notes)
    .bind(created)
    .execute(tx)
    .await?;
    Ok(())
}

/// Up to `limit` entries of a resource older than `before`, newest first.
pub async fn list(
    conn: &mut sqlx::PgConnection,
    resource_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<pb::AuditEvent>, Error> {
    let rows = sqlx::query(
        "SELECT id, resource_type, resource_id, action, actor, request_id, time, changes, created, note FROM audit_events
         WHERE resource_id = $1 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
    )
    .bind(resource_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let changes = read_changes(row.try_get("changes")?, row.try_get("created")?)
                .map_err(|error| Error::Internal(anyhow::Error::new(error).context("reading audit changes")))?;
            let time: DateTime<Utc> = row.try_get("time")?;
            Ok(pb::AuditEvent {
                id: row.try_get::<Uuid, _>("id")?.to_string(),
                resource_type: row.try_get("resource_type")?,
                resource_id: row.try_get::<Uuid, _>("resource_id")?.to_string(),
                action: row.try_get("action")?,
                actor: row.try_get("actor")?,
                request_id: row.try_get("request_id")?,
                time: Some(to_proto(time)),
                changes: changes
                    .into_iter()
                    .map(|change| pb::FieldChange { field: change.field, before: change.before, after: change.after })
                    .collect(),
                note: row.try_get("note")?,
            })
        })
        .collect()
}

/// Erasure: the values of every change of these resources are wiped; which
/// fields changed, when, by whom and why stays. A creation's document
/// becomes the names of its non-empty fields (the ones it set; "empty" as
/// [`render`] has it: null, "", [], {} or 0).
pub async fn redact(tx: &mut PgConnection, resource_ids: &[Uuid]) -> Result<(), Error> {
    sqlx::query(
        "UPDATE audit_events SET created = NULL, changes = CASE
             WHEN created IS NULL AND jsonb_typeof(changes) = 'array' THEN coalesce((
                 SELECT jsonb_agg(jsonb_build_object('field', change->>'field', 'before', '', 'after', ''))
                 FROM jsonb_array_elements(changes) AS change), '[]')
             ELSE coalesce((
                 SELECT jsonb_agg(jsonb_build_object('field', f.key, 'before', '', 'after', '') ORDER BY f.key)
                 FROM jsonb_each(coalesce(created, changes->'created')) AS f
                 WHERE f.value NOT IN ('null', '\"\"', '[]', '{}', '0')), '[]')
             END
         WHERE resource_id = ANY($1)",
    )
    .bind(resource_ids)
    .execute(tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_creation_reads_back_as_one_change_per_non_empty_field() {
        let data =
            crate::model::ContactData { given_name: "Ann".into(), tags: vec!["vip".into()], ..Default::default() };
        let expected = diff(&BTreeMap::new(), &data.fields());
        let document = serde_json::to_value(&data).unwrap();
        assert_eq!(read_changes(serde_json::json!([]), Some(document.clone())).unwrap(), expected);
        // As entries written before the `created` column hold it.
        assert_eq!(read_changes(serde_json::json!({ "created": document }), None).unwrap(), expected);
        let fields = vec![FieldChange { field: "owner".into(), before: String::new(), after: "\"x\"".into() }];
        assert_eq!(read_changes(serde_json::to_value(&fields).unwrap(), None).unwrap(), fields);
    }

    #[test]
    fn diff_lists_only_changed_fields_with_before_and_after() {
        let before = BTreeMap::from([
            ("given_name".to_string(), serde_json::json!("Ann")),
            ("tags".to_string(), serde_json::json!([])),
        ]);
        let after = BTreeMap::from([
            ("given_name".to_string(), serde_json::json!("Anne")),
            ("tags".to_string(), serde_json::json!([])),
        ]);
        assert_eq!(
            diff(&before, &after),
            vec![FieldChange { field: "given_name".into(), before: "\"Ann\"".into(), after: "\"Anne\"".into() }]
        );
    }
}
