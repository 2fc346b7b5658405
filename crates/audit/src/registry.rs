//! The log as the registry serves it: ListAudit page by page, entries turned
//! into records, the live verification, and the clients that read it.

use proto::registry::v1 as pb;
use proto::registry::v1::registry_client::RegistryClient;
use store::AuditRecord;
use tonic::transport::Channel;

use crate::chain::{record_from_parts, Broken, Verified, Verifier};
use crate::error::Error;
use crate::{Progress, Throttle};

/// The registry stops a ListAudit reply near 2 MiB, after the entry that
/// crosses it (a detail may be 256 KiB); leave room above tonic's 4 MiB default.
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// The identity that signs checkpoints: the crl process's, the only one
/// allowed AppendCheckpoint (also for `hpki-ca audit checkpoint`).
pub const CHECKPOINTER_IDENTITY: &str = "crl";

/// A registry client on `channel` that takes the largest ListAudit replies.
pub fn client(kit: &tls::GrpcKit, channel: Channel) -> RegistryClient<Channel> {
    kit.client_at_least(RegistryClient::new(channel), MAX_REPLY_BYTES)
}

/// The registry as the checkpointer calls it (identity [`CHECKPOINTER_IDENTITY`]).
pub async fn checkpointer_client(kit: &tls::GrpcKit, url: &str) -> Result<RegistryClient<Channel>, Error> {
    let endpoint = kit
        .endpoint_as(CHECKPOINTER_IDENTITY, url)
        .map_err(|source| Error::Endpoint { url: url.to_owned(), source })?;
    let tried = endpoint.uri().to_string();
    let channel = endpoint.connect().await.map_err(|source| Error::Connect { url: tried, source })?;
    Ok(client(kit, channel))
}

/// ListAudit page by page: each reply holds up to ~2 MiB; ask again from the
/// last sequence + 1 (newest first: - 1) until a reply is empty.
pub struct Pages<'a> {
    client: &'a mut RegistryClient<Channel>,
    /// Where the next page starts; newest first, 0 is the newest entry.
    next: u64,
    newest_first: bool,
    done: bool,
}

impl<'a> Pages<'a> {
    /// From the first entry on.
    pub fn new(client: &'a mut RegistryClient<Channel>) -> Pages<'a> {
        Pages { client, next: 1, newest_first: false, done: false }
    }

    /// Newest first, from the entry at or before sequence `from` (0: the newest) back.
    pub fn newest_first(client: &'a mut RegistryClient<Channel>, from: u64) -> Pages<'a> {
        Pages { client, next: from, newest_first: true, done: false }
    }

    /// The next page, `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Vec<pb::AuditEntry>>, tonic::Status> {
        if self.done {
            return Ok(None);
        }
        let request = pb::ListAuditRequest { from_sequence: self.next, limit: 0, newest_first: self.newest_first };
        let entries = self.client.list_audit(request).await?.into_inner().entries;
        let Some(last) = entries.last() else {
            self.done = true;
            return Ok(None);
        };
        // Entries come in key order from `next` on; an edited `sequence` field must
        // not make us ask for the same page again.
        let len = u64::try_from(entries.len()).unwrap_or(u64::MAX);
        let next = if self.newest_first {
            let before = last.sequence.checked_sub(1);
            match self.next {
                0 => before,
                from => before.map(|b| b.min(from.saturating_sub(len))),
            }
            .filter(|&n| n > 0)
        } else {
            last.sequence.checked_add(1).map(|after| after.max(self.next.saturating_add(len)))
        };
        match next {
            Some(next) => self.next = next,
            None => self.done = true,
        }
        Ok(Some(entries))
    }
}

/// An entry as the registry sent it, expected at sequence `expected`; hashes of
/// the wrong length break the chain there.
pub fn record_from_entry(e: pb::AuditEntry, expected: u64) -> Result<AuditRecord, Broken> {
    record_from_parts(
        expected,
        e.sequence,
        e.at_unix_micros,
        e.actor,
        e.action,
        e.subject,
        e.detail_json,
        &e.prev_hash,
        &e.hash,
    )
}

impl Verifier {
    /// Checks the next entry as the registry sent it.
    pub fn push_entry(&mut self, e: pb::AuditEntry) -> Result<(), Broken> {
        let r = record_from_entry(e, self.expected())?;
        self.push(&r)
    }
}

/// Walks the live chain with `v`: the verdict, or why the log could not be read.
pub async fn verify_live(
    client: &mut RegistryClient<Channel>,
    mut v: Verifier,
    progress: Progress<'_>,
) -> Result<Result<Verified, Broken>, Error> {
    let mut pages = Pages::new(client);
    let mut progress = Throttle::new(progress);
    while let Some(page) = pages.next().await? {
        for e in page {
            if let Err(b) = v.push_entry(e) {
                return Ok(Err(b));
            }
        }
        progress.tick(v.expected() - 1);
    }
    Ok(Ok(v.finish()))
}
