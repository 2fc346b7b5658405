//! The one table of who may call which RPC ([`POLICY`]), applied by every
//! gRPC server in [`crate::Authz`] and rendered into `docs/architecture.md`
//! by a test ([`render_markdown`]), so the two never disagree.
//!
//! A caller is named by its client certificate: our services by their
//! identity (`registry`, `issuance`, `revocation`, `crl`, `ocsp`,
//! `console`, role `service`), people and RA systems by their role (`ra`, `operator`,
//! `auditor`) whatever their individual identity. An RPC missing from the
//! table is refused to everyone (least privilege); health checking and
//! reflection are open to every valid certificate.

use crate::{Caller, Role};

/// Who a row allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// One of our services, by identity (its certificate has role `service`).
    Service(&'static str),
    /// Every identity of a people/RA role.
    Role(Role),
}

impl Who {
    pub fn admits(self, caller: &Caller) -> bool {
        match self {
            Who::Service(name) => caller.role == Role::Service && caller.identity == name,
            Who::Role(role) => role != Role::Service && caller.role == role,
        }
    }
}

/// One row: a fully-qualified RPC (`/package.Service/Method`) and who may call it.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub rpc: &'static str,
    pub who: &'static [Who],
}

const ISSUANCE: Who = Who::Service("issuance");
const REVOCATION: Who = Who::Service("revocation");
const CRL: Who = Who::Service("crl");
const OCSP: Who = Who::Service("ocsp");
const CONSOLE: Who = Who::Service("console");
const RA: Who = Who::Role(Role::Ra);
const OPERATOR: Who = Who::Role(Role::Operator);
const AUDITOR: Who = Who::Role(Role::Auditor);

macro_rules! rule {
    ($rpc:literal, [$($who:expr),* $(,)?]) => {
        Rule { rpc: $rpc, who: &[$($who),*] }
    };
}

/// Columns of the rendered table: every service identity, then the roles.
pub const COLUMNS: [Who; 9] =
    [Who::Service("registry"), ISSUANCE, REVOCATION, CRL, OCSP, CONSOLE, RA, OPERATOR, AUDITOR];

