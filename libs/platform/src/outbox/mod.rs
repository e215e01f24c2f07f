//! The transactional outbox and the event feed read from it.
//!
//! - [`append`] writes events in the caller's transaction, so an event exists
//!   if and only if the change that caused it committed.
//! - [`Feed`] reads them back in commit order and follows new ones, woken by
//!   NOTIFY within milliseconds of their commit.
//!
//! # Why the feed cannot lose an event
//! A sequence number is taken at insert, not at commit: transaction A may take
//! sequence 5 and commit after B has committed sequence 6. A reader that
//! handed out 6 and moved its cursor past it would never see 5. So the feed is
//! ordered by `(transaction_id, sequence)`, and a reader only takes rows whose
//! transaction id is below a horizon under which every transaction of this
//! database has finished (the snapshot's oldest running transaction of this
//! database, else its xmax), so no row can ever appear behind a cursor. The
//! cost: a long transaction in the same database holds the feed back until it
//! ends; one in another database of the cluster does not.

mod feed;
mod writer;

pub use feed::{Batch, Delivery, Feed, Position, is_wanted, shutting_down};
pub use writer::{NewEvent, append, mark_bulk, rewrite, wake, wake_after_commit};
