//! Turns: the order of the batches of one bulk stream whose work overlaps.
//!
//! A bulk stream (an ingest, an import) keeps several batches in flight so
//! that the role's and the database's work overlap on the machine's cores.
//! Some stages of a batch must still come after the same stage of the batch
//! before it (claiming idempotency keys, deciding duplicates, an invoice
//! before its payment). Each batch gets a [`Turn`]: it announces the stages
//! it reaches, and waits until the batch before it has reached a stage. A
//! batch that ends early (an error, a panic) drops its turn, which counts as
//! having reached every stage: the batches after it go on, and the stream
//! reports the failure.

use tokio::sync::watch;

/// A batch's place in its stream. `S` is the stream's ordered set of stages.
pub struct Turn<S> {
    previous: Option<watch::Receiver<S>>,
    own: watch::Sender<S>,
    /// No other batch waits on this one (a single call, not a stream).
    alone: bool,
}

impl<S: Copy + Ord + Send + Sync + 'static> Turn<S> {
    /// The turn of a batch that waits for nothing and that nothing waits for.
    pub fn alone(start: S) -> Turn<S> {
        Turn { previous: None, own: watch::channel(start).0, alone: true }
    }

    /// Hands out the turns of consecutive batches of one stream, each after the one before.
    pub fn sequence(start: S) -> impl FnMut() -> Turn<S> + Send {
        let mut last: Option<watch::Receiver<S>> = None;
        move || {
            let (own, follower) = watch::channel(start);
            Turn { previous: last.replace(follower), own, alone: false }
        }
    }

    /// Waits until the batch before has reached `stage`, or ended.
    pub async fn after_previous(&mut self, stage: S) {
        if let Some(previous) = &mut self.previous {
            // An error means the batch before ended (its sender is gone): go ahead.
            let _ = previous.wait_for(|reached| *reached >= stage).await;
        }
    }

    /// Announces that this batch has reached `stage`.
    pub fn reach(&self, stage: S) {
        self.own.send_replace(stage);
    }

    /// The last stage this batch announced.
    pub fn reached(&self) -> S {
        *self.own.borrow()
    }

    /// Whether no batch waits on this one.
    pub fn is_alone(&self) -> bool {
        self.alone
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    enum Stage {
        Started,
        Half,
        Done,
    }

    #[tokio::test]
    async fn a_batch_waits_for_the_stage_of_the_one_before() {
        let mut turns = Turn::sequence(Stage::Started);
        let first = turns();
        let mut second = turns();
        let waiting = tokio::spawn(async move {
            second.after_previous(Stage::Half).await;
            second
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the first batch has not reached Half");
        first.reach(Stage::Half);
        let mut second = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert_eq!(first.reached(), Stage::Half);
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second.after_previous(Stage::Done))
            .await
            .expect("a batch that ended counts as done");
        assert!(!second.is_alone() && Turn::alone(Stage::Started).is_alone());
    }
}
