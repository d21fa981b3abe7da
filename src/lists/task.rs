//! The task that keeps lists fresh: once a second it looks at which lists are due, fetches them
//! one at a time (blocking, on the blocking pool), and when one changed asks the control plane
//! to reload, which builds and publishes a snapshot with the new copy, or keeps the snapshot in
//! force if the policies do not load (contract 4). It follows categories.toml as it is edited:
//! a list added there is fetched, and then put in force by that reload with the rest of the
//! directory, as `SIGHUP` would.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::fetch::{FetchError, Fetcher, Outcome};
use super::{label, retry_after, Settings};
use crate::control::Control;
use crate::metrics::Metrics;
use crate::policy::load::{url_lists, UrlList};

/// How often the task looks for due lists and updates `cordon_list_age_seconds`.
const TICK: Duration = Duration::from_secs(1);

/// The running task; dropping it stops it (a fetch under way finishes on the blocking pool).
pub struct ListTask {
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for ListTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Seconds since the Unix epoch, as the cache records times.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Starts the task for the lists categories.toml in `policies` names by URL. Fails only when
/// `lists.ca_file` cannot be read.
pub fn spawn(
    settings: Settings,
    policies: PathBuf,
    control: Control,
    metrics: Arc<Metrics>,
) -> Result<ListTask, String> {
    let fetcher = Arc::new(Fetcher::new(&settings)?);
    let mut lists = Lists {
        settings,
        policies,
        fetcher,
        control,
        metrics,
        tracked: Vec::new(),
        seen: None,
    };
    let handle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            lists.round().await;
        }
    });
    Ok(ListTask { handle })
}

struct Lists {
    settings: Settings,
    policies: PathBuf,
    fetcher: Arc<Fetcher>,
    control: Control,
    metrics: Arc<Metrics>,
    tracked: Vec<Tracked>,
    /// categories.toml's modification time when it was last read, and what reading it said.
    seen: Option<(Option<SystemTime>, Result<(), String>)>,
}

/// One list and its schedule.
struct Tracked {
    url: String,
    /// What metrics and logs show.
    label: String,
    refresh: Duration,
    due: Instant,
    failures: u32,
    /// When the server last confirmed the copy in the cache; `None` while there is none.
    checked_at: Option<u64>,
    /// Named in categories.toml after the start, and not fetched since.
    added: bool,
}

impl Lists {
    async fn round(&mut self) {
        self.follow_categories();
        let now = Instant::now();
        let mut changed = false;
        for i in 0..self.tracked.len() {
            if self.tracked[i].due <= now {
                changed |= self.fetch(i).await;
                // A list added while running is in no snapshot yet, even with a copy from an
                // earlier run that the server just confirmed.
                let t = &mut self.tracked[i];
                changed |= t.added && t.checked_at.is_some();
                t.added = false;
            }
        }
        if changed {
            match self.control.reload().await {
                Ok(report) => tracing::info!(
                    version = report.version,
                    "a list changed: its new copy is in force"
                ),
                // The writer has logged why; the copy waits in the cache for the next reload.
                Err(_) => tracing::warn!(
                    "a list changed but the policies do not load: the snapshot in force stays"
                ),
            }
        }
        self.export_ages();
    }

