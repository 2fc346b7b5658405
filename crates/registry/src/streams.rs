//! The two server streams: WatchStatus (the status feed, backlog then live)
//! and ListRevoked (possibly a million entries, produced in chunks).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use proto::registry::v1 as pb;
use store::{RevokedQuery, Store, StoreError};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tonic::Status;

use crate::convert;
use crate::error::RegistryError;

/// Feed changes read from the database per step.
pub const FEED_PAGE: usize = 1_000;
/// Revoked entries per chunk handed from the producer thread to the stream.
pub const REVOKED_CHUNK: usize = 2_000;

/// A stream of items that arrive in chunks over a channel; an `Err` ends it.
pub struct ChunkStream<T> {
    rx: mpsc::Receiver<Result<Vec<T>, Status>>,
    current: std::vec::IntoIter<T>,
}

impl<T> ChunkStream<T> {
    pub fn new(rx: mpsc::Receiver<Result<Vec<T>, Status>>) -> ChunkStream<T> {
        ChunkStream { rx, current: Vec::new().into_iter() }
    }
}

impl<T: Unpin> Stream for ChunkStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.current.next() {
                return Poll::Ready(Some(Ok(item)));
            }
            match ready!(self.rx.poll_recv(cx)) {
                None => return Poll::Ready(None),
                Some(Err(status)) => return Poll::Ready(Some(Err(status))),
                Some(Ok(chunk)) => self.current = chunk.into_iter(),
            }
        }
    }
}

/// Completes when the server starts shutting down (or the service is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before any await of the caller.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn shutting_down() -> Status {
    Status::unavailable("registry is shutting down; resume with after_sequence")
}

fn store_status(e: StoreError) -> Status {
    Status::from(RegistryError::from(e))
}

/// Streams the revoked entries of `query` in chunks from a blocking thread,
/// so memory stays bounded by the channel (a few chunks) whatever the count.
pub fn list_revoked(
    store: Store,
    query: RevokedQuery,
    shutdown: watch::Receiver<bool>,
) -> ChunkStream<pb::RevokedEntry> {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let send = |chunk: Result<Vec<pb::RevokedEntry>, Status>| tx.blocking_send(chunk).is_ok();
        let entries = match store.revoked_entries(&query) {
            Ok(entries) => entries,
            Err(e) => {
                send(Err(store_status(e)));
                return;
            }
        };
        let mut chunk = Vec::with_capacity(REVOKED_CHUNK);
        for entry in entries {
            match entry {
                Ok(e) => chunk.push(convert::revoked_entry_out(e)),
                Err(e) => {
                    // What was read is sent, then the error ends the stream.
                    if send(Ok(std::mem::take(&mut chunk))) {
                        send(Err(store_status(e)));
                    }
                    return;
                }
            }
            if chunk.len() >= REVOKED_CHUNK {
                if *shutdown.borrow() {
                    send(Err(shutting_down()));
                    return;
                }
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(REVOKED_CHUNK));
                if !send(Ok(full)) {
                    return; // the client went away
                }
            }
        }
        if !chunk.is_empty() {
            send(Ok(chunk));
        }
    });
    ChunkStream::new(rx)
}

/// Streams every change after `after`, then live ones as they become durable,
/// until the client goes away or the server shuts down.
///
/// The subscriber to the durable position is taken (by the caller) before
/// the first page is read, and every later page is read from the database
/// starting right after the last change sent, so there is no gap and no
/// duplicate at the switch from backlog to live, and a slow client cannot
/// fall behind a buffer: it simply reads on from the tree.
pub fn watch_status(
    store: Store,
    mut position: watch::Receiver<u64>,
    after: u64,
    first_page: Vec<store::StatusChange>,
    mut shutdown: watch::Receiver<bool>,
) -> ChunkStream<pb::StatusChange> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut last = after;
        let mut page = first_page;
        loop {
            if let Some(change) = page.last() {
                last = change.sequence;
                let chunk = page.into_iter().map(convert::status_change_out).collect();
                tokio::select! {
                    sent = tx.send(Ok(chunk)) => if sent.is_err() { return },
                    _ = stopped(&mut shutdown) => {
                        let _ = tx.send(Err(shutting_down())).await;
                        return;
                    }
                }
            }
            // Wait until there is something after `last` to read.
            while *position.borrow_and_update() <= last {
                tokio::select! {
                    changed = position.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                    _ = stopped(&mut shutdown) => {
                        let _ = tx.send(Err(shutting_down())).await;
                        return;
                    }
                }
            }
            let reader = store.clone();
            page = match tokio::task::spawn_blocking(move || reader.feed_after(last, FEED_PAGE)).await {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => {
                    let _ = tx.send(Err(store_status(e))).await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(Status::internal(format!("feed reader failed: {e}")))).await;
                    return;
                }
            };
        }
    });
    ChunkStream::new(rx)
}
