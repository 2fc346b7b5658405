//! Publishing the CRLs of the issuing CAs: which files the current config
//! calls for, a full or delta CRL built from the registry's stream (split
//! into partitions as it arrives), signed in the HSM and written out. One
//! publication at a time per CA.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use time::{Duration, OffsetDateTime};
use tokio_stream::StreamExt;

use crate::builder::{CrlEncoder, CrlSigner, IssuingDistributionPoint};
use crate::entry::CrlEntry;
use crate::error::CrlError;
use crate::issuer::CaKey;
use crate::layout::{Layout, Scope, Target};
use crate::published::{CrlInfo, CrlKind, CrlStore};
use crate::source::{CrlNumberGrant, RevocationSource};
use crate::{timefmt, OnlyContains};

/// The two issuing CAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Issuer {
    Signing,
    Authentication,
}

impl Issuer {
    pub const ALL: [Issuer; 2] = [Issuer::Signing, Issuer::Authentication];

    /// "signing" / "authentication", as in the gRPC API.
    pub fn name(self) -> &'static str {
        match self {
            Issuer::Signing => "signing",
            Issuer::Authentication => "authentication",
        }
    }

    /// The registry's CRL-number scope.
    pub fn scope(self) -> &'static str {
        match self {
            Issuer::Signing => "sign",
            Issuer::Authentication => "auth",
        }
    }

    /// "signing", "authentication", or "" for both.
    pub fn parse(s: &str) -> Result<Option<Issuer>, CrlError> {
        match s.trim() {
            "" => Ok(None),
            "signing" => Ok(Some(Issuer::Signing)),
            "authentication" => Ok(Some(Issuer::Authentication)),
            other => Err(CrlError::InvalidArgument(format!(
                "issuer {other:?}: use \"signing\", \"authentication\" or \"\" for both"
            ))),
        }
    }

    fn crl_url(self, cfg: &config::ProfileConfig) -> &str {
        match self {
            Issuer::Signing => cfg.signing_crl_url.trim(),
            Issuer::Authentication => cfg.authentication_crl_url.trim(),
        }
    }
}

/// CRL settings from config, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub partitions: u32,
    pub deltas: bool,
    pub next_update: Duration,
    pub delta_next_update: Duration,
    pub interval: Duration,
    /// How long a revoked certificate stays listed after its notAfter; `None`:
    /// for ever, with ExpiredCertsOnCRL (`[crl] expired_retention_days = 0`).
    pub expired_retention: Option<Duration>,
    /// Where the root's ARL is served (`[ca.signing] crl_url`); empty: none.
    pub arl_url: String,
    /// Body size and request timeout of the HTTP distribution point (`[limits]`).
    pub http: crate::http::HttpLimits,
}

impl Settings {
    pub fn from_config(cfg: &config::Config) -> Result<Settings, CrlError> {
        // The checks live with the config (`hpki-ca config check` runs them too).
        cfg.validate_crl().map_err(|e| CrlError::Config(e.to_string()))?;
        let c = &cfg.crl;
        let expired_retention = match c.expired_retention_days {
            0 => None,
            days => Some(Duration::days(i64::from(days))),
        };
        Ok(Settings {
            expired_retention,
            arl_url: cfg.ca.signing.crl_url.trim().to_owned(),
            partitions: cfg.profile.crl_partitions,
            deltas: cfg.profile.delta_crls,
            next_update: Duration::hours(i64::from(c.next_update_hours)),
            delta_next_update: Duration::hours(i64::from(c.delta_next_update_hours)),
            interval: Duration::minutes(i64::from(c.interval_minutes)),
            http: crate::http::HttpLimits::from_config(&cfg.limits, &cfg.crl),
        })
    }
}

