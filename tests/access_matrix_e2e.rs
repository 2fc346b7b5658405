//! The role matrix (issue 11, item 3): every RPC of every service, taken from
//! the proto descriptors (so a new RPC is covered without editing this test),
//! called by every kind of client, and each answer checked against the one
//! table `tls::policy::POLICY`:
//!
//! - our five service identities, two RA systems, two operators, the auditor:
//!   allowed (any answer but PERMISSION_DENIED / UNAUTHENTICATED) exactly where
//!   the table says so, PERMISSION_DENIED elsewhere;
//! - no client certificate, one from a foreign CA, an expired one from our CA,
//!   and a revoked one: refused everywhere (UNAUTHENTICATED, or the TLS
//!   handshake fails, which counts as the refusal).
//!
//! The request is an empty message: the authorization layer answers before
//! the handler, and an allowed handler answers with whatever an empty request
//! gets (INVALID_ARGUMENT mostly).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Ca;
use prost::Message;
use tonic::codegen::http;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// What a client got for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// The handler ran (the gRPC status it answered, or "streaming").
    Allowed(String),
    PermissionDenied,
    Unauthenticated,
    /// The connection or TLS handshake failed.
    Transport(String),
}

impl Seen {
    fn refused(&self) -> bool {
        matches!(self, Seen::Unauthenticated | Seen::Transport(_))
    }
}

/// Every RPC of our protos, as (`package.Service`, `/package.Service/Method`).
fn rpcs() -> Vec<(String, String)> {
    let set = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut out = Vec::new();
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            for method in &service.method {
                out.push((full.clone(), format!("/{full}/{}", method.name())));
            }
        }
    }
    out
}

/// One call of `path` with an empty request message: what came back.
async fn call(channel: &Channel, path: &str) -> Seen {
    use tower_service::Service;
    let mut channel = channel.clone();
    let ready = tokio::time::timeout(Duration::from_secs(10), std::future::poll_fn(|cx| channel.poll_ready(cx))).await;
    match ready {
        Err(_) => return Seen::Transport("not ready in 10 s".into()),
        Ok(Err(e)) => return Seen::Transport(format!("{e:?}")),
        Ok(Ok(())) => {}
    }
    // One gRPC frame: not compressed, length 0 (the default message).
    let body = tonic::body::Body::new(String::from("\0\0\0\0\0"));
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("https://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .expect("request");
    let resp = match tokio::time::timeout(Duration::from_secs(20), channel.call(req)).await {
        Err(_) => return Seen::Transport("no answer in 20 s".into()),
        Ok(Err(e)) => return Seen::Transport(format!("{e:?}")),
        Ok(Ok(resp)) => resp,
    };
    // A refusal is a trailers-only answer: grpc-status in the headers.
    match resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()) {
        Some("7") => Seen::PermissionDenied,
        Some("16") => Seen::Unauthenticated,
        Some(code) => Seen::Allowed(code.to_owned()),
        None => Seen::Allowed(format!("HTTP {} (answer streaming)", resp.status())),
    }
}

fn our_ca(ca: &Ca) -> Certificate {
    Certificate::from_pem(std::fs::read_to_string(ca.state().join("tls/ca.pem")).expect("ca.pem"))
}

/// A client certificate claiming the `crl` service identity, from another CA.
fn foreign_identity() -> Identity {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(rcgen::DnType::OrganizationName, "hpki-ca");
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "hpki-ca service identity CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    client_identity(&issuer, "crl", "service", rcgen::date_time_ymd(2024, 1, 1), rcgen::date_time_ymd(2036, 1, 1))
}

