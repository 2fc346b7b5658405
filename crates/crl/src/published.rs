//! The published CRL files: written atomically to `out_dir` (DER, plus a
//! JSON sidecar with what the publisher needs to know about it), kept in
//! memory for the HTTP server, and loaded back from `out_dir` on restart.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::SystemTime;

use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::asn1;
use crate::error::CrlError;
use crate::timefmt;

/// Full or delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrlKind {
    Full,
    Delta,
}

/// What was published (the JSON sidecar, and GetStatus).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlInfo {
    /// "signing" / "authentication" (or "root" for the ARL).
    pub issuer: String,
    pub kind: CrlKind,
    /// 0 when partitioning is off, else 1..=N.
    pub partition: u32,
    pub crl_number: u64,
    /// Delta CRLs: the cRLNumber of their base; 0 for full CRLs.
    pub base_crl_number: u64,
    pub this_update: i64,
    pub next_update: i64,
    pub url: String,
    pub entries: u64,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
    /// Registry status-feed position when the CRL number was taken: a delta
    /// on top of this full CRL lists revocations after it.
    pub feed_sequence: u64,
}

/// One CRL as served.
#[derive(Debug)]
pub struct PublishedFile {
    pub der: Bytes,
    /// None for files made elsewhere (the ARL) or whose sidecar is missing or stale.
    pub info: Option<CrlInfo>,
    pub this_update: OffsetDateTime,
    pub next_update: Option<OffsetDateTime>,
    pub sha256: String,
    /// Quoted, e.g. `"3f2a…"` (first 32 hex digits of the SHA-256).
    pub etag: String,
    pub last_modified: String,
    pem: OnceLock<Bytes>,
    /// Modification time of the file when it was read (files made elsewhere).
    modified: Option<SystemTime>,
}

impl PublishedFile {
    fn new(der: Vec<u8>, info: Option<CrlInfo>, modified: Option<SystemTime>) -> Result<Self, CrlError> {
        let (this_update, next_update) = asn1::crl_validity(&der)?;
        let sha256 = hex::encode(Sha256::digest(&der));
        let info = info.filter(|i| i.sha256 == sha256);
        Ok(PublishedFile {
            etag: format!("\"{}\"", &sha256[..32]),
            last_modified: timefmt::http_date(this_update),
            sha256,
            der: Bytes::from(der),
            info,
            this_update,
            next_update,
            pem: OnceLock::new(),
            modified,
        })
    }

    /// `-----BEGIN X509 CRL-----` PEM, made on first use.
    pub fn pem(&self) -> Bytes {
        self.pem
            .get_or_init(|| {
                let text = der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &self.der).unwrap_or_default();
                Bytes::from(text)
            })
            .clone()
    }
}

/// Where one URL's CRL lives.
#[derive(Debug, Clone)]
struct Route {
    url: String,
    file_name: String,
    /// Written by another process (the ARL by the operator CLI): re-read when
    /// the file changes.
    external: bool,
}

/// The path of a URL: `http://h:1/crl/sign.crl?x` -> `/crl/sign.crl`.
pub fn url_path(url: &str) -> Result<String, CrlError> {
    let bad = || CrlError::Config(format!("CRL URL {url:?} is not an http(s) URL with a path"));
    let rest = url.trim().split_once("://").ok_or_else(bad)?.1;
    let path = &rest[rest.find('/').ok_or_else(bad)?..];
    let path = path.split(['?', '#']).next().unwrap_or(path);
    Ok(path.to_owned())
}

/// The file name a URL's CRL is stored under: the last segment of its path.
pub fn file_name(url: &str) -> Result<String, CrlError> {
    let path = url_path(url)?;
    let name = path.rsplit('/').next().unwrap_or_default();
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.ends_with(".json")
        && !name.ends_with(".tmp")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(CrlError::Config(format!("CRL URL {url:?} must end in a file name such as sign.crl")));
    }
    Ok(name.to_owned())
}

