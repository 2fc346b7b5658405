//! Calls that arrive together share one store transaction (`BeginApplication`,
//! `PrepareCard` and `FinishCard`, of any cards: `store::Store::card_steps`):
//! a store write costs about the same for one card as for thirty, so under
//! load the calls queue here and a runner takes them all at once. A call that
//! finds a runner free starts at once, so a lone caller waits for nothing but
//! its own write.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use store::Store;
use tokio::sync::oneshot;

use crate::error::RegistryError;

/// The most calls one transaction takes.
const MAX_BATCH: usize = 64;
/// Runners at once. One: while it writes and flushes, the next calls queue
/// and go together (two runners made smaller batches and fewer cards/s).
const RUNNERS: usize = 1;

/// The store function that does a batch: one answer per call, in order.
pub(crate) type RunBatch<J, R> = fn(&Store, &[J]) -> Vec<R>;

pub(crate) struct Batcher<J, R> {
    inner: Arc<Inner<J, R>>,
}

impl<J, R> Clone for Batcher<J, R> {
    fn clone(&self) -> Self {
        Batcher { inner: self.inner.clone() }
    }
}

struct Inner<J, R> {
    store: Store,
    run: RunBatch<J, R>,
    state: Mutex<State<J, R>>,
}

struct State<J, R> {
    queue: Vec<(J, oneshot::Sender<R>)>,
    runners: usize,
}

impl<J: Send + 'static, R: Send + 'static> Batcher<J, R> {
    pub(crate) fn new(store: Store, run: RunBatch<J, R>) -> Self {
        let state = Mutex::new(State { queue: Vec::new(), runners: 0 });
        Batcher { inner: Arc::new(Inner { store, run, state }) }
    }

    /// Queues the call and waits for its answer.
    pub(crate) async fn call(&self, job: J) -> Result<R, RegistryError> {
        self.call_many(vec![job]).await.pop().unwrap_or(Err(RegistryError::BatchLost))
    }

    /// Queues the calls together (one batch takes them in order, as far as
    /// `MAX_BATCH` allows) and waits for their answers, one each, in order.
    pub(crate) async fn call_many(&self, jobs: Vec<J>) -> Vec<Result<R, RegistryError>> {
        let mut waits = Vec::with_capacity(jobs.len());
        let start_runner = {
            let mut st = self.inner.lock();
            for job in jobs {
                let (answer, answered) = oneshot::channel();
                st.queue.push((job, answer));
                waits.push(answered);
            }
            let free = !waits.is_empty() && st.runners < RUNNERS;
            st.runners += usize::from(free);
            free
        };
        if start_runner {
            let inner = self.inner.clone();
            tokio::task::spawn_blocking(move || inner.drain());
        }
        let mut answers = Vec::with_capacity(waits.len());
        for answered in waits {
            answers.push(answered.await.map_err(|_| RegistryError::BatchLost));
        }
        answers
    }
}

impl<J, R> Inner<J, R> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<J, R>> {
        // The state is a queue and a count, consistent between statements.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs batches until the queue is empty.
    fn drain(&self) {
        loop {
            let taken: Vec<_> = {
                let mut st = self.lock();
                if st.queue.is_empty() {
                    st.runners -= 1;
                    return;
                }
                let n = st.queue.len().min(MAX_BATCH);
                st.queue.drain(..n).collect()
            };
            let (jobs, answers): (Vec<J>, Vec<_>) = taken.into_iter().unzip();
            // A panic drops this batch's answers (its callers get an error);
            // the runner goes on with the queue.
            if let Ok(results) = std::panic::catch_unwind(AssertUnwindSafe(|| (self.run)(&self.store, &jobs))) {
                for (answer, result) in answers.into_iter().zip(results) {
                    // The caller may have gone; its write stands all the same.
                    let _ = answer.send(result);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static BATCHES: AtomicUsize = AtomicUsize::new(0);

    fn slow_echo(_: &Store, jobs: &[u32]) -> Vec<u32> {
        BATCHES.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(20));
        jobs.iter().map(|j| j * 2).collect()
    }

    fn panics_on_seven(_: &Store, jobs: &[u32]) -> Vec<u32> {
        assert!(!jobs.contains(&7), "seven");
        jobs.to_vec()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_share_batches_and_each_gets_its_own_answer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let batcher = Batcher::new(store, slow_echo);
        let calls: Vec<_> = (0..64u32)
            .map(|n| {
                let b = batcher.clone();
                tokio::spawn(async move { (n, b.call(n).await.unwrap()) })
            })
            .collect();
        for call in calls {
            let (n, answer) = call.await.unwrap();
            assert_eq!(answer, n * 2);
        }
        let batches = BATCHES.load(Ordering::SeqCst);
        // Taken together while the runner is busy (each batch takes 20 ms).
        assert!((1..=16).contains(&batches), "64 calls in {batches} batches");
        // Alone, a call runs at once.
        assert_eq!(batcher.call(5).await.unwrap(), 10);
        // Several queued at once are answered each in its place.
        let answers: Vec<u32> = batcher.call_many(vec![1, 2, 3]).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, [2, 4, 6]);
        assert!(batcher.call_many(Vec::new()).await.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_batch_fails_its_calls_and_later_calls_still_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let batcher = Batcher::new(store, panics_on_seven);
        assert!(matches!(batcher.call(7).await, Err(RegistryError::BatchLost)));
        for n in 0..(RUNNERS as u32 + 2) {
            assert_eq!(batcher.call(n).await.unwrap(), n);
        }
    }
}