/// An issuing CA as the publisher sees it.
#[derive(Debug)]
struct CaState {
    issuer: Issuer,
    ca_key: CaKey,
    /// The registry's issuer_label (the CA's key label).
    label: String,
    /// The config's CRL scope.
    current: Scope,
    /// The files to publish: the config's and those of older scopes still
    /// named by live certificates (see `layout`), refreshed from the registry.
    layout: RwLock<Arc<Layout>>,
    /// Owned (Arc) so a background full CRL can keep it from its delta on.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// A publication of this CA failed (HSM or registry down during an emergency
    /// revocation, say): the schedule owes one and retries until it succeeds.
    owed: AtomicBool,
}

/// The full CRL(s) a delta is based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    pub crl_number: u64,
    pub feed_sequence: u64,
    pub this_update: i64,
    pub next_update: i64,
}

impl CaState {
    fn layout(&self) -> Arc<Layout> {
        self.layout.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// Every URL the HTTP server serves under `cfg` from the start, with `true`
/// for files made by another process (the ARL, by the operator CLI). Older
/// CRL scopes' URLs are added as they are published.
pub fn served_urls(cfg: &config::Config) -> Result<Vec<(String, bool)>, CrlError> {
    let mut urls = Vec::new();
    for issuer in Issuer::ALL {
        let base = issuer.crl_url(&cfg.profile);
        if base.is_empty() {
            return Err(CrlError::Config(format!("profile.{}_crl_url is empty", issuer.name())));
        }
        let current =
            Scope { crl_url: base.to_owned(), partitions: cfg.profile.crl_partitions, deltas: cfg.profile.delta_crls };
        for t in Layout::new(&current, &[], 0, None).targets {
            if t.deltas {
                urls.push((config::delta_url(&t.url), false));
            }
            urls.push((t.url, false));
        }
    }
    for arl in crate::arl::arl_urls(cfg) {
        urls.push((arl, true));
    }
    Ok(urls)
}

/// A full CRL following an urgent delta in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowingFull {
    pub issuer: Issuer,
    /// Reserved before the caller is answered; 0 when the registry gave none
    /// (the schedule then publishes it as owed).
    pub crl_number: u64,
}

/// What an urgent publication published at once, and what follows.
#[derive(Debug, Default)]
pub struct Urgent {
    pub crls: Vec<CrlInfo>,
    pub following: Vec<FollowingFull>,
}

/// Publishes the CRLs of both issuing CAs.
pub struct Publisher<S> {
    source: S,
    store: Arc<CrlStore>,
    settings: Settings,
    cas: Vec<Arc<CaState>>,
    /// Wakes the schedule when a publication failed.
    owed: tokio::sync::Notify,
}

impl<S: RevocationSource> Publisher<S> {
    pub fn new(
        cfg: &config::Config,
        source: S,
        store: Arc<CrlStore>,
        signing: CaKey,
        authentication: CaKey,
    ) -> Result<Publisher<S>, CrlError> {
        let settings = Settings::from_config(cfg)?;
        let ca = |issuer: Issuer, key: CaKey, label: &str| {
            let current = Scope {
                crl_url: issuer.crl_url(&cfg.profile).to_owned(),
                partitions: settings.partitions,
                deltas: settings.deltas,
            };
            let layout = RwLock::new(Arc::new(Layout::new(&current, &[], 0, None)));
            Arc::new(CaState {
                issuer,
                ca_key: key,
                label: label.to_owned(),
                current,
                layout,
                lock: Arc::new(tokio::sync::Mutex::new(())),
                owed: AtomicBool::new(false),
            })
        };
        let cas = vec![
            ca(Issuer::Signing, signing, &cfg.ca.signing.key_label),
            ca(Issuer::Authentication, authentication, &cfg.ca.authentication.key_label),
        ];
        Ok(Publisher { source, store, settings, cas, owed: tokio::sync::Notify::new() })
    }

    /// Resolves when a publication failed and is now owed (see `due`).
    pub async fn owed(&self) {
        self.owed.notified().await
    }

