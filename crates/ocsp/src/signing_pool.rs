//! The threads that sign cache misses: a fixed few, fed from one queue.
//!
//! A burst of misses through tokio's blocking pool becomes one thread per
//! signature, time-sliced on the cores: a software HSM then spends a good
//! part of the CPU switching between them. Here `threads` signers (by default
//! one per core, `[ocsp] signing_threads`) take signatures back to back. The
//! queue is bounded by the in-flight permits the jobs carry. For an HSM on
//! the network, where a signature is mostly waiting, give it more threads.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::OcspError;

type Job = Box<dyn FnOnce() + Send>;

pub struct SigningPool {
    queue: Mutex<mpsc::Sender<Job>>,
    threads: usize,
}

impl SigningPool {
    /// `threads` signers (0: one per core).
    pub fn new(threads: usize) -> SigningPool {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("ocsp-sign-{i}")).spawn(move || loop {
                // The lock is held only to take the next job.
                let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                match job {
                    // A panicking job fails its own request (its answer channel drops), not the thread.
                    Ok(job) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))),
                    Err(_) => return,
                }
            });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::error!(error = %e, "cannot start an OCSP signing thread"),
            }
        }
        SigningPool { queue: Mutex::new(tx), threads: started }
    }

    #[cfg(test)]
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on a signing thread and returns what it returns.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, OcspError> {
        if self.threads == 0 {
            return tokio::task::spawn_blocking(f).await.map_err(OcspError::task("signing"));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .map_err(|_| OcspError::Internal("the signing threads are gone".into()))?;
        rx.await.map_err(|_| OcspError::Internal("a signing job panicked".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_pool_and_a_panic_fails_only_its_own() {
        let pool = SigningPool::new(2);
        assert_eq!(pool.threads(), 2);
        let name = pool.run(|| std::thread::current().name().map(str::to_owned)).await.unwrap();
        assert!(name.is_some_and(|n| n.starts_with("ocsp-sign-")));
        assert!(pool.run(|| -> u8 { panic!("boom") }).await.is_err());
        let sums = futures_sum(&pool).await;
        assert_eq!(sums, (0..32).sum::<u64>());
    }

    async fn futures_sum(pool: &SigningPool) -> u64 {
        let mut total = 0;
        for i in 0..32u64 {
            total += pool.run(move || i).await.unwrap();
        }
        total
    }
}
