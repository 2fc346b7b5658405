//! Individual client certificates (operators such as `op-sato`, RA systems
//! such as `ra-tokyo`, auditors) from the service-identity CA, and their
//! revocation: `revoked-identities` in the PKI folder lists revoked serials,
//! and every server re-reads it when it changes ([`RevokedList`]), so a
//! revoked certificate is refused on its next call.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::{
    caller_of_certificate, client_params, issue_leaf, local_issuer, pem_to_der, read, LocalPki, Role, TlsError,
    SERVICE_IDENTITIES,
};

/// The revoked client certificates, one `<serial hex> <identity> <unix time>` a line.
pub const REVOKED_FILE: &str = "revoked-identities";

/// Names the PKI folder keeps for itself.
const RESERVED: [&str; 3] = ["ca", "server", "service"];

fn bad(name: &str, why: impl Into<String>) -> TlsError {
    TlsError::Identity { name: name.to_owned(), why: why.into() }
}

/// An identity is 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit
/// (it is also a file name).
pub fn check_name(name: &str) -> Result<(), TlsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(bad(name, "1 to 64 of a-z 0-9 . _ -, starting with a letter or digit"))
    }
}

/// One client certificate of the PKI folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityInfo {
    pub name: String,
    pub role: crate::Role,
    pub serial: String,
    pub revoked: bool,
}

fn revoked_serials(dir: &Path) -> Result<HashSet<String>, TlsError> {
    let path = dir.join(REVOKED_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(parse_revoked(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashSet::new()),
        Err(source) => Err(TlsError::Io { path, source }),
    }
}

fn parse_revoked(text: &str) -> HashSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The caller named by `<name>.pem` in `pki`.
fn read_identity(pki: &LocalPki, name: &str) -> Result<crate::Caller, TlsError> {
    let pem = read(&pki.cert(name))?;
    let der = pem_to_der(&pem).ok_or_else(|| bad(name, format!("{} is no certificate", pki.cert(name).display())))?;
    caller_of_certificate(&der).map_err(|why| bad(name, why.to_string()))
}

/// Issues `name` a client certificate with `role` (`ra`, `operator`, `auditor`)
/// from the service-identity CA in `dir`: `<name>.pem` and `<name>.key`
/// (mode 600). Refused for our services' names, for `service`, and for a name
/// whose certificate exists and is not revoked. Returns the certificate (PEM).
pub fn add_identity(dir: &Path, name: &str, role: Role) -> Result<String, TlsError> {
    check_name(name)?;
    if RESERVED.contains(&name) || SERVICE_IDENTITIES.contains(&name) {
        return Err(bad(name, "reserved for the CA's own certificates"));
    }
    if role == Role::Service {
        return Err(bad(name, "role service is for the CA's own services; choose ra, operator or auditor"));
    }
    let pki = LocalPki { dir: dir.to_owned() };
    if pki.cert(name).exists() {
        let existing = read_identity(&pki, name)?;
        if !revoked_serials(dir)?.contains(&existing.serial) {
            return Err(bad(name, format!("exists (serial {}); revoke it first", existing.serial)));
        }
    }
    let issuer = local_issuer(&pki)?;
    issue_leaf(&pki, &issuer, name, client_params(name, role)?)
}

/// Every client certificate in `dir` (by name), with its revocation state.
pub fn list_identities(dir: &Path) -> Result<Vec<IdentityInfo>, TlsError> {
    let pki = LocalPki { dir: dir.to_owned() };
    let revoked = revoked_serials(dir)?;
    let entries = std::fs::read_dir(dir).map_err(|source| TlsError::Io { path: dir.to_owned(), source })?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| TlsError::Io { path: dir.to_owned(), source })?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".pem") else { continue };
        if RESERVED.contains(&name) || check_name(name).is_err() {
            continue;
        }
        // Certificates of earlier versions without an identity are not listed.
        let Ok(c) = read_identity(&pki, name) else { continue };
        let revoked = revoked.contains(&c.serial);
        out.push(IdentityInfo { name: name.to_owned(), role: c.role, serial: c.serial, revoked });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Revokes the certificate of `name`: its serial goes on the revoked list,
/// which servers read again before their next call. Returns the serial;
/// revoking again changes nothing.
pub fn revoke_identity(dir: &Path, name: &str) -> Result<String, TlsError> {
    check_name(name)?;
    let pki = LocalPki { dir: dir.to_owned() };
    if !pki.cert(name).exists() {
        return Err(bad(name, format!("no such identity ({} is missing)", pki.cert(name).display())));
    }
    let c = read_identity(&pki, name)?;
    if revoked_serials(dir)?.contains(&c.serial) {
        return Ok(c.serial);
    }
    let path = dir.join(REVOKED_FILE);
    let io = |source| TlsError::Io { path: path.clone(), source };
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
    std::io::Write::write_all(&mut f, format!("{} {} {now}\n", c.serial, c.identity).as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(c.serial)
}

/// Whether the default certificate `name` is revoked (it is then made again).
pub(crate) fn is_revoked_name(dir: &Path, name: &str) -> bool {
    let pki = LocalPki { dir: dir.to_owned() };
    match (read_identity(&pki, name), revoked_serials(dir)) {
        (Ok(c), Ok(set)) => set.contains(&c.serial),
        _ => false,
    }
}

/// The revoked list as a server sees it: read again whenever the file's
/// modification time or length changes. A file that exists but cannot be
/// read refuses every call (fail closed).
#[derive(Debug)]
pub struct RevokedList {
    path: PathBuf,
    cache: Mutex<(Option<Stamp>, HashSet<String>)>,
}

/// Modification time and length of the file, as last read.
type Stamp = (SystemTime, u64);

/// The revoked list's file exists but cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct RevokedListError {
    path: PathBuf,
    source: std::io::Error,
}

