//! PIN escrow: the card PIN, encrypted by the issuance service under an AES
//! key in the HSM, stored once per card; disclosures to the RA are recorded
//! with their identity confirmation, once per request, rate-limited per
//! card and capped per RA identity and day (JST). The ciphertext is never written to the audit log.

use serde_json::json;

use crate::application::require_card;
use crate::audit::{self, actions, Event};
use crate::error::StoreError;
use crate::records::{NewPinEscrow, PinDisclosure, PinDisclosureRequest, PinEscrow};
use crate::tx::{fail, Tx, TxResult};
use crate::Store;

impl Store {
    /// Stores the card's escrowed PIN. The same record again (key label, IV
    /// and ciphertext) writes nothing and returns the stored one; a different
    /// one is refused with `PinEscrowExists`: an escrow is never replaced.
    pub fn store_pin_escrow(&self, new: &NewPinEscrow) -> Result<PinEscrow, StoreError> {
        self.transact_and_flush(Store::flush_grouped, |tx| store_escrow(tx, new))
    }

    /// Records a disclosure of the card's escrowed PIN and returns the escrow
    /// (durable before it returns). Refused with `NoPinEscrow`, with
    /// `DisclosureRepeated` for a request id already disclosed for this card,
    /// with `DisclosureLimit` when `limit.max_per_window` disclosures of
    /// this card lie within the last `limit.window_seconds`, and with
    /// `RaDailyLimit` when `ra_identity` has made `ra_daily_cap` disclosures
    /// today (JST). The caller (the registry) takes both limits from its own
    /// configuration, never from a request.
    pub fn disclose_pin_escrow(&self, req: &PinDisclosureRequest) -> Result<PinEscrow, StoreError> {
        self.disclose_pin_escrow_at(req, crate::clock::now_unix())
    }

    pub(crate) fn disclose_pin_escrow_at(&self, req: &PinDisclosureRequest, now: i64) -> Result<PinEscrow, StoreError> {
        let escrow = self.trees.transact(|tx| disclose(tx, req, now))?;
        self.flush()?;
        Ok(escrow)
    }

    /// The card's escrow with its disclosures, or `NoPinEscrow`.
    pub fn get_pin_escrow(&self, card_id: &str) -> Result<PinEscrow, StoreError> {
        self.trees.transact(|tx| find_escrow(tx, card_id))
    }
}

fn find_escrow(tx: &Tx<'_>, card_id: &str) -> TxResult<PinEscrow> {
    match tx.pin_escrow.get_json(card_id.as_bytes())? {
        Some(escrow) => Ok(escrow),
        None => fail(StoreError::NoPinEscrow { card_id: card_id.to_owned() }),
    }
}

/// Stores the escrow inside the caller's transaction (see `store_pin_escrow`):
/// the record and whether it was written.
pub(crate) fn store_escrow(tx: &Tx<'_>, new: &NewPinEscrow) -> TxResult<(PinEscrow, bool)> {
    require_card(tx, &new.card_id)?;
    if let Some(stored) = tx.pin_escrow.get_json::<PinEscrow>(new.card_id.as_bytes())? {
        if stored.key_label == new.key_label && stored.iv == new.iv && stored.ciphertext == new.ciphertext {
            return Ok((stored, false));
        }
        return fail(StoreError::PinEscrowExists { card_id: new.card_id.clone() });
    }
    let escrow = PinEscrow {
        card_id: new.card_id.clone(),
        key_label: new.key_label.clone(),
        iv: new.iv.clone(),
        ciphertext: new.ciphertext.clone(),
        stored_at_unix: crate::clock::now_unix(),
        stored_by: new.actor.clone(),
        disclosures: Vec::new(),
    };
    tx.pin_escrow.put_json(new.card_id.as_bytes(), &escrow)?;
    // Lengths only: neither the ciphertext nor the IV goes into the log.
    let detail = json!({
        "key_label": escrow.key_label,
        "iv_len": escrow.iv.len(),
        "ciphertext_len": escrow.ciphertext.len(),
    });
    audit::append(
        tx,
        &Event {
            actor: &new.actor,
            action: actions::PIN_ESCROW,
            subject: &new.card_id,
            detail_json: detail.to_string(),
        },
    )?;
    Ok((escrow, true))
}

