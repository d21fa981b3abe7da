//! One fetch of one list: a conditional GET (If-None-Match, If-Modified-Since) with a size cap
//! and a timeout, the body checked to be a list, and a good copy put in the cache. Blocking
//! (`ureq`, as the Jamf client): callers run it inside `tokio::task::spawn_blocking`.
//!
//! Nothing that fails here touches the copy in force: an unreachable server, an HTTP error, a
//! body over the cap, an HTML page or a body that is not a list only records the failure beside
//! the copy (for `cordon check`) and is handed back for the log and the metrics (contract 4).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::Settings;
use crate::policy::load::{parse_reader, CacheMeta, ListCache, ListStats, SkipReason};

/// What a fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new copy is in the cache; the policies must be reloaded to put it in force.
    Updated(ListStats),
    /// The server confirmed the copy (304, or the same body again).
    NotModified,
}

impl Outcome {
    /// The `result` label of `cordon_list_fetch_total`.
    pub fn result(&self) -> &'static str {
        match self {
            Outcome::Updated(_) => "updated",
            Outcome::NotModified => "not_modified",
        }
    }
}

/// Why a fetch left the copy as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// No answer: DNS, connect, TLS, timeout, a broken connection.
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("larger than lists.max_bytes ({0} bytes)")]
    TooLarge(u64),
    #[error("an HTML page, not a list")]
    Html,
    #[error("not a list: {0}")]
    Malformed(String),
    #[error("cannot write the cache: {0}")]
    Cache(String),
}

impl FetchError {
    /// The `result` label of `cordon_list_fetch_total`.
    pub fn result(&self) -> &'static str {
        match self {
            FetchError::Unreachable(_) => "unreachable",
            FetchError::Status(_) => "http_error",
            FetchError::TooLarge(_) => "too_large",
            FetchError::Html | FetchError::Malformed(_) => "malformed",
            FetchError::Cache(_) => "cache_error",
        }
    }
}

/// What the server sent.
enum Answer {
    NotModified,
    Body {
        body: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
        content_type: Option<String>,
    },
}

/// Fetches lists into a cache. Cheap to share.
pub struct Fetcher {
    agent: ureq::Agent,
    max_bytes: u64,
    cache: ListCache,
}

impl Fetcher {
    /// A client trusting `settings.ca_file`, or the system's roots without it.
    pub fn new(settings: &Settings) -> Result<Fetcher, String> {
        let tls = tls_config(settings.ca_file.as_deref())?;
        let agent = ureq::AgentBuilder::new()
            .timeout(settings.timeout)
            .tls_config(Arc::new(tls))
            .user_agent(concat!("cordon/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Fetcher {
            agent,
            max_bytes: settings.max_bytes,
            cache: ListCache::new(&settings.cache_dir),
        })
    }

    pub fn cache(&self) -> &ListCache {
        &self.cache
    }

    /// Asks for `url` (conditionally, when there is a copy) and keeps a good answer as the new
    /// copy. `now` is the time in seconds since the epoch, for the record.
    pub fn refresh(&self, url: &str, now: u64) -> Result<Outcome, FetchError> {
        let mut meta = self.cache.meta(url).unwrap_or_else(|| CacheMeta::new(url));
        let has_copy = self.cache.copy(url).is_some();
        let done = self.fetch_into(url, &mut meta, has_copy, now);
        if let Err(e) = &done {
            meta.last_error = Some(e.to_string());
            meta.failed_at = Some(now);
            // The failure is logged and counted by the caller whether or not it is recorded.
            let _ = self.cache.store_meta(&meta);
        }
        done
    }

    fn fetch_into(
        &self,
        url: &str,
        meta: &mut CacheMeta,
        has_copy: bool,
        now: u64,
    ) -> Result<Outcome, FetchError> {
        let answer = self.get(url, has_copy.then_some(&*meta))?;
        let Answer::Body {
            body,
            etag,
            last_modified,
            content_type,
        } = answer
        else {
            if !has_copy {
                // Not asked conditionally: there is nothing this could confirm.
                return Err(FetchError::Status(304));
            }
            meta.checked_at = Some(now);
            meta.last_error = None;
            meta.failed_at = None;
            self.cache.store_meta(meta).map_err(cache_error)?;
            return Ok(Outcome::NotModified);
        };
        let stats = validate(&body, content_type.as_deref())?;
        let digest = hex(&Sha256::digest(&body));
        let same = has_copy && meta.sha256.as_deref() == Some(digest.as_str());
        meta.etag = etag;
        meta.last_modified = last_modified;
        meta.checked_at = Some(now);
        meta.last_error = None;
        meta.failed_at = None;
        if same {
            self.cache.store_meta(meta).map_err(cache_error)?;
            return Ok(Outcome::NotModified);
        }
        meta.fetched_at = Some(now);
        meta.sha256 = Some(digest);
        self.cache.store(&body, meta).map_err(cache_error)?;
        Ok(Outcome::Updated(stats))
    }

