//! The new contacts of an import's batches that may not be in the base a
//! later batch read.
//!
//! A batch decides its rows against the base and against the rows the
//! batches before it created. It reads the base while the batch before it
//! is still deciding (the reads of one batch overlap the decisions of the
//! one before), so contacts of earlier batches may be missing from what it
//! read: not written yet, or committed only after its read. They are here,
//! published by each batch once it has decided. A batch that fails leaves
//! at once; a batch that committed stays until every batch that started
//! before its commit (and so may have read the base before it) has taken
//! its snapshot. Every earlier contact is then in the base a batch read or
//! in its snapshot (or both: the base wins).
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use uuid::Uuid;

use crate::model::{ContactData, ExternalId};

/// What one batch created: its new contacts, by blocking key and by external id.
#[derive(Default)]
pub struct Published {
    pub contacts: Vec<(Uuid, Arc<ContactData>)>,
    /// Blocking key (its hash) -> positions in `contacts`.
    pub keys: HashMap<i64, Vec<usize>>,
    /// External id -> position in `contacts`.
    pub externals: HashMap<ExternalId, usize>,
}

impl Published {
    pub fn add(&mut self, id: Uuid, data: Arc<ContactData>, keys: &[i64]) {
        let at = self.contacts.len();
        for key in keys {
            self.keys.entry(*key).or_default().push(at);
        }
        for external in &data.external_ids {
            self.externals.insert(external.clone(), at);
        }
        self.contacts.push((id, data));
    }
}

/// The batches published, by their number in the import.
#[derive(Default)]
pub struct Window {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    batches: BTreeMap<u64, Batch>,
    /// The number of the last batch started.
    started: u64,
}

struct Batch {
    published: Arc<Published>,
    /// Once it committed: the last batch started by then. Batches after
    /// that one started after the commit and read it in the base.
    committed_while: Option<u64>,
}

impl Window {
    /// Batch `batch` started: it may read the base from now on.
    pub fn start(&self, batch: u64) {
        let mut state = self.lock();
        state.started = state.started.max(batch);
    }

    /// The batches published before `batch` and still needed. Taken by
    /// each batch in turn, after the one before it has published; the
    /// committed batches every batch up to this one has now seen leave.
    pub fn snapshot(&self, batch: u64) -> Vec<Arc<Published>> {
        let mut state = self.lock();
        let seen = state.batches.range(..batch).map(|(_, earlier)| earlier.published.clone()).collect();
        state.batches.retain(|_, earlier| earlier.committed_while.is_none_or(|last| last > batch));
        seen
    }

    pub fn publish(&self, batch: u64, published: Published) {
        self.lock().batches.insert(batch, Batch { published: Arc::new(published), committed_while: None });
    }

    /// A batch committed: it stays for the batches that started before.
    pub fn committed(&self, batch: u64) {
        let mut state = self.lock();
        let started = state.started;
        if let Some(committed) = state.batches.get_mut(&batch) {
            committed.committed_while = Some(started);
        }
    }

    /// Forgets a batch that failed: nothing of it was written.
    pub fn retire(&self, batch: u64) {
        self.lock().batches.remove(&batch);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(id: u128) -> Published {
        let mut published = Published::default();
        published.add(Uuid::from_u128(id), Arc::new(ContactData::default()), &[id as i64]);
        published
    }

    fn ids(snapshot: &[Arc<Published>]) -> Vec<u128> {
        snapshot.iter().map(|published| published.contacts[0].0.as_u128()).collect()
    }

    #[test]
    fn a_committed_batch_stays_until_the_batches_started_before_its_commit_have_seen_it() {
        let window = Window::default();
        for number in 1..=3 {
            window.start(number);
        }
        window.publish(1, batch(1));
        window.committed(1); // batches 2 and 3 may have read the base before this
        assert_eq!(ids(&window.snapshot(2)), [1]);
        window.publish(2, batch(2));
        window.start(4); // reads the base after batch 1's commit
        assert_eq!(ids(&window.snapshot(3)), [1, 2], "batch 3 started before batch 1 committed");
        window.publish(3, batch(3));
        assert_eq!(ids(&window.snapshot(4)), [2, 3], "batch 4 read batch 1 in the base");
    }

    #[test]
    fn a_failed_batch_leaves_at_once_and_later_batches_are_not_shown_to_earlier_ones() {
        let window = Window::default();
        window.start(1);
        window.start(2);
        window.publish(1, batch(1));
        window.retire(1);
        window.publish(3, batch(3));
        assert!(window.snapshot(2).is_empty());
    }
}
