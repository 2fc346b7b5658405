//! End to end over mTLS (issue 6): the ceremony creates the service-identity CA
//! and role certificates; `hpki-ca run` serves every gRPC service with TLS and
//! a required client certificate, its services call each other each with its
//! own identity, and each role reaches only what `tls::policy::POLICY` allows. Clients without a certificate,
//! with one from a foreign CA, or speaking plain text do not get through.
//! Plain text is served only when `[tls] enabled = false` says so.

mod common;

use common::application;

use common::Ca;
use proto::crl::v1::crl_publisher_client::CrlPublisherClient;
use proto::crl::v1::GetStatusRequest as CrlStatusRequest;
use proto::issuance::v1::issuance_client::IssuanceClient;
use proto::issuance::v1::*;
use proto::registry::v1::registry_client::RegistryClient;
use proto::registry::v1::{get_card_request, GetCardRequest, ListAuditRequest};
use proto::revocation::v1::revocation_client::RevocationClient;
use proto::revocation::v1::{status_request, StatusRequest};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

fn denied<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>, role: &str, what: &str) {
    let e = r.expect_err(&format!("{role} must not call {what}"));
    assert_eq!(e.code(), Code::PermissionDenied, "{role} on {what}: {e:?}");
    assert_eq!(e.message(), format!("identity {role} (role {role}) may not call {what}"));
}

/// No `[tls]` section at all: mutual TLS is the default.
fn mtls() -> Ca {
    let ca = Ca::new("");
    assert!(ca.tls);
    ca
}

