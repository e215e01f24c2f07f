//! Writing what a batch decided, in its own transaction: the rows folded
//! into existing contacts (each contact locked, in id order, and changed as
//! it is now, not as it was when the batch decided), then the new contacts in
//! bulk with their audit entries (in one statement), external ids and
//! `ContactCreated` events.

use std::collections::HashMap;

use chrono::Utc;
use crm_platform::{
    Error, copy,
    outbox::{self, NewEvent},
};
use crm_proto::contacts::v1 as pb;
use sqlx::{PgConnection, types::Json};
use uuid::Uuid;

use super::decide::{Decision, NewContact, fold};
use crate::{
    model::{ContactData, ContactMeta, ContactRecord, ExternalId},
    store::{
        Actor, CONTACT_COLUMNS, LIVE, contact_record, contacts::write_update, integer_array, postgres_array, search,
        term_rows,
    },
    terms,
};

/// Who writes, for the audit trail.
pub struct Author<'a> {
    pub actor: &'a Actor,
    /// "import" or "import from <source>".
    pub note: String,
}

pub async fn write(tx: &mut PgConnection, decision: &Decision, author: &Author<'_>) -> Result<(), Error> {
    absorb(tx, decision, author).await?;
    insert(tx, &decision.created, author).await
}

/// Applies the rows folded into existing contacts, in the order they came.
async fn absorb(tx: &mut PgConnection, decision: &Decision, author: &Author<'_>) -> Result<(), Error> {
    if decision.absorbed.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<Uuid> = decision.absorbed.iter().map(|absorbed| absorbed.contact).collect();
    ids.sort();
    ids.dedup();
    // Locked in id order, so batches changing the same contacts wait for each other instead of deadlocking.
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = ANY($1) AND {LIVE} ORDER BY c.id FOR UPDATE OF c"
    )))
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut contacts: HashMap<Uuid, ContactRecord> = HashMap::new();
    for row in &rows {
        let record = contact_record(row)?;
        contacts.insert(record.meta.id, record);
    }
    for absorbed in &decision.absorbed {
        let Some(before) = contacts.get(&absorbed.contact) else {
            return Err(Error::Unavailable {
                message: format!(
                    "contact {} was merged, deleted or erased during the import; resend the batch",
                    absorbed.contact
                ),
                retry_after: std::time::Duration::from_millis(100),
            });
        };
        let after = fold(&before.data, &absorbed.row);
        if let Some(record) = write_update(
            tx,
            before,
            &after,
            before.meta.needs_review,
            absorbed.action,
            author.note.clone(),
            author.actor,
        )
        .await?
        {
            contacts.insert(absorbed.contact, record);
        }
    }
    Ok(())
}

