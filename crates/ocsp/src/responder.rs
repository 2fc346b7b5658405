//! The responder: decode → lookup → pre-encoded response on the hot path, and
//! the signing that fills the cache on a miss, on a status change and before
//! a response expires.

use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use config::{NonceMode, OcspConfig};
use proto::registry::v1 as reg;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cache::{Cache, Found, Signed};
use crate::encode::{self, Single};
use crate::error::{OcspError, RateLimit};
use crate::issuers::{HashAlg, IssuerHashes};
use crate::keylocks::KeyLocks;
use crate::limits::{ClientBuckets, TokenBucket, MAX_TRACKED_CLIENTS};
use crate::metrics::{AnswerStatus, Metrics};
use crate::request::{self, Item, Parsed};
use crate::serial::SerialKey;
use crate::signer::ResponderIdentity;
use crate::source::CertificateSource;
use crate::status::CertState;

/// How long a miss waits for another request's signature of the same response.
const SAME_SERIAL_WAIT: Duration = Duration::from_secs(2);

/// The responder's settings, from `[ocsp]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub next_update_secs: i64,
    pub refresh_before_secs: i64,
    /// How long "unknown" is believed before the registry is asked again (and
    /// the nextUpdate span of unknown responses).
    pub negative_ttl_secs: i64,
    pub max_items: usize,
    pub nonce: NonceMode,
    pub nonce_per_second: u32,
    pub max_inflight: usize,
    /// Threads that sign (0: one per core); see `hsm::Signers`.
    pub signing_threads: usize,
    /// Fresh signatures for clients per second, and burst, over all clients ...
    pub live_per_second: u32,
    pub live_burst: u32,
    /// ... and per client address.
    pub client_live_per_second: u32,
    pub client_live_burst: u32,
}

impl Settings {
    pub fn from_config(c: &OcspConfig) -> Settings {
        let next_update_secs = i64::from(c.next_update_hours.max(1)) * 3600;
        Settings {
            next_update_secs,
            refresh_before_secs: i64::from(c.refresh_before_minutes) * 60,
            negative_ttl_secs: i64::try_from(c.negative_ttl_seconds.max(1)).unwrap_or(i64::MAX).min(next_update_secs),
            max_items: c.max_certificates_per_request.max(1),
            nonce: c.nonce,
            nonce_per_second: c.nonce_signatures_per_second,
            max_inflight: c.max_inflight_signatures.max(1),
            signing_threads: c.signing_threads,
            live_per_second: c.live_signs_per_second,
            live_burst: c.live_signs_burst,
            client_live_per_second: c.per_client_live_signs_per_second,
            client_live_burst: c.per_client_live_signs_burst,
        }
    }
}

/// One issuing CA we answer for.
pub struct IssuerSlot {
    /// "signing" or "authentication".
    pub name: &'static str,
    /// The registry's issuer_label (the CA key label).
    pub label: String,
    pub hashes: IssuerHashes,
    responder: RwLock<Arc<ResponderIdentity>>,
}

impl IssuerSlot {
    pub fn new(name: &'static str, label: String, hashes: IssuerHashes, responder: ResponderIdentity) -> IssuerSlot {
        IssuerSlot { name, label, hashes, responder: RwLock::new(Arc::new(responder)) }
    }

    pub fn responder(&self) -> Arc<ResponderIdentity> {
        self.responder.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn replace(&self, r: ResponderIdentity) {
        *self.responder.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(r);
    }
}

/// HTTP caching facts of a cacheable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caching {
    pub this_update: i64,
    pub next_update: i64,
    pub etag: [u8; 12],
}

/// An encoded OCSPResponse and what it says.
#[derive(Debug, Clone)]
pub struct Answer {
    pub der: Bytes,
    pub status: AnswerStatus,
    /// Set for pre-signed single responses (the GET form gets RFC 5019 headers).
    pub caching: Option<Caching>,
}

