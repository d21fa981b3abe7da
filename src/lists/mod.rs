//! Lists by URL: the fetcher that keeps a last good copy of every list categories.toml names by
//! an `https://` (or `http://`) URL, off the query path.
//!
//! `fetch.rs` does one fetch (a conditional GET with a size cap and a timeout, the body checked
//! to be a list, a good copy written to the cache); `task.rs` is the task `app.rs` starts, which
//! fetches each list when it is due, backs off after failures, counts every fetch and puts a
//! changed list in force through the control plane's reload (the loader reads the copies, see
//! `policy/load/cache.rs`). A failed fetch never touches the copy in force (contract 4).

mod fetch;
mod task;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use fetch::{validate, FetchError, Fetcher, Outcome};
pub use task::{spawn, unix_now, ListTask};

use crate::policy::load::url_lists;

/// `[lists]` of the config file, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where the last good copies are kept.
    pub cache_dir: PathBuf,
    /// The CA bundle (PEM) list servers are checked against; the system's roots when `None`.
    pub ca_file: Option<PathBuf>,
    /// How often a list is fetched when categories.toml gives it no `refresh_s` of its own.
    pub refresh: Duration,
    /// The wait after a first failure; it doubles with each failure after it.
    pub retry: Duration,
    /// The whole of one fetch: connect, TLS, request and body.
    pub timeout: Duration,
    /// The largest body accepted.
    pub max_bytes: u64,
}

/// The wait before the next try of a list that failed `failures` times in a row: `retry`,
/// doubled with each failure, never more than the list's `refresh` interval (nor less than
/// `retry`).
pub fn retry_after(failures: u32, retry: Duration, refresh: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    let wait = retry.saturating_mul(1 << doublings);
    wait.min(refresh.max(retry))
}

/// A URL as metrics and logs show it: without credentials, query or fragment, which may hold
/// secrets (`https://user:key@feeds.example/list.txt?key=…` is `https://feeds.example/list.txt`).
pub fn label(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}{path}")
}

/// `95s`, `12m`, `3h 5m`, `2d 4h`: an age for people.
pub fn ago(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86_400 => format!("{}h {}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d {}h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

/// One list's URL and how its fetch went.
pub type Fetched = (String, Result<Outcome, FetchError>);

/// Fetches every list categories.toml in `policies` names by URL, once, now (`cordon check
/// --fetch`): each result, by URL.
pub fn fetch_all(settings: &Settings, policies: &Path) -> Result<Vec<Fetched>, String> {
    let lists = url_lists(policies)?;
    if lists.is_empty() {
        return Ok(Vec::new());
    }
    let fetcher = Fetcher::new(settings)?;
    let now = task::unix_now();
    Ok(lists
        .into_iter()
        .map(|list| {
            let result = fetcher.refresh(&list.url, now);
            (list.url, result)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_exponentially_up_to_the_refresh_interval() {
        let s = Duration::from_secs;
        let waits: Vec<u64> = (1..=9)
            .map(|n| retry_after(n, s(30), s(3600)).as_secs())
            .collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(retry_after(1, s(30), s(10)), s(30), "never below retry");
        assert_eq!(retry_after(u32::MAX, s(30), s(86_400)), s(86_400));
    }

    #[test]
    fn ages_for_people() {
        assert_eq!(ago(59), "59s");
        assert_eq!(ago(125), "2m");
        assert_eq!(ago(3 * 3600 + 5 * 60 + 9), "3h 5m");
        assert_eq!(ago(2 * 86_400 + 4 * 3600), "2d 4h");
    }

    #[test]
    fn labels_leave_secrets_out() {
        assert_eq!(
            label("https://user:key@feeds.example:8443/a/list.txt?key=1#x"),
            "https://feeds.example:8443/a/list.txt"
        );
        assert_eq!(label("http://feeds.example"), "http://feeds.example");
    }
}
