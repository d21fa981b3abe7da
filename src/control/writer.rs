//! The single writer: commands come in over a channel; each batch of them is validated, turned
//! into changes, committed to the store in one transaction, applied, and published as one new
//! snapshot, and only then does any caller hear back (contract 2).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::commands::{ApplyError, Command, Outcome, Query, QueryReply, Request};
use super::state::{AuditEvent, Change, Hold, State};
use super::store::Store;
use super::view::{group_of, View};
use crate::dns::handler::Handler;
use crate::jamf::events::DeviceKind;
use crate::metrics::Metrics;
use crate::policy::build::{PolicyParts, StaticBinding};
use crate::policy::cidr::PrefixTable;
use crate::policy::{DeviceId, FileError, PolicyErrors, PolicySet};

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

/// Writer settings from config.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub policies_dir: PathBuf,
    pub statics: Vec<StaticBinding>,
    pub shared_networks: Vec<ipnet::IpNet>,
    pub binding_lifetime: Duration,
    pub critical: Vec<String>,
}

/// A handle for sending commands to the writer.
#[derive(Clone)]
pub struct Control {
    tx: mpsc::Sender<Command>,
    status: Arc<Mutex<ReloadStatus>>,
}

/// A manual isolation waiting for a second admin.
pub(super) struct Pending {
    pub(super) device: DeviceId,
    pub(super) hold: Hold,
}

/// The writer's own state; nothing else touches it.
pub(super) struct Writer {
    pub(super) config: WriterConfig,
    pub(super) store: Store,
    pub(super) state: State,
    pub(super) parts: PolicyParts,
    pub(super) view: View,
    pub(super) version: u64,
    pub(super) handler: Arc<Handler>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) status: Arc<Mutex<ReloadStatus>>,
    pub(super) shared: PrefixTable<()>,
    pub(super) approvals: BTreeMap<u64, Pending>,
}

/// How many queued commands one transaction takes at most.
const BATCH: usize = 256;

impl Control {
    /// Starts the writer with the state loaded from `store`; the snapshot built from them is
    /// published in `handler` before this returns.
    pub fn start(
        config: WriterConfig,
        store: Store,
        set: PolicySet,
        handler: Arc<Handler>,
        metrics: Arc<Metrics>,
    ) -> Result<Control, super::store::StoreError> {
        let state = store.load()?;
        let mut shared = PrefixTable::new();
        for net in &config.shared_networks {
            shared.insert_with(*net, (), |_, _| {});
        }
        let parts = PolicyParts::new(set);
        let view = View::build(&parts, &state, &config.statics);
        let status = Arc::new(Mutex::new(ReloadStatus {
            at: epoch_secs() as u64,
            ok: true,
            errors: Vec::new(),
        }));
        let mut writer = Writer {
            config,
            store,
            state,
            parts,
            view,
            version: handler.snapshot().version,
            handler,
            metrics,
            status: status.clone(),
            shared,
            approvals: BTreeMap::new(),
        };
        writer.ensure_config_devices();
        writer.publish();
        writer.report_policies();
        // Reading the store allocates far more than the state it leaves.
        crate::alloc::release_free_memory();
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(writer.run(rx));
        let control = Control { tx, status };
        control.spawn_ticker();
        Ok(control)
    }

    fn spawn_ticker(&self) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                if tx.send(Command::Tick).await.is_err() {
                    return;
                }
            }
        });
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

    /// Applies a change request; the reply comes once it is durable and in force.
    pub async fn apply(&self, request: Request) -> Result<Outcome, ApplyError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Apply {
                request: Box::new(request),
                reply,
            })
            .await
            .map_err(|_| ApplyError::Stopped)?;
        rx.await.map_err(|_| ApplyError::Stopped)?
    }

    /// Answers a read-only question about devices.
    pub async fn query(&self, query: Query) -> Result<QueryReply, ApplyError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Query { query, reply })
            .await
            .map_err(|_| ApplyError::Stopped)?;
        rx.await.map_err(|_| ApplyError::Stopped)?
    }

    pub fn status(&self) -> ReloadStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A command's changes and audit records, gathered before anything is committed.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) changes: Vec<Change>,
    pub(super) audit: Vec<AuditEvent>,
}