/// All published CRLs, by URL path.
#[derive(Debug)]
pub struct CrlStore {
    out_dir: PathBuf,
    /// URL path -> route. The config's URLs, plus those of older CRL scopes
    /// that certificates still name (added as they are published).
    routes: RwLock<HashMap<String, Route>>,
    /// File name -> current file.
    files: RwLock<HashMap<String, Arc<PublishedFile>>>,
}

impl CrlStore {
    /// A store serving `urls` (url, made elsewhere?) from `out_dir`; loads
    /// whatever was published there before.
    pub fn open(out_dir: PathBuf, urls: &[(String, bool)]) -> Result<CrlStore, CrlError> {
        std::fs::create_dir_all(&out_dir).map_err(CrlError::io(&out_dir))?;
        let mut routes = HashMap::new();
        let mut by_file: HashMap<String, String> = HashMap::new();
        for (url, external) in urls {
            let route = Route { url: url.clone(), file_name: file_name(url)?, external: *external };
            if let Some(other) = by_file.insert(route.file_name.clone(), url.clone()) {
                if &other != url {
                    return Err(CrlError::Config(format!(
                        "CRL URLs {other:?} and {url:?} would share the file {}",
                        route.file_name
                    )));
                }
            }
            routes.insert(url_path(url)?, route);
        }
        let store = CrlStore { out_dir, routes: RwLock::new(routes), files: RwLock::new(HashMap::new()) };
        // CRLs of older scopes published before a restart are served again
        // at once: their sidecar names their URL.
        for url in store.published_urls() {
            if let Err(e) = store.ensure_route(&url) {
                tracing::warn!(%url, error = %e, "not serving an earlier CRL");
            }
        }
        let routes: Vec<Route> = store.read_routes().values().cloned().collect();
        for route in &routes {
            if let Err(e) = store.reload(route) {
                tracing::warn!(file = %route.file_name, error = %e, "ignoring a published CRL that cannot be read");
            }
        }
        Ok(store)
    }

