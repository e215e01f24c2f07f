//! Spreading a burst's pure work (parsing and applying documents, writing
//! them out, deciding segments) over the machine's cores. A consumer's
//! transaction is one sequence of statements; between two of them the work
//! in hand is a map over independent contacts, which one core did alone
//! while the others idled (a backlog catch-up on two cores ran at half the
//! machine).

use crm_platform::foreground::lower_this_thread;

/// Below this many items the work stays on the calling thread (a live
/// feed's bursts are a few events: threads would cost more than they save).
const MIN_PARALLEL: usize = 256;

/// `f` over `items`, in order, on as many threads as the machine has cores
/// (scoped threads: nothing outlives the call, and the caller's thread
/// waits, as it would have worked).
pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if threads < 2 || items.len() < MIN_PARALLEL {
        return items.into_iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut items = items.into_iter();
    loop {
        let next: Vec<T> = items.by_ref().take(chunk).collect();
        if next.is_empty() {
            break;
        }
        chunks.push(next);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let mut chunks = chunks.into_iter();
        // The caller works on the first chunk itself.
        let first = chunks.next().unwrap_or_default();
        let handles: Vec<_> =
            chunks.map(|chunk| scope.spawn(move || chunk.into_iter().map(f).collect::<Vec<R>>())).collect();
        let mut out: Vec<R> = first.into_iter().map(f).collect();
        for handle in handles {
            // A panic in `f` is re-raised here, as it would have been inline.
            out.extend(handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        out
    })
}

/// Below this many items a sum stays on the calling thread.
const MIN_PARALLEL_SUM: usize = 10_000;

/// The sum of `f` over `items` cut into one chunk per core: a fitter's
/// likelihood over a whole base, a few hundred times a fit. The chunks
/// depend only on the count of items and of cores, so one machine adds the
/// same numbers in the same order every time.
pub fn sum<T: Sync>(items: &[T], f: impl Fn(&[T]) -> f64 + Sync) -> f64 {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if threads < 2 || items.len() < MIN_PARALLEL_SUM {
        return f(items);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let mut chunks = items.chunks(items.len().div_ceil(threads));
        let first = chunks.next().unwrap_or_default();
        let handles: Vec<_> = chunks.map(|chunk| scope.spawn(move || f(chunk))).collect();
        let mut total = f(first);
        for handle in handles {
            total += handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
        total
    })
}

/// `f` on a thread of its own at a lower scheduling priority, answered
/// when it ends: a whole-base computation (fitting lifetime value over a
/// million customers, counting co-purchases) then takes what the online
/// work (ingest, the feeds, calls) leaves of the cores instead of its
/// share of them (the fit on both cores at the usual priority slowed an
/// ingest beside it by a quarter). On Linux the priority is the thread's,
/// and the threads [`map`] starts from it inherit it; where it cannot be
/// lowered, the work runs at the usual one. A panic in `f` is an error.
pub async fn background<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> anyhow::Result<R> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("crm-background".into()).spawn(move || {
        lower_this_thread();
        let _ = answer.send(f());
    })?;
    answered.await.map_err(|_| anyhow::anyhow!("a background computation panicked"))
}

#[cfg(test)]
mod tests {
    fn own_priority() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[tokio::test]
    async fn background_work_runs_below_the_callers_priority_and_its_threads_too() {
        let caller = own_priority();
        let (own, spawned) = super::background(|| {
            let spawned = std::thread::scope(|scope| scope.spawn(own_priority).join().unwrap());
            (own_priority(), spawned)
        })
        .await
        .unwrap();
        assert!(own >= crm_platform::foreground::BACKGROUND_NICE.max(caller), "nice {own}, the caller's {caller}");
        assert_eq!(spawned, own, "threads started from it inherit its priority");
        assert_eq!(own_priority(), caller, "the caller's own priority is untouched");
        let panicked = super::background(|| -> i32 { panic!("a computation failed") }).await;
        assert!(panicked.is_err(), "a panic is an error, not a hang");
    }

    #[test]
    fn a_sum_covers_every_item_once() {
        for count in [0usize, 1, 9_999, 10_000, 10_001, 100_003] {
            let items: Vec<f64> = (0..count).map(|n| n as f64).collect();
            let total = super::sum(&items, |chunk| chunk.iter().sum());
            assert_eq!(total, (count * count.saturating_sub(1) / 2) as f64, "{count} items");
        }
    }

    #[test]
    fn the_order_and_every_item_are_kept() {
        for count in [0, 1, 255, 256, 257, 10_001] {
            let items: Vec<usize> = (0..count).collect();
            let doubled = super::map(items, |n| n * 2);
            assert_eq!(doubled, (0..count).map(|n| n * 2).collect::<Vec<_>>(), "{count} items");
        }
    }
}
