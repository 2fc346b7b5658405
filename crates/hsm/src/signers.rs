//! The threads that run HSM signatures: a fixed few, fed from one queue.
//!
//! A burst of signatures through tokio's blocking pool becomes one thread per
//! signature, time-sliced on the cores: a software HSM then spends a good
//! part of the CPU switching between them. Here `threads` signers (by default
//! one per core) take signatures back to back. For an HSM on the network,
//! where a signature is mostly waiting, give it more threads. Callers bound
//! the queue with their own in-flight limits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use crate::HsmError;

/// A call: runs on a signing thread and gives back how to hand its answer over.
type Job = Box<dyn FnOnce() -> Delivery + Send>;
type Delivery = Box<dyn FnOnce() + Send>;

/// Calls a thread takes from the queue at once when several wait and no
/// other signing thread is free. Their answers are handed over together after
/// the last, so an async caller's thread is woken once for them instead of
/// once each: under load those wake-ups cost a software HSM about a tenth of
/// its signing rate. With a thread free, calls still run side by side (a
/// card's two signatures at once).
const BATCH: usize = 8;

pub struct Signers {
    queue: Mutex<mpsc::Sender<Job>>,
    threads: usize,
}

impl Signers {
    /// `threads` signing threads (0: one per core), named `<name>-<i>`.
    pub fn new(name: &str, threads: usize) -> Signers {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        // Threads not running a job (starting, or waiting for the queue or its lock).
        let free = Arc::new(AtomicUsize::new(threads));
        let mut started = 0;
        for i in 0..threads {
            let (rx, free, counted) = (rx.clone(), free.clone(), free.clone());
            let spawned = std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || loop {
                let mut batch = Vec::with_capacity(BATCH);
                {
                    // The lock is held only to take the next jobs.
                    let rx = rx.lock().unwrap_or_else(PoisonError::into_inner);
                    let first = rx.recv();
                    free.fetch_sub(1, Ordering::SeqCst);
                    match first {
                        Ok(job) => batch.push(job),
                        Err(_) => return,
                    }
                    while batch.len() < BATCH && free.load(Ordering::SeqCst) == 0 {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                }
                // A panicking job fails its own caller (its answer channel drops), not the thread.
                let delivered: Vec<Delivery> = batch
                    .into_iter()
                    .filter_map(|job| std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).ok())
                    .collect();
                // Free before any caller hears back: a caller that then queues
                // two calls must find this thread free, not batch them.
                free.fetch_add(1, Ordering::SeqCst);
                for deliver in delivered {
                    deliver();
                }
            });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => {
                    counted.fetch_sub(1, Ordering::SeqCst);
                    tracing::error!(error = %e, "cannot start a signing thread")
                }
            }
        }
        Signers { queue: Mutex::new(tx), threads: started }
    }

    /// The threads running.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` (an HSM call) on a signing thread and returns what it returns.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, HsmError> {
        self.start(f)?.wait().await
    }

    /// Queues `f` at once (so several calls can run side by side); its
    /// answer is [`Pending::wait`].
    pub fn start<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<Pending<T>, HsmError> {
        if self.threads == 0 {
            return Err(HsmError::Signers("no signing thread could be started"));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let answer = f();
            Box::new(move || {
                let _ = tx.send(answer);
            })
        });
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .map_err(|_| HsmError::Signers("the signing threads are gone"))?;
        Ok(Pending(rx))
    }
}

/// A call queued by [`Signers::start`].
pub struct Pending<T>(tokio::sync::oneshot::Receiver<T>);

impl<T> Pending<T> {
    /// What the call returned, once it has run.
    pub async fn wait(self) -> Result<T, HsmError> {
        self.0.await.map_err(|_| HsmError::Signers("a signing job panicked"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_threads_and_a_panic_fails_only_its_own() {
        let signers = Signers::new("test-sign", 2);
        assert_eq!(signers.threads(), 2);
        let name = signers.run(|| std::thread::current().name().map(str::to_owned)).await.unwrap();
        assert!(name.is_some_and(|n| n.starts_with("test-sign-")));
        assert!(matches!(signers.run(|| -> u8 { panic!("boom") }).await, Err(HsmError::Signers(_))));
        let mut total = 0;
        for i in 0..32u64 {
            total += signers.run(move || i).await.unwrap();
        }
        assert_eq!(total, (0..32).sum::<u64>());
    }

    /// With a thread free, two calls queued together run side by side (a
    /// card's two signatures), not one after the other on one thread.
    #[tokio::test]
    async fn with_a_thread_free_two_calls_run_at_once() {
        use std::sync::mpsc::channel;
        use std::time::Duration;
        let signers = Signers::new("test-pair", 2);
        for _ in 0..20 {
            let (to_b, from_a) = channel::<()>();
            let (to_a, from_b) = channel::<()>();
            let a = signers
                .start(move || {
                    to_b.send(()).ok();
                    from_b.recv_timeout(Duration::from_secs(5)).is_ok()
                })
                .unwrap();
            let b = signers
                .start(move || {
                    to_a.send(()).ok();
                    from_a.recv_timeout(Duration::from_secs(5)).is_ok()
                })
                .unwrap();
            assert!(a.wait().await.unwrap() && b.wait().await.unwrap(), "the two calls did not overlap");
        }
    }

    /// Many calls at once on busy threads (taken in batches): every caller
    /// gets its own answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_load_every_caller_gets_its_own_answer() {
        let signers = Arc::new(Signers::new("test-load", 2));
        let pending: Vec<_> = (0..500u64)
            .map(|i| {
                signers
                    .start(move || {
                        std::thread::sleep(std::time::Duration::from_micros(50));
                        i * 3
                    })
                    .unwrap()
            })
            .collect();
        for (i, p) in pending.into_iter().enumerate() {
            assert_eq!(p.wait().await.unwrap(), i as u64 * 3);
        }
    }
}
