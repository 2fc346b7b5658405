//! Several cards' `begin_procedure`, `prepare_card` or `finish_card` in one
//! transaction and one flush. Under load, every sled transaction seals and writes a log buffer of
//! its own, so cards that arrive together are written together (issue 14's
//! group commit, one level up from `group_commit`'s shared flush).
//!
//! The answers are those the calls would give one after the other in the
//! order given: each card's writes see the ones before it in the same
//! transaction. Should any card be refused, the transaction is dropped whole
//! and every card runs again on its own, so one refusal never touches another
//! card's answer.

use crate::application::begin;
use crate::certificates::{check_scopes, finish_in, finished, prepare_in};
use crate::error::StoreError;
use crate::records::{ApplicationProcedure, BeginOutcome, CardRecord, CertificateRecord, NewApplication, NewPinEscrow};
use crate::{PreparedCertificate, SignedCertificate, Store};

/// One card's `begin_procedure` call.
#[derive(Debug, Clone)]
pub struct CardApplication {
    pub app: NewApplication,
    pub procedure: ApplicationProcedure,
    pub holder_id_prefix: String,
}

/// One card's `prepare_card` call.
#[derive(Debug, Clone)]
pub struct CardPreparation {
    pub card_id: String,
    pub certs: Vec<PreparedCertificate>,
    pub pin: Option<NewPinEscrow>,
    pub actor: String,
}

/// One card's `finish_card` call.
#[derive(Debug, Clone)]
pub struct CardCompletion {
    pub card_id: String,
    pub certs: Vec<SignedCertificate>,
    pub cert_actor: String,
    pub actor: String,
}

pub type Prepared = Result<(Vec<CertificateRecord>, bool), StoreError>;

impl Store {
    /// `begin_procedure` for each application, in one transaction and one shared flush.
    pub fn begin_procedures(&self, batch: &[CardApplication]) -> Vec<Result<BeginOutcome, StoreError>> {
        let alone = |a: &CardApplication| self.begin_procedure(&a.app, &a.procedure, &a.holder_id_prefix);
        if batch.len() < 2 {
            return batch.iter().map(alone).collect();
        }
        let together = self.trees.transact(|tx| {
            let mut out = Vec::with_capacity(batch.len());
            for a in batch {
                out.push(begin(tx, &a.app, &a.procedure, &a.holder_id_prefix)?);
            }
            Ok(out)
        });
        let Ok(done) = together else {
            return batch.iter().map(alone).collect();
        };
        let changed: Vec<bool> = done.iter().map(|outcome| !outcome.existing).collect();
        let flushed = self.flush_each(&changed, || self.flush_grouped());
        done.into_iter().zip(flushed).map(|(outcome, flushed)| flushed.map(|()| outcome)).collect()
    }

    /// `prepare_card` for each card, in one transaction and one shared flush.
    pub fn prepare_cards(&self, batch: &[CardPreparation]) -> Vec<Prepared> {
        let alone = |p: &CardPreparation| self.prepare_card(&p.card_id, &p.certs, p.pin.as_ref(), &p.actor);
        if batch.len() < 2 || batch.iter().any(|p| check_scopes(&p.certs).is_err()) {
            return batch.iter().map(alone).collect();
        }
        let pins: Vec<Option<NewPinEscrow>> = batch
            .iter()
            .map(|p| p.pin.as_ref().map(|new| NewPinEscrow { card_id: p.card_id.clone(), ..new.clone() }))
            .collect();
        let together = self.trees.transact(|tx| {
            let mut out = Vec::with_capacity(batch.len());
            for (p, pin) in batch.iter().zip(&pins) {
                out.push(prepare_in(tx, &p.card_id, &p.certs, pin.as_ref(), &p.actor)?);
            }
            Ok(out)
        });
        let Ok(done) = together else {
            return batch.iter().map(alone).collect();
        };
        let changed: Vec<bool> = done.iter().map(|(_, changed, _)| *changed).collect();
        let flushed = self.flush_each(&changed, || self.flush_grouped());
        done.into_iter()
            .zip(flushed)
            .map(|((records, _, pin_stored), flushed)| flushed.map(|()| (records, pin_stored)))
            .collect()
    }

