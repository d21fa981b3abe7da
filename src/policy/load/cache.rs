//! The last good copy of each list fetched by URL, on disk (`lists.cache_dir`), with what the
//! fetcher knows of it: the validators for conditional requests (ETag, Last-Modified), when it
//! was fetched and last confirmed, and the last failure. The loader reads copies from here; only
//! the fetcher (`src/lists/`) writes, and it writes only copies that parsed as lists, each file
//! replaced whole (a rename), so that a reader never sees half a list.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What is known of one URL's copy. Times are seconds since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheMeta {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// When the copy was downloaded; `None` while there is no copy.
    pub fetched_at: Option<u64>,
    /// When the server last confirmed the copy: a 200 with it, or a 304.
    pub checked_at: Option<u64>,
    /// SHA-256 of the copy (hex): a 200 with the same body is no change.
    pub sha256: Option<String>,
    /// Why the last fetch failed, if it did (cleared by the next success).
    pub last_error: Option<String>,
    pub failed_at: Option<u64>,
}

impl CacheMeta {
    pub fn new(url: &str) -> CacheMeta {
        CacheMeta {
            url: url.to_string(),
            ..CacheMeta::default()
        }
    }

    pub fn has_copy(&self) -> bool {
        self.fetched_at.is_some()
    }
}

/// The cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCache {
    dir: PathBuf,
}

impl ListCache {
    pub fn new(dir: impl Into<PathBuf>) -> ListCache {
        ListCache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Files are named by a hash of the URL: any URL, any length, one safe name.
    fn stem(url: &str) -> String {
        let digest = Sha256::digest(url.as_bytes());
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Where the copy of `url` is kept.
    pub fn list_path(&self, url: &str) -> PathBuf {
        self.dir.join(format!("{}.list", Self::stem(url)))
    }

    fn meta_path(&self, url: &str) -> PathBuf {
        self.dir.join(format!("{}.json", Self::stem(url)))
    }

    /// What is known of `url`; `None` when nothing is (or the record is unreadable).
    pub fn meta(&self, url: &str) -> Option<CacheMeta> {
        let text = std::fs::read(self.meta_path(url)).ok()?;
        let meta: CacheMeta = serde_json::from_slice(&text).ok()?;
        (meta.url == url).then_some(meta)
    }

    /// The record of `url` if a copy of it is on disk.
    pub fn copy(&self, url: &str) -> Option<CacheMeta> {
        self.meta(url)
            .filter(|m| m.has_copy() && self.list_path(url).is_file())
    }

    /// Puts `body` in force as the copy of `meta.url`, with its record.
    pub fn store(&self, body: &[u8], meta: &CacheMeta) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        replace(&self.list_path(&meta.url), body)?;
        self.store_meta(meta)
    }

    /// Records what is known of a URL, its copy unchanged.
    pub fn store_meta(&self, meta: &CacheMeta) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        replace(&self.meta_path(&meta.url), &json)
    }
}

/// Writes `path` whole: a temporary file beside it, synced, then renamed over it.
fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_and_its_record_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ListCache::new(dir.path().join("lists-cache"));
        let url = "https://feeds.example/malware.txt?key=1";
        assert_eq!(cache.meta(url), None);
        assert_eq!(cache.copy(url), None);

        let mut meta = CacheMeta::new(url);
        meta.last_error = Some("unreachable".into());
        cache.store_meta(&meta).unwrap();
        assert_eq!(cache.meta(url), Some(meta.clone()));
        assert_eq!(cache.copy(url), None, "a record without a copy");

        meta.etag = Some("\"v1\"".into());
        meta.fetched_at = Some(1_800_000_000);
        cache.store(b"evil.example\n", &meta).unwrap();
        assert_eq!(cache.copy(url), Some(meta));
        assert_eq!(
            std::fs::read(cache.list_path(url)).unwrap(),
            b"evil.example\n"
        );
        let names: Vec<String> = std::fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");
        // another URL has its own files
        assert_ne!(
            cache.list_path(url),
            cache.list_path("https://feeds.example/malware.txt")
        );
    }
}
