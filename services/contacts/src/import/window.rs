//! The new contacts of an import's batches that may not be committed yet.
//!
//! A batch decides its rows against the base and against the rows the
//! batches before it created. While those batches are still writing, their
//! contacts are not in the base yet: they are here, published by each batch
//! once it has decided and retired once it has committed. A batch takes its
//! snapshot of the window before it reads the base, so every earlier
//! contact is in one or the other (or both: the base wins).

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

/// The batches in flight, by their number in the import.
#[derive(Default)]
pub struct Window {
    batches: Mutex<BTreeMap<u64, Arc<Published>>>,
}

impl Window {
    /// The batches published and not yet retired.
    pub fn snapshot(&self) -> Vec<Arc<Published>> {
        self.batches.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values().cloned().collect()
    }

    pub fn publish(&self, batch: u64, published: Published) {
        self.batches.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(batch, Arc::new(published));
    }

    /// Forgets a batch that committed (or failed).
    pub fn retire(&self, batch: u64) {
        self.batches.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&batch);
    }
}