fn disclose(tx: &Tx<'_>, req: &PinDisclosureRequest, now: i64) -> TxResult<PinEscrow> {
    let mut escrow = find_escrow(tx, &req.card_id)?;
    if escrow.disclosures.iter().any(|d| d.request_id == req.request_id) {
        return fail(StoreError::DisclosureRepeated {
            card_id: req.card_id.clone(),
            request_id: req.request_id.clone(),
        });
    }
    // A disclosure at `t` counts while now < t + window.
    let window = i64::from(req.limit.window_seconds);
    let mut recent: Vec<i64> =
        escrow.disclosures.iter().map(|d| d.at_unix).filter(|&at| at.saturating_add(window) > now).collect();
    let max = usize::try_from(req.limit.max_per_window).unwrap_or(usize::MAX);
    if recent.len() >= max {
        // Allowed again once enough of them have left the window.
        recent.sort_unstable();
        let leaving = recent.get(recent.len() - max).copied().unwrap_or(now);
        return fail(StoreError::DisclosureLimit {
            card_id: req.card_id.clone(),
            retry_after_unix: leaving.saturating_add(window),
            max_per_window: req.limit.max_per_window,
            window_seconds: req.limit.window_seconds,
        });
    }
    let ra_day = ra_day_count(tx, req, now)?;
    escrow.disclosures.push(PinDisclosure {
        request_id: req.request_id.clone(),
        at_unix: now,
        actor: req.actor.clone(),
        confirmation_json: req.confirmation_json.clone(),
    });
    tx.pin_escrow.put_json(req.card_id.as_bytes(), &escrow)?;
    tx.meta.put_json(&ra_day.key, &(ra_day.count + 1))?;
    let detail = json!({
        "request_id": req.request_id,
        "confirmation": audit::embed_json(&req.confirmation_json),
        "key_label": escrow.key_label,
        "disclosure_number": escrow.disclosures.len(),
        "limit": { "max_per_window": req.limit.max_per_window, "window_seconds": req.limit.window_seconds },
        "ra_identity": req.ra_identity,
        "ra_day": { "day": ra_day.day, "disclosure_number": ra_day.count + 1, "cap": req.ra_daily_cap },
    });
    audit::append(
        tx,
        &Event {
            actor: &req.actor,
            action: actions::PIN_DISCLOSE,
            subject: &req.card_id,
            detail_json: detail.to_string(),
        },
    )?;
    Ok(escrow)
}

/// Seconds JST is ahead of UTC: the RA's day is a calendar day in Japan.
const JST_OFFSET_SECS: i64 = 9 * 3600;
/// Prefix of the per-RA daily counters in the `meta` tree.
const RA_DAY_PREFIX: &[u8] = b"pin.ra_day\0";

/// One RA identity's disclosures on the current JST day, as stored.
struct RaDay {
    key: Vec<u8>,
    /// YYYY-MM-DD (JST).
    day: String,
    count: u32,
}