    fn read_routes(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Route>> {
        self.routes.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The URLs named by the sidecars in `out_dir` (best effort).
    fn published_urls(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(&self.out_dir) else { return Vec::new() };
        dir.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".crl.json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|json| serde_json::from_slice::<CrlInfo>(&json).ok())
            .map(|info| info.url)
            .collect()
    }

    /// Serves `url` from now on (a CRL this process publishes), unless it
    /// is served already. Refused if its file name is another URL's.
    pub fn ensure_route(&self, url: &str) -> Result<(), CrlError> {
        let path = url_path(url)?;
        if self.read_routes().contains_key(&path) {
            return Ok(());
        }
        let route = Route { url: url.to_owned(), file_name: file_name(url)?, external: false };
        let mut routes = self.routes.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(other) = routes.values().find(|r| r.file_name == route.file_name && r.url != route.url) {
            return Err(CrlError::Config(format!(
                "CRL URLs {:?} and {url:?} would share the file {}",
                other.url, route.file_name
            )));
        }
        routes.entry(path).or_insert(route);
        Ok(())
    }

    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    fn read_files(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<PublishedFile>>> {
        self.files.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads a route's file (and sidecar) from disk into memory, if present.
    fn reload(&self, route: &Route) -> Result<Option<Arc<PublishedFile>>, CrlError> {
        let path = self.out_dir.join(&route.file_name);
        let modified = match std::fs::metadata(&path) {
            Ok(m) => m.modified().ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CrlError::io(&path)(e)),
        };
        let der = std::fs::read(&path).map_err(CrlError::io(&path))?;
        let info = std::fs::read(sidecar(&path))
            .ok()
            .and_then(|json| serde_json::from_slice::<CrlInfo>(&json).ok())
            .filter(|i| i.url == route.url);
        let file = Arc::new(PublishedFile::new(der, info, modified)?);
        self.files
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(route.file_name.clone(), file.clone());
        Ok(Some(file))
    }

    /// Writes `der` for `info.url` atomically (DER, then its sidecar) and
    /// serves it from now on. Blocking file I/O.
    pub fn publish(&self, der: Vec<u8>, mut info: CrlInfo) -> Result<Arc<PublishedFile>, CrlError> {
        let path_key = url_path(&info.url)?;
        let route =
            self.read_routes().get(&path_key).cloned().ok_or_else(|| CrlError::UnservedUrl(info.url.clone()))?;
        let file = PublishedFile::new(der, None, None)?;
        info.sha256 = file.sha256.clone();
        let path = self.out_dir.join(&route.file_name);
        write_atomically(&path, &file.der)?;
        let json = serde_json::to_vec_pretty(&info).map_err(CrlError::json("CRL sidecar"))?;
        write_atomically(&sidecar(&path), &json)?;
        let file = Arc::new(PublishedFile { info: Some(info), ..file });
        self.files
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(route.file_name.clone(), file.clone());
        Ok(file)
    }

    /// The CRL served at URL path `path` (e.g. `/crl/sign.crl`). Files made
    /// elsewhere are re-read when they changed on disk.
    pub fn get(&self, path: &str) -> Result<Option<Arc<PublishedFile>>, CrlError> {
        let Some(route) = self.read_routes().get(path).cloned() else {
            return Ok(None);
        };
        let current = self.read_files().get(&route.file_name).cloned();
        if !route.external {
            return Ok(current);
        }
        let on_disk = std::fs::metadata(self.out_dir.join(&route.file_name)).ok().and_then(|m| m.modified().ok());
        match (&current, on_disk) {
            (Some(f), Some(m)) if f.modified == Some(m) => Ok(current),
            (_, None) => Ok(current),
            _ => self.reload(&route),
        }
    }

    /// Every URL path served, sorted, each with whether another process
    /// writes its file (the root's ARL).
    pub fn paths(&self) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = self.read_routes().iter().map(|(p, r)| (p.clone(), r.external)).collect();
        out.sort();
        out
    }

    /// The CRL currently published for `url`, if any.
    pub fn by_url(&self, url: &str) -> Option<Arc<PublishedFile>> {
        let file_name = self.read_routes().get(&url_path(url).ok()?)?.file_name.clone();
        self.read_files().get(&file_name).cloned()
    }

    /// What is published now, ordered by URL.
    pub fn latest(&self) -> Vec<CrlInfo> {
        let files = self.read_files();
        let mut out: Vec<CrlInfo> = files.values().filter_map(|f| f.info.clone()).collect();
        out.sort_by(|a, b| a.url.cmp(&b.url));
        out
    }
}

fn sidecar(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    path.with_file_name(name)
}

/// tmp file + fsync + rename, so readers see the old or the new file, never half.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CrlError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(CrlError::io(path))
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::builder::{build_crl, CrlSigner, CrlSpec};
    use crate::SignatureAlgorithm;

    struct Unsigned;
    impl CrlSigner for Unsigned {
        fn signature_algorithm(&self) -> SignatureAlgorithm {
            SignatureAlgorithm::EcdsaWithSha256
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, CrlError> {
            Ok(vec![0x30, 0x00])
        }
    }

    pub(crate) fn sample_crl(number: u64) -> Vec<u8> {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let spec = CrlSpec {
            issuer: vec![0x30, 0x00],
            authority_key_identifier: vec![1],
            this_update: t,
            next_update: t + time::Duration::hours(1),
            crl_number: number,
            delta_crl_indicator: None,
            issuing_distribution_point: None,
            freshest_crl: None,
            expired_certs_on_crl: None,
        };
        build_crl(&spec, [], &Unsigned).unwrap().der
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::sample_crl;
    use super::*;

    fn info(url: &str) -> CrlInfo {
        CrlInfo {
            issuer: "signing".into(),
            kind: CrlKind::Full,
            partition: 0,
            crl_number: 1,
            base_crl_number: 0,
            this_update: 1_700_000_000,
            next_update: 1_700_003_600,
            url: url.into(),
            entries: 0,
            sha256: String::new(),
            feed_sequence: 9,
        }
    }

    #[test]
    fn urls_give_paths_and_file_names() {
        assert_eq!(url_path("http://h:1/crl/sign.crl").unwrap(), "/crl/sign.crl");
        assert_eq!(url_path("http://h/a.crl?x=1").unwrap(), "/a.crl");
        assert_eq!(file_name("http://h/crl/sign-p3.crl").unwrap(), "sign-p3.crl");
        for bad in ["nourl", "http://h", "http://h/", "http://h/crl/..", "http://h/x.json", "http://h/a b"] {
            assert!(file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn colliding_file_names_are_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let urls = [("http://h/a/x.crl".to_string(), false), ("http://h/b/x.crl".to_string(), false)];
        assert!(matches!(CrlStore::open(dir.path().into(), &urls), Err(CrlError::Config(_))));
    }

    #[test]
    fn publish_writes_files_and_a_restart_loads_them() {
        let dir = tempfile::tempdir().unwrap();
        let url = "http://h/crl/sign.crl".to_string();
        let urls = [(url.clone(), false), ("http://h/crl/arl.crl".to_string(), true)];
        let store = CrlStore::open(dir.path().join("out"), &urls).unwrap();
        assert!(store.get("/crl/sign.crl").unwrap().is_none());
        let der = sample_crl(1);
        let f = store.publish(der.clone(), info(&url)).unwrap();
        assert_eq!(&f.der[..], der.as_slice());
        assert_eq!(f.etag.len(), 34);
        assert_eq!(f.last_modified, "Tue, 14 Nov 2023 22:13:20 GMT");
        assert!(f.pem().starts_with(b"-----BEGIN X509 CRL-----\n"));
        assert_eq!(std::fs::read(dir.path().join("out/sign.crl")).unwrap(), der);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("out"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());

        let again = CrlStore::open(dir.path().join("out"), &urls).unwrap();
        let loaded = again.get("/crl/sign.crl").unwrap().unwrap();
        assert_eq!(loaded.der, f.der);
        assert_eq!(loaded.info.as_ref().unwrap().feed_sequence, 9);
        assert_eq!(again.latest().len(), 1);
        assert!(again.get("/crl/other.crl").unwrap().is_none());

        // An external file appears (and changes) while serving.
        assert!(again.get("/crl/arl.crl").unwrap().is_none());
        std::fs::write(dir.path().join("out/arl.crl"), sample_crl(5)).unwrap();
        let arl = again.get("/crl/arl.crl").unwrap().unwrap();
        assert!(arl.info.is_none());
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_atomically(&dir.path().join("out/arl.crl"), &sample_crl(6)).unwrap();
        let arl2 = again.get("/crl/arl.crl").unwrap().unwrap();
        assert_ne!(arl.etag, arl2.etag);
    }

    #[test]
    fn a_sidecar_that_does_not_match_the_der_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let url = "http://h/crl/sign.crl".to_string();
        let urls = [(url.clone(), false)];
        let store = CrlStore::open(dir.path().into(), &urls).unwrap();
        store.publish(sample_crl(1), info(&url)).unwrap();
        std::fs::write(dir.path().join("sign.crl"), sample_crl(2)).unwrap();
        let again = CrlStore::open(dir.path().into(), &urls).unwrap();
        assert!(again.get("/crl/sign.crl").unwrap().unwrap().info.is_none());
        // Garbage is skipped with a warning, not a failure to start.
        std::fs::write(dir.path().join("sign.crl"), b"garbage").unwrap();
        let again = CrlStore::open(dir.path().into(), &urls).unwrap();
        assert!(again.get("/crl/sign.crl").unwrap().is_none());
    }
}