/// Who may call what. Derived from what each crate calls (its gRPC clients);
/// a service that calls nothing (the registry) has no row.
pub const POLICY: &[Rule] = &[
    // The registry: each service reaches only what it writes or reads.
    rule!("/hpki.registry.v1.Registry/BeginApplication", [ISSUANCE]),
    rule!("/hpki.registry.v1.Registry/ReserveSerial", [ISSUANCE]),
    rule!("/hpki.registry.v1.Registry/RecordTbs", [ISSUANCE]),
    rule!("/hpki.registry.v1.Registry/StoreCertificate", [ISSUANCE]),
    rule!("/hpki.registry.v1.Registry/CompleteApplication", [ISSUANCE]),
    rule!("/hpki.registry.v1.Registry/PrepareCard", [ISSUANCE]),
    rule!("/hpki.registry.v1.Registry/FinishCard", [ISSUANCE]),
    rule!("/hpki.registry.v1.Registry/CardSteps", [ISSUANCE]),
    rule!("/hpki.registry.v1.Registry/GetCard", [ISSUANCE, REVOCATION]),
    rule!("/hpki.registry.v1.Registry/GetCertificate", [ISSUANCE, REVOCATION, OCSP]),
    // Not ocsp: issuance records its responder certificates (IssueResponderCertificate).
    rule!("/hpki.registry.v1.Registry/AppendAudit", [ISSUANCE, REVOCATION, CRL]),
    // The audit checkpointer (in the crl process, and `hpki-ca audit checkpoint`).
    rule!("/hpki.registry.v1.Registry/AppendCheckpoint", [CRL]),
    // The console reads it for its auditors (the audit view, "verify chain").
    rule!("/hpki.registry.v1.Registry/ListAudit", [CRL, CONSOLE, AUDITOR]),
    rule!("/hpki.registry.v1.Registry/RevokeCertificate", [REVOCATION]),
    rule!("/hpki.registry.v1.Registry/RevokeCard", [REVOCATION]),
    rule!("/hpki.registry.v1.Registry/ListRevoked", [CRL]),
    rule!("/hpki.registry.v1.Registry/WatchStatus", [OCSP]),
    rule!("/hpki.registry.v1.Registry/GetFeedPosition", [OCSP]),
    rule!("/hpki.registry.v1.Registry/NextCrlNumber", [CRL]),
    rule!("/hpki.registry.v1.Registry/ListCrlScopes", [CRL]),
    rule!("/hpki.registry.v1.Registry/CreateApproval", [REVOCATION]),
    rule!("/hpki.registry.v1.Registry/Approve", [REVOCATION]),
    rule!("/hpki.registry.v1.Registry/GetApproval", [REVOCATION]),
    rule!("/hpki.registry.v1.Registry/MarkApprovalExecuted", [REVOCATION]),
    rule!("/hpki.registry.v1.Registry/UpdateContact", [ISSUANCE]),
    rule!("/hpki.registry.v1.Registry/StorePinEscrow", [ISSUANCE]),
    rule!("/hpki.registry.v1.Registry/DisclosePinEscrow", [ISSUANCE]),
    rule!("/hpki.registry.v1.Registry/ListHolderCards", [ISSUANCE]),
    rule!("/hpki.registry.v1.Registry/ListUnresolved", [ISSUANCE]),
    rule!("/hpki.registry.v1.Registry/AbandonReservation", [ISSUANCE]),
    // The operator console: finding a card and the approval queue.
    rule!("/hpki.registry.v1.Registry/FindHolders", [CONSOLE]),
    rule!("/hpki.registry.v1.Registry/ListApprovals", [CONSOLE]),
    // Issuance: the RA systems' RPCs.
    rule!("/hpki.issuance.v1.Issuance/SubmitApplication", [RA]),
    rule!("/hpki.issuance.v1.Issuance/Renew", [RA]),
    rule!("/hpki.issuance.v1.Issuance/Reissue", [RA]),
    rule!("/hpki.issuance.v1.Issuance/ChangeContact", [RA]),
    rule!("/hpki.issuance.v1.Issuance/CeaseUse", [RA]),
    rule!("/hpki.issuance.v1.Issuance/DisclosePin", [RA]),
    rule!("/hpki.issuance.v1.Issuance/GetFee", [RA]),
    // The console: a card's fees on the card page.
    rule!("/hpki.issuance.v1.Issuance/GetCard", [RA, CONSOLE]),
    rule!("/hpki.issuance.v1.Issuance/GetHolderHistory", [RA]),
    // The OCSP responder's delegated certificates (issue 11, item 2).
    rule!("/hpki.issuance.v1.Issuance/IssueResponderCertificate", [OCSP]),
    // Revocation: operators; issuance for reissue and cessation.
    rule!("/hpki.revocation.v1.Revocation/RevokeCertificate", [OPERATOR]),
    rule!("/hpki.revocation.v1.Revocation/RevokeCard", [ISSUANCE, OPERATOR]),
    // The console relays the logged-in operator (the audit actor).
    rule!("/hpki.revocation.v1.Revocation/EmergencyRevoke", [ISSUANCE, CONSOLE, OPERATOR]),
    rule!("/hpki.revocation.v1.Revocation/ApproveEmergencyRevocation", [CONSOLE, OPERATOR]),
    rule!("/hpki.revocation.v1.Revocation/GetStatus", [OPERATOR]),
    // CRL publication: operators, and the services that revoke.
    rule!("/hpki.crl.v1.CrlPublisher/Publish", [ISSUANCE, REVOCATION, OPERATOR]),
    // The console's operations view: every published CRL's age and nextUpdate.
    rule!("/hpki.crl.v1.CrlPublisher/GetStatus", [CONSOLE, OPERATOR]),
];

/// Services any valid client certificate may call.
pub fn open_service(service: &str) -> bool {
    service == "grpc.health.v1.Health" || service.starts_with("grpc.reflection.")
}

/// The row of `rpc` (`/package.Service/Method`), if any.
pub fn rule(rpc: &str) -> Option<&'static Rule> {
    POLICY.iter().find(|r| r.rpc == rpc)
}

/// May `caller` call `rpc` (`/package.Service/Method`)?
pub fn allows(caller: &Caller, rpc: &str) -> bool {
    let service = rpc.trim_start_matches('/').split('/').next().unwrap_or("");
    open_service(service) || rule(rpc).is_some_and(|r| r.who.iter().any(|w| w.admits(caller)))
}

fn column_name(who: Who) -> String {
    match who {
        Who::Service(name) => format!("`{name}`"),
        Who::Role(role) => format!("{role}s"),
    }
}

/// Marker comments around the rendered table in `docs/architecture.md`.
pub const DOC_BEGIN: &str = "<!-- BEGIN access table: generated from crates/tls/src/policy.rs -->";
pub const DOC_END: &str = "<!-- END access table -->";

