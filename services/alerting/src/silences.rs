//! Silences in force: an alert whose labels match every matcher of an
//! active silence still fires and is listed, but no receiver hears of it.
//! An alert that fired under a silence is announced when the silence ends
//! (if it still fires then), and its resolution only if its firing was.

use chrono::{DateTime, Utc};
use crm_platform::Error;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    matchers::Compiled,
    store::{alerts::Pairs, silences as store},
};

/// The silences active at one moment, compiled.
pub struct Active {
    silences: Vec<(Uuid, Compiled)>,
}

impl Active {
    pub async fn load(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<Active, Error> {
        let silences = store::active(conn, now)
            .await?
            .into_iter()
            .map(|silence| (silence.id, Compiled::new(silence.matchers)))
            .collect();
        Ok(Active { silences })
    }

    /// The silences holding back an alert with `labels`.
    pub fn silencing(&self, labels: &Pairs) -> Vec<Uuid> {
        self.silences.iter().filter(|(_, matchers)| matchers.matches(labels)).map(|(id, _)| *id).collect()
    }

    /// Whether any silence holds back an alert with `labels`.
    pub fn holds(&self, labels: &Pairs) -> bool {
        self.silences.iter().any(|(_, matchers)| matchers.matches(labels))
    }
}
