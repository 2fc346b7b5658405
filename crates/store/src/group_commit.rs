//! Group commit: concurrent writers share one sled flush.
//!
//! Every change is acknowledged only after an fsync that covers it. With many
//! writers at once, each calling `Db::flush` on its own makes sled seal and
//! fsync one small buffer per caller. Here one caller at a time (the leader)
//! flushes; whoever commits meanwhile waits for the *next* flush, which starts
//! after its commit and so covers it, and one fsync then acknowledges all of
//! them. A lone writer pays exactly one flush, as before.
//!
//! The guarantee is unchanged: a writer returns Ok only once a flush that
//! started after its transaction committed has succeeded (sled's flush makes
//! every write reserved before it began stable).
//!
//! On PostgreSQL there is nothing to flush: a commit is durable when it returns.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::error::StoreError;
use crate::Store;

#[derive(Default)]
struct State {
    /// Flushes started so far (they are numbered 1, 2, ...).
    started: u64,
    /// Whether a leader is flushing now.
    running: bool,
    /// The highest flush number that succeeded.
    ok_through: u64,
    /// The latest flush that failed, with its error.
    failed: Option<(u64, String)>,
}

#[derive(Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    done: Condvar,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few counters, always consistent between statements.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once a flush that started after this call began has succeeded
    /// (or with the error of one that failed). `flush` is the database's.
    pub(crate) fn flush_after_commit(&self, flush: impl Fn() -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut st = self.lock();
        // The first flush not yet started: it starts after our commit. One
        // running now may have begun before it, so it does not count.
        let needed = st.started + 1;
        loop {
            if st.ok_through >= needed {
                return Ok(());
            }
            if let Some((number, message)) = &st.failed {
                if *number >= needed {
                    return Err(StoreError::SharedFlush { number: *number, message: message.clone() });
                }
            }
            if st.running {
                st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Lead: this flush starts now, after our commit, and covers every
            // writer that committed before it.
            st.started += 1;
            let number = st.started;
            st.running = true;
            drop(st);
            // Should `flush` panic, the guard still ends this flush as failed, so
            // the writers waiting on it get an error instead of waiting for ever.
            let mut guard = Leading { gc: self, number, failure: Some("the flush panicked".into()) };
            let result = flush();
            guard.failure = result.as_ref().err().map(ToString::to_string);
            drop(guard);
            st = self.lock();
            if number >= needed {
                return result;
            }
        }
    }
}

/// The leader's flush in progress; dropping it publishes the outcome.
struct Leading<'a> {
    gc: &'a GroupCommit,
    number: u64,
    /// The error of a failed flush, as text for every writer that waited on it.
    failure: Option<String>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut st = self.gc.lock();
        st.running = false;
        match &self.failure {
            None => st.ok_through = st.ok_through.max(self.number),
            Some(message) => st.failed = Some((self.number, message.clone())),
        }
        drop(st);
        self.gc.done.notify_all();
    }
}

impl Store {
    pub(crate) fn flush_grouped(&self) -> Result<(), StoreError> {
        match &self.engine {
            crate::Engine::Sled(_) => self.group.flush_after_commit(|| self.flush()),
            crate::Engine::Postgres => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_lone_writer_flushes_once_and_concurrent_writers_share_flushes() {
        let gc = Arc::new(GroupCommit::default());
        let flushes = Arc::new(AtomicU64::new(0));
        let slow = |flushes: &AtomicU64| {
            flushes.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            Ok(())
        };
        gc.flush_after_commit(|| slow(&flushes)).unwrap();
        assert_eq!(flushes.load(Ordering::SeqCst), 1);

        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (gc, flushes) = (gc.clone(), flushes.clone());
                std::thread::spawn(move || gc.flush_after_commit(|| slow(&flushes)))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let n = flushes.load(Ordering::SeqCst) - 1;
        assert!((1..16).contains(&n), "16 concurrent writers took {n} flushes");
    }

    #[test]
    fn a_writer_never_returns_on_a_flush_that_began_before_it() {
        // A flush is running (it may have started before our commit) when the
        // writer arrives: the writer must see a second flush start and finish.
        let gc = Arc::new(GroupCommit::default());
        let started = Arc::new(AtomicU64::new(0));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let leader = {
            let (gc, started) = (gc.clone(), started.clone());
            std::thread::spawn(move || {
                gc.flush_after_commit(|| {
                    started.fetch_add(1, Ordering::SeqCst);
                    rx.recv().ok();
                    Ok(())
                })
            })
        };
        while started.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let follower = {
            let (gc, started) = (gc.clone(), started.clone());
            std::thread::spawn(move || {
                gc.flush_after_commit(|| {
                    started.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })?;
                Ok::<u64, StoreError>(started.load(Ordering::SeqCst))
            })
        };
        std::thread::sleep(Duration::from_millis(30));
        tx.send(()).unwrap();
        leader.join().unwrap().unwrap();
        assert_eq!(follower.join().unwrap().unwrap(), 2, "the follower waited for a flush of its own");
    }

    #[test]
    fn a_panicking_flush_does_not_hang_the_writers_waiting_behind_it() {
        let gc = Arc::new(GroupCommit::default());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let leader = {
            let gc = gc.clone();
            std::thread::spawn(move || {
                gc.flush_after_commit(|| {
                    rx.recv().ok();
                    panic!("disk driver bug")
                })
            })
        };
        while !gc.lock().running {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Arrives while the doomed flush runs: it needs the next one, which succeeds.
        let follower = {
            let gc = gc.clone();
            std::thread::spawn(move || gc.flush_after_commit(|| Ok(())))
        };
        std::thread::sleep(Duration::from_millis(20));
        tx.send(()).unwrap();
        assert!(leader.join().is_err(), "the leader's panic propagates");
        follower.join().unwrap().unwrap();
        let st = gc.lock();
        assert!(!st.running && st.failed.as_ref().is_some_and(|(n, m)| *n == 1 && m.contains("panicked")));
    }

    #[test]
    fn a_failed_flush_fails_its_writers() {
        let gc = GroupCommit::default();
        let err =
            gc.flush_after_commit(|| Err(StoreError::Db(sled::Error::Unsupported("disk gone".into())))).unwrap_err();
        assert!(err.to_string().contains("disk gone"), "{err}");
        gc.flush_after_commit(|| Ok(())).unwrap();
    }
}