impl RevokedList {
    pub fn new(path: PathBuf) -> RevokedList {
        RevokedList { path, cache: Mutex::new((None, HashSet::new())) }
    }

    /// Whether `serial` (lower-case hex) is revoked.
    pub fn is_revoked(&self, serial: &str) -> Result<bool, RevokedListError> {
        let unreadable = |source| RevokedListError { path: self.path.clone(), source };
        let stamp = match std::fs::metadata(&self.path) {
            Ok(m) => Some((m.modified().map_err(unreadable)?, m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(unreadable(e)),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.0 != stamp {
            let set = match stamp {
                None => HashSet::new(),
                Some(_) => match std::fs::read_to_string(&self.path) {
                    Ok(text) => parse_revoked(&text),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
                    Err(e) => return Err(unreadable(e)),
                },
            };
            *cache = (stamp, set);
        }
        Ok(cache.1.contains(serial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_list_revoke() {
        let dir = tempfile::tempdir().unwrap();
        crate::ensure_local_pki(dir.path()).unwrap();
        add_identity(dir.path(), "op-sato", Role::Operator).unwrap();
        add_identity(dir.path(), "ra-tokyo", Role::Ra).unwrap();
        for (name, role) in [("ocsp", Role::Operator), ("service", Role::Operator), ("x", Role::Service)] {
            assert!(add_identity(dir.path(), name, role).is_err(), "{name}");
        }
        assert!(add_identity(dir.path(), "Op Sato", Role::Operator).is_err());
        let e = add_identity(dir.path(), "op-sato", Role::Operator).unwrap_err();
        assert!(e.to_string().contains("revoke it first"), "{e}");
        let list = list_identities(dir.path()).unwrap();
        let sato = list.iter().find(|i| i.name == "op-sato").unwrap();
        assert_eq!((sato.role, sato.revoked), (Role::Operator, false));
        assert_eq!(list.len(), 11, "{list:?}");

        let revoked = RevokedList::new(dir.path().join(REVOKED_FILE));
        assert!(!revoked.is_revoked(&sato.serial).unwrap());
        assert_eq!(revoke_identity(dir.path(), "op-sato").unwrap(), sato.serial);
        assert_eq!(revoke_identity(dir.path(), "op-sato").unwrap(), sato.serial);
        assert!(revoked.is_revoked(&sato.serial).unwrap());
        let list = list_identities(dir.path()).unwrap();
        assert!(list.iter().find(|i| i.name == "op-sato").unwrap().revoked);
        assert!(!list.iter().find(|i| i.name == "ra-tokyo").unwrap().revoked);
        // A revoked name may be issued again, under a new serial.
        add_identity(dir.path(), "op-sato", Role::Operator).unwrap();
        let again = list_identities(dir.path()).unwrap().into_iter().find(|i| i.name == "op-sato").unwrap();
        assert!(!again.revoked && again.serial != sato.serial);
        assert!(revoke_identity(dir.path(), "nobody").is_err());
    }

    #[test]
    fn defaults_without_identity_or_revoked_are_made_again() {
        let dir = tempfile::tempdir().unwrap();
        crate::ensure_local_pki(dir.path()).unwrap();
        let pki = LocalPki { dir: dir.path().to_owned() };
        // A role-only certificate, as earlier versions made them.
        let issuer = local_issuer(&pki).unwrap();
        let mut old = crate::leaf_params(Vec::new(), "hpki-ca operator", Some("operator"), false).unwrap();
        old.subject_alt_names =
            vec![rcgen::SanType::URI(rcgen::string::Ia5String::try_from("urn:hpki-ca:role:operator").unwrap())];
        issue_leaf(&pki, &issuer, "operator", old).unwrap();
        assert!(read_identity(&pki, "operator").is_err());
        revoke_identity(dir.path(), "ocsp").unwrap();
        let mut written = crate::ensure_local_pki(dir.path()).unwrap();
        written.sort();
        assert_eq!(written, vec!["ocsp.pem".to_owned(), "operator.pem".to_owned()]);
        assert_eq!(read_identity(&pki, "operator").unwrap().role, Role::Operator);
        assert!(!list_identities(dir.path()).unwrap().iter().any(|i| i.revoked));
        // Nothing missing: the CA key is not even read.
        std::fs::remove_file(pki.key("ca")).unwrap();
        assert!(crate::ensure_local_pki(dir.path()).unwrap().is_empty());
    }
}
