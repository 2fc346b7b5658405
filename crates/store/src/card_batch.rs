//! Several calls of `begin_procedure`, `prepare_card` and `finish_card`, for
//! any cards, in one transaction and one flush. Every sled transaction seals
//! and writes log buffers of its own, so under load the steps that arrive
//! together are written together (issue 14's group commit, one level up from
//! `group_commit`'s shared flush).
//!
//! The answers are those the calls would give one after the other in the
//! order given: each card's writes see the ones before it in the same
//! transaction. Should any card be refused, the transaction is dropped whole
//! and every card runs again on its own, so one refusal never touches another
//! card's answer.

use crate::application::begin;
use crate::certificates::{check_scopes, escrow_of, finish_in, finished, prepare_in};
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

/// One call of a card's issuance, as the registry receives them.
#[derive(Debug, Clone)]
pub enum CardStep {
    Begin(Box<CardApplication>),
    Prepare(CardPreparation),
    Finish(CardCompletion),
}

/// A step's answer: that of `begin_procedure`, `prepare_card` or `finish_card`.
#[derive(Debug, Clone, PartialEq)]
pub enum CardStepDone {
    Begun(Box<BeginOutcome>),
    /// The certificate records, and whether this call stored the PIN escrow.
    Prepared(Vec<CertificateRecord>, bool),
    Finished(CardRecord),
}

/// A step's writes inside the transaction, before they are durable.
enum Written {
    Begun(Box<BeginOutcome>),
    Prepared(Vec<CertificateRecord>, bool, bool),
    Finished(CardRecord, bool, Option<u64>),
}

impl Written {
    fn changed(&self) -> bool {
        match self {
            Written::Begun(outcome) => !outcome.existing,
            Written::Prepared(_, changed, _) | Written::Finished(_, changed, _) => *changed,
        }
    }

    fn last_good(&self) -> Option<u64> {
        match self {
            Written::Finished(_, _, good) => *good,
            _ => None,
        }
    }

    /// The answer once the writes are durable.
    fn answer(self) -> Result<CardStepDone, StoreError> {
        match self {
            Written::Begun(outcome) => Ok(CardStepDone::Begun(outcome)),
            Written::Prepared(records, _, pin_stored) => Ok(CardStepDone::Prepared(records, pin_stored)),
            Written::Finished(card, _, _) => finished(card).map(CardStepDone::Finished),
        }
    }
}

impl Store {
    /// The steps in one transaction and one shared flush, answered as if each
    /// had been called alone in this order; the GOOD changes of the finished
    /// cards reach the feed after the flush.
    pub fn card_steps(&self, batch: &[CardStep]) -> Vec<Result<CardStepDone, StoreError>> {
        let scopes_ok = batch.iter().all(|step| match step {
            CardStep::Prepare(p) => check_scopes(&p.certs).is_ok(),
            _ => true,
        });
        if batch.len() < 2 || !scopes_ok {
            return batch.iter().map(|step| self.card_step(step)).collect();
        }
        let together = self.trees.transact(|tx| {
            let mut out = Vec::with_capacity(batch.len());
            for step in batch {
                out.push(match step {
                    CardStep::Begin(a) => {
                        Written::Begun(Box::new(begin(tx, &a.app, &a.procedure, &a.holder_id_prefix)?))
                    }
                    CardStep::Prepare(p) => {
                        let pin = escrow_of(&p.card_id, p.pin.as_ref());
                        let (records, changed, pin_stored) =
                            prepare_in(tx, &p.card_id, &p.certs, pin.as_ref(), &p.actor)?;
                        Written::Prepared(records, changed, pin_stored)
                    }
                    CardStep::Finish(c) => {
                        let (card, changed, good) = finish_in(tx, &c.card_id, &c.certs, &c.cert_actor, &c.actor)?;
                        Written::Finished(card, changed, good)
                    }
                });
            }
            Ok(out)
        });
        let Ok(done) = together else {
            return batch.iter().map(|step| self.card_step(step)).collect();
        };
        let changed: Vec<bool> = done.iter().map(Written::changed).collect();
        let last_good = done.iter().filter_map(Written::last_good).max();
        let flushed = self.flush_each(&changed, || crate::feed::flush_and_raise(self, last_good));
        done.into_iter().zip(flushed).map(|(written, flushed)| flushed.and_then(|()| written.answer())).collect()
    }

