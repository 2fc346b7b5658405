//! Restart recovery over gRPC: ListUnresolved shows what a crash left
//! RESERVED or PRECERT, AbandonReservation gives up a RESERVED serial.

use proto::registry::v1 as pb;
use testkit::registry::*;
use tonic::Code;

#[tokio::test]
async fn unresolved_certificates_are_listed_and_a_reservation_can_be_abandoned() {
    let (server, mut c) = Server::start_with_client().await;
    let card = c.begin_application(begin_request("app-1", "555101")).await.unwrap().into_inner().card.unwrap();
    let reserved = reserve_serial(&mut c, reserve_request(&card.card_id, pb::CertificateKind::Signing)).await;
    let precert = reserve_serial(&mut c, reserve_request(&card.card_id, pb::CertificateKind::Authentication)).await;
    let (der, tbs) = certificate(&precert);
    c.record_tbs(pb::RecordTbsRequest { serial: precert.clone(), tbs_der: tbs, crl_scope: None }).await.unwrap();

    let left = c.list_unresolved(pb::ListUnresolvedRequest {}).await.unwrap().into_inner().entries;
    assert_eq!(left.len(), 2);
    for entry in &left {
        assert_eq!(entry.card.as_ref().unwrap().card_id, card.card_id);
        assert!(!entry.holder.as_ref().unwrap().holder_id.is_empty());
    }

    // A PRECERT cannot be abandoned: it may have been signed.
    let refused =
        c.abandon_reservation(pb::AbandonReservationRequest { serial: precert.clone(), actor: "rec".into() }).await;
    assert_status(refused, Code::FailedPrecondition, "serial: ");
    let unknown =
        c.abandon_reservation(pb::AbandonReservationRequest { serial: "0badc0ffee".into(), actor: "rec".into() }).await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);

    let gone = c
        .abandon_reservation(pb::AbandonReservationRequest { serial: reserved.clone(), actor: "rec".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gone.state, pb::CertificateState::Abandoned as i32);
    let again = c
        .abandon_reservation(pb::AbandonReservationRequest { serial: reserved.clone(), actor: "rec".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, gone, "idempotent");
    let (_, tbs) = certificate(&reserved);
    let late = c.record_tbs(pb::RecordTbsRequest { serial: reserved.clone(), tbs_der: tbs, crl_scope: None }).await;
    assert_status(late, Code::FailedPrecondition, "serial: ");

    c.store_certificate(pb::StoreCertificateRequest { serial: precert.clone(), certificate_der: der }).await.unwrap();
    assert!(c.list_unresolved(pb::ListUnresolvedRequest {}).await.unwrap().into_inner().entries.is_empty());

    // The slot was freed: a retry reserves a new serial.
    let fresh = reserve_serial(&mut c, reserve_request(&card.card_id, pb::CertificateKind::Signing)).await;
    assert_ne!(fresh, reserved);
    let audit = audit_log(&mut c).await;
    assert_eq!(audit.iter().filter(|e| e.action == "serial.abandon" && e.subject == reserved).count(), 1);
    server.stop().await;
}