impl Answer {
    pub fn error(e: &OcspError) -> Answer {
        let (der, status) = match e.response_status() {
            Some(s) => {
                let status = match s {
                    crate::asn1::OCSPResponseStatus::MalformedRequest => AnswerStatus::Malformed,
                    crate::asn1::OCSPResponseStatus::Unauthorized => AnswerStatus::Unauthorized,
                    crate::asn1::OCSPResponseStatus::TryLater => AnswerStatus::TryLater,
                    _ => AnswerStatus::InternalError,
                };
                (Bytes::copy_from_slice(&encode::error_response(s)), status)
            }
            None => (Bytes::new(), AnswerStatus::Malformed),
        };
        Answer { der, status, caching: None }
    }

    fn from_signed(s: &Signed) -> Answer {
        Answer {
            der: Bytes::from(s.assemble()),
            status: status_of(s.state),
            caching: Some(Caching { this_update: s.this_update, next_update: s.next_update, etag: s.etag }),
        }
    }
}

fn status_of(s: CertState) -> AnswerStatus {
    match s {
        CertState::Good => AnswerStatus::Good,
        CertState::Revoked { .. } => AnswerStatus::Revoked,
        CertState::Unknown => AnswerStatus::Unknown,
    }
}

/// The outcome of the synchronous part of a request.
pub enum Step<'a> {
    Done(Answer),
    /// A signature (and maybe a registry lookup) is needed.
    Work(Work<'a>),
}

pub struct Work<'a> {
    parsed: Parsed<'a>,
    /// Echo the nonce in a live signature (the rate bound already allowed it).
    live_nonce: bool,
    /// The client's address, for its own live-signing bucket (None: only the global one).
    client: Option<IpAddr>,
}

pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub struct Responder {
    settings: Settings,
    issuers: Vec<IssuerSlot>,
    hashes: Vec<IssuerHashes>,
    /// Shared with the signing threads, which store what they signed.
    cache: Arc<Cache>,
    /// Owned permits travel with each signature to its signing thread.
    permits: Arc<Semaphore>,
    signers: hsm::Signers,
    nonce_bucket: TokenBucket,
    /// Every fresh signature a client causes takes a token of both.
    live_bucket: TokenBucket,
    client_buckets: ClientBuckets,
    source: Arc<dyn CertificateSource>,
    metrics: Arc<Metrics>,
    signing: KeyLocks<(SerialKey, HashAlg)>,
    /// Raised when the status feed revokes one of our own responder certificates.
    rollover: tokio::sync::Notify,
}

impl Responder {
    pub fn new(
        settings: Settings,
        issuers: Vec<IssuerSlot>,
        source: Arc<dyn CertificateSource>,
        metrics: Arc<Metrics>,
    ) -> Responder {
        Responder {
            hashes: issuers.iter().map(|i| i.hashes.clone()).collect(),
            permits: Arc::new(Semaphore::new(settings.max_inflight)),
            signers: hsm::Signers::new("ocsp-sign", settings.signing_threads),
            nonce_bucket: TokenBucket::new(settings.nonce_per_second),
            live_bucket: TokenBucket::with_burst(settings.live_per_second, settings.live_burst),
            client_buckets: ClientBuckets::new(
                settings.client_live_per_second,
                settings.client_live_burst,
                MAX_TRACKED_CLIENTS,
            ),
            settings,
            issuers,
            cache: Arc::new(Cache::default()),
            source,
            metrics,
            signing: KeyLocks::default(),
            rollover: tokio::sync::Notify::new(),
        }
    }

    /// Whether `serial_hex` is the serial of a responder certificate in use now.
    pub fn is_own_responder_serial(&self, serial_hex: &str) -> bool {
        self.issuers.iter().any(|slot| {
            crate::responder_cert::serial_of_der(slot.responder().certificate_der())
                .is_some_and(|s| s.eq_ignore_ascii_case(serial_hex))
        })
    }

    /// Asks the renewal task to roll over now (a responder certificate was revoked).
    pub fn want_rollover(&self) {
        self.rollover.notify_one();
    }

