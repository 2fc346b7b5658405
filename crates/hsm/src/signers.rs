//! The threads that run HSM signatures: a fixed few, fed from one queue.
//!
//! A burst of signatures through tokio's blocking pool becomes one thread per
//! signature, time-sliced on the cores: a software HSM then spends a good
//! part of the CPU switching between them. Here `threads` signers (by default
//! one per core) take signatures back to back. For an HSM on the network,
//! where a signature is mostly waiting, give it more threads. Callers bound
//! the queue with their own in-flight limits.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use crate::HsmError;

type Job = Box<dyn FnOnce() + Send>;

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
        let mut started = 0;
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || loop {
                // The lock is held only to take the next job.
                let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                match job {
                    // A panicking job fails its own caller (its answer channel drops), not the thread.
                    Ok(job) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))),
                    Err(_) => return,
                }
            });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::error!(error = %e, "cannot start a signing thread"),
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
            let _ = tx.send(f());
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
}
