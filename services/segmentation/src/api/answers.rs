//! Whole-base answers kept for a while. `GetCustomerMovement` and
//! `GetRevenueConcentration` read every purchase of the base (seconds at a
//! million customers), and the dashboards that ask them ask the same
//! questions over and over. An answer is computed the first time its
//! question is asked; for [`MAX_AGE`] it is answered as computed; after that
//! it is still answered at once while one recomputation runs behind it
//! (stale-while-revalidate, as HTTP caches do), so only the first ask of a
//! question waits. Callers asking a question whose first answer is being
//! computed wait for that one computation. A failed computation is not
//! kept: the next ask tries again. Every answer says when it was computed
//! (the periods and windows it covers end or are read then).
//!
//! Ages are read from the role's clock, so tests move time instead of
//! sleeping. Each replica keeps its own answers; at most [`MAX_QUESTIONS`]
//! questions are kept, the one asked longest ago leaving first.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Duration, Utc};
use futures_util::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use tonic::Status;

/// How long an answer is given without recomputing it behind.
pub const MAX_AGE: Duration = Duration::seconds(60);
/// The most questions kept at once.
pub const MAX_QUESTIONS: usize = 64;

type Pending<V> = Shared<BoxFuture<'static, Result<Arc<V>, Status>>>;

struct Slot<V> {
    /// The latest answer and when its computation started.
    latest: Option<(Arc<V>, DateTime<Utc>)>,
    /// The computation running for this question, if any.
    pending: Option<Pending<V>>,
    /// When the question was last asked.
    asked: DateTime<Utc>,
}

/// Answers to questions `K`, kept as described above.
pub struct Answers<K, V> {
    slots: Arc<Mutex<HashMap<K, Slot<V>>>>,
}

impl<K, V> Default for Answers<K, V> {
    fn default() -> Self {
        Answers { slots: Arc::default() }
    }
}

impl<K, V> Answers<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Send + Sync + 'static,
{
    /// The answer to `question` at `now`: kept, or computed by `compute`
    /// (which starts only when needed and runs to its end even when the
    /// caller goes away).
    pub async fn get<F>(&self, question: K, now: DateTime<Utc>, compute: F) -> Result<Arc<V>, Status>
    where
        F: Future<Output = Result<V, Status>> + Send + 'static,
    {
        let pending = {
            let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if !slots.contains_key(&question) && slots.len() >= MAX_QUESTIONS {
                let oldest = slots.iter().min_by_key(|(_, slot)| slot.asked).map(|(key, _)| key.clone());
                if let Some(oldest) = oldest {
                    slots.remove(&oldest);
                }
            }
            let slot = slots.entry(question.clone()).or_insert(Slot { latest: None, pending: None, asked: now });
            slot.asked = now;
            if let Some((answer, computed)) = &slot.latest {
                let answer = answer.clone();
                if now - *computed >= MAX_AGE && slot.pending.is_none() {
                    slot.pending = Some(self.start(question, now, compute));
                }
                return Ok(answer);
            }
            match &slot.pending {
                Some(pending) => pending.clone(),
                None => {
                    let pending = self.start(question, now, compute);
                    slot.pending = Some(pending.clone());
                    pending
                }
            }
        };
        pending.await
    }

    /// Runs `compute` on its own task; its answer replaces the latest when it succeeds.
    fn start<F>(&self, question: K, now: DateTime<Utc>, compute: F) -> Pending<V>
    where
        F: Future<Output = Result<V, Status>> + Send + 'static,
    {
        let slots = self.slots.clone();
        let task = tokio::spawn(async move {
            let outcome = compute.await.map(Arc::new);
            let mut slots = slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(slot) = slots.get_mut(&question) {
                slot.pending = None;
                if let Ok(answer) = &outcome {
                    slot.latest = Some((answer.clone(), now));
                }
            }
            outcome
        });
        async move {
            task.await.unwrap_or_else(|failed| Err(Status::internal(format!("the computation failed: {failed}"))))
        }
        .boxed()
        .shared()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A computation that counts how often it ran and answers that count
    /// (or fails while `fail` is set), after the `gate` opens.
    fn counted(
        runs: &Arc<AtomicUsize>,
        gate: &Arc<tokio::sync::Semaphore>,
        fail: bool,
    ) -> impl Future<Output = Result<usize, Status>> + Send + 'static {
        let (runs, gate) = (runs.clone(), gate.clone());
        async move {
            let _permit = gate.acquire().await.map_err(|_| Status::internal("closed"))?;
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            if fail { Err(Status::unavailable("down")) } else { Ok(run) }
        }
    }