    /// One step alone, by the single call.
    fn card_step(&self, step: &CardStep) -> Result<CardStepDone, StoreError> {
        match step {
            CardStep::Begin(a) => self
                .begin_procedure(&a.app, &a.procedure, &a.holder_id_prefix)
                .map(|o| CardStepDone::Begun(Box::new(o))),
            CardStep::Prepare(p) => self
                .prepare_card(&p.card_id, &p.certs, p.pin.as_ref(), &p.actor)
                .map(|(records, pin_stored)| CardStepDone::Prepared(records, pin_stored)),
            CardStep::Finish(c) => {
                self.finish_card(&c.card_id, &c.certs, &c.cert_actor, &c.actor).map(CardStepDone::Finished)
            }
        }
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

    /// The batch as steps of one kind, each answer unwrapped by `pick`.
    fn run<J: Clone, T>(
        store: &Store,
        batch: &[J],
        step: fn(J) -> CardStep,
        pick: fn(CardStepDone) -> Option<T>,
    ) -> Vec<Result<T, StoreError>> {
        let steps: Vec<CardStep> = batch.iter().cloned().map(step).collect();
        let answers = store.card_steps(&steps);
        answers.into_iter().map(|r| r.map(|done| pick(done).expect("the answer of the step asked"))).collect()
    }

    fn prepare_cards(
        store: &Store,
        batch: &[CardPreparation],
    ) -> Vec<Result<(Vec<CertificateRecord>, bool), StoreError>> {
        run(store, batch, CardStep::Prepare, |d| match d {
            CardStepDone::Prepared(records, pin) => Some((records, pin)),
            _ => None,
        })
    }

    fn finish_cards(store: &Store, batch: &[CardCompletion]) -> Vec<Result<CardRecord, StoreError>> {
        run(store, batch, CardStep::Finish, |d| match d {
            CardStepDone::Finished(card) => Some(card),
            _ => None,
        })
    }

    fn begin_procedures(store: &Store, batch: &[CardApplication]) -> Vec<Result<BeginOutcome, StoreError>> {
        run(
            store,
            batch,
            |a| CardStep::Begin(Box::new(a)),
            |d| match d {
                CardStepDone::Begun(outcome) => Some(*outcome),
                _ => None,
            },
        )
    }

    /// `n` pending cards, and two fresh serials for each.
    fn pending(store: &Store, n: usize) -> (Vec<String>, Vec<[Serial; 2]>) {
        (0..n)
            .map(|i| {
                let app = application(&format!("app-{i}"), &format!("L{i}"));
                let card_id = store.begin_application(&app, "JMA").unwrap().view.card.card_id;
                (card_id, [Serial::random(), Serial::random()])
            })
            .unzip()
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
        let (cards, serials) = pending(&store, 3);
        let audit_start = store.list_audit(1, None).unwrap().len() as u64;

        let batch: Vec<_> = cards.iter().zip(&serials).map(|(c, s)| preparation(c, s, c == &cards[1])).collect();
        let out = prepare_cards(&store, &batch);
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
        assert!(prepare_cards(&store, &batch).iter().all(|r| r.as_ref().is_ok_and(|(_, pin)| !pin)));
        assert_eq!(store.list_audit(1, None).unwrap().len(), audit_len);

        let batch: Vec<_> = cards.iter().zip(&serials).map(|(c, s)| completion(c, s)).collect();
        for card in finish_cards(&store, &batch) {
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
        let (cards, serials) = pending(&store, 3);
        // Card 1 names card 0's signing serial: refused as alone, nothing of it kept.
        let mut batch: Vec<_> = cards.iter().zip(&serials).map(|(c, s)| preparation(c, s, false)).collect();
        batch[1].certs[0] = prepared(CertificateKind::Signing, &serials[0][0]);
        let out = prepare_cards(&store, &batch);
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
        let out = finish_cards(&store, &[completion(&cards[0], &serials[0]), completion(&cards[2], &serials[2])]);
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
        let out = begin_procedures(&store, &batch);
        assert!(out[0].as_ref().is_ok_and(|o| !o.existing) && out[2].as_ref().is_ok_and(|o| !o.existing));
        let err = out[1].as_ref().unwrap_err();
        assert!(matches!(err, StoreError::ActiveCard { .. }), "{err}");
        assert!(matches!(store.get_card_by_application("app-b"), Err(StoreError::NoSuchApplication { .. })));

        // Retried together: the same cards, nothing new written.
        let audit_len = store.list_audit(1, None).unwrap().len();
        let again = begin_procedures(&store, &[begin("app-a", "L1"), begin("app-c", "L2")]);
        for (first, again) in [&out[0], &out[2]].into_iter().zip(&again) {
            let (first, again) = (first.as_ref().unwrap(), again.as_ref().unwrap());
            assert!(again.existing);
            assert_eq!(again.view.card.card_id, first.view.card.card_id);
        }
        assert_eq!(store.list_audit(1, None).unwrap().len(), audit_len);
        store.verify_audit_chain().unwrap();
    }

    #[test]
    fn one_batch_may_begin_prepare_and_finish_different_cards() {
        let (_dir, store) = temp_store();
        let (cards, serials) = pending(&store, 2);
        prepare_cards(&store, &[preparation(&cards[0], &serials[0], false)]).pop().unwrap().unwrap();
        let batch = [
            CardStep::Finish(completion(&cards[0], &serials[0])),
            CardStep::Prepare(preparation(&cards[1], &serials[1], true)),
            CardStep::Begin(Box::new(CardApplication {
                app: application("app-new", "L9"),
                procedure: ApplicationProcedure::New,
                holder_id_prefix: "JMA".into(),
            })),
            // Card 1 is prepared earlier in this same transaction, so it can finish here too.
            CardStep::Finish(completion(&cards[1], &serials[1])),
        ];
        let out: Vec<CardStepDone> = store.card_steps(&batch).into_iter().map(Result::unwrap).collect();
        assert!(matches!(&out[0], CardStepDone::Finished(card) if card.state == CardState::Active));
        assert!(matches!(&out[1], CardStepDone::Prepared(records, true) if records.len() == 2));
        assert!(matches!(&out[2], CardStepDone::Begun(outcome) if !outcome.existing));
        assert!(matches!(&out[3], CardStepDone::Finished(card) if card.state == CardState::Active));
        assert_eq!(store.feed_position(), 4, "all four certificates GOOD and durable");
        assert_eq!(store.get_card_by_application("app-new").unwrap().card.state, CardState::Pending);
        store.verify_audit_chain().unwrap();
    }
}
