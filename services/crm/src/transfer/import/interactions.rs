//! `crm import interactions FILE`: an order history, billing export or
//! support system's dump through the gateway's `IngestInteractions`
//! stream (each batch committed and acknowledged).
//!
//! Each row names its contact by the suite's id, or by an email, phone or
//! id in the old system, which is looked up (`LookupContact`, sixteen at a
//! time) once per contact and remembered; a row whose contact nobody holds
//! is reported, not sent. Interactions are idempotent by (source, id), so a
//! rerun stores nothing twice: what was stored comes back as "already there".

use std::collections::HashMap;

use anyhow::Context;
use crm_proto::{
    contacts::v1::{LookupContactRequest, contacts_service_client::ContactsServiceClient, lookup_contact_request},
    interactions::v1::{
        IngestInteractionsRequest, Interaction, interactions_service_client::InteractionsServiceClient,
    },
};
use crm_transfer::interactions::{ContactKey, Field, InteractionOptions, to_interaction};
use futures_util::StreamExt;

use super::{Prepared, Started, spawn_reading};
use crate::{
    bench::transport::Transport,
    cli::ImportInteractions,
    transfer::report::{self, IngestCounts, Line, Tally},
};

/// Lookups in flight at once.
const LOOKUPS: usize = 16;
/// Contacts remembered; past this the memory is cleared (a client stays
/// under 200 MB whatever the file).
const REMEMBERED: usize = 200_000;

pub async fn run(args: ImportInteractions) -> anyhow::Result<()> {
    let input = &args.input;
    let options = format!("{:?}|{:?}|{:?}", args.contact_source, args.currency, args.channel);
    let Some(mut started) = super::start::<Field, IngestCounts>(input, false, &options)? else { return Ok(()) };
    let transport = Transport::with_key(&started.gateway, &started.key).await?;
    let source = started.source.clone();
    let row_options = InteractionOptions {
        contact_source: args.contact_source.clone().map_or_else(|| source.clone(), |name| name.to_lowercase()),
        source,
        default_currency: args.currency.clone().map(|code| code.to_uppercase()),
        default_channel: args.channel,
        date_order: input.date_order,
    };
    let mut contacts = Contacts {
        client: ContactsServiceClient::new(transport.clone()),
        known: HashMap::new(),
        runtime: tokio::runtime::Handle::current(),
    };
    let mut reading = spawn_reading(
        &mut started,
        input,
        move |mapping, record| to_interaction(mapping, record, &row_options),
        Box::new(move |rows| contacts.resolve(rows)),
    );
    let Started { mut ledger, mut progress, .. } = started;

    if let Some(rows) = reading.to_send().await {
        let stream = rows.map(|rows| {
            let batch_id = rows.first().map(|(line, _)| line.to_string()).unwrap_or_default();
            IngestInteractionsRequest { batch_id, interactions: rows.into_iter().map(|(_, row)| row).collect() }
        });
        let mut client = InteractionsServiceClient::new(transport)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let mut answers = super::opened(client.ingest_interactions(stream)).await?;
        while let Some(answer) = super::next_answer(&mut answers).await? {
            let batch = ledger
                .next_sent(&mut reading.batches)
                .await?
                .context("the suite answered a batch that was not sent")?;
            let mut lines = batch.unreadable;
            for (line, result) in batch.sent.iter().zip(&answer.results) {
                lines.extend(report::record_ingest(&mut ledger.counts, *line, result));
            }
            ledger.settle(lines, batch.last_line)?;
            progress.update(ledger.counts.rows());
        }
    }
    reading.finish(ledger, progress, "imported", &input.file).await
}

/// The contacts the rows name, looked up once each.
struct Contacts {
    client: ContactsServiceClient<Transport>,
    /// Key to contact id; `None`: nobody holds it.
    known: HashMap<ContactKey, Option<String>>,
    runtime: tokio::runtime::Handle,
}

impl Contacts {
    /// Gives each row its contact's id; rows whose contact nobody holds go
    /// to the report. Runs on the reading thread.
    fn resolve(&mut self, rows: Vec<(u64, (Interaction, ContactKey))>) -> anyhow::Result<Prepared<Interaction>> {
        if self.known.len() > REMEMBERED {
            self.known.clear();
        }
        let mut unknown: Vec<ContactKey> = rows
            .iter()
            .map(|(_, (_, key))| key)
            .filter(|key| !matches!(key, ContactKey::Id(_)) && !self.known.contains_key(*key))
            .cloned()
            .collect();
        unknown.sort_by_key(|key| format!("{key:?}"));
        unknown.dedup();
        let client = self.client.clone();
        let found = self.runtime.block_on(
            futures_util::stream::iter(unknown)
                .map(|key| {
                    let mut client = client.clone();
                    async move {
                        let lookup = match &key {
                            ContactKey::Email(email) => lookup_contact_request::Key::Email(email.clone()),
                            ContactKey::Phone(phone) => lookup_contact_request::Key::Phone(phone.clone()),
                            ContactKey::External(id) => lookup_contact_request::Key::ExternalId(id.clone()),
                            ContactKey::Id(id) => return Ok((key.clone(), Some(id.clone()))),
                        };
                        match client.lookup_contact(LookupContactRequest { key: Some(lookup) }).await {
                            Ok(contact) => Ok((key, Some(contact.into_inner().id))),
                            Err(status) if status.code() == tonic::Code::NotFound => Ok((key, None)),
                            Err(status) => Err(anyhow::anyhow!("{} ({:?})", status.message(), status.code()))
                                .context("looking up the rows' contacts; run the same command again to finish"),
                        }
                    }
                })
                .buffer_unordered(LOOKUPS)
                .collect::<Vec<anyhow::Result<(ContactKey, Option<String>)>>>(),
        );
        for outcome in found {
            let (key, id) = outcome?;
            self.known.insert(key, id);
        }
        let (mut ready, mut refused) = (Vec::with_capacity(rows.len()), Vec::new());
        for (line, (mut interaction, key)) in rows {
            let id = match &key {
                ContactKey::Id(id) => Some(id.clone()),
                other => self.known.get(other).cloned().flatten(),
            };
            match id {
                Some(id) => {
                    interaction.contact_id = id;
                    ready.push((line, interaction));
                }
                None => refused.push(Line {
                    line,
                    outcome: "no contact",
                    fields: "contact".into(),
                    reason: format!("no contact holds {}", describe(&key)),
                    ..Default::default()
                }),
            }
        }
        Ok((ready, refused))
    }
}

/// The key as the report names it (what the caller sent, nothing more).
fn describe(key: &ContactKey) -> String {
    match key {
        ContactKey::Id(id) => format!("id {id}"),
        ContactKey::Email(email) => format!("email {email}"),
        ContactKey::Phone(phone) => format!("phone {phone}"),
        ContactKey::External(id) => format!("id {} in {}", id.id, id.source),
    }
}