    #[tokio::test]
    async fn kept_answers_are_given_at_once_and_refreshed_behind_after_their_age() {
        let answers: Answers<&str, usize> = Answers::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(tokio::sync::Semaphore::new(1000));
        let t0 = Utc::now();

        // The first ask computes; asks within the age get that answer without computing.
        assert_eq!(*answers.get("q", t0, counted(&runs, &open, false)).await.unwrap(), 1);
        let later = t0 + MAX_AGE - Duration::seconds(1);
        assert_eq!(*answers.get("q", later, counted(&runs, &open, false)).await.unwrap(), 1);
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        // Past the age: the old answer at once, one recomputation behind however many ask.
        let closed = Arc::new(tokio::sync::Semaphore::new(0));
        let stale = t0 + MAX_AGE;
        assert_eq!(*answers.get("q", stale, counted(&runs, &closed, false)).await.unwrap(), 1);
        assert_eq!(*answers.get("q", stale, counted(&runs, &closed, false)).await.unwrap(), 1);
        closed.add_permits(10);
        for _ in 0..100 {
            if runs.load(Ordering::SeqCst) == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        assert_eq!(*answers.get("q", stale, counted(&runs, &open, false)).await.unwrap(), 2);
        assert_eq!(runs.load(Ordering::SeqCst), 2, "one recomputation for the stale asks");

        // Another question is its own.
        assert_eq!(*answers.get("other", stale, counted(&runs, &open, false)).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn callers_of_a_question_being_computed_wait_for_one_computation_and_failures_are_not_kept() {
        let answers: Arc<Answers<u32, usize>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let now = Utc::now();
        let waiting: Vec<_> = (0..5)
            .map(|_| {
                let (answers, compute) = (answers.clone(), counted(&runs, &gate, false));
                tokio::spawn(async move { answers.get(7, now, compute).await })
            })
            .collect();
        tokio::task::yield_now().await;
        gate.add_permits(10);
        for waiter in waiting {
            assert_eq!(*waiter.await.unwrap().unwrap(), 1);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        let open = Arc::new(tokio::sync::Semaphore::new(10));
        let failed = answers.get(8, now, counted(&runs, &open, true)).await.unwrap_err();
        assert_eq!(failed.code(), tonic::Code::Unavailable);
        assert_eq!(*answers.get(8, now, counted(&runs, &open, false)).await.unwrap(), 3, "computed again");
    }

    #[tokio::test]
    async fn the_question_asked_longest_ago_leaves_first() {
        let answers: Answers<usize, usize> = Answers::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(tokio::sync::Semaphore::new(1000));
        let t0 = Utc::now();
        for question in 0..MAX_QUESTIONS {
            answers
                .get(question, t0 + Duration::milliseconds(question as i64), counted(&runs, &open, false))
                .await
                .unwrap();
        }
        // Question 0 asked again: 1 is now the oldest, and leaves for a new one.
        let now = t0 + Duration::seconds(1);
        answers.get(0, now, counted(&runs, &open, false)).await.unwrap();
        answers.get(MAX_QUESTIONS, now, counted(&runs, &open, false)).await.unwrap();
        let before = runs.load(Ordering::SeqCst);
        answers.get(0, now, counted(&runs, &open, false)).await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), before, "0 was kept");
        answers.get(1, now, counted(&runs, &open, false)).await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), before + 1, "1 had left");
    }
}