    fn get(&self, url: &str, validators: Option<&CacheMeta>) -> Result<Answer, FetchError> {
        let mut request = self.agent.get(url);
        if let Some(meta) = validators {
            if let Some(etag) = &meta.etag {
                request = request.set("If-None-Match", etag);
            }
            if let Some(date) = &meta.last_modified {
                request = request.set("If-Modified-Since", date);
            }
        }
        let response = match request.call() {
            Ok(response) => response,
            Err(ureq::Error::Status(status, _)) => return Err(FetchError::Status(status)),
            Err(ureq::Error::Transport(t)) => return Err(FetchError::Unreachable(t.to_string())),
        };
        match response.status() {
            304 => return Ok(Answer::NotModified),
            200..=299 => {}
            status => return Err(FetchError::Status(status)),
        }
        let declared = response
            .header("Content-Length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_bytes) {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        let header = |name| response.header(name).map(str::to_string);
        let (etag, last_modified) = (header("ETag"), header("Last-Modified"));
        let content_type = header("Content-Type");
        let mut body = Vec::new();
        response
            .into_reader()
            .take(self.max_bytes + 1)
            .read_to_end(&mut body)
            .map_err(|e| FetchError::Unreachable(format!("reading the body: {e}")))?;
        if body.len() as u64 > self.max_bytes {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        Ok(Answer::Body {
            body,
            etag,
            last_modified,
            content_type,
        })
    }
}

fn cache_error(e: std::io::Error) -> FetchError {
    FetchError::Cache(e.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The TLS roots: the PEM file `ca_file`, or the system's; an error names the setting.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    crate::tls::client_config(ca_file).map_err(|e| format!("lists.ca_file {e}"))
}

/// Whether `body` is a list: not an HTML page (by its Content-Type or its first bytes), at
/// least one entry, and no more invalid names than entries (an error page in another shape).
pub fn validate(body: &[u8], content_type: Option<&str>) -> Result<ListStats, FetchError> {
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    if matches!(
        media.as_deref(),
        Some("text/html" | "application/xhtml+xml")
    ) {
        return Err(FetchError::Html);
    }
    let start = body
        .strip_prefix(b"\xef\xbb\xbf")
        .unwrap_or(body)
        .trim_ascii_start();
    let head = start[..start.len().min(64)].to_ascii_lowercase();
    if head.starts_with(b"<!doctype html") || head.starts_with(b"<html") {
        return Err(FetchError::Html);
    }
    let stats = parse_reader(body, |_| {}).map_err(|e| FetchError::Malformed(e.to_string()))?;
    if stats.entries == 0 {
        return Err(FetchError::Malformed(format!(
            "no entries in {} lines",
            stats.lines
        )));
    }
    let invalid = stats
        .skipped
        .get(&SkipReason::InvalidName)
        .copied()
        .unwrap_or(0);
    if invalid > stats.entries {
        return Err(FetchError::Malformed(format!(
            "{invalid} invalid names and only {} entries",
            stats.entries
        )));
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_passes_and_what_is_not_a_list_fails() {
        let stats = validate(b"# a list\n0.0.0.0 evil.example\n||c2.example^\n", None).unwrap();
        assert_eq!(stats.entries, 2);
        let ok = validate(b"evil.example\n", Some("text/plain; charset=utf-8"));
        assert!(ok.is_ok());
        for (body, content_type, wanted) in [
            (
                &b"evil.example\n"[..],
                Some("text/html; charset=utf-8"),
                FetchError::Html,
            ),
            (
                b"\xef\xbb\xbf\n  <!DOCTYPE html>\n<html><body>Not found</body></html>\n",
                Some("text/plain"),
                FetchError::Html,
            ),
            (b"<HTML>\n<p>moved</p>\n", None, FetchError::Html),
            (
                b"# only comments\n\n",
                None,
                FetchError::Malformed("no entries in 2 lines".into()),
            ),
            (
                b"{\"error\":\"quota\"}\n",
                Some("application/json"),
                FetchError::Malformed("no entries in 1 lines".into()),
            ),
            (
                b"ok.example\nnot_a-name..x\nbad..name\n-x-.example\n",
                None,
                FetchError::Malformed("3 invalid names and only 1 entries".into()),
            ),
        ] {
            assert_eq!(
                validate(body, content_type),
                Err(wanted.clone()),
                "{body:?}"
            );
        }
    }

    #[test]
    fn a_ca_file_that_cannot_be_used_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let settings = |ca_file: Option<std::path::PathBuf>| Settings {
            cache_dir: dir.path().join("cache"),
            ca_file,
            refresh: std::time::Duration::from_secs(3600),
            retry: std::time::Duration::from_secs(30),
            timeout: std::time::Duration::from_secs(30),
            max_bytes: 1 << 20,
        };
        assert!(Fetcher::new(&settings(None)).is_ok(), "the system's roots");
        let missing = dir.path().join("missing.pem");
        let error = Fetcher::new(&settings(Some(missing.clone())))
            .err()
            .unwrap();
        assert!(
            error.starts_with(&format!("lists.ca_file {}:", missing.display())),
            "{error}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = Fetcher::new(&settings(Some(empty))).err().unwrap();
        assert!(error.ends_with("no PEM certificate found"), "{error}");
    }

    #[test]
    fn each_failure_has_its_result_label() {
        assert_eq!(FetchError::Unreachable("x".into()).result(), "unreachable");
        assert_eq!(FetchError::Status(404).result(), "http_error");
        assert_eq!(FetchError::TooLarge(1).result(), "too_large");
        assert_eq!(FetchError::Html.result(), "malformed");
        assert_eq!(FetchError::Status(404).to_string(), "HTTP 404");
        assert_eq!(Outcome::NotModified.result(), "not_modified");
    }
}