#[test]
fn each_role_reaches_its_services_and_is_denied_elsewhere() {
    let mut ca = mtls();
    let tls = ca.state().join("tls");
    let files =
        ["ca.pem", "server.pem", "ra.pem", "operator.pem", "auditor.pem", "issuance.pem", "ocsp.pem", "crl.pem"];
    for f in files {
        assert!(tls.join(f).exists(), "the ceremony writes {f}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for k in ["ca.key", "server.key", "ra.key", "operator.key", "auditor.key", "issuance.key", "ocsp.key"] {
            let mode = std::fs::metadata(tls.join(k)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{k}");
        }
    }
    let addrs = ca.spawn(&["run"], &["registry", "issuance", "revocation", "crl"]);
    let (reg, iss, rev, crl) = (&addrs[0], &addrs[1], &addrs[2], &addrs[3]);
    let dir = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ch = |addr: &str, role: &str| {
            let (addr, role) = (addr.to_owned(), role.to_owned());
            let ca = &ca;
            async move { ca.grpc(&addr, &role).await.unwrap_or_else(|e| panic!("{role} connects to {addr}: {e:?}")) }
        };

        // ra: issuance (which reaches the registry as `issuance`), nothing else.
        let ra_iss = ch(iss, "ra").await;
        let card = IssuanceClient::new(ra_iss.clone())
            .submit_application(application("tls-1", "515151", &dir))
            .await
            .expect("ra issues a card over mTLS")
            .into_inner();
        let issuance_ref = || CardRef { key: Some(card_ref::Key::CardId(card.card_id.clone())) };
        let got = IssuanceClient::new(ra_iss).get_card(issuance_ref()).await.expect("ra reads the card");
        assert_eq!(got.into_inner().card_id, card.card_id);
        let by_card = || StatusRequest { key: Some(status_request::Key::CardId(card.card_id.clone())) };
        denied(
            RevocationClient::new(ch(rev, "ra").await).get_status(by_card()).await,
            "ra",
            "hpki.revocation.v1.Revocation/GetStatus",
        );
        denied(
            CrlPublisherClient::new(ch(crl, "ra").await).get_status(CrlStatusRequest {}).await,
            "ra",
            "hpki.crl.v1.CrlPublisher/GetStatus",
        );
        denied(
            RegistryClient::new(ch(reg, "ra").await)
                .list_audit(ListAuditRequest { from_sequence: 0, limit: 1, newest_first: false })
                .await,
            "ra",
            "hpki.registry.v1.Registry/ListAudit",
        );

        // operator: revocation and CRL publication, not issuance nor the registry.
        let status =
            RevocationClient::new(ch(rev, "operator").await).get_status(by_card()).await.expect("operator status");
        assert_eq!(status.into_inner().certificates.len(), 2);
        let crls = CrlPublisherClient::new(ch(crl, "operator").await).get_status(CrlStatusRequest {}).await;
        crls.expect("operator reads the CRL status");
        denied(
            IssuanceClient::new(ch(iss, "operator").await).get_card(issuance_ref()).await,
            "operator",
            "hpki.issuance.v1.Issuance/GetCard",
        );
        let get_card = || GetCardRequest { key: Some(get_card_request::Key::CardId(card.card_id.clone())) };
        denied(
            RegistryClient::new(ch(reg, "operator").await).get_card(get_card()).await,
            "operator",
            "hpki.registry.v1.Registry/GetCard",
        );

        // auditor: the audit log only.
        let audit = RegistryClient::new(ch(reg, "auditor").await)
            .list_audit(ListAuditRequest { from_sequence: 0, limit: 0, newest_first: false })
            .await
            .expect("auditor reads the audit log");
        assert!(!audit.into_inner().entries.is_empty());
        denied(
            RegistryClient::new(ch(reg, "auditor").await).get_card(get_card()).await,
            "auditor",
            "hpki.registry.v1.Registry/GetCard",
        );
        denied(
            RevocationClient::new(ch(rev, "auditor").await).get_status(by_card()).await,
            "auditor",
            "hpki.revocation.v1.Revocation/GetStatus",
        );
        denied(
            IssuanceClient::new(ch(iss, "auditor").await).get_card(issuance_ref()).await,
            "auditor",
            "hpki.issuance.v1.Issuance/GetCard",
        );

        // Our services: each what it needs (issuance reads cards), not more (ocsp does not).
        let reg_card = RegistryClient::new(ch(reg, "issuance").await)
            .get_card(get_card())
            .await
            .expect("issuance reads the registry");
        assert_eq!(reg_card.into_inner().certificates.len(), 2);
        let e = RegistryClient::new(ch(reg, "ocsp").await).get_card(get_card()).await.expect_err("ocsp: no GetCard");
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    });

    // The operator CLI over mTLS (operator certificate, the URL's scheme follows [tls]):
    // revocation reaches the registry and the CRL publisher as `revocation`.
    let card_id = rt
        .block_on(async {
            RegistryClient::new(ca.grpc(reg, "issuance").await.unwrap())
                .get_card(GetCardRequest { key: Some(get_card_request::Key::LicenceNumber("515151".into())) })
                .await
        })
        .expect("card")
        .into_inner()
        .card
        .expect("card")
        .card_id;
    let out = ca.emergency_revoke(&card_id, rev);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "emergency-revoke over mTLS: {text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.matches("KEY_COMPROMISE").count(), 2, "{text}");
    // An http:// URL on purpose: the CLI follows [tls], not the URL's scheme.
    let out = ca.cli(&["publish-crl", "--url", &format!("http://{crl}")]);
    assert!(out.status.success(), "publish-crl over mTLS: {}", String::from_utf8_lossy(&out.stderr));
    // The auditor's command line reads and verifies the audit log; a checkpoint
    // (HSM-signed on the CA host) is appended with the checkpointer's identity, crl.
    let out = ca.cli(&["audit", "checkpoint", "--url", &format!("https://{reg}"), "--operator", "op-tls"]);
    assert!(out.status.success(), "audit checkpoint over mTLS: {}", String::from_utf8_lossy(&out.stderr));
    let out = ca.cli(&["audit", "verify", "--url", &format!("https://{reg}")]);
    assert!(out.status.success(), "audit verify over mTLS: {}", String::from_utf8_lossy(&out.stderr));
    // The RA's command line (ra certificate) reaches issuance.
    let out = ca.cli(&["card", "--url", &format!("https://{iss}"), "show", "--card", &card_id]);
    common::assert_success(&out, "card show over mTLS");
}

