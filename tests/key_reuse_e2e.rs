//! A public key goes on one card only (issue 11, item 6): the same CSR on a
//! second application, and a key whose card was revoked as lost
//! (keyCompromise), are refused with INVALID_ARGUMENT naming the CSR field,
//! before anything is recorded.

mod common;

use common::{application_with_csrs, openssl_csr, Ca};
use tonic::Code;

#[test]
fn a_certified_key_is_refused_on_another_card_and_a_compromised_one_for_ever() {
    let mut ca = Ca::new("");
    let addrs = ca.spawn(&["run"], &["issuance", "revocation"]);
    let dir = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut issuance = ca.issuance(&addrs[0]).await;
        let (sign, auth) = (openssl_csr(&dir, "k1-s", "rsa:2048"), openssl_csr(&dir, "k1-a", "ec"));
        let first = issuance
            .submit_application(application_with_csrs("reuse-1", "731001", sign.clone(), auth.clone()))
            .await
            .expect("the first card")
            .into_inner();

        // Another physician, the first card's signing key.
        let fresh_auth = openssl_csr(&dir, "k2-a", "ec");
        let err = issuance
            .submit_application(application_with_csrs("reuse-2", "731002", sign.clone(), fresh_auth.clone()))
            .await
            .expect_err("a key already certified");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with("signing_csr: "), "{}", err.message());
        assert!(err.message().contains(&first.card_id), "{}", err.message());

        // Nothing was recorded: the same application with a fresh key goes through.
        let fresh_sign = openssl_csr(&dir, "k2-s", "rsa:2048");
        let second = issuance
            .submit_application(application_with_csrs("reuse-2", "731002", fresh_sign, fresh_auth))
            .await
            .expect("fresh keys are fine")
            .into_inner();
        assert_ne!(second.card_id, first.card_id);

        // The first card is lost: its keys are compromised, and stay refused.
        let out = ca.emergency_revoke(&first.card_id, &addrs[1]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let err = issuance
            .submit_application(application_with_csrs("reuse-3", "731003", openssl_csr(&dir, "k3-s", "rsa:2048"), auth))
            .await
            .expect_err("a compromised key");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with("authentication_csr: "), "{}", err.message());
        assert!(err.message().contains("keyCompromise"), "{}", err.message());
    });
}