    /// Fetches the `i`th list; true when its copy changed.
    async fn fetch(&mut self, i: usize) -> bool {
        let fetcher = self.fetcher.clone();
        let url = self.tracked[i].url.clone();
        let now = unix_now();
        let result = tokio::task::spawn_blocking(move || fetcher.refresh(&url, now))
            .await
            .unwrap_or_else(|e| Err(FetchError::Unreachable(format!("the fetch failed: {e}"))));
        let t = &mut self.tracked[i];
        let outcome = match &result {
            Ok(outcome) => outcome.result(),
            Err(e) => e.result(),
        };
        self.metrics
            .list_fetch
            .with_label_values(&[t.label.as_str(), outcome])
            .inc();
        match result {
            Ok(outcome) => {
                t.failures = 0;
                t.checked_at = Some(now);
                t.due = Instant::now() + t.refresh;
                match outcome {
                    Outcome::Updated(stats) => {
                        tracing::info!(list = %t.label, "list fetched: {stats}");
                        true
                    }
                    Outcome::NotModified => {
                        tracing::debug!(list = %t.label, "list not modified");
                        false
                    }
                }
            }
            Err(e) => {
                t.failures += 1;
                let wait = retry_after(t.failures, self.settings.retry, t.refresh);
                t.due = Instant::now() + wait;
                let kept = match t.checked_at {
                    Some(at) => format!(
                        "the copy confirmed {}s ago stays in force",
                        now.saturating_sub(at)
                    ),
                    None => "there is no copy: its category gets nothing from it".into(),
                };
                tracing::warn!(
                    list = %t.label,
                    failures = t.failures,
                    "list fetch failed: {e}; {kept}; next try in {}s",
                    wait.as_secs()
                );
                false
            }
        }
    }

    /// Reads the lists categories.toml names whenever the file changes: new ones are tracked
    /// (due at once, or when their copy's refresh interval runs out), dropped ones forgotten.
    fn follow_categories(&mut self) {
        let path = self.policies.join("categories.toml");
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if self
            .seen
            .as_ref()
            .is_some_and(|(seen, _)| *seen == modified)
        {
            return;
        }
        let lists = match url_lists(&self.policies) {
            Ok(lists) => lists,
            Err(e) => {
                // The loader reports the file's errors on reload; say it once here.
                if !matches!(&self.seen, Some((_, Err(said))) if *said == e) {
                    tracing::warn!("lists: cannot read the lists to fetch, keeping those: {e}");
                }
                self.seen = Some((modified, Err(e)));
                return;
            }
        };
        let added = self.seen.is_some();
        self.seen = Some((modified, Ok(())));
        self.track(lists, added);
    }

    /// `added`: the lists new here were named after the start (the first snapshot has those
    /// named at the start), so they are due at once.
    fn track(&mut self, lists: Vec<UrlList>, added: bool) {
        let gone: Vec<Tracked> = {
            let (kept, gone) = std::mem::take(&mut self.tracked)
                .into_iter()
                .partition(|t| lists.iter().any(|l| l.url == t.url));
            self.tracked = kept;
            gone
        };
        for t in gone {
            let _ = self
                .metrics
                .list_age
                .remove_label_values(&[t.label.as_str()]);
        }
        for list in lists {
            let refresh = list.refresh.unwrap_or(self.settings.refresh);
            if let Some(t) = self.tracked.iter_mut().find(|t| t.url == list.url) {
                if t.refresh != refresh && t.failures == 0 {
                    t.due = t.due.min(Instant::now() + refresh);
                }
                t.refresh = refresh;
                continue;
            }
            let checked_at = self
                .fetcher
                .cache()
                .copy(&list.url)
                .and_then(|m| m.checked_at);
            // A copy confirmed less than `refresh` ago waits for its turn: a restart does not
            // fetch every list again.
            let waited = checked_at.map_or(refresh, |at| {
                Duration::from_secs(unix_now().saturating_sub(at))
            });
            let due = if added {
                Instant::now()
            } else {
                Instant::now() + refresh.saturating_sub(waited)
            };
            self.tracked.push(Tracked {
                label: label(&list.url),
                url: list.url,
                refresh,
                due,
                failures: 0,
                checked_at,
                added,
            });
        }
    }

    /// `cordon_list_age_seconds`: how long ago the server last confirmed each copy.
    fn export_ages(&self) {
        let now = unix_now();
        for t in &self.tracked {
            if let Some(at) = t.checked_at {
                let age = i64::try_from(now.saturating_sub(at)).unwrap_or(i64::MAX);
                self.metrics
                    .list_age
                    .with_label_values(&[t.label.as_str()])
                    .set(age);
            }
        }
    }
}