/// A call through `channel` (or its connection) fails; returns what the client saw.
async fn refused(channel: Result<Channel, tonic::transport::Error>) -> String {
    let channel = match channel {
        Err(e) => return format!("connect: {e:?}"),
        Ok(c) => c,
    };
    let r = RegistryClient::new(channel)
        .list_audit(ListAuditRequest { from_sequence: 0, limit: 1, newest_first: false })
        .await;
    let e = r.expect_err("the call must not succeed");
    assert!(matches!(e.code(), Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled), "{e:?}");
    format!("call: {e:?}")
}

fn foreign_identity() -> Identity {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "hpki-ca service identity CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, "hpki-ca service");
    p.subject_alt_names = vec![rcgen::SanType::URI("urn:hpki-ca:role:service".try_into().unwrap())];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, &issuer).unwrap();
    Identity::from_pem(cert.pem(), key.serialize_pem())
}

#[test]
fn no_certificate_a_foreign_ca_or_plain_text_cannot_connect() {
    let mut ca = mtls();
    let addrs = ca.spawn(&["registry"], &["registry"]);
    let reg = &addrs[0];
    let our_ca = Certificate::from_pem(std::fs::read_to_string(ca.state().join("tls/ca.pem")).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let https = format!("https://{reg}");
        // Sanity: the auditor's certificate gets through.
        RegistryClient::new(ca.grpc(reg, "auditor").await.expect("auditor connects"))
            .list_audit(ListAuditRequest { from_sequence: 0, limit: 1, newest_first: false })
            .await
            .expect("auditor reads");

        // No client certificate: the server requires one.
        let no_cert = ClientTlsConfig::new().ca_certificate(our_ca.clone());
        let seen =
            refused(async { Endpoint::from_shared(https.clone())?.tls_config(no_cert)?.connect().await }.await).await;
        eprintln!("no client certificate -> {seen}");

        // A certificate claiming the service role, from another CA.
        let foreign = ClientTlsConfig::new().ca_certificate(our_ca.clone()).identity(foreign_identity());
        let seen =
            refused(async { Endpoint::from_shared(https.clone())?.tls_config(foreign)?.connect().await }.await).await;
        eprintln!("foreign CA -> {seen}");

        // Plain text to the TLS port.
        let seen = refused(Endpoint::from_shared(format!("http://{reg}")).unwrap().connect().await).await;
        eprintln!("plain text -> {seen}");
    });

    // The CLI without its certificate files cannot connect either.
    std::fs::remove_file(ca.state().join("tls/operator.key")).unwrap();
    let out = ca.cli(&["status", "--serial", "01", "--url", &format!("https://{reg}")]);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("operator.key"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn plain_text_only_when_configured_and_then_without_roles() {
    // Plain text on purpose: `[tls] enabled = false` is the development switch, tested here.
    let mut ca = Ca::new("[tls]\n# development only: this test checks the plain-text switch\nenabled = false\n");
    assert!(!ca.tls);
    let addrs = ca.spawn(&["run"], &["registry", "issuance"]);
    let (reg, iss) = (&addrs[0], &addrs[1]);
    let dir = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let card = ca
            .issuance(iss)
            .await
            .submit_application(application("plain-1", "626262", &dir))
            .await
            .expect("plain-text issuance")
            .into_inner();
        assert!(!card.signing_certificate.is_empty() && !card.authentication_certificate.is_empty());
        // No roles without certificates: any plain client may read the registry.
        let view =
            RegistryClient::new(Endpoint::from_shared(format!("http://{reg}")).unwrap().connect().await.unwrap())
                .get_card(GetCardRequest { key: Some(get_card_request::Key::CardId(card.card_id.clone())) })
                .await
                .expect("plain-text registry read")
                .into_inner();
        assert_eq!(view.certificates.len(), 2);
        // No service-identity PKI is made for plain text, and a TLS client does not get through.
        assert!(!ca.state().join("tls/ca.pem").exists());
        let anchor = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(anchor.cert.pem()));
        let seen =
            refused(async { Endpoint::from_shared(format!("https://{reg}"))?.tls_config(tls)?.connect().await }.await)
                .await;
        eprintln!("TLS to a plain-text server -> {seen}");
    });
}