    pub fn store(&self) -> &Arc<CrlStore> {
        &self.store
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    /// Gives the source back (e.g. to carry a test registry over a restart).
    pub fn into_source(self) -> S {
        self.source
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn ca(&self, issuer: Issuer) -> Result<&Arc<CaState>, CrlError> {
        self.cas.iter().find(|c| c.issuer == issuer).ok_or_else(|| CrlError::NoCa(issuer.name()))
    }

    /// Publishes for one CA or both (`None`). `kind` None means a delta when
    /// deltas are on, else a full CRL. A delta without a current base becomes
    /// a full CRL; a full CRL is followed by an (often empty) delta on top of
    /// it when deltas are on, so the pair served is always consistent.
    pub async fn publish(&self, issuer: Option<Issuer>, kind: Option<CrlKind>) -> Result<Vec<CrlInfo>, CrlError> {
        let selected: Vec<Issuer> = match issuer {
            Some(i) => vec![i],
            None => Issuer::ALL.to_vec(),
        };
        if kind == Some(CrlKind::Delta) && !selected.iter().any(|i| self.ca(*i).is_ok_and(|ca| ca.layout().deltas())) {
            return Err(CrlError::FailedPrecondition("delta CRLs are off (profile.delta_crls = false)".into()));
        }
        let mut out = Vec::new();
        for issuer in selected {
            let ca = self.ca(issuer)?;
            let _one_at_a_time = ca.lock.lock().await;
            let deltas = ca.layout().deltas();
            let want_delta = match kind {
                Some(k) => k == CrlKind::Delta && deltas,
                None => deltas,
            };
            let published = match (want_delta, self.base(ca)) {
                (true, Some(base)) => self.publish_delta(ca, base).await,
                _ => self.publish_full(ca).await,
            };
            out.extend(self.settle(ca, published)?);
        }
        Ok(out)
    }

    /// For an emergency: publishes as `publish(issuer, None)`; with deltas
    /// on, a full CRL then follows each delta in the background, so relying
    /// parties that read only the full CRL see the revocation within seconds.
    /// Its number is reserved before this returns. The CA stays locked from
    /// the delta to the end of the full CRL: nothing comes between them, and
    /// at most one such full CRL per CA is under way. A failed one is owed,
    /// so the schedule retries it.
    /// `kind` FULL is refused (nothing would follow), DELTA needs deltas on.
    pub async fn publish_urgent(
        self: &Arc<Self>,
        issuer: Option<Issuer>,
        kind: Option<CrlKind>,
    ) -> Result<Urgent, CrlError> {
        match kind {
            Some(CrlKind::Full) => {
                return Err(CrlError::InvalidArgument(
                    "full_after_delta with kind FULL: the full CRL is published at once; leave kind unspecified".into(),
                ))
            }
            Some(CrlKind::Delta) if !self.cas.iter().any(|ca| ca.layout().deltas()) => {
                return Err(CrlError::FailedPrecondition("delta CRLs are off (profile.delta_crls = false)".into()))
            }
            _ => {}
        }
        let selected: Vec<Issuer> = match issuer {
            Some(i) => vec![i],
            None => Issuer::ALL.to_vec(),
        };
        let mut out = Urgent::default();
        // Every delta first: the fulls would slow the next CA's delta.
        let mut held: Vec<(Arc<CaState>, tokio::sync::OwnedMutexGuard<()>)> = Vec::new();
        for issuer in selected {
            let ca = self.ca(issuer)?.clone();
            let guard = ca.lock.clone().lock_owned().await;
            let (published, follow) = match (ca.layout().deltas(), self.base(&ca)) {
                (true, Some(base)) => (self.publish_delta(&ca, base).await, true),
                // A full CRL at once already lists the revocation.
                _ => (self.publish_full(&ca).await, false),
            };
            match self.settle(&ca, published) {
                Ok(crls) => out.crls.extend(crls),
                Err(e) => {
                    // The deltas already out still owe their full CRL.
                    for (ca, _) in &held {
                        self.mark_owed(ca);
                    }
                    return Err(e);
                }
            }
            if follow {
                held.push((ca, guard));
            }
        }
        for (ca, guard) in held {
            let grant = match self.source.next_crl_number(ca.issuer.scope()).await {
                Ok(grant) => grant,
                Err(e) => {
                    tracing::warn!(issuer = ca.issuer.name(), error = %e, "no CRL number for the full CRL after the delta; it is owed");
                    self.mark_owed(&ca);
                    out.following.push(FollowingFull { issuer: ca.issuer, crl_number: 0 });
                    continue;
                }
            };
            out.following.push(FollowingFull { issuer: ca.issuer, crl_number: grant.crl_number });
            let publisher = Arc::clone(self);
            tokio::spawn(async move {
                let _one_at_a_time = guard;
                let published = publisher.publish_full_with(&ca, grant).await;
                match publisher.settle(&ca, published) {
                    Ok(crls) => tracing::info!(
                        issuer = ca.issuer.name(),
                        crl_number = grant.crl_number,
                        count = crls.len(),
                        "full CRL published after the urgent delta"
                    ),
                    Err(e) => tracing::warn!(
                        issuer = ca.issuer.name(), crl_number = grant.crl_number, error = %e,
                        "full CRL after the urgent delta failed; the schedule retries it"
                    ),
                }
            });
        }
        Ok(out)
    }

    /// Records the outcome of a publication of `ca`: a success pays what was
    /// owed, a failure is owed (and wakes the schedule).
    fn settle(&self, ca: &CaState, published: Result<Vec<CrlInfo>, CrlError>) -> Result<Vec<CrlInfo>, CrlError> {
        match published {
            Ok(crls) => {
                ca.owed.store(false, Ordering::SeqCst);
                Ok(crls)
            }
            Err(e) => {
                self.mark_owed(ca);
                Err(e)
            }
        }
    }

    fn mark_owed(&self, ca: &CaState) {
        if !ca.owed.swap(true, Ordering::SeqCst) {
            self.owed.notify_one();
        }
    }

    /// The full CRLs currently served for `ca`, if they form one consistent
    /// publication under the current config.
    fn base(&self, ca: &CaState) -> Option<Base> {
        let mut base: Option<Base> = None;
        for t in &ca.layout().targets {
            let info = self.store.by_url(&t.url)?.info.clone()?;
            if info.kind != CrlKind::Full || info.partition != t.partition {
                return None;
            }
            let this = Base {
                crl_number: info.crl_number,
                feed_sequence: info.feed_sequence,
                this_update: info.this_update,
                next_update: info.next_update,
            };
            match &mut base {
                None => base = Some(this),
                Some(b) if b.crl_number == this.crl_number && b.feed_sequence == this.feed_sequence => {
                    b.this_update = b.this_update.min(this.this_update);
                    b.next_update = b.next_update.min(this.next_update);
                }
                Some(_) => return None,
            }
        }
        base
    }

    /// Reads the CRL scopes recorded for every CA, so `due` sees the files of
    /// older scopes that are not published yet.
    pub async fn refresh_layouts(&self) -> Result<(), CrlError> {
        for ca in &self.cas {
            self.refresh(ca).await?;
        }
        Ok(())
    }

    /// The layout of `ca` from the scopes the registry recorded; its new
    /// files are served from their first publication on.
    async fn refresh(&self, ca: &CaState) -> Result<(), CrlError> {
        let recorded = self.source.crl_scopes(&ca.label).await?;
        let retention = self.settings.expired_retention.map(|r| r.whole_seconds());
        let layout = Layout::new(&ca.current, &recorded, timefmt::now().unix_timestamp(), retention);
        if *ca.layout() == layout {
            return Ok(());
        }
        for t in &layout.targets {
            self.store.ensure_route(&t.url)?;
            if t.deltas {
                self.store.ensure_route(&config::delta_url(&t.url))?;
            }
        }
        tracing::info!(
            issuer = ca.issuer.name(),
            files = layout.targets.len(),
            "CRL files: the config's and those older certificates still name"
        );
        *ca.layout.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(layout);
        Ok(())
    }

    /// What the scheduler should publish now.
    pub fn due(&self, now: OffsetDateTime) -> Vec<(Issuer, CrlKind)> {
        let now = now.unix_timestamp();
        let s = &self.settings;
        let mut out = Vec::new();
        for ca in &self.cas {
            if ca.owed.load(Ordering::SeqCst) {
                out.push((ca.issuer, CrlKind::Full));
                continue;
            }
            let Some(base) = self.base(ca) else {
                out.push((ca.issuer, CrlKind::Full));
                continue;
            };
            let age = now - base.this_update;
            let left = base.next_update - now;
            if age >= s.interval.whole_seconds() || left < s.next_update.whole_seconds() / 4 {
                out.push((ca.issuer, CrlKind::Full));
                continue;
            }
            let layout = ca.layout();
            if layout.deltas() {
                let fresh = layout.targets.iter().filter(|t| t.deltas).all(|t| {
                    self.store.by_url(&config::delta_url(&t.url)).and_then(|f| f.info.clone()).is_some_and(|i| {
                        i.kind == CrlKind::Delta
                            && i.base_crl_number == base.crl_number
                            && i.next_update - now >= s.delta_next_update.whole_seconds() / 2
                    })
                });
                if !fresh {
                    out.push((ca.issuer, CrlKind::Delta));
                }
            }
        }
        out
    }

    async fn publish_full(&self, ca: &CaState) -> Result<Vec<CrlInfo>, CrlError> {
        let grant = self.source.next_crl_number(ca.issuer.scope()).await?;
        self.publish_full_with(ca, grant).await
    }

    async fn publish_full_with(&self, ca: &CaState, grant: CrlNumberGrant) -> Result<Vec<CrlInfo>, CrlError> {
        self.refresh(ca).await?;
        let mut out = self.build(ca, CrlKind::Full, grant, None).await?;
        if ca.layout().deltas() {
            let base = self
                .base(ca)
                .ok_or_else(|| CrlError::Internal("the full CRLs just published are not served".into()))?;
            out.extend(self.publish_delta(ca, base).await?);
        }
        Ok(out)
    }

    async fn publish_delta(&self, ca: &CaState, base: Base) -> Result<Vec<CrlInfo>, CrlError> {
        let grant = self.source.next_crl_number(ca.issuer.scope()).await?;
        if grant.crl_number <= base.crl_number {
            return Err(CrlError::FailedPrecondition(format!(
                "the registry gave CRL number {} for scope {:?}, not above the base CRL's {}",
                grant.crl_number,
                ca.issuer.scope(),
                base.crl_number
            )));
        }
        self.build(ca, CrlKind::Delta, grant, Some(base)).await
    }

    /// Streams the registry's entries into one encoder per partition, then
    /// signs and writes every CRL on a blocking thread.
    async fn build(
        &self,
        ca: &CaState,
        kind: CrlKind,
        grant: CrlNumberGrant,
        base: Option<Base>,
    ) -> Result<Vec<CrlInfo>, CrlError> {
        let now = timefmt::now();
        let layout = ca.layout();
        let mut jobs = Vec::with_capacity(layout.targets.len());
        // Target index -> job index; a delta has jobs only for the targets with deltas.
        let mut job_of = vec![None; layout.targets.len()];
        for (i, t) in layout.targets.iter().enumerate() {
            if kind == CrlKind::Delta && !t.deltas {
                continue;
            }
            job_of[i] = Some(jobs.len());
            jobs.push(self.encoder(ca, t, kind, grant, base, now)?);
        }
        self.fill(ca, &layout, &mut jobs, &job_of, base, now).await?;
        let started = std::time::Instant::now();
        let infos = sign_and_write(ca.ca_key.key.clone(), self.store.clone(), jobs).await?;
        for i in &infos {
            tracing::info!(
                issuer = %i.issuer, kind = ?i.kind, partition = i.partition, crl_number = i.crl_number,
                base = i.base_crl_number, entries = i.entries, url = %i.url,
                sign_and_write_ms = started.elapsed().as_millis() as u64, "CRL published"
            );
        }
        Ok(infos)
    }

    /// The empty CRL of one target (its extensions, URL and numbers), sized
    /// for about as many entries as it had last time.
    fn encoder(
        &self,
        ca: &CaState,
        t: &Target,
        kind: CrlKind,
        grant: CrlNumberGrant,
        base: Option<Base>,
        now: OffsetDateTime,
    ) -> Result<(CrlEncoder, CrlInfo), CrlError> {
        let s = &self.settings;
        let validity = match kind {
            CrlKind::Full => s.next_update,
            CrlKind::Delta => s.delta_next_update,
        };
        let mut spec = ca.ca_key.spec(now, now + validity, grant.crl_number);
        spec.delta_crl_indicator = base.map(|b| b.crl_number);
        if s.expired_retention.is_none() {
            // Every certificate of this CA that expired is kept once revoked.
            spec.expired_certs_on_crl = Some(ca.ca_key.ca.not_before());
        }
        if t.partition > 0 {
            spec.issuing_distribution_point =
                Some(IssuingDistributionPoint { full_name: t.url.clone(), only_contains: OnlyContains::UserCerts });
        }
        let url = match kind {
            CrlKind::Full => {
                if t.deltas {
                    spec.freshest_crl = Some(config::delta_url(&t.url));
                }
                t.url.clone()
            }
            CrlKind::Delta => config::delta_url(&t.url),
        };
        let info = CrlInfo {
            issuer: ca.issuer.name().to_owned(),
            kind,
            partition: t.partition,
            crl_number: grant.crl_number,
            base_crl_number: base.map_or(0, |b| b.crl_number),
            this_update: spec.this_update.unix_timestamp(),
            next_update: spec.next_update.unix_timestamp(),
            url,
            entries: 0,
            sha256: String::new(),
            feed_sequence: grant.feed_sequence,
        };
        // About as many entries as last time: one allocation, no regrowth.
        let expected = self
            .store
            .by_url(&info.url)
            .and_then(|f| f.info.as_ref().map(|i| i.entries))
            .map_or(0, |n| n.saturating_add(n / 8).saturating_add(64));
        let expected = usize::try_from(expected).unwrap_or(0);
        Ok((CrlEncoder::with_capacity(&spec, ca.ca_key.key.signature_algorithm(), expected)?, info))
    }

    /// Streams the CA's revoked entries (those since `base` for a delta) into
    /// the encoder of every target each one belongs to.
    async fn fill(
        &self,
        ca: &CaState,
        layout: &Layout,
        jobs: &mut [(CrlEncoder, CrlInfo)],
        job_of: &[Option<usize>],
        base: Option<Base>,
        now: OffsetDateTime,
    ) -> Result<(), CrlError> {
        let after = base.map_or(0, |b| b.feed_sequence);
        let expired_since = self.settings.expired_retention.map(|r| (now - r).unix_timestamp());
        let mut stream = self.source.list_revoked(&ca.label, after, expired_since).await?;
        let mut routed = Vec::with_capacity(4);
        while let Some(item) = stream.next().await {
            let entry = CrlEntry::from_registry(&item?)?;
            layout.route(entry.user_certificate.magnitude(), &mut routed);
            for &t in &routed {
                if let Some((encoder, _)) = job_of.get(t).copied().flatten().and_then(|j| jobs.get_mut(j)) {
                    encoder.push(&entry)?;
                }
            }
        }
        Ok(())
    }
}

/// Signs each filled CRL and writes it where it is served, on a blocking
/// thread (a large CRL takes a while to sign and hash).
async fn sign_and_write(
    key: hsm::HsmKey,
    store: Arc<CrlStore>,
    jobs: Vec<(CrlEncoder, CrlInfo)>,
) -> Result<Vec<CrlInfo>, CrlError> {
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(jobs.len());
        for (encoder, mut info) in jobs {
            info.entries = encoder.entries();
            let signed = encoder.finish(&key)?;
            let file = store.publish(signed.der, info.clone())?;
            out.push(file.info.clone().unwrap_or(info));
        }
        Ok::<_, CrlError>(out)
    })
    .await
    .map_err(|source| CrlError::Task { what: "CRL signing", source })?
}