/// Today's count of `req.ra_identity`, or `RaDailyLimit` once it has reached
/// the cap. Kept in the `meta` tree (key: prefix, identity, 0, JST day number),
/// written in the same transaction as the disclosure, so it survives a restart.
fn ra_day_count(tx: &Tx<'_>, req: &PinDisclosureRequest, now: i64) -> TxResult<RaDay> {
    let day_number = now.saturating_add(JST_OFFSET_SECS).div_euclid(86_400);
    let mut key = RA_DAY_PREFIX.to_vec();
    key.extend_from_slice(req.ra_identity.as_bytes());
    key.push(0);
    key.extend_from_slice(&day_number.to_be_bytes());
    let day = crate::clock::format_utc(day_number.saturating_mul(86_400)).chars().take(10).collect::<String>();
    let count: u32 = tx.meta.get_json(&key)?.unwrap_or(0);
    if count >= req.ra_daily_cap {
        return fail(StoreError::RaDailyLimit {
            ra_identity: req.ra_identity.clone(),
            day,
            cap: req.ra_daily_cap,
            // Midnight JST of the next day.
            retry_after_unix: (day_number + 1).saturating_mul(86_400) - JST_OFFSET_SECS,
        });
    }
    Ok(RaDay { key, day, count })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::DisclosureLimit;
    use crate::test_support::{application, reopened, temp_store};

    const CIPHERTEXT: [u8; 23] = *b"\x8f\x13enc-pin\xa7\x01tag-bytes-16";

    fn card(store: &Store) -> String {
        store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view.card.card_id
    }

    fn escrow(card_id: &str) -> NewPinEscrow {
        NewPinEscrow {
            card_id: card_id.into(),
            key_label: "pin-escrow-2026".into(),
            iv: vec![7; 12],
            ciphertext: CIPHERTEXT.to_vec(),
            actor: "issuance".into(),
        }
    }

    fn disclosure(card_id: &str, request_id: &str, max: u32) -> PinDisclosureRequest {
        PinDisclosureRequest {
            card_id: card_id.into(),
            request_id: request_id.into(),
            confirmation_json: r#"{"method":"counter","document":"licence","checked_by":"ra-op-1"}"#.into(),
            actor: "ra:op-1".into(),
            limit: DisclosureLimit { max_per_window: max, window_seconds: 3600 },
            ra_identity: "ra-tokyo".into(),
            ra_daily_cap: 100,
        }
    }

    fn by_ra(card_id: &str, request_id: &str, ra: &str, cap: u32) -> PinDisclosureRequest {
        PinDisclosureRequest { ra_identity: ra.into(), ra_daily_cap: cap, ..disclosure(card_id, request_id, 100) }
    }

    #[test]
    fn each_ra_has_a_daily_cap_over_all_cards_that_resets_at_midnight_jst_and_survives_a_reopen() {
        // 2026-01-05T14:59:00Z = 23:59 JST.
        let before_midnight = 1_767_625_140;
        let (_dir, store, cards) = reopened(|store| {
            let cards: Vec<String> = (0..3)
                .map(|i| {
                    let id = store
                        .begin_application(&application(&format!("app-{i}"), &format!("L{i}")), "JMA")
                        .unwrap()
                        .view
                        .card
                        .card_id;
                    store.store_pin_escrow(&escrow(&id)).unwrap();
                    id
                })
                .collect();
            store.disclose_pin_escrow_at(&by_ra(&cards[0], "r1", "ra-tokyo", 2), before_midnight - 7200).unwrap();
            store.disclose_pin_escrow_at(&by_ra(&cards[1], "r2", "ra-tokyo", 2), before_midnight - 60).unwrap();
            cards
        });
        // Reopened: the count of the day is still there.
        let entries = store.list_audit(0, None).unwrap().len();
        let err = store.disclose_pin_escrow_at(&by_ra(&cards[2], "r3", "ra-tokyo", 2), before_midnight).unwrap_err();
        match &err {
            StoreError::RaDailyLimit { ra_identity, day, cap, retry_after_unix } => {
                assert_eq!((ra_identity.as_str(), day.as_str(), *cap), ("ra-tokyo", "2026-01-05", 2));
                assert_eq!(*retry_after_unix, before_midnight + 60, "midnight JST");
            }
            other => panic!("expected RaDailyLimit, got {other:?}"),
        }
        assert_eq!(store.list_audit(0, None).unwrap().len(), entries, "a refusal writes nothing");
        // Another RA has its own count.
        store.disclose_pin_escrow_at(&by_ra(&cards[2], "r3", "ra-osaka", 2), before_midnight).unwrap();
        // A new day in Japan (00:00 JST = 15:00 UTC).
        store.disclose_pin_escrow_at(&by_ra(&cards[2], "r4", "ra-tokyo", 2), before_midnight + 60).unwrap();
        let log = store.list_audit(0, None).unwrap();
        let detail: serde_json::Value = serde_json::from_str(&log.last().unwrap().detail_json).unwrap();
        assert_eq!(detail["ra_identity"], "ra-tokyo");
        assert_eq!(detail["ra_day"]["day"], "2026-01-06");
        assert_eq!(detail["ra_day"]["disclosure_number"], 1);
    }

    #[test]
    fn an_escrow_is_stored_once_and_a_repeat_of_the_same_record_is_a_no_op() {
        let (_dir, store) = temp_store();
        let card_id = card(&store);
        let stored = store.store_pin_escrow(&escrow(&card_id)).unwrap();
        assert_eq!((stored.iv.as_slice(), stored.ciphertext.as_slice()), (&[7; 12][..], &CIPHERTEXT[..]));
        assert!(stored.disclosures.is_empty());
        let entries = store.list_audit(0, None).unwrap().len();

        let again = store.store_pin_escrow(&escrow(&card_id)).unwrap();
        assert_eq!(again, stored);
        assert_eq!(store.list_audit(0, None).unwrap().len(), entries);

        let mut other = escrow(&card_id);
        other.ciphertext[0] ^= 1;
        let err = store.store_pin_escrow(&other).unwrap_err();
        assert!(matches!(err, StoreError::PinEscrowExists { .. }), "{err}");
        let mut other = escrow(&card_id);
        other.key_label = "pin-escrow-2027".into();
        assert!(matches!(store.store_pin_escrow(&other), Err(StoreError::PinEscrowExists { .. })));
        assert_eq!(store.get_pin_escrow(&card_id).unwrap(), stored, "never replaced");
        assert_eq!(store.list_audit(0, None).unwrap().len(), entries);
    }

    #[test]
    fn escrow_needs_a_card_and_disclosure_needs_an_escrow() {
        let (_dir, store) = temp_store();
        assert!(matches!(store.store_pin_escrow(&escrow("Cnope")), Err(StoreError::NoSuchCard { .. })));
        let card_id = card(&store);
        let err = store.disclose_pin_escrow(&disclosure(&card_id, "req-1", 3)).unwrap_err();
        assert!(matches!(err, StoreError::NoPinEscrow { .. }), "{err}");
        assert!(matches!(store.get_pin_escrow(&card_id), Err(StoreError::NoPinEscrow { .. })));
    }

    #[test]
    fn a_disclosure_is_recorded_once_per_request_and_audited_without_the_ciphertext() {
        let (_dir, store) = temp_store();
        let card_id = card(&store);
        store.store_pin_escrow(&escrow(&card_id)).unwrap();
        let out = store.disclose_pin_escrow_at(&disclosure(&card_id, "req-1", 3), 1_000_000).unwrap();
        assert_eq!(out.ciphertext, CIPHERTEXT);
        assert_eq!(out.disclosures.len(), 1);
        assert_eq!(out.disclosures[0].request_id, "req-1");
        assert_eq!(out.disclosures[0].at_unix, 1_000_000);
        assert_eq!(out.disclosures[0].actor, "ra:op-1");

        let err = store.disclose_pin_escrow_at(&disclosure(&card_id, "req-1", 3), 1_000_010).unwrap_err();
        assert!(matches!(err, StoreError::DisclosureRepeated { .. }), "{err}");
        assert_eq!(store.get_pin_escrow(&card_id).unwrap().disclosures.len(), 1);

        let log = store.list_audit(0, None).unwrap();
        let actions: Vec<_> = log.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["application.begin", "pin.escrow", "pin.disclose"]);
        let detail: serde_json::Value = serde_json::from_str(&log[2].detail_json).unwrap();
        assert_eq!(detail["request_id"], "req-1");
        assert_eq!(detail["confirmation"]["checked_by"], "ra-op-1");
        for entry in &log {
            let text = serde_json::to_string(entry).unwrap();
            assert!(!text.contains(&hex::encode(CIPHERTEXT)), "{text}");
            assert!(!text.contains(&hex::encode(&CIPHERTEXT[..8])), "{text}");
            assert!(!text.contains("enc-pin"), "{text}");
            assert!(!text.contains(&hex::encode([7u8; 12])), "no IV either: {text}");
        }
        assert_eq!(store.verify_audit_chain().unwrap(), 3);
    }

    #[test]
    fn disclosures_are_limited_per_card_within_a_sliding_window() {
        let (_dir, store) = temp_store();
        let card_id = card(&store);
        store.store_pin_escrow(&escrow(&card_id)).unwrap();
        let t0 = 1_767_575_045; // 2026-01-05T01:04:05Z
        store.disclose_pin_escrow_at(&disclosure(&card_id, "req-1", 2), t0).unwrap();
        store.disclose_pin_escrow_at(&disclosure(&card_id, "req-2", 2), t0 + 600).unwrap();
        let entries = store.list_audit(0, None).unwrap().len();

        let err = store.disclose_pin_escrow_at(&disclosure(&card_id, "req-3", 2), t0 + 1200).unwrap_err();
        match &err {
            StoreError::DisclosureLimit { retry_after_unix, .. } => assert_eq!(*retry_after_unix, t0 + 3600),
            other => panic!("expected DisclosureLimit, got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "disclosure limit reached, retry after 2026-01-05T02:04:05Z (at most 2 per 3600 s)"
        );
        assert_eq!(store.list_audit(0, None).unwrap().len(), entries, "a refusal writes nothing");
        // One second before the first leaves the window: still refused.
        assert!(store.disclose_pin_escrow_at(&disclosure(&card_id, "req-3", 2), t0 + 3599).is_err());
        // Once it has left, one more is allowed, then the second one bounds the next.
        store.disclose_pin_escrow_at(&disclosure(&card_id, "req-3", 2), t0 + 3600).unwrap();
        let err = store.disclose_pin_escrow_at(&disclosure(&card_id, "req-4", 2), t0 + 3700).unwrap_err();
        assert!(matches!(err, StoreError::DisclosureLimit { retry_after_unix, .. } if retry_after_unix == t0 + 4200));
        // A lower limit than before: allowed again once enough have left.
        let err = store.disclose_pin_escrow_at(&disclosure(&card_id, "req-4", 1), t0 + 3700).unwrap_err();
        assert!(matches!(err, StoreError::DisclosureLimit { retry_after_unix, .. } if retry_after_unix == t0 + 7200));

        // The limit is per card.
        let other = store.begin_application(&application("app-2", "L2"), "JMA").unwrap().view.card.card_id;
        store.store_pin_escrow(&escrow(&other)).unwrap();
        store.disclose_pin_escrow_at(&disclosure(&other, "req-1", 2), t0 + 3700).unwrap();
    }

    #[test]
    fn escrows_survive_a_reopen() {
        let (_dir, store, card_id) = reopened(|store| {
            let card_id = card(store);
            store.store_pin_escrow(&escrow(&card_id)).unwrap();
            store.disclose_pin_escrow_at(&disclosure(&card_id, "req-1", 3), 1_000).unwrap();
            card_id
        });
        let escrow = store.get_pin_escrow(&card_id).unwrap();
        assert_eq!(escrow.ciphertext, CIPHERTEXT);
        assert_eq!(escrow.disclosures.len(), 1);
        assert!(matches!(
            store.disclose_pin_escrow_at(&disclosure(&card_id, "req-1", 3), 2_000),
            Err(StoreError::DisclosureRepeated { .. })
        ));
    }
}
