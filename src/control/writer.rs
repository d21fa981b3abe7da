//! The single writer: commands come in over a channel, one at a time; each is checked, applied,
//! and published as a new snapshot before its caller hears back.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::dns::handler::Handler;
use crate::metrics::Metrics;
use crate::policy::{build_snapshot, FileError, PolicyErrors, PolicySet, Snapshot, StaticBinding};

/// What a successful reload put in force.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadReport {
    pub version: u64,
    pub groups: usize,
    pub listed_domains: usize,
    pub lists: usize,
}

/// The outcome of the last reload, for the admin API.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    /// Seconds since the epoch.
    pub at: u64,
    pub ok: bool,
    pub errors: Vec<FileError>,
}

enum Command {
    Reload {
        reply: oneshot::Sender<Result<ReloadReport, PolicyErrors>>,
    },
}

/// A handle for sending commands to the writer.
#[derive(Clone)]
pub struct Control {
    tx: mpsc::Sender<Command>,
    status: Arc<Mutex<ReloadStatus>>,
}

/// The writer's own state; nothing else touches it.
struct Writer {
    policies_dir: PathBuf,
    statics: Vec<StaticBinding>,
    version: u64,
    handler: Arc<Handler>,
    metrics: Arc<Metrics>,
    status: Arc<Mutex<ReloadStatus>>,
}

impl Control {
    /// Starts the writer. `first` is the snapshot already in force in `handler`.
    pub fn spawn(
        policies_dir: PathBuf,
        statics: Vec<StaticBinding>,
        first: &Snapshot,
        set: &PolicySet,
        handler: Arc<Handler>,
        metrics: Arc<Metrics>,
    ) -> Control {
        let status = Arc::new(Mutex::new(ReloadStatus {
            at: epoch_secs(),
            ok: true,
            errors: Vec::new(),
        }));
        let writer = Writer {
            policies_dir,
            statics,
            version: first.version,
            handler,
            metrics,
            status: status.clone(),
        };
        writer.report(first, set);
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(writer.run(rx));
        Control { tx, status }
    }

    /// Reloads policies and lists; on any error the snapshot in force stays (contract 4).
    pub async fn reload(&self) -> Result<ReloadReport, PolicyErrors> {
        let (reply, rx) = oneshot::channel();
        let stopped = || {
            PolicyErrors(vec![FileError {
                file: PathBuf::new(),
                line: None,
                message: "the control plane has stopped".into(),
            }])
        };
        self.tx
            .send(Command::Reload { reply })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    pub fn status(&self) -> ReloadStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Command::Reload { reply } => {
                    let result = self.reload().await;
                    let _ = reply.send(result);
                }
            }
        }
    }

    async fn reload(&mut self) -> Result<ReloadReport, PolicyErrors> {
        let dir = self.policies_dir.clone();
        let loaded = tokio::task::spawn_blocking(move || PolicySet::load(&dir))
            .await
            .unwrap_or_else(|e| {
                Err(PolicyErrors(vec![FileError {
                    file: PathBuf::new(),
                    line: None,
                    message: format!("loader failed: {e}"),
                }]))
            });
        let set = match loaded {
            Ok(set) => set,
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!(
                        "policy reload rejected, keeping snapshot {}: {e}",
                        self.version
                    );
                }
                self.metrics
                    .config_reload
                    .with_label_values(&["error"])
                    .inc();
                self.metrics.policy_errors.set(errors.0.len() as i64);
                self.set_status(false, errors.0.clone());
                return Err(errors);
            }
        };
        let started = Instant::now();
        self.version += 1;
        let snapshot = Arc::new(build_snapshot(&set, &self.statics, self.version));
        self.handler.publish(snapshot.clone());
        self.metrics
            .snapshot_publish_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .config_reload
            .with_label_values(&["success"])
            .inc();
        self.metrics.policy_errors.set(0);
        self.set_status(true, Vec::new());
        self.report(&snapshot, &set);
        tracing::info!(version = self.version, "policies reloaded");
        Ok(ReloadReport {
            version: self.version,
            groups: snapshot.groups.len(),
            listed_domains: snapshot.categories.len(),
            lists: set.lists.len(),
        })
    }

    fn set_status(&self, ok: bool, errors: Vec<FileError>) {
        if let Ok(mut s) = self.status.lock() {
            *s = ReloadStatus {
                at: epoch_secs(),
                ok,
                errors,
            };
        }
    }

    /// Gauges that describe the snapshot in force.
    fn report(&self, snapshot: &Snapshot, set: &PolicySet) {
        let m = &self.metrics;
        m.snapshot_version.set(snapshot.version as i64);
        m.snapshot_publish.inc();
        m.category_domains.reset();
        for (id, name) in set.taxonomy.iter() {
            m.category_domains
                .with_label_values(&[name])
                .set(snapshot.categories.domains_in(id) as i64);
        }
        m.devices.reset();
        let mut per_group = vec![0i64; snapshot.groups.len()];
        for g in snapshot.devices.groups.values() {
            per_group[g.index()] += 1;
        }
        for (g, n) in snapshot.groups.iter().zip(per_group) {
            m.devices.with_label_values(&[&g.name]).set(n);
        }
    }
}

fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