type Reply = oneshot::Sender<Result<Outcome, ApplyError>>;

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.recv().await {
            let mut commands = vec![first];
            while commands.len() < BATCH {
                match rx.try_recv() {
                    Ok(c) => commands.push(c),
                    Err(_) => break,
                }
            }
            self.run_batch(commands).await;
        }
    }

    async fn run_batch(&mut self, commands: Vec<Command>) {
        let mut batch = Batch::default();
        let mut replies: Vec<(Reply, Result<Outcome, ApplyError>)> = Vec::new();
        let mut queries = Vec::new();
        for command in commands {
            match command {
                Command::Reload { reply } => {
                    // A reload is its own step: finish what came before it first.
                    self.commit(&mut batch, &mut replies);
                    let _ = reply.send(self.reload().await);
                }
                Command::Apply { request, reply } => {
                    let (mark, audit_mark) = (batch.changes.len(), batch.audit.len());
                    let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.request(*request, &mut batch)
                    }));
                    let Ok(result) = applied else {
                        // A bug in one request must not take the control plane down: drop what
                        // it added, go back to what the store holds, and fail only that caller.
                        tracing::error!(
                            "a control-plane request panicked; its changes are dropped"
                        );
                        batch.changes.truncate(mark);
                        batch.audit.truncate(audit_mark);
                        self.restore();
                        for c in &batch.changes {
                            self.state.apply(c);
                        }
                        self.view = View::build(&self.parts, &self.state, &self.config.statics);
                        let _ = reply.send(Err(ApplyError::Internal));
                        continue;
                    };
                    // Applied to the state now, so later commands in the batch see it; the
                    // store commit below makes it durable, or the state is reloaded.
                    for c in &batch.changes[mark..] {
                        self.state.apply(c);
                        self.view.apply(&self.parts, &self.state, c);
                    }
                    replies.push((reply, result));
                }
                Command::Query { query, reply } => queries.push((query, reply)),
                Command::Tick => self.lapse_bindings(&mut batch),
            }
        }
        self.commit(&mut batch, &mut replies);
        for (query, reply) in queries {
            let _ = reply.send(self.answer(query));
        }
    }

    /// Makes the batch durable and in force, then answers its callers.
    fn commit(
        &mut self,
        batch: &mut Batch,
        replies: &mut Vec<(Reply, Result<Outcome, ApplyError>)>,
    ) {
        let changed = !batch.changes.is_empty();
        let committed = if changed || !batch.audit.is_empty() {
            self.store.commit(&batch.changes, &batch.audit)
        } else {
            Ok(())
        };
        if let Err(e) = committed {
            tracing::error!("store commit failed, nothing of this batch applies: {e}");
            self.restore();
            for (reply, _) in replies.drain(..) {
                let _ = reply.send(Err(ApplyError::Store(e.to_string())));
            }
            *batch = Batch::default();
            return;
        }
        if changed {
            self.count_changes(&batch.changes);
            self.publish();
        }
        for (reply, mut result) in replies.drain(..) {
            if let Ok(outcome) = &mut result {
                outcome.version = self.version;
            }
            let _ = reply.send(result);
        }
        *batch = Batch::default();
    }

    /// After a failed commit: back to exactly what the store holds.
    fn restore(&mut self) {
        match self.store.load() {
            Ok(state) => self.state = state,
            Err(e) => tracing::error!("cannot re-read the store: {e}"),
        }
        self.view = View::build(&self.parts, &self.state, &self.config.statics);
    }

    fn publish(&mut self) {
        let started = Instant::now();
        self.version += 1;
        let snapshot = self.parts.snapshot(
            self.view.devices.clone(),
            self.view.statics.clone(),
            self.version,
        );
        self.handler.publish(Arc::new(snapshot));
        let m = &self.metrics;
        m.snapshot_publish_duration
            .observe(started.elapsed().as_secs_f64());
        m.snapshot_version.set(self.version as i64);
        m.snapshot_publish.inc();
        self.report_devices();
    }

    fn report_devices(&self) {
        let m = &self.metrics;
        let mut per_group = vec![0i64; self.parts.groups.len()];
        for g in self.view.devices.groups.values() {
            per_group[g.index()] += 1;
        }
        let others: i64 = per_group.iter().sum();
        per_group[self.parts.default_group.index()] += self.state.devices.len() as i64 - others;
        for (g, n) in self.parts.groups.iter().zip(per_group) {
            m.devices.with_label_values(&[&g.name]).set(n);
        }
    }

    fn report_policies(&self) {
        let m = &self.metrics;
        m.category_domains.reset();
        let set = &self.parts.set;
        for (id, name) in set.taxonomy.iter() {
            m.category_domains
                .with_label_values(&[name])
                .set(set.categories.domains_in(id) as i64);
        }
        m.devices.reset();
        self.report_devices();
    }

    fn count_changes(&self, changes: &[Change]) {
        for c in changes {
            let (device, direction) = match c {
                Change::AddMembership { device, .. } => (device, "added"),
                Change::RemoveMembership { device, .. } => (device, "removed"),
                _ => continue,
            };
            let group =
                group_of(&self.parts, &self.state, *device).unwrap_or(self.parts.default_group);
            let name = &self.parts.groups[group.index()].name;
            self.metrics
                .membership_changes
                .with_label_values(&[name, direction])
                .inc();
        }
    }

    async fn reload(&mut self) -> Result<ReloadReport, PolicyErrors> {
        let dir = self.config.policies_dir.clone();
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
        self.parts = PolicyParts::new(set);
        self.view = View::build(&self.parts, &self.state, &self.config.statics);
        self.ensure_config_devices();
        self.publish();
        // The old snapshot's lists are gone now that the new one is in force.
        crate::alloc::release_free_memory();
        self.metrics
            .config_reload
            .with_label_values(&["success"])
            .inc();
        self.metrics.policy_errors.set(0);
        self.set_status(true, Vec::new());
        self.report_policies();
        tracing::info!(version = self.version, "policies reloaded");
        Ok(ReloadReport {
            version: self.version,
            groups: self.parts.groups.len(),
            listed_domains: self.parts.set.categories.len(),
            lists: self.parts.set.lists.len(),
        })
    }

    fn set_status(&self, ok: bool, errors: Vec<FileError>) {
        if let Ok(mut s) = self.status.lock() {
            *s = ReloadStatus {
                at: epoch_secs() as u64,
                ok,
                errors,
            };
        }
    }

    /// Devices that config names (groups.toml placements, identity.static, critical) exist in
    /// the store, so that they have ids, bindings and a timeline like any other.
    fn ensure_config_devices(&mut self) {
        let mut batch = Batch::default();
        let names = config_device_names(&self.parts, &self.config.statics, &self.config.critical);
        batch.changes = self.state.create_named(names.iter().map(String::as_str));
        for name in &self.config.critical {
            if let Some(id) = self.state.find(name) {
                if !self.state.devices[&id].critical {
                    let c = Change::SetCritical {
                        device: id,
                        critical: true,
                    };
                    self.state.apply(&c);
                    batch.changes.push(c);
                }
            }
        }
        if batch.changes.is_empty() {
            return;
        }
        if let Err(e) = self.store.commit(&batch.changes, &batch.audit) {
            tracing::error!("cannot record the devices config names: {e}");
            self.restore();
            return;
        }
        self.view = View::build(&self.parts, &self.state, &self.config.statics);
    }
}

/// Every device name config uses: groups.toml placements, identity.static, devices.critical.
pub fn config_device_names(
    parts: &PolicyParts,
    statics: &[StaticBinding],
    critical: &[String],
) -> Vec<String> {
    let mut names: Vec<String> = parts
        .set
        .groups
        .iter()
        .flat_map(|g| g.devices.iter().cloned())
        .collect();
    names.extend(statics.iter().map(|s| s.device.clone()));
    names.extend(critical.iter().cloned());
    names
}

pub(super) fn group_key(kind: DeviceKind, id: i64) -> String {
    match kind {
        DeviceKind::Computer => format!("jamf:computer-group:{id}"),
        DeviceKind::Mobile => format!("jamf:mobile-group:{id}"),
    }
}

pub(super) fn parse_group_key(key: &str) -> Option<(DeviceKind, i64)> {
    if let Some(id) = key.strip_prefix("jamf:computer-group:") {
        return Some((DeviceKind::Computer, id.parse().ok()?));
    }
    Some((
        DeviceKind::Mobile,
        key.strip_prefix("jamf:mobile-group:")?.parse().ok()?,
    ))
}

pub(super) fn epoch_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