/// Writes the new contacts in bulk.
async fn insert(tx: &mut PgConnection, created: &[NewContact], author: &Author<'_>) -> Result<(), Error> {
    if created.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = created.iter().map(|row| row.id).collect();
    let data: Vec<Json<&ContactData>> = created.iter().map(|row| Json(&*row.data)).collect();
    let stages: Vec<&str> = created.iter().map(|row| row.data.lifecycle_stage.as_str()).collect();
    let owners: Vec<&str> = created.iter().map(|row| row.data.owner.as_str()).collect();
    let tags: Vec<String> = created.iter().map(|row| postgres_array(&row.data.tags)).collect();
    let all_terms: Vec<Vec<i64>> = created.iter().map(all_terms).collect();
    let recorded: Vec<String> = all_terms.iter().map(|terms| integer_array(terms)).collect();
    let review: Vec<bool> = created.iter().map(|row| row.needs_review).collect();
    let entries: Vec<Uuid> = created.iter().map(|_| Uuid::now_v7()).collect();
    let notes: Vec<String> = created
        .iter()
        .map(|row| {
            if row.needs_review {
                format!("{}; likely duplicate, flagged for review", author.note)
            } else {
                author.note.clone()
            }
        })
        .collect();
    // Each new contact's audit entry (see `audit::Changes::Created`) holds
    // its document as its row stores it: copied from the row here rather
    // than sent and parsed twice.
    sqlx::query(
        "WITH inserted AS (
             INSERT INTO contacts (id, data, lifecycle_stage, owner, tags, terms, terms_version, needs_review)
             SELECT id, data, stage, owner, tags::text[], terms::bigint[], $7, review
             FROM unnest($1::uuid[], $2::jsonb[], $3::text[], $4::text[], $5::text[], $6::text[], $8::bool[])
                  AS t(id, data, stage, owner, tags, terms, review)
             RETURNING id, data)
         INSERT INTO audit_events (id, resource_type, resource_id, action, actor, request_id, changes, note, created)
         SELECT entry.id, 'contact', inserted.id, 'import_create', $9, $10, '[]', entry.note, inserted.data
         FROM unnest($11::uuid[], $1::uuid[], $12::text[]) AS entry(id, contact, note)
              JOIN inserted ON inserted.id = entry.contact
         ORDER BY entry.id",
    )
    .bind(&ids)
    .bind(&data)
    .bind(&stages)
    .bind(&owners)
    .bind(&tags)
    .bind(&recorded)
    .bind(terms::VERSION)
    .bind(&review)
    .bind(&author.actor.actor)
    .bind(&author.actor.request_id)
    .bind(&entries)
    .bind(&notes)
    .execute(&mut *tx)
    .await?;
    // COPY: a message's 50,000 terms go in a quarter cheaper than by `unnest`
    // (PostgreSQL stores a page of rows at a time; the index is the same work).
    let written = term_rows(created.iter().zip(&all_terms).map(|(row, all)| (row.id, all.as_slice())));
    copy::copy_in(&mut *tx, "COPY contact_terms (term, contact_id) FROM STDIN", &written, |row, (term, owner)| {
        row.plain(term).plain(owner);
    })
    .await?;
    let words: Vec<String> = created.iter().flat_map(|row| terms::words(&row.data)).collect();
    search::remember_words(tx, &words.iter().map(String::as_str).collect::<Vec<_>>()).await?;

    let externals: Vec<(&ExternalId, Uuid)> =
        created.iter().flat_map(|row| row.data.external_ids.iter().map(move |external| (external, row.id))).collect();
    if !externals.is_empty() {
        copy::copy_in(
            &mut *tx,
            "COPY contact_external_ids (source, external_id, contact_id) FROM STDIN",
            &externals,
            |row, (external, owner)| {
                row.text(&external.source).text(&external.id).plain(owner);
            },
        )
        .await?;
    }

    let now = Utc::now();
    let events: Vec<NewEvent> = created
        .iter()
        .map(|row| {
            let meta = ContactMeta {
                id: row.id,
                version: 1,
                create_time: now,
                update_time: now,
                delete_time: None,
                erase_time: None,
                merged_ids: Vec::new(),
                needs_review: row.needs_review,
            };
            let event =
                pb::ContactCreated { contact: Some(meta.to_proto(&row.data)), duplicate_override: row.needs_review };
            NewEvent::new("contact", row.id.to_string(), &event, &author.actor.request_id)
        })
        .collect();
    outbox::append(tx, &events).await?;
    Ok(())
}

/// A new contact's terms (`terms::all`, hashed): its blocking keys, known
/// already, and its search terms.
fn all_terms(contact: &NewContact) -> Vec<i64> {
    let mut all = terms::hashes(&terms::search(&contact.data));
    all.extend_from_slice(&contact.keys);
    all.sort_unstable();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::{self, synthetic::Generator};

    #[test]
    fn a_new_contacts_terms_are_all_its_terms_hashed() {
        let mut generator = Generator::new(7);
        for _ in 0..200 {
            let data = generator.next_record(0.3).contact;
            let keys = terms::hashes(&matching::keys(&data));
            let expected = terms::hashes(&terms::all(&data));
            let contact = NewContact { id: Uuid::nil(), data: data.into(), keys, needs_review: false };
            assert_eq!(all_terms(&contact), expected);
        }
    }
}
