//! `ImportContacts`: rows from a legacy system, one message (up to 5000
//! rows) at a time, each message committed atomically and answered with one
//! result per row, in order.
//!
//! A row whose external id exists updates that contact (the row's non-empty
//! values win, lists are unioned). Any other row is checked against the base
//! and the rows before it in the import (blocking keys and score, as for a
//! create) and, when it likely duplicates one, handled by the caller's
//! policy: merge into the match, skip, create and flag for review, or fail
//! the row. New contacts of a message are written in bulk.
//!
//! - [`parse`]: validation and blocking keys, in a task per message.
//! - [`decide`]: each row's fate, against the base, the batches in flight and
//!   the rows before it.
//! - [`window`]: the new contacts of the batches in flight.
//! - [`write`]: applying a decision in the batch's transaction.
//!
//! Up to [`PIPELINE`] messages are in flight: each is validated and reads
//! the base for its rows as soon as it arrives, decides its rows once the
//! message before it has decided (against what it read and the new contacts
//! of the messages before it, published in the window), then writes and
//! commits while the next one decides. A row folded
//! into a contact that an earlier message created waits for that message to
//! commit; changed contacts are locked in id order. The results are what
//! sending the messages one at a time would give.
//!
//! A dry run processes every message in one transaction that is rolled back
//! at the end, one message after the other, so its results (including rows
//! deduplicated against earlier rows of the same import) are exactly what a
//! real run would report; it writes nothing.

mod decide;
mod parse;
mod window;
mod write;

use std::{pin::Pin, sync::Arc};

use crm_platform::{Error, turn};
use crm_proto::contacts::v1 as pb;
use futures_util::{Stream, StreamExt};
use tonic::{Status, Streaming};

use crate::{
    store::{Actor, ContactStore},
    validate::Region,
};
use decide::Rules;
use window::Window;
use write::Author;

pub type ResultStream = Pin<Box<dyn Stream<Item = Result<pb::ImportContactsResponse, Status>> + Send>>;

/// Rows per message, at most. The bigger a message, the cheaper each row:
/// its blocking keys are probed, and its terms inserted, in one sorted
/// statement, and PostgreSQL's btree work per key falls as the keys grow
/// denser (a million rows: 14,001 rows/s in messages of 1,000, 16,516 in
/// messages of 5,000, 16,580 in messages of 10,000). A message of 5,000
/// typical rows is about 1.2 MB, under the 4 MB message limit.
pub const MAX_ROWS: usize = 5000;

/// Messages in flight at once. Four kept both cores busy at a million rows
/// (messages of 1,000 rows: 14,697 rows/s, against 14,142 with three and
/// 14,275 with six; of 5,000 rows: 16,516, against 15,949 with three; after
/// the other import changes of 2026-12-01 (to commit db44b51), 20,560-21,065 and 21,279 with five).
pub const PIPELINE: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Policy {
    Merge,
    Skip,
    CreateAndFlag,
    Fail,
}

/// How far a message has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Started,
    /// Its rows are decided and its new contacts published.
    Decided,
    /// It and every message before it committed (or ended).
    Committed,
}

type Turn = turn::Turn<Stage>;

/// One import stream's settings.
struct Importer {
    store: ContactStore,
    region: Region,
    rules: Rules,
    actor: Actor,
    note: String,
}

pub fn run(
    store: ContactStore,
    region: Region,
    actor: Actor,
    mut input: Streaming<pb::ImportContactsRequest>,
) -> ResultStream {
    Box::pin(async_stream::try_stream! {
        let Some(first) = input.message().await? else { return };
        let options = first.options.clone().ok_or_else(|| Error::invalid("options", "is required in the first message"))?;
        let policy = match pb::DuplicatePolicy::try_from(options.duplicate_policy) {
            Ok(pb::DuplicatePolicy::Merge) => Policy::Merge,
            Ok(pb::DuplicatePolicy::Skip) => Policy::Skip,
            Ok(pb::DuplicatePolicy::CreateAndFlag) => Policy::CreateAndFlag,
            Ok(pb::DuplicatePolicy::Fail) => Policy::Fail,
            _ => Err(Error::invalid("options.duplicate_policy", "must say what to do with a likely duplicate: merge, skip, create and flag, or fail"))?,
        };
        let source = options.source.trim().to_string();
        if source.chars().count() > 64 {
            Err(Error::invalid("options.source", "must be at most 64 characters"))?;
        }
        let note = if source.is_empty() { "import".to_string() } else { format!("import from {source}") };
        let rules = Rules { policy, threshold: store.threshold, model: store.matcher.current(), dry_run: options.dry_run };
        let importer = Arc::new(Importer { store, region, rules, actor, note });
        let messages = futures_util::stream::once(async { Ok(first) }).chain(input);
        let pool = importer.store.pool.clone();
        let mut results = if options.dry_run { importer.dry_run(messages) } else { importer.pipeline(messages) };
        let mut added = 0usize;
        while let Some(response) = results.next().await {
            let response = response?;
            added += response.results.iter().filter(|result| adds_a_contact(result.outcome())).count();
            yield response;
        }
        if !options.dry_run {
            tokio::spawn(tidy_after(pool, added));
        }
    })
}

/// Whether a row's outcome is a new contact.
fn adds_a_contact(outcome: pb::ImportOutcome) -> bool {
    matches!(outcome, pb::ImportOutcome::Created | pb::ImportOutcome::Flagged)
}