/// An operator certificate from our own service-identity CA that expired in 2021.
fn expired_identity(ca: &Ca) -> Identity {
    let key = std::fs::read_to_string(ca.state().join("tls/ca.key")).expect("ca.key");
    let key = rcgen::KeyPair::from_pem(&key).expect("CA key");
    // The subject of tls::ensure_local_pki's CA, so the chain is ours.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "hpki-ca");
    params.distinguished_name.push(rcgen::DnType::CommonName, "hpki-ca service identity CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    let issuer = rcgen::Issuer::new(params, key);
    client_identity(
        &issuer,
        "op-expired",
        "operator",
        rcgen::date_time_ymd(2020, 1, 1),
        rcgen::date_time_ymd(2021, 1, 1),
    )
}

fn client_identity(
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
    id: &str,
    role: &str,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> Identity {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, id);
    p.subject_alt_names = vec![
        rcgen::SanType::URI(format!("urn:hpki-ca:role:{role}").try_into().unwrap()),
        rcgen::SanType::URI(format!("urn:hpki-ca:id:{id}").try_into().unwrap()),
    ];
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    p.not_before = not_before;
    p.not_after = not_after;
    let cert = p.signed_by(&key, issuer).unwrap();
    Identity::from_pem(cert.pem(), key.serialize_pem())
}

/// A lazily connecting channel with `tls` (a failed handshake shows on the call).
fn lazy(addr: &str, tls: ClientTlsConfig) -> Channel {
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy()
}

#[test]
fn every_rpc_answers_every_identity_as_the_table_says() {
    let mut ca = Ca::new("");
    let people = [("ra-tokyo", "ra"), ("ra-osaka", "ra"), ("op-sato", "operator"), ("op-ito", "operator")];
    for (name, role) in people {
        ca.ensure_identity(name, role);
    }
    ca.ensure_identity("op-gone", "operator");
    let addrs = ca.spawn(&["run"], &["registry", "issuance", "revocation", "crl"]);
    let by_service: BTreeMap<&str, &str> = [
        ("hpki.registry.v1.Registry", addrs[0].as_str()),
        ("hpki.issuance.v1.Issuance", addrs[1].as_str()),
        ("hpki.revocation.v1.Revocation", addrs[2].as_str()),
        ("hpki.crl.v1.CrlPublisher", addrs[3].as_str()),
    ]
    .into();
    let rpcs = rpcs();
    for (service, rpc) in &rpcs {
        assert!(by_service.contains_key(service.as_str()), "{rpc}: a service this test does not start");
    }
    assert!(rpcs.len() >= 40, "only {} RPCs in the descriptors", rpcs.len());
    // op-gone is revoked before any call: refused like any revoked certificate.
    let out = ca.cli(&["identity", "revoke", "op-gone"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let valid: Vec<(&str, tls::Role)> = tls::SERVICE_IDENTITIES
        .iter()
        .map(|s| (*s, tls::Role::Service))
        .chain([
            ("ra-tokyo", tls::Role::Ra),
            ("ra-osaka", tls::Role::Ra),
            ("op-sato", tls::Role::Operator),
            ("op-ito", tls::Role::Operator),
            ("auditor", tls::Role::Auditor),
        ])
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut mismatches = Vec::new();
    let mut cells = 0;
    rt.block_on(async {
        for (identity, role) in &valid {
            let caller = tls::Caller { identity: (*identity).to_owned(), role: *role, serial: String::new() };
            let channels: BTreeMap<&str, Channel> =
                by_service.iter().map(|(s, a)| (*s, ca.endpoint(a, identity).connect_lazy())).collect();
            for (service, rpc) in &rpcs {
                let seen = call(&channels[service.as_str()], rpc).await;
                let allowed = tls::policy::allows(&caller, rpc);
                let ok = matches!((&seen, allowed), (Seen::Allowed(_), true) | (Seen::PermissionDenied, false));
                cells += 1;
                if !ok {
                    mismatches.push(format!("{identity} {rpc}: table allows={allowed}, got {seen:?}"));
                }
            }
            // Health checking is open to every valid certificate.
            for (service, channel) in &channels {
                let seen = call(channel, "/grpc.health.v1.Health/Check").await;
                cells += 1;
                if !matches!(seen, Seen::Allowed(_)) {
                    mismatches.push(format!("{identity} health of {service}: got {seen:?}"));
                }
            }
        }

        // Clients that must not get in at all.
        let anchor = our_ca(&ca);
        let gone = {
            let dir = ca.state().join("tls");
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
            Identity::from_pem(read("op-gone.pem"), read("op-gone.key"))
        };
        let strangers: Vec<(&str, ClientTlsConfig)> = vec![
            ("no certificate", ClientTlsConfig::new().ca_certificate(anchor.clone())),
            ("foreign CA", ClientTlsConfig::new().ca_certificate(anchor.clone()).identity(foreign_identity())),
            ("expired", ClientTlsConfig::new().ca_certificate(anchor.clone()).identity(expired_identity(&ca))),
            ("revoked op-gone", ClientTlsConfig::new().ca_certificate(anchor.clone()).identity(gone)),
        ];
        for (who, tls) in strangers {
            let channels: BTreeMap<&str, Channel> =
                by_service.iter().map(|(s, a)| (*s, lazy(a, tls.clone()))).collect();
            let mut refusals = BTreeMap::<String, usize>::new();
            for (service, rpc) in &rpcs {
                let seen = call(&channels[service.as_str()], rpc).await;
                cells += 1;
                if !seen.refused() {
                    mismatches.push(format!("{who} {rpc}: must be refused, got {seen:?}"));
                }
                let kind = match &seen {
                    Seen::Transport(_) => "transport".to_owned(),
                    other => format!("{other:?}"),
                };
                *refusals.entry(kind).or_default() += 1;
            }
            eprintln!("{who}: {refusals:?}");
            if who.starts_with("revoked") {
                // Our CA signed it: the handshake passes, the authorization layer refuses.
                assert_eq!(refusals.get("Unauthenticated"), Some(&rpcs.len()), "{who}: {refusals:?}");
            }
        }
    });
    assert!(
        mismatches.is_empty(),
        "{} of {cells} cells differ from the table:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(cells > 600, "only {cells} cells");
}
