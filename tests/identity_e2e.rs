//! People and RA systems are named by their certificates (issue 11, item 4):
//! `hpki-ca identity add/list/revoke`; the RA identity is recorded with the
//! application and as its audit actor; two-person control of an emergency
//! revocation needs two different operator certificates (op-sato asks,
//! op-ito approves; op-sato approving their own request is refused, and so
//! is op-sato naming op-ito in the `operator` field); a revoked identity is
//! refused on its next call, on a connection opened before too.

mod common;

use common::{application, Ca};
use proto::registry::v1::registry_client::RegistryClient;
use proto::registry::v1::{get_card_request, GetCardRequest, ListAuditRequest};
use proto::revocation::v1::revocation_client::RevocationClient;
use proto::revocation::v1::{status_request, StatusRequest};
use tonic::Code;

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn two_operators_two_person_control_ra_identity_and_revoked_identities() {
    let mut ca = Ca::new("");
    // Two-person control on (the harness writes the [revocation] section).
    let config = std::fs::read_to_string(&ca.config).unwrap();
    let config = config.replace("[revocation]\n", "[revocation]\nemergency_requires_approval = true\n");
    assert!(config.contains("emergency_requires_approval = true"), "{config}");
    std::fs::write(&ca.config, config).unwrap();
    for (name, role) in [("op-sato", "operator"), ("op-ito", "operator"), ("ra-tokyo", "ra")] {
        let out = ca.cli(&["identity", "add", name, "--role", role]);
        assert!(out.status.success(), "identity add {name}: {}", text(&out));
    }
    let out = ca.cli(&["identity", "add", "op-sato", "--role", "operator"]);
    assert!(!out.status.success() && text(&out).contains("revoke it first"), "{}", text(&out));
    let out = ca.cli(&["identity", "add", "ocsp", "--role", "operator"]);
    assert!(!out.status.success() && text(&out).contains("reserved"), "{}", text(&out));
    let out = ca.cli(&["identity", "list"]);
    let list = text(&out);
    assert!(out.status.success(), "{list}");
    for (name, role) in [("op-sato", "operator"), ("op-ito", "operator"), ("ra-tokyo", "ra"), ("ocsp", "service")] {
        let line = list.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or_else(|| panic!("{list}"));
        assert!(line.contains(role) && line.contains("valid"), "{line}");
    }

    let addrs = ca.spawn(&["run"], &["registry", "issuance", "revocation"]);
    let (reg, iss, rev) = (addrs[0].clone(), addrs[1].clone(), addrs[2].clone());
    let dir = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();

    // ra-tokyo submits; the registry records it with the card and as the audit actor.
    let card_id = rt.block_on(async {
        let channel = ca.grpc(&iss, "ra-tokyo").await.expect("ra-tokyo connects");
        let mut app = application("id-1", "717171", &dir);
        app.ra_operator = "desk-7".into();
        let card = proto::issuance::v1::issuance_client::IssuanceClient::new(channel)
            .submit_application(app)
            .await
            .expect("ra-tokyo issues a card")
            .into_inner();
        let view = RegistryClient::new(ca.grpc(&reg, "issuance").await.unwrap())
            .get_card(GetCardRequest { key: Some(get_card_request::Key::CardId(card.card_id.clone())) })
            .await
            .expect("GetCard")
            .into_inner();
        let record: serde_json::Value =
            serde_json::from_str(&view.card.expect("card").application_json).expect("application JSON");
        assert_eq!(record["ra_identity"], "ra-tokyo", "{record}");
        assert_eq!(record["ra_operator"], "ra-tokyo:desk-7", "{record}");
        let log = RegistryClient::new(ca.grpc(&reg, "auditor").await.unwrap())
            .list_audit(ListAuditRequest { from_sequence: 0, limit: 0, newest_first: false })
            .await
            .expect("auditor reads")
            .into_inner()
            .entries;
        let begin = log.iter().find(|e| e.action == "application.begin").expect("application.begin entry");
        assert_eq!(begin.actor, "ra-tokyo:desk-7");
        card.card_id
    });

    // op-sato asks (their certificate, named by --operator).
    let emergency = |operator: &str| {
        ca.cli(&[
            "emergency-revoke",
            "--card",
            &card_id,
            "--confirmed-by",
            "op-sato",
            "--method",
            "phone",
            "--operator",
            operator,
            "--url",
            &ca.url(&rev),
        ])
    };
    let out = emergency("op-sato");
    let asked = text(&out);
    assert!(out.status.success() && asked.contains("awaits a second operator"), "{asked}");
    let approval = asked.split("--approval ").nth(1).and_then(|r| r.split_whitespace().next()).expect("approval id");
    let approve = |args: &[&str]| {
        let mut all = vec!["approve", "--approval", approval, "--url"];
        let url = ca.url(&rev);
        all.push(&url);
        all.extend_from_slice(args);
        ca.cli(&all)
    };

    // op-sato approving their own request: refused, by identity.
    let out = approve(&["--identity", "op-sato"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("FailedPrecondition") && text(&out).contains("two-person control"), "{}", text(&out));
    // ...also when the operator field names someone else.
    let out = approve(&["--identity", "op-sato", "--operator", "op-ito"]);
    assert!(!out.status.success(), "{}", text(&out));
    let refused = text(&out);
    assert!(
        refused.contains("InvalidArgument") && refused.contains("operator: \"op-ito\" is not the identity"),
        "{refused}"
    );
    // ...and the default operator certificate cannot pass for op-ito either.
    let out = approve(&["--identity", "operator", "--operator", "op-ito"]);
    assert!(!out.status.success() && text(&out).contains("InvalidArgument"), "{}", text(&out));

    // op-ito, the second person, approves: the card is revoked.
    let out = approve(&["--operator", "op-ito"]);
    assert!(out.status.success(), "approval by op-ito: {}", text(&out));
    assert_eq!(text(&out).matches("KEY_COMPROMISE").count(), 2, "{}", text(&out));
    rt.block_on(async {
        let log = RegistryClient::new(ca.grpc(&reg, "auditor").await.unwrap())
            .list_audit(ListAuditRequest { from_sequence: 0, limit: 0, newest_first: false })
            .await
            .unwrap()
            .into_inner()
            .entries;
        let approved = log.iter().find(|e| e.action == "approval.approve").expect("approval.approve entry");
        assert_eq!(approved.actor, "op-ito");
        assert!(approved.detail_json.contains("\"requested_by\":\"op-sato\""), "{approved:?}");
        let revoked = log.iter().find(|e| e.action == "card.revoke").expect("card.revoke entry");
        assert_eq!(revoked.actor, "op-ito");
    });

    // Revoking op-ito: refused on the next call, also on a connection opened before.
    let (before, status) = rt.block_on(async {
        let channel = ca.grpc(&rev, "op-ito").await.expect("op-ito connects");
        let status = || StatusRequest { key: Some(status_request::Key::CardId(card_id.clone())) };
        RevocationClient::new(channel.clone()).get_status(status()).await.expect("op-ito reads the status");
        (channel, status())
    });
    let out = ca.cli(&["identity", "revoke", "op-ito"]);
    assert!(out.status.success() && text(&out).contains("revoked"), "{}", text(&out));
    let out = ca.cli(&["identity", "list"]);
    let line = text(&out).lines().find(|l| l.starts_with("op-ito")).map(str::to_owned).unwrap_or_default();
    assert!(line.contains("revoked"), "{line}");
    rt.block_on(async {
        let e = RevocationClient::new(before).get_status(status.clone()).await.expect_err("revoked op-ito");
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        assert!(e.message().contains("op-ito") && e.message().contains("revoked"), "{e:?}");
        let fresh = ca.grpc(&rev, "op-ito").await.expect("TLS still passes: our CA signed it");
        let e = RevocationClient::new(fresh).get_status(status.clone()).await.expect_err("revoked op-ito");
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        // op-sato is not affected.
        RevocationClient::new(ca.grpc(&rev, "op-sato").await.unwrap()).get_status(status).await.expect("op-sato");
    });
    let out = ca.cli(&["status", "--card", &card_id, "--identity", "op-ito", "--url", &ca.url(&rev)]);
    assert!(!out.status.success() && text(&out).contains("Unauthenticated"), "{}", text(&out));
}