/// The table as markdown (without the markers): one row per RPC, one column
/// per service identity and per people/RA role.
pub fn render_markdown() -> String {
    let mut out = String::from("| RPC |");
    for who in COLUMNS {
        out.push_str(&format!(" {} |", column_name(who)));
    }
    out.push_str("\n|---|");
    out.push_str(&":-:|".repeat(COLUMNS.len()));
    out.push('\n');
    for rule in POLICY {
        out.push_str(&format!("| `{}` |", rule.rpc));
        for who in COLUMNS {
            out.push_str(if rule.who.contains(&who) { " yes |" } else { " |" });
        }
        out.push('\n');
    }
    out.push_str(&format!("| `/grpc.health.v1.Health/*`, `/grpc.reflection.*` |{}\n", " yes |".repeat(COLUMNS.len())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(identity: &str, role: Role) -> Caller {
        Caller { identity: identity.into(), role, serial: "01".into() }
    }

    #[test]
    fn rows_are_unique_and_name_known_callers() {
        for (i, r) in POLICY.iter().enumerate() {
            assert!(POLICY[i + 1..].iter().all(|o| o.rpc != r.rpc), "{} twice", r.rpc);
            assert!(!r.who.is_empty(), "{}", r.rpc);
            for w in r.who {
                assert!(COLUMNS.contains(w), "{} names {w:?}, which is no column", r.rpc);
            }
        }
    }

    #[test]
    fn least_privilege() {
        let ocsp = caller("ocsp", Role::Service);
        assert!(allows(&ocsp, "/hpki.registry.v1.Registry/WatchStatus"));
        assert!(allows(&ocsp, "/hpki.issuance.v1.Issuance/IssueResponderCertificate"));
        assert!(!allows(&ocsp, "/hpki.registry.v1.Registry/RevokeCard"));
        assert!(!allows(&caller("issuance", Role::Service), "/hpki.issuance.v1.Issuance/IssueResponderCertificate"));
        // A person cannot pose as a service by naming themselves after it.
        assert!(!allows(&caller("ocsp", Role::Operator), "/hpki.registry.v1.Registry/WatchStatus"));
        let op = caller("op-sato", Role::Operator);
        assert!(allows(&op, "/hpki.revocation.v1.Revocation/ApproveEmergencyRevocation"));
        assert!(!allows(&op, "/hpki.registry.v1.Registry/AppendAudit"));
        assert!(!allows(&caller("crl", Role::Service), "/hpki.registry.v1.Registry/Unknown"));
        assert!(allows(&caller("crl", Role::Service), "/hpki.registry.v1.Registry/AppendCheckpoint"));
        assert!(!allows(&caller("revocation", Role::Service), "/hpki.registry.v1.Registry/AppendCheckpoint"));
        assert!(allows(&caller("auditor", Role::Auditor), "/grpc.health.v1.Health/Check"));
        let console = caller("console", Role::Service);
        assert!(allows(&console, "/hpki.revocation.v1.Revocation/ApproveEmergencyRevocation"));
        assert!(allows(&console, "/hpki.registry.v1.Registry/FindHolders"));
        assert!(!allows(&console, "/hpki.registry.v1.Registry/RevokeCard"));
        assert!(allows(&console, "/hpki.registry.v1.Registry/ListAudit"));
        assert!(!allows(&console, "/hpki.registry.v1.Registry/AppendAudit"));
        assert!(allows(&console, "/hpki.issuance.v1.Issuance/GetCard"));
        assert!(!allows(&console, "/hpki.issuance.v1.Issuance/SubmitApplication"));
        assert!(!allows(&console, "/hpki.revocation.v1.Revocation/RevokeCertificate"));
        assert!(!allows(&op, "/hpki.registry.v1.Registry/FindHolders"));
    }

    /// Every RPC of our protos has a row: a new RPC must be given one.
    #[test]
    fn every_proto_rpc_has_a_row() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut n = 0;
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    let rpc = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    assert!(rule(&rpc).is_some(), "{rpc} has no row in tls::policy::POLICY");
                    n += 1;
                }
            }
        }
        assert!(n >= 40, "only {n} RPCs found");
    }

    /// The table in docs/architecture.md is the rendered [`POLICY`].
    #[test]
    fn docs_show_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/architecture.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let expected = render_markdown();
        let found = doc
            .split_once(DOC_BEGIN)
            .and_then(|(_, rest)| rest.split_once(DOC_END))
            .map(|(table, _)| table.trim().to_owned());
        assert!(
            found.as_deref() == Some(expected.trim()),
            "docs/architecture.md does not show the access table of crates/tls/src/policy.rs; \
             put this between {DOC_BEGIN} and {DOC_END}:\n\n{expected}"
        );
    }
}