/// After an import that grew the base by a fifth or more (and at least
/// [`crm_platform::db::TIDY_AFTER`] contacts: `db::worth_tidying`), vacuums and analyses the role's tables at
/// once, in the background: autovacuum would get there minutes later, and
/// until then lookups ran on the statistics and visibility map of the base
/// before (at a million contacts, p99 2.9–3.9 ms at 1,000 lookups/s until a
/// manual `VACUUM ANALYZE`, under 2 ms after): [`crm_platform::db::tidy`].
async fn tidy_after(pool: sqlx::PgPool, added: usize) {
    if added < crm_platform::db::TIDY_AFTER {
        return; // not worth counting the base
    }
    let live: Result<i64, sqlx::Error> =
        sqlx::query_scalar("SELECT count(*) FROM contacts WHERE merged_into IS NULL").fetch_one(&pool).await;
    match live {
        Ok(live) if crm_platform::db::worth_tidying(added, live as usize) => {}
        Ok(_) => return,
        Err(error) => return tracing::warn!(%error, "counting contacts after an import failed"),
    }
    let tables: Result<Vec<String>, sqlx::Error> =
        sqlx::query_scalar("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()")
            .fetch_all(&pool)
            .await;
    match tables {
        Ok(tables) => crm_platform::db::tidy(&pool, &tables, "an import").await,
        Err(error) => tracing::warn!(%error, "listing the tables to vacuum after an import failed; autovacuum will"),
    }
}

impl Importer {
    /// Every message in flight in a task of its own, up to [`PIPELINE`], answered in order.
    fn pipeline(
        self: Arc<Self>,
        messages: impl Stream<Item = Result<pb::ImportContactsRequest, Status>> + Send + 'static,
    ) -> ResultStream {
        let window = Arc::new(Window::default());
        let mut turns = Turn::sequence(Stage::Started);
        let mut number = 0u64;
        let results = messages
            .map(move |message| {
                number += 1;
                window.start(number);
                let (importer, window, turn) = (self.clone(), window.clone(), turns());
                tokio::spawn(async move { importer.message(message, number, turn, &window).await })
            })
            .buffered(PIPELINE)
            .map(|joined| {
                joined.unwrap_or_else(|failure| {
                    Err(Error::Internal(anyhow::Error::new(failure).context("an import message failed")).into())
                })
            });
        Box::pin(results)
    }

    /// One message of a real import (see the module documentation).
    async fn message(
        &self,
        message: Result<pb::ImportContactsRequest, Status>,
        number: u64,
        mut turn: Turn,
        window: &Window,
    ) -> Result<pb::ImportContactsResponse, Status> {
        crm_platform::foreground::bulk_batch();
        let rows = parse::parse(checked(message?)?.rows, self.region);
        let mut tx = self.store.pool.begin().await.map_err(Error::from)?;
        // Read while the message before decides: the window has what the read may miss.
        let base = decide::read_base(&mut tx, &rows).await?;
        turn.after_previous(Stage::Decided).await;
        let in_flight = window.snapshot(number);
        let decision = decide::decide(&self.rules, base, rows, &in_flight);
        drop(in_flight);
        window.publish(number, decision.published());
        let mut retire = Retire { window, number, committed: false };
        turn.reach(Stage::Decided);
        if decision.absorbed.iter().any(|absorbed| absorbed.earlier) {
            // It changes a contact an earlier message created: wait until that exists.
            turn.after_previous(Stage::Committed).await;
        }
        // Its events stay out of the feed's live lane (single calls' changes go ahead of them).
        crm_platform::outbox::mark_bulk(&mut tx).await.map_err(Error::from)?;
        write::write(&mut tx, &decision, &self.author()).await?;
        tx.commit().await.map_err(Error::from)?;
        retire.committed = true;
        drop(retire);
        turn.after_previous(Stage::Committed).await;
        turn.reach(Stage::Committed);
        Ok(pb::ImportContactsResponse { results: decision.results })
    }

    /// A dry run: every message in one transaction, rolled back at the end.
    fn dry_run(
        self: Arc<Self>,
        messages: impl Stream<Item = Result<pb::ImportContactsRequest, Status>> + Send + 'static,
    ) -> ResultStream {
        Box::pin(async_stream::try_stream! {
            let mut tx = self.store.pool.begin().await.map_err(Error::from)?;
            futures_util::pin_mut!(messages);
            while let Some(message) = messages.next().await {
                let rows = parse::parse(checked(message?)?.rows, self.region);
                let base = decide::read_base(&mut tx, &rows).await?;
                let decision = decide::decide(&self.rules, base, rows, &[]);
                write::write(&mut tx, &decision, &self.author()).await?;
                yield pb::ImportContactsResponse { results: decision.results };
            }
            tx.rollback().await.map_err(Error::from)?;
        })
    }

    fn author(&self) -> Author<'_> {
        Author { actor: &self.actor, note: self.note.clone() }
    }
}

/// The message, if it holds no more than [`MAX_ROWS`] rows.
fn checked(message: pb::ImportContactsRequest) -> Result<pb::ImportContactsRequest, Error> {
    if message.rows.len() > MAX_ROWS {
        return Err(Error::invalid(
            "rows",
            format!("must have at most {MAX_ROWS} rows per message (got {})", message.rows.len()),
        ));
    }
    Ok(message)
}

/// Tells the window how a message ended: committed, or not (then its new
/// contacts leave the window at once).
struct Retire<'a> {
    window: &'a Window,
    number: u64,
    committed: bool,
}

impl Drop for Retire<'_> {
    fn drop(&mut self) {
        if self.committed {
            self.window.committed(self.number);
        } else {
            self.window.retire(self.number);
        }
    }
}
