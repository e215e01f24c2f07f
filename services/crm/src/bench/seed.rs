//! `--contacts N`: loads N synthetic people (the duplicate benchmark's
//! generator, no planted duplicates) through `ImportContacts` with
//! deduplication on, timed, next to a plain `COPY` of the same rows into a
//! scratch table in the same run; keeps a sample for the read operations.

use std::time::Instant;

use crm_contacts::matching::synthetic::Generator;
use crm_proto::{
    common::v1::ExternalId,
    contacts::v1::{
        DuplicatePolicy, ImportContactsRequest, ImportOptions, ImportOutcome, ImportRow,
        contacts_service_client::ContactsServiceClient,
    },
};
use sqlx::{Connection, PgConnection};

use super::transport::Transport;

/// As many as a message may hold (`ImportContacts`' limit): the cheapest per row.
const ROWS_PER_MESSAGE: usize = 5000;
const SAMPLE_SIZE: usize = 50_000;

/// What the read operations draw from.
#[derive(Default)]
pub struct Sample {
    pub ids: Vec<String>,
    pub emails: Vec<String>,
    pub phones: Vec<String>,
    pub external_ids: Vec<ExternalId>,
    pub names: Vec<String>,
    /// Every contact the import created (none when the sample was read from an install).
    pub created: Vec<uuid::Uuid>,
}

/// Imports `count` people and, when `database_url` is given, times a COPY of the same rows first.
pub async fn seed(transport: &Transport, database_url: Option<&str>, count: usize) -> anyhow::Result<Sample> {
    let mut generator = Generator::new(42);
    let mut rows = Vec::with_capacity(count);
    let mut sample = Sample::default();
    for n in 0..count {
        let mut contact = generator.next_record(0.0).contact.to_proto();
        contact.external_ids = vec![ExternalId { source: "bench".into(), id: format!("B{n}") }];
        if n % (count / SAMPLE_SIZE).max(1) == 0 {
            sample.emails.extend(contact.emails.first().map(|email| email.address.clone()));
            sample.phones.extend(contact.phones.first().map(|phone| phone.number.clone()));
            sample.external_ids.push(contact.external_ids[0].clone());
            sample.names.push(format!("{} {}", contact.given_name, contact.family_name));
        }
        rows.push(ImportRow { row_id: n.to_string(), contact: Some(contact) });
    }

    let copy_rate = match database_url {
        Some(url) => Some(copy_baseline(url, &rows).await?),
        None => None,
    };

    let started = Instant::now();
    let mut messages = Vec::new();
    for (index, chunk) in rows.chunks(ROWS_PER_MESSAGE).enumerate() {
        let options = (index == 0).then(|| ImportOptions {
            duplicate_policy: DuplicatePolicy::CreateAndFlag as i32,
            dry_run: false,
            source: "crm bench".into(),
        });
        messages.push(ImportContactsRequest { options, rows: chunk.to_vec() });
    }
    drop(rows);
    let mut contacts = ContactsServiceClient::new(transport.clone()).max_decoding_message_size(64 << 20);
    let mut results = contacts.import_contacts(tokio_stream::iter(messages)).await?.into_inner();
    let (mut created, mut flagged, mut failed) = (0usize, 0usize, 0usize);
    while let Some(response) = results.message().await? {
        for result in response.results {
            match result.outcome() {
                ImportOutcome::Created => created += 1,
                ImportOutcome::Flagged => flagged += 1,
                _ => failed += 1,
            }
            if result.outcome() == ImportOutcome::Created
                && let Ok(id) = uuid::Uuid::parse_str(&result.contact_id)
            {
                sample.created.push(id);
            }
            if sample.ids.len() < SAMPLE_SIZE && !result.contact_id.is_empty() && result.row_id.len() < 8 {
                sample.ids.push(result.contact_id);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let import_rate = count as f64 / elapsed;
    println!(
        "import: {count} contacts in {elapsed:.1}s = {import_rate:.0} rows/s with deduplication \
         ({created} created, {flagged} flagged as likely duplicates, {failed} other)"
    );
    if let Some(copy_rate) = copy_rate {
        println!("COPY of the same rows: {copy_rate:.0} rows/s; import / COPY = {:.2}", import_rate / copy_rate);
    }
    Ok(sample)
}

/// id, first email, first phone, first external id (source, id), name.
type StoredRow = (String, Option<String>, Option<String>, Option<String>, Option<String>, String);

/// A sample of the contacts already stored (a benchmark against a loaded install), leaving out
/// those `create_contact` made (machine-made names, not people to look up).
pub async fn sample_from(database_url: &str) -> anyhow::Result<Sample> {
    let mut conn = PgConnection::connect(database_url).await?;
    let rows: Vec<StoredRow> = sqlx::query_as(
        "SELECT id::text, data->'emails'->0->>'address', data->'phones'->0->>'number',
                data->'external_ids'->0->>'source', data->'external_ids'->0->>'id',
                concat_ws(' ', data->>'given_name', data->>'family_name')
         FROM contacts.contacts TABLESAMPLE SYSTEM (10)
         WHERE merged_into IS NULL AND delete_time IS NULL AND erase_time IS NULL
           AND coalesce(data->'emails'->0->>'address', '') NOT LIKE '%@bench.example'
         LIMIT 50000",
    )
    .fetch_all(&mut conn)
    .await?;
    let mut sample = Sample::default();
    for (id, email, phone, source, external_id, name) in rows {
        sample.ids.push(id);
        sample.emails.extend(email);
        sample.phones.extend(phone);
        if let (Some(source), Some(id)) = (source, external_id) {
            sample.external_ids.push(ExternalId { source, id });
        }
        sample.names.push(name);
    }
    Ok(sample)
}

/// Rows per second of a plain `COPY` of the rows (id, JSON document, search text) into a scratch table.
async fn copy_baseline(database_url: &str, rows: &[ImportRow]) -> anyhow::Result<f64> {
    let mut text = String::new();
    for row in rows {
        let contact = row.contact.as_ref().map(|contact| format!("{contact:?}")).unwrap_or_default();
        let escaped = contact.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n");
        text.push_str(&format!("{}\t{escaped}\n", uuid::Uuid::now_v7()));
    }
    let mut conn = PgConnection::connect(database_url).await?;
    sqlx::query("CREATE TEMP TABLE bench_copy (id uuid PRIMARY KEY, document text NOT NULL)")
        .execute(&mut conn)
        .await?;
    let started = Instant::now();
    let mut copy = conn.copy_in_raw("COPY bench_copy (id, document) FROM STDIN").await?;
    copy.send(text.as_bytes()).await?;
    copy.finish().await?;
    Ok(rows.len() as f64 / started.elapsed().as_secs_f64())
}