    /// Resolves when a rollover was asked for.
    pub(crate) async fn rollover_wanted(&self) {
        self.rollover.notified().await
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn issuers(&self) -> &[IssuerSlot] {
        &self.issuers
    }

    pub(crate) fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn max_inflight(&self) -> usize {
        self.settings.max_inflight
    }

    pub fn inflight(&self) -> usize {
        self.settings.max_inflight.saturating_sub(self.permits.available_permits())
    }

    /// The hot path, synchronous: decode, and answer from the cache when a
    /// pre-signed response is there. Errors in the request are answered here too.
    pub fn lookup<'a>(&self, der: &'a [u8]) -> Step<'a> {
        self.lookup_at(der, unix_now())
    }

    pub(crate) fn lookup_at<'a>(&self, der: &'a [u8], now: i64) -> Step<'a> {
        let parsed = match request::parse(der, self.settings.max_items, &self.hashes) {
            Ok(p) => p,
            Err(e) => return Step::Done(Answer::error(&e)),
        };
        let live_nonce =
            parsed.nonce.is_some() && self.settings.nonce == NonceMode::Echo && self.nonce_bucket.try_take();
        if parsed.items.len() == 1 && !live_nonce {
            if let Some(a) = self.cached(&parsed.items[0], now) {
                self.metrics.cache_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Step::Done(a);
            }
        }
        self.metrics.cache_misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Step::Work(Work { parsed, live_nonce, client: None })
    }

    /// The hot path of a GET: the cached answer to a request for one
    /// certificate without a nonce, counted as a cache hit; None for anything
    /// else (counted nowhere: [`lookup`](Self::lookup) then answers it).
    pub fn cached_answer(&self, der: &[u8], now: i64) -> Option<Answer> {
        let parsed = request::parse(der, self.settings.max_items, &self.hashes).ok()?;
        if parsed.items.len() != 1 || parsed.nonce.is_some() {
            return None;
        }
        let a = self.cached(&parsed.items[0], now)?;
        self.metrics.cache_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(a)
    }

    fn cached(&self, item: &Item<'_>, now: i64) -> Option<Answer> {
        let key = SerialKey::new(item.issuer, item.serial)?;
        match self.cache.get(&key, item.alg, now) {
            Found::Hit(s) => Some(Answer::from_signed(&s)),
            _ => None,
        }
    }

    /// Answers any request: from the cache, or by signing.
    pub async fn respond(&self, der: &[u8]) -> Answer {
        match self.lookup(der) {
            Step::Done(a) => a,
            Step::Work(w) => self.work(w, unix_now()).await,
        }
    }

    /// [`respond`](Self::respond) bounded by `deadline`: a request still
    /// waiting on the registry or the HSM when it passes gets tryLater. A
    /// signature under way carries on and is cached for the next request.
    pub async fn respond_within(&self, der: &[u8], deadline: Duration) -> Answer {
        self.respond_for(der, deadline, None).await
    }

    /// [`respond_within`](Self::respond_within) for a client at `client`: a
    /// fresh signature takes a token of the global live-signing bucket and of
    /// the client's own; with either empty the answer is tryLater (cached
    /// answers never need a token).
    pub async fn respond_for(&self, der: &[u8], deadline: Duration, client: Option<IpAddr>) -> Answer {
        match self.lookup(der) {
            Step::Done(a) => a,
            Step::Work(mut w) => {
                w.client = client;
                self.work_within(w, unix_now(), Some(deadline)).await
            }
        }
    }

    /// A token for one fresh signature: the client's bucket first (one busy
    /// client does not drain the shared one), then the global bucket.
    fn admit_live(&self, client: Option<IpAddr>) -> Result<(), OcspError> {
        if let Some(ip) = client {
            if !self.client_buckets.try_take(ip) {
                return Err(OcspError::RateLimited(RateLimit::Client));
            }
        }
        if !self.live_bucket.try_take() {
            return Err(OcspError::RateLimited(RateLimit::Global));
        }
        Ok(())
    }

    pub(crate) async fn work(&self, w: Work<'_>, now: i64) -> Answer {
        self.work_within(w, now, None).await
    }

    pub(crate) async fn work_within(&self, w: Work<'_>, now: i64, deadline: Option<Duration>) -> Answer {
        let single = w.parsed.items.len() == 1;
        let signing = async {
            if single && !w.live_nonce {
                self.sign_single(w.parsed.items[0], now, w.client).await
            } else {
                self.sign_live(&w.parsed, w.live_nonce, now, w.client).await
            }
        };
        let result = match deadline {
            None => signing.await,
            Some(d) => tokio::time::timeout(d, signing).await.unwrap_or(Err(OcspError::DeadlineExceeded(d))),
        };
        match result {
            Ok(a) => a,
            Err(e) => {
                let overloaded =
                    matches!(e, OcspError::Busy(_) | OcspError::RateLimited(_) | OcspError::DeadlineExceeded(_));
                if matches!(e, OcspError::DeadlineExceeded(_)) {
                    self.metrics.deadline_exceeded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if w.live_nonce && single && overloaded {
                    // Over the signing cap or too slow: the cached answer, without the nonce.
                    if let Some(a) = self.cached(&w.parsed.items[0], now) {
                        return a;
                    }
                }
                if !matches!(e, OcspError::Busy(_) | OcspError::RateLimited(_)) {
                    tracing::warn!(error = %e, "OCSP request failed");
                }
                self.metrics.count_try_later(&e);
                Answer::error(&e)
            }
        }
    }

    fn try_permit(&self) -> Result<OwnedSemaphorePermit, OcspError> {
        self.permits.clone().try_acquire_owned().map_err(|_| OcspError::Busy("too many signatures in flight"))
    }

    async fn sign_single(&self, item: Item<'_>, now: i64, client: Option<IpAddr>) -> Result<Answer, OcspError> {
        let Some(key) = SerialKey::new(item.issuer, item.serial) else {
            // Longer than any serial we issue: unknown, and not worth caching.
            let parsed = Parsed { items: vec![item], nonce: None };
            return self.sign_live(&parsed, false, now, client).await;
        };
        // Concurrent misses for one serial wait for the first signature (holding no permit).
        let _turn = tokio::time::timeout(SAME_SERIAL_WAIT, self.signing.lock((key, item.alg)))
            .await
            .map_err(|_| OcspError::Busy("a signature for this serial is taking too long"))?;
        if let Found::Hit(s) = self.cache.get(&key, item.alg, now) {
            return Ok(Answer::from_signed(&s));
        }
        self.admit_live(client)?;
        let permit = self.try_permit()?;
        let (state, generation) = self.current_state(key, now).await?;
        let signed = self.sign_entry(key, item.alg, state, generation, now, permit).await?;
        Ok(Answer::from_signed(&signed))
    }

    /// The status of `key`, from the cache or else from the registry (and then cached).
    async fn current_state(&self, key: SerialKey, now: i64) -> Result<(CertState, u64), OcspError> {
        if let Some(known) = self.known_state(&key, now) {
            return Ok(known);
        }
        let state = match self.source.certificate(key.hex()).await? {
            Some((label, state)) if label == self.issuers[key.issuer()].label => state,
            // Issued by our other CA, or never: this CA never issued it.
            _ => CertState::Unknown,
        };
        let m = self.cache.merge(key, state, now + self.settings.negative_ttl_secs);
        Ok((m.state, m.generation))
    }

    fn known_state(&self, key: &SerialKey, now: i64) -> Option<(CertState, u64)> {
        match self.cache.get(key, HashAlg::Sha1, now) {
            Found::Absent => None,
            Found::Known { state, generation } => Some((state, generation)),
            Found::Hit(_) => self.cache.state_of(key),
        }
    }

    /// (thisUpdate, nextUpdate, refresh time) of a response signed now.
    fn validity(
        &self,
        state: CertState,
        now: i64,
        responder: &ResponderIdentity,
    ) -> Result<(i64, i64, i64), OcspError> {
        let span = match state {
            CertState::Unknown => self.settings.negative_ttl_secs,
            _ => self.settings.next_update_secs,
        };
        let next = (now + span).min(responder.not_after());
        if next <= now {
            return Err(OcspError::Certificates("the responder certificate has expired".into()));
        }
        let before = self.settings.refresh_before_secs.min((next - now) / 2);
        Ok((now, next, next - before))
    }

    /// Signs the response of `key` for `alg` stating `state`, and caches it
    /// unless the status has moved past `generation` meanwhile.
    async fn sign_entry(
        &self,
        key: SerialKey,
        alg: HashAlg,
        state: CertState,
        generation: u64,
        now: i64,
        permit: OwnedSemaphorePermit,
    ) -> Result<Arc<Signed>, OcspError> {
        let slot = &self.issuers[key.issuer()];
        let responder = slot.responder();
        let (this_update, next_update, refresh_at) = self.validity(state, now, &responder)?;
        let single = Single { alg, issuer: &slot.hashes, serial: key.serial(), state, this_update, next_update };
        let tbs = encode::response_data(responder.key_hash(), now, &[single], None)?;
        let cache = self.cache.clone();
        self.sign_blocking(permit, responder, tbs, move |body, responder| {
            let full = encode::assemble(&body, responder.tail());
            let signed = Arc::new(Signed {
                body: body.into_boxed_slice(),
                responder,
                state,
                this_update,
                next_update,
                refresh_at,
                etag: etag_of(&full),
            });
            cache.store(&key, alg, generation, signed.clone());
            signed
        })
        .await
    }

    /// Signs `tbs` on a blocking thread, then runs `finish` on the body there.
    /// The thread holds `permit` and runs `finish` even when the request that
    /// asked has given up (its deadline): a stalled HSM keeps its slots taken,
    /// so later misses fail fast, and a slow signature still gets cached.
    async fn sign_blocking<T: Send + 'static>(
        &self,
        permit: OwnedSemaphorePermit,
        responder: Arc<ResponderIdentity>,
        tbs: Vec<u8>,
        finish: impl FnOnce(Vec<u8>, Arc<ResponderIdentity>) -> T + Send + 'static,
    ) -> Result<T, OcspError> {
        let metrics = self.metrics.clone();
        self.signers
            .run(move || {
                let _permit = permit;
                let started = Instant::now();
                match responder.sign_body(&tbs) {
                    Ok(body) => {
                        metrics.observe_signing(started.elapsed());
                        Ok(finish(body, responder))
                    }
                    Err(e) => {
                        metrics.sign_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(error = %e, "signing an OCSP response failed");
                        Err(e)
                    }
                }
            })
            .await?
    }

    /// A response signed for this request only: several certificates, or an echoed nonce.
    async fn sign_live(
        &self,
        parsed: &Parsed<'_>,
        echo_nonce: bool,
        now: i64,
        client: Option<IpAddr>,
    ) -> Result<Answer, OcspError> {
        self.admit_live(client)?;
        let permit = self.try_permit()?;
        self.sign_live_with_permit(parsed, echo_nonce, now, permit).await
    }

    async fn sign_live_with_permit(
        &self,
        parsed: &Parsed<'_>,
        echo_nonce: bool,
        now: i64,
        permit: OwnedSemaphorePermit,
    ) -> Result<Answer, OcspError> {
        let issuer = parsed.items[0].issuer;
        let slot = &self.issuers[issuer];
        let responder = slot.responder();
        let mut singles = Vec::with_capacity(parsed.items.len());
        let mut worst = AnswerStatus::Good;
        for item in &parsed.items {
            let state = match SerialKey::new(item.issuer, item.serial) {
                Some(key) => self.current_state(key, now).await?.0,
                None => CertState::Unknown,
            };
            worst = match (worst, status_of(state)) {
                (AnswerStatus::Revoked, _) | (_, AnswerStatus::Revoked) => AnswerStatus::Revoked,
                (AnswerStatus::Unknown, _) | (_, AnswerStatus::Unknown) => AnswerStatus::Unknown,
                _ => AnswerStatus::Good,
            };
            let (this_update, next_update, _) = self.validity(state, now, &responder)?;
            singles.push(Single {
                alg: item.alg,
                issuer: &slot.hashes,
                serial: item.serial,
                state,
                this_update,
                next_update,
            });
        }
        let nonce = if echo_nonce { parsed.nonce } else { None };
        let tbs = encode::response_data(responder.key_hash(), now, &singles, nonce)?;
        let der = self
            .sign_blocking(permit, responder, tbs, |body, responder| {
                Bytes::from(encode::assemble(&body, responder.tail()))
            })
            .await?;
        Ok(Answer { der, status: worst, caching: None })
    }

    /// Applies one status-feed change. Returns the serial and the algorithms
    /// whose cached responses now state an old status (to re-sign at once).
    pub fn apply_change(&self, change: &reg::StatusChange) -> Option<(SerialKey, Vec<HashAlg>)> {
        let Some(issuer) = self.issuers.iter().position(|s| s.label == change.issuer_label) else {
            tracing::debug!(issuer = %change.issuer_label, "feed change for an issuer we do not answer for");
            return None;
        };
        let state = CertState::from_change(change)?;
        let key = SerialKey::from_hex(issuer, &change.serial)?;
        let m = self.cache.merge(key, state, i64::MAX);
        if !m.changed {
            return None;
        }
        let algs: Vec<HashAlg> = HashAlg::ALL.into_iter().filter(|a| m.had_signed[a.index()]).collect();
        (!algs.is_empty()).then_some((key, algs))
    }

    /// Re-signs the cached response of `key` for `alg` with its current status,
    /// waiting for a signing slot (background work, not a client).
    pub async fn resign(&self, key: SerialKey, alg: HashAlg) -> Result<(), OcspError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| OcspError::Internal("signing semaphore closed".into()))?;
        let now = unix_now();
        let Some((state, generation)) = self.cache.state_of(&key) else { return Ok(()) };
        self.sign_entry(key, alg, state, generation, now, permit).await?;
        Ok(())
    }

    /// Re-signs responses due for refresh, `concurrency` at a time. A failure
    /// leaves the old response in place, served until its nextUpdate.
    pub async fn refresh_due(self: &Arc<Self>, now: i64, limit: usize, concurrency: usize) -> (usize, usize) {
        let due = self.cache.due(now, limit);
        let mut ok = 0;
        let mut failed = 0;
        let mut set = tokio::task::JoinSet::new();
        for (key, alg) in due {
            while set.len() >= concurrency.max(1) {
                match set.join_next().await {
                    Some(Ok(Ok(()))) => ok += 1,
                    _ => failed += 1,
                }
            }
            let me = self.clone();
            set.spawn(async move { me.resign(key, alg).await });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(())) => ok += 1,
                _ => failed += 1,
            }
        }
        if failed > 0 {
            self.metrics.refresh_failures.fetch_add(failed as u64, std::sync::atomic::Ordering::Relaxed);
        }
        (ok, failed)
    }

    /// Swaps in a renewed responder certificate for issuer `index`.
    pub fn replace_responder(&self, index: usize, r: ResponderIdentity) {
        if let Some(slot) = self.issuers.get(index) {
            slot.replace(r);
        }
    }

    /// Replaces a responder whose certificate was revoked: responses it signed
    /// are no longer served (each is signed afresh by `r` when next asked for).
    pub fn retire_responder(&self, index: usize, r: ResponderIdentity) {
        self.replace_responder(index, r);
        let dropped = self.cache.forget_signed(index);
        tracing::info!(issuer = index, dropped, "responses of the revoked responder certificate dropped");
    }

    /// Bench/test loading: records a status without asking anyone.
    #[doc(hidden)]
    pub fn set_state(&self, key: SerialKey, state: CertState) {
        self.cache.merge(key, state, i64::MAX);
    }

    /// Bench/test loading: signs and caches the response of `key` for `alg`.
    #[doc(hidden)]
    pub async fn presign(&self, key: SerialKey, alg: HashAlg) -> Result<(), OcspError> {
        self.resign(key, alg).await
    }
}

fn etag_of(full: &[u8]) -> [u8; 12] {
    let d = Sha256::digest(full);
    let mut e = [0u8; 12];
    e.copy_from_slice(&d[..12]);
    e
}

#[cfg(test)]
#[path = "responder_tests.rs"]
pub(crate) mod tests;