    /// `finish_card` for each card, in one transaction and one shared flush;
    /// the GOOD changes of all reach the feed after it.
    pub fn finish_cards(&self, batch: &[CardCompletion]) -> Vec<Result<CardRecord, StoreError>> {
        let alone = |c: &CardCompletion| self.finish_card(&c.card_id, &c.certs, &c.cert_actor, &c.actor);
        if batch.len() < 2 {
            return batch.iter().map(alone).collect();
        }
        let together = self.trees.transact(|tx| {
            let mut out = Vec::with_capacity(batch.len());
            for c in batch {
                out.push(finish_in(tx, &c.card_id, &c.certs, &c.cert_actor, &c.actor)?);
            }
            Ok(out)
        });
        let Ok(done) = together else {
            return batch.iter().map(alone).collect();
        };
        let changed: Vec<bool> = done.iter().map(|(_, changed, _)| *changed).collect();
        let last_good = done.iter().filter_map(|(_, _, good)| *good).max();
        let flushed = self.flush_each(&changed, || crate::feed::flush_and_raise(self, last_good));
        done.into_iter().zip(flushed).map(|((card, _, _), flushed)| flushed.and_then(|()| finished(card))).collect()
    }

    /// One flush for every card that wrote; should it fail, each of the others
    /// that wrote asks again on its own, so each gets its own error (or a
    /// later success).
    fn flush_each(&self, changed: &[bool], flush: impl Fn() -> Result<(), StoreError>) -> Vec<Result<(), StoreError>> {
        let mut failed = match changed.iter().any(|wrote| *wrote) {
            true => flush().err(),
            false => None,
        };
        let failing = failed.is_some();
        changed
            .iter()
            .map(|wrote| match (wrote, failing) {
                (false, _) | (true, false) => Ok(()),
                (true, true) => failed.take().map_or_else(&flush, Err),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::application;
    use crate::records::{CardState, CertificateKind, CertificateState};
    use crate::test_support::{prepared, revocation, signed, temp_store};
    use crate::{RevocationReason, Serial};

    fn pending(store: &Store, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let app = application(&format!("app-{i}"), &format!("L{i}"));
                store.begin_application(&app, "JMA").unwrap().view.card.card_id
            })
            .collect()
    }

    fn preparation(card_id: &str, serials: &[Serial; 2], pin: bool) -> CardPreparation {
        CardPreparation {
            card_id: card_id.into(),
            certs: vec![
                prepared(CertificateKind::Signing, &serials[0]),
                prepared(CertificateKind::Authentication, &serials[1]),
            ],
            pin: pin.then(|| NewPinEscrow {
                card_id: String::new(),
                key_label: "pin-escrow".into(),
                iv: vec![7; 12],
                ciphertext: vec![9; 24],
                actor: "ra-1".into(),
            }),
            actor: "issuance".into(),
        }
    }

    fn completion(card_id: &str, serials: &[Serial; 2]) -> CardCompletion {
        CardCompletion {
            card_id: card_id.into(),
            certs: serials.iter().map(signed).collect(),
            cert_actor: "issuance".into(),
            actor: "ra-1".into(),
        }
    }

    #[test]
    fn cards_prepared_and_finished_together_are_recorded_and_audited_as_alone() {
        let (_dir, store) = temp_store();
        let cards = pending(&store, 3);
        let serials: Vec<[Serial; 2]> = cards.iter().map(|_| [Serial::random(), Serial::random()]).collect();
        let audit_start = store.list_audit(1, None).unwrap().len() as u64;

        let batch: Vec<_> = cards.iter().zip(&serials).map(|(c, s)| preparation(c, s, c == &cards[1])).collect();
        let out = store.prepare_cards(&batch);
        let pin_stored: Vec<bool> = out.iter().map(|r| r.as_ref().unwrap().1).collect();
        assert_eq!(pin_stored, [false, true, false]);
        for (card_id, s) in cards.iter().zip(&serials) {
            let view = store.get_card(card_id).unwrap();
            assert_eq!(view.card.signing_serial.as_ref(), Some(&s[0]));
            assert_eq!(store.get_certificate(&s[1]).unwrap().state, CertificateState::Precert);
        }
        assert_eq!(store.get_pin_escrow(&cards[1]).unwrap().ciphertext, vec![9; 24], "escrowed under its own card");
        assert_eq!(store.unresolved_reservations().unwrap().len(), 6, "all recorded before anything is signed");
        // The same batch again writes nothing (retries are idempotent, as alone).
        let audit_len = store.list_audit(1, None).unwrap().len();
        assert!(store.prepare_cards(&batch).iter().all(|r| r.as_ref().is_ok_and(|(_, pin)| !pin)));
        assert_eq!(store.list_audit(1, None).unwrap().len(), audit_len);

        let batch: Vec<_> = cards.iter().zip(&serials).map(|(c, s)| completion(c, s)).collect();
        for card in store.finish_cards(&batch) {
            assert_eq!(card.unwrap().state, CardState::Active);
        }
        let feed: Vec<Serial> = store.feed_all_after(0).unwrap().into_iter().map(|c| c.serial).collect();
        assert_eq!(feed, serials.concat(), "every certificate GOOD, in order");
        assert_eq!(store.feed_position(), 6, "and durable");
        let actions: Vec<String> =
            store.list_audit(audit_start + 1, None).unwrap().into_iter().map(|e| e.action).collect();
        let per_card = |pin: bool| {
            let mut a = if pin { vec!["pin.escrow"] } else { vec![] };
            a.extend(["serial.reserve", "tbs.record", "serial.reserve", "tbs.record"]);
            a
        };
        let mut expected: Vec<&str> = [per_card(false), per_card(true), per_card(false)].concat();
        for _ in &cards {
            expected.extend(["certificate.store", "certificate.store", "application.complete"]);
        }
        assert_eq!(actions, expected);
        store.verify_audit_chain().unwrap();
    }

    #[test]
    fn a_refused_card_gets_its_own_answer_and_the_others_of_its_batch_go_on() {
        let (_dir, store) = temp_store();
        let cards = pending(&store, 3);
        let serials: Vec<[Serial; 2]> = cards.iter().map(|_| [Serial::random(), Serial::random()]).collect();
        // Card 1 names card 0's signing serial: refused as alone, nothing of it kept.
        let mut batch: Vec<_> = cards.iter().zip(&serials).map(|(c, s)| preparation(c, s, false)).collect();
        batch[1].certs[0] = prepared(CertificateKind::Signing, &serials[0][0]);
        let out = store.prepare_cards(&batch);
        let err = out[1].as_ref().unwrap_err();
        assert!(
            matches!(err, StoreError::CertificateState { .. }) && err.to_string().contains("already in use"),
            "{err}"
        );
        assert!(out[0].is_ok() && out[2].is_ok());
        assert!(matches!(store.get_certificate(&serials[1][1]), Err(StoreError::NoSuchCertificate { .. })));
        assert_eq!(store.get_card(&cards[1]).unwrap().card.signing_serial, None);
        assert_eq!(store.get_certificate(&serials[2][0]).unwrap().state, CertificateState::Precert);

        // Card 2 revoked meanwhile: its certificates are stored, it is not completed; card 0 is.
        store.revoke_card(&cards[2], &revocation(RevocationReason::KeyCompromise), "").unwrap();
        let out = store.finish_cards(&[completion(&cards[0], &serials[0]), completion(&cards[2], &serials[2])]);
        assert_eq!(out[0].as_ref().unwrap().state, CardState::Active);
        let err = out[1].as_ref().unwrap_err();
        assert!(matches!(err, StoreError::CardNotPending { state: CardState::Revoked, .. }), "{err}");
        assert_eq!(
            store.get_certificate(&serials[2][0]).unwrap().certificate_der,
            Some(signed(&serials[2][0]).certificate_der)
        );
        store.verify_audit_chain().unwrap();
    }

    #[test]
    fn applications_begun_together_get_the_answers_they_would_get_alone() {
        let (_dir, store) = temp_store();
        let begin = |id: &str, licence: &str| CardApplication {
            app: application(id, licence),
            procedure: ApplicationProcedure::New,
            holder_id_prefix: "JMA".into(),
        };
        // The second names the first's licence: refused as alone (the first card is pending).
        let batch = [begin("app-a", "L1"), begin("app-b", "L1"), begin("app-c", "L2")];
        let out = store.begin_procedures(&batch);
        assert!(out[0].as_ref().is_ok_and(|o| !o.existing) && out[2].as_ref().is_ok_and(|o| !o.existing));
        let err = out[1].as_ref().unwrap_err();
        assert!(matches!(err, StoreError::ActiveCard { .. }), "{err}");
        assert!(matches!(store.get_card_by_application("app-b"), Err(StoreError::NoSuchApplication { .. })));

        // Retried together: the same cards, nothing new written.
        let audit_len = store.list_audit(1, None).unwrap().len();
        let again = store.begin_procedures(&[begin("app-a", "L1"), begin("app-c", "L2")]);
        for (first, again) in [&out[0], &out[2]].into_iter().zip(&again) {
            let (first, again) = (first.as_ref().unwrap(), again.as_ref().unwrap());
            assert!(again.existing);
            assert_eq!(again.view.card.card_id, first.view.card.card_id);
        }
        assert_eq!(store.list_audit(1, None).unwrap().len(), audit_len);
        store.verify_audit_chain().unwrap();
    }
}
