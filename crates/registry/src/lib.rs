//! The registry: the gRPC service (`hpki.registry.v1.Registry`) that is the
//! only writer of the CA database. Handlers validate input and call the
//! `store` crate; every status message names the request field it is about.
//!
//! # Revocation, the status feed and CRL inputs
//!
//! - **RevokeCertificate / RevokeCard** are final and idempotent: a second
//!   call writes nothing, answers `already_revoked` (or `newly_revoked = 0`)
//!   and the first time and reason stand. RevokeCard revokes every
//!   certificate of the card, RESERVED and PRECERT ones included, in one
//!   transaction with the card. `actor` is required; `revoked_at_unix` 0 is
//!   now, later than now + 300 s is INVALID_ARGUMENT `revoked_at_unix`;
//!   unknown serial or card is NOT_FOUND `serial` / `card_id`. (How far back
//!   an operator may date a revocation is the revocation service's check.)
//!   `invalidity_date_unix` (0: none) is the operator's time of compromise:
//!   kept on the record, the feed and the per-issuer index, and published
//!   as the invalidityDate of CRL entries and OCSP answers; before a
//!   certificate's notBefore or after its revocation time it is
//!   INVALID_ARGUMENT `invalidity_date_unix`.
//! - **WatchStatus(after_sequence)** streams every change with a larger
//!   sequence, then live ones, with no gap and no duplicate; sequences start
//!   at 1 and are gapless. GOOD is sent when a certificate is stored
//!   (ISSUED), REVOKED when it is revoked (also for never-issued serials).
//!   Only durable (flushed) changes are sent. Resume with the last sequence
//!   received; a sequence beyond the feed is OUT_OF_RANGE `after_sequence`.
//!   On server shutdown the stream ends with UNAVAILABLE: reconnect and resume.
//! - **ListRevoked**: `after_sequence = 0` lists the issuer's revoked
//!   certificates ordered by serial bytes; `> 0` lists only later
//!   revocations, in feed-sequence order (delta CRLs). Entries past notAfter
//!   at `at_unix` (0 = now) are left out unless `include_expired`. Only
//!   revocations durable when the call starts are listed.
//! - **NextCrlNumber(scope)** is strictly increasing per scope, durable before
//!   it is returned, and carries the feed position taken in the same
//!   transaction: a CRL built from a ListRevoked made afterwards covers at
//!   least every revocation up to `feed_sequence`.
//! - **Approvals**: the approver must differ from the requester
//!   (FAILED_PRECONDITION `approver`); AWAITING -> APPROVED -> EXECUTED, each
//!   step idempotent.
//!
//! # The card's life: renewal, reissue, contact change, PIN escrow, history
//!
//! - **BeginApplication `procedure`**: "" or "new" (default), "renewal",
//!   "reissue"; anything else is INVALID_ARGUMENT `procedure`. A "new"
//!   application must leave `replaces_card_id` empty; a renewal or reissue
//!   requires it (INVALID_ARGUMENT `replaces_card_id`). The named card must
//!   exist (NOT_FOUND `replaces_card_id`), be the same holder's, i.e. its
//!   holder has this licence number, and not be superseded already; a
//!   renewal needs it ACTIVE, a reissue REVOKED (FAILED_PRECONDITION
//!   `replaces_card_id: belongs to another holder` / `already renewed by
//!   card X` / `already reissued as card X` / `is PENDING: a renewal needs
//!   an ACTIVE card` / `is REVOKED: ...` / `must be revoked before a reissue
//!   (it is ACTIVE)`). In one transaction the new card is created PENDING
//!   with `procedure` and `replaces_card_id`, the old card gets
//!   `superseded_by` (audited as "card.supersede" on the old card) and keeps
//!   its state: a renewed card stays ACTIVE and its certificates valid until
//!   they expire. The holder's details are replaced by the request's for
//!   every procedure; changed fields are in the "application.begin" entry's
//!   `holder_changes` as {field: {old, new}}.
//! - **Current card**: a holder may have one PENDING or ACTIVE card whose
//!   `superseded_by` is empty; another application, of any procedure, is
//!   FAILED_PRECONDITION `holder.licence_number` naming it (a renewal's own
//!   old card excepted).
//! - **Retries**: the same application_id returns the card made for it with
//!   `existing = true` and writes nothing, also after the old card was
//!   superseded by it; with another licence number, procedure or
//!   replaces_card_id it is FAILED_PRECONDITION `application_id`.
//! - **UpdateContact**: NOT_FOUND `holder_id`; `contact` is required and
//!   replaces the stored one; `resident_record_issued_on` (empty or
//!   YYYY-MM-DD) is only recorded in the "holder.contact" entry with the old
//!   and new contact. Equal contact: `changed = false`, nothing written.
//! - **StorePinEscrow**: card must exist (NOT_FOUND `card_id`); `iv` 12
//!   bytes, `ciphertext` 16..=1024 bytes, `key_label` required. Once per
//!   card: the same key label, IV and ciphertext again returns the stored
//!   record; anything else is ALREADY_EXISTS `card_id`. Audited as
//!   "pin.escrow" with the key label and lengths only.
//! - **DisclosePinEscrow**: `request_id`, `actor` and `confirmation_json`
//!   (JSON) are required; NOT_FOUND `card_id` without an escrow; a request id
//!   already disclosed for this card is FAILED_PRECONDITION `request_id`;
//!   `ra_identity` is required. The limits are the registry's own config
//!   (`[issuance]`, see [`PinLimits`]), never the request's: as many
//!   disclosures of the card as `pin_disclosures_per_window` within the last
//!   `pin_disclosure_window_days` make it RESOURCE_EXHAUSTED `card_id:
//!   disclosure limit reached, retry after <RFC 3339 UTC>`, and
//!   `pin_disclosures_per_ra_per_day` by the same `ra_identity` on one JST
//!   calendar day make it RESOURCE_EXHAUSTED `ra_identity: daily
//!   PIN-disclosure cap ...`. A disclosure is recorded and audited ("pin.disclose",
//!   with the confirmation, never the ciphertext) before the record is
//!   returned; a refused one writes nothing.
//! - **ListHolderCards**: the holder and every card with its certificates,
//!   oldest first; NOT_FOUND `holder_id` / `licence_number`.
//! - "card.supersede", "holder.contact", "pin.escrow" and "pin.disclose" are
//!   the registry's own audit actions: AppendAudit refuses them.
//!
//! # Audit entries nobody can append over gRPC
//!
//! - **"config.start"**: [`open_recording_start`] writes one before serving:
//!   actor "registry", subject the config file, detail `config_path`,
//!   `config_sha256` (of the file's bytes), `settings` (listeners, TLS,
//!   limits, validity, CRL/OCSP intervals; never a PIN), `previous`
//!   ({sequence, config_sha256} of the last start, null on the first) and
//!   `changed` (digest differs from `previous`; true on the first start).
//! - **"ceremony.start" / ".key" / ".certificate" / ".arl" / ".end"**: written by
//!   `hpki-ca ceremony` straight into the database while no registry runs.
//!
//! - **"audit.checkpoint"**: only through **AppendCheckpoint** (subject,
//!   detail_json; actor empty: the caller), which the access table
//!   (`tls::policy::POLICY`) opens to the checkpointer's identity `crl` only.
//!
//! AppendAudit refuses these actions (INVALID_ARGUMENT `action: <action> is
//! written only by the registry itself`), so the entries cannot be forged by
//! a client. The actor of every call is the caller's certificate identity
//! ([`tls::caller`]); a request's `actor` is the person or RA system one of our
//! services relays, and anyone else may only name themselves.

mod batch;
mod card_path;
mod config_start;
mod convert;
mod error;
mod server;
mod service;
mod streams;
mod validate;
mod x509;

pub use config_start::{settings as config_settings, ConfigSource, CONFIG_START_ACTOR};
pub use error::RegistryError;
pub use server::{open_recording_start, serve, serve_store, serve_store_with, store_location};
pub use service::PinLimits;
pub use service::RegistryService;
