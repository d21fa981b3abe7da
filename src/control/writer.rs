//! The single writer: commands come in over a channel; each batch of them is validated, turned
//! into changes, committed to the store in one transaction, applied, and published as one new
//! snapshot, and only then does any caller hear back (contract 2).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::commands::{ApplyError, Command, DeviceInfo, Outcome, Query, QueryReply, Request};
use super::state::{Alias, AliasKind, AuditEvent, Change, Hold, State};
use super::store::Store;
use super::view::{group_of, View};
use crate::dns::handler::Handler;
use crate::jamf::events::{DeviceKind, DeviceReport, Envelope, Event, GroupChange};
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
struct Pending {
    device: DeviceId,
    hold: Hold,
}

/// The writer's own state; nothing else touches it.
struct Writer {
    config: WriterConfig,
    store: Store,
    state: State,
    parts: PolicyParts,
    view: View,
    version: u64,
    handler: Arc<Handler>,
    metrics: Arc<Metrics>,
    status: Arc<Mutex<ReloadStatus>>,
    shared: PrefixTable<()>,
    approvals: BTreeMap<u64, Pending>,
    next_approval: u64,
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
            next_approval: 0,
        };
        writer.ensure_config_devices();
        writer.publish();
        writer.report_policies();
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
struct Batch {
    changes: Vec<Change>,
    audit: Vec<AuditEvent>,
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
                    let mark = batch.changes.len();
                    let result = self.request(*request, &mut batch);
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

    // ---- requests ----

    fn request(&mut self, request: Request, batch: &mut Batch) -> Result<Outcome, ApplyError> {
        match request {
            Request::Jamf(envelope) => Ok(self.jamf(envelope, batch)),
            Request::Inventory { report, actor } => {
                let mut outcome = Outcome::default();
                self.device_report(&report, &actor, "inventory look-up", batch, &mut outcome);
                Ok(outcome)
            }
            Request::Reconcile {
                kind,
                group_id,
                members,
            } => Ok(self.reconcile(kind, group_id, &members, batch)),
            Request::SetGroups {
                device,
                groups,
                actor,
            } => self.set_groups(&device, groups, &actor, batch),
            Request::Isolate {
                device,
                reason,
                ticket,
                actor,
            } => self.isolate(&device, reason, ticket, &actor, batch),
            Request::Release {
                device,
                actor,
                reason,
            } => self.release(&device, &actor, &reason, batch),
            Request::Approve { approval, actor } => self.approve(approval, &actor, batch),
            Request::SetCritical {
                device,
                critical,
                actor,
            } => self.set_critical(&device, critical, &actor, batch),
        }
    }

    fn audit(
        &self,
        batch: &mut Batch,
        device: DeviceId,
        actor: &str,
        action: &str,
        detail: String,
        reason: &str,
    ) {
        batch.audit.push(AuditEvent {
            at: epoch_secs(),
            device: Some(device),
            actor: actor.to_string(),
            action: action.to_string(),
            detail,
            reason: reason.to_string(),
        });
    }

    /// Creates a device known by `alias`, labelled `label`; applied to the state at once so
    /// that the rest of the batch finds it.
    fn create(&mut self, batch: &mut Batch, alias: &Alias, label: &str) -> DeviceId {
        let id = self.state.allocate();
        for c in [
            Change::CreateDevice {
                id,
                label: label.to_string(),
            },
            Change::SetAlias {
                alias: alias.clone(),
                device: id,
            },
        ] {
            self.state.apply(&c);
            batch.changes.push(c);
        }
        id
    }

    /// The device a Jamf id names, created on first sight.
    fn jamf_device(&mut self, kind: DeviceKind, jamf_id: i64, batch: &mut Batch) -> DeviceId {
        let alias = Alias::jamf(kind, jamf_id);
        if let Some(id) = self.state.device_by_alias(&alias) {
            return id;
        }
        let label = match kind {
            DeviceKind::Computer => format!("jamf computer {jamf_id}"),
            DeviceKind::Mobile => format!("jamf mobile device {jamf_id}"),
        };
        self.create(batch, &alias, &label)
    }

    fn jamf(&mut self, envelope: Envelope, batch: &mut Batch) -> Outcome {
        let mut outcome = Outcome::default();
        if envelope.test {
            // Console test events carry sample data: acknowledged, never applied.
            return outcome;
        }
        let reason = format!(
            "jamf webhook {} ({})",
            envelope.name,
            envelope.webhook_name.as_deref().unwrap_or("unnamed")
        );
        match &envelope.event {
            Event::GroupChange(change) => self.group_change(change, &reason, batch, &mut outcome),
            Event::Device(report) => {
                self.device_report(report, "jamf", &reason, batch, &mut outcome)
            }
            Event::Other => {}
        }
        outcome
    }

    fn group_change(
        &mut self,
        change: &GroupChange,
        reason: &str,
        batch: &mut Batch,
        outcome: &mut Outcome,
    ) {
        let key = group_key(change.kind, change.group_id);
        if let Some(name) = &change.group_name {
            if self.state.group_names.get(&key) != Some(name) {
                let c = Change::GroupName {
                    group: key.clone(),
                    name: name.clone(),
                };
                self.state.apply(&c);
                batch.changes.push(c);
            }
        }
        if !change.has_id_lists {
            outcome.reconcile = Some((change.kind, change.group_id));
            return;
        }
        for report in change.added_devices.iter().chain(&change.removed_devices) {
            self.device_report(report, "jamf", reason, batch, outcome);
        }
        for &jamf_id in &change.added {
            let device = self.jamf_device(change.kind, jamf_id, batch);
            self.set_membership(device, &key, true, "jamf", reason, batch, outcome);
            if change.kind == DeviceKind::Computer && !self.reachable(device) {
                outcome.lookups.push(jamf_id);
            }
        }
        for &jamf_id in &change.removed {
            if let Some(device) = self
                .state
                .device_by_alias(&Alias::jamf(change.kind, jamf_id))
            {
                self.set_membership(device, &key, false, "jamf", reason, batch, outcome);
            }
        }
    }

    /// Whether DNS can tell this device apart: a bound address or a presentable alias.
    fn reachable(&self, device: DeviceId) -> bool {
        let d = &self.state.devices[&device];
        d.aliases.iter().any(|a| {
            matches!(
                a.kind,
                AliasKind::Serial | AliasKind::Udid | AliasKind::Token
            )
        }) || !self.state.addresses_of(device).is_empty()
    }

    #[allow(clippy::too_many_arguments)]
    fn set_membership(
        &mut self,
        device: DeviceId,
        key: &str,
        member: bool,
        actor: &str,
        reason: &str,
        batch: &mut Batch,
        outcome: &mut Outcome,
    ) {
        let has = self
            .state
            .devices
            .get(&device)
            .is_some_and(|d| d.memberships.contains(key));
        if has == member {
            return;
        }
        let (change, action) = if member {
            (
                Change::AddMembership {
                    device,
                    group: key.to_string(),
                },
                "membership_added",
            )
        } else {
            (
                Change::RemoveMembership {
                    device,
                    group: key.to_string(),
                },
                "membership_removed",
            )
        };
        batch.changes.push(change);
        outcome.changes += 1;
        let name = self
            .state
            .group_names
            .get(key)
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        self.audit(batch, device, actor, action, format!("{key}{name}"), reason);
    }

    fn device_report(
        &mut self,
        report: &DeviceReport,
        actor: &str,
        reason: &str,
        batch: &mut Batch,
        outcome: &mut Outcome,
    ) {
        let kind = report.kind.unwrap_or(DeviceKind::Computer);
        let device = self.jamf_device(kind, report.jamf_id, batch);
        if let Some(name) = &report.name {
            if &self.state.devices[&device].label != name {
                let c = Change::SetLabel {
                    id: device,
                    label: name.clone(),
                };
                self.state.apply(&c);
                batch.changes.push(c);
            }
        }
        let mut aliases = Vec::new();
        aliases.extend(
            report
                .serial
                .iter()
                .map(|v| Alias::new(AliasKind::Serial, v)),
        );
        aliases.extend(report.udid.iter().map(|v| Alias::new(AliasKind::Udid, v)));
        aliases.extend(
            report
                .management_id
                .iter()
                .map(|v| Alias::new(AliasKind::ManagementId, v)),
        );
        aliases.extend(
            report
                .mac_addresses
                .iter()
                .map(|v| Alias::new(AliasKind::Mac, v)),
        );
        for alias in aliases {
            if alias.value.is_empty() || self.state.device_by_alias(&alias) == Some(device) {
                continue;
            }
            if let Some(old) = self.state.device_by_alias(&alias) {
                self.audit(
                    batch,
                    old,
                    actor,
                    "alias_moved",
                    format!("{} to device#{}", alias.key(), device.0),
                    reason,
                );
            }
            let c = Change::SetAlias { alias, device };
            self.state.apply(&c);
            batch.changes.push(c);
            outcome.changes += 1;
        }
        if let Some(addr) = report.own_ip {
            self.bind(addr, device, actor, reason, batch, outcome);
        }
    }

    /// Binds `addr` to `device`, moving it from whichever device had it (DHCP gave it away).
    fn bind(
        &mut self,
        addr: IpAddr,
        device: DeviceId,
        actor: &str,
        reason: &str,
        batch: &mut Batch,
        outcome: &mut Outcome,
    ) {
        if addr.is_unspecified() || self.shared.longest(addr).is_some() {
            return;
        }
        let now = epoch_secs();
        let previous = self.state.bindings.get(&addr).copied();
        let c = Change::Bind {
            addr,
            device,
            seen: now,
        };
        self.state.apply(&c);
        batch.changes.push(c);
        match previous {
            Some(b) if b.device == device => {}
            Some(b) => {
                outcome.changes += 1;
                self.audit(
                    batch,
                    b.device,
                    actor,
                    "binding_moved",
                    format!("{addr} to device#{}", device.0),
                    reason,
                );
                self.audit(
                    batch,
                    device,
                    actor,
                    "binding_added",
                    addr.to_string(),
                    reason,
                );
            }
            None => {
                outcome.changes += 1;
                self.audit(
                    batch,
                    device,
                    actor,
                    "binding_added",
                    addr.to_string(),
                    reason,
                );
            }
        }
    }

    fn lapse_bindings(&mut self, batch: &mut Batch) {
        let cutoff = epoch_secs() - self.config.binding_lifetime.as_secs() as i64;
        let lapsed: Vec<(IpAddr, DeviceId)> = self
            .state
            .bindings
            .iter()
            .filter(|(_, b)| b.seen < cutoff)
            .map(|(a, b)| (*a, b.device))
            .collect();
        for (addr, device) in lapsed {
            let c = Change::Unbind { addr };
            self.state.apply(&c);
            self.view.apply(&self.parts, &self.state, &c);
            batch.changes.push(c);
            self.audit(
                batch,
                device,
                "cordon",
                "binding_lapsed",
                addr.to_string(),
                "not refreshed within identity.binding_lifetime_s",
            );
        }
    }

    fn reconcile(
        &mut self,
        kind: DeviceKind,
        group_id: i64,
        members: &[i64],
        batch: &mut Batch,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        let key = group_key(kind, group_id);
        let reason = "reconcile";
        for &jamf_id in members {
            let device = self.jamf_device(kind, jamf_id, batch);
            let before = outcome.changes;
            self.set_membership(device, &key, true, "jamf", reason, batch, &mut outcome);
            outcome.drift_added += outcome.changes - before;
        }
        let listed: std::collections::BTreeSet<Alias> =
            members.iter().map(|m| Alias::jamf(kind, *m)).collect();
        let stale: Vec<DeviceId> = self
            .state
            .devices
            .iter()
            .filter(|(_, d)| d.memberships.contains(&key) && d.aliases.is_disjoint(&listed))
            .map(|(id, _)| *id)
            .collect();
        for device in stale {
            let before = outcome.changes;
            self.set_membership(device, &key, false, "jamf", reason, batch, &mut outcome);
            outcome.drift_removed += outcome.changes - before;
        }
        outcome
    }

    fn device(&self, text: &str) -> Result<DeviceId, ApplyError> {
        self.state
            .find(text)
            .ok_or_else(|| ApplyError::UnknownDevice(text.to_string()))
    }

    fn set_groups(
        &mut self,
        text: &str,
        groups: Vec<String>,
        actor: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let mut outcome = Outcome::default();
        let device = match self.state.find(text) {
            Some(d) => d,
            None => self.create(batch, &Alias::parse(text), text),
        };
        let current = self.state.devices[&device].memberships.clone();
        for key in current.iter().filter(|k| !groups.contains(k)) {
            self.set_membership(
                device,
                key,
                false,
                actor,
                "set by the API",
                batch,
                &mut outcome,
            );
        }
        for key in &groups {
            self.set_membership(
                device,
                key,
                true,
                actor,
                "set by the API",
                batch,
                &mut outcome,
            );
        }
        outcome.device = Some(device);
        Ok(outcome)
    }

    fn isolate(
        &mut self,
        text: &str,
        reason: String,
        ticket: String,
        actor: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let device = self.device(text)?;
        let hold = Hold {
            reason,
            ticket,
            by: actor.to_string(),
            at: epoch_secs(),
        };
        if self.state.devices[&device].critical {
            self.next_approval += 1;
            let id = self.next_approval;
            self.approvals.insert(
                id,
                Pending {
                    device,
                    hold: hold.clone(),
                },
            );
            self.audit(
                batch,
                device,
                actor,
                "isolation_requested",
                format!("approval {id}"),
                &hold.reason,
            );
            return Err(ApplyError::NeedsApproval(id));
        }
        Ok(self.hold(device, hold, batch))
    }

    fn hold(&mut self, device: DeviceId, hold: Hold, batch: &mut Batch) -> Outcome {
        let mut outcome = Outcome {
            device: Some(device),
            ..Outcome::default()
        };
        if self.state.devices[&device].hold.is_some() {
            return outcome;
        }
        let detail = format!("ticket {}", hold.ticket);
        let (actor, reason) = (hold.by.clone(), hold.reason.clone());
        batch.changes.push(Change::SetHold {
            device,
            hold: Some(hold),
        });
        outcome.changes += 1;
        self.audit(batch, device, &actor, "isolated", detail, &reason);
        outcome
    }

    fn release(
        &mut self,
        text: &str,
        actor: &str,
        reason: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let device = self.device(text)?;
        let mut outcome = Outcome {
            device: Some(device),
            ..Outcome::default()
        };
        if self.state.devices[&device].hold.is_some() {
            batch.changes.push(Change::SetHold { device, hold: None });
            outcome.changes += 1;
            self.audit(batch, device, actor, "released", String::new(), reason);
        }
        Ok(outcome)
    }

    fn approve(
        &mut self,
        approval: u64,
        actor: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let pending = self
            .approvals
            .get(&approval)
            .ok_or(ApplyError::UnknownApproval(approval))?;
        if pending.hold.by == actor {
            return Err(ApplyError::SameApprover);
        }
        let pending = self.approvals.remove(&approval).expect("checked above");
        self.audit(
            batch,
            pending.device,
            actor,
            "isolation_approved",
            format!("approval {approval}"),
            &pending.hold.reason,
        );
        Ok(self.hold(pending.device, pending.hold, batch))
    }

    fn set_critical(
        &mut self,
        text: &str,
        critical: bool,
        actor: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let device = self.device(text)?;
        let mut outcome = Outcome {
            device: Some(device),
            ..Outcome::default()
        };
        if self.state.devices[&device].critical != critical {
            batch.changes.push(Change::SetCritical { device, critical });
            outcome.changes += 1;
            self.audit(
                batch,
                device,
                actor,
                if critical {
                    "marked_critical"
                } else {
                    "unmarked_critical"
                },
                String::new(),
                "set by the API",
            );
        }
        Ok(outcome)
    }

    // ---- queries ----

    fn answer(&self, query: Query) -> Result<QueryReply, ApplyError> {
        match query {
            Query::Device(text) => Ok(QueryReply::Device(Box::new(self.info(self.device(&text)?)))),
            Query::Timeline(text, limit) => {
                let device = self.device(&text)?;
                let events = self
                    .store
                    .timeline(device, limit)
                    .map_err(|e| ApplyError::Store(e.to_string()))?;
                Ok(QueryReply::Timeline(events))
            }
            Query::Isolations => {
                let iso = self.parts.isolation_group;
                let list = self
                    .view
                    .devices
                    .groups
                    .iter()
                    .filter(|(_, g)| **g == iso)
                    .map(|(d, _)| self.info(*d))
                    .collect();
                Ok(QueryReply::Devices(list))
            }
            Query::MappedGroups => {
                let mut groups = Vec::new();
                for g in self.parts.groups.iter() {
                    for u in &g.uem_groups {
                        groups.extend(parse_group_key(u).or_else(|| self.named_group(u)));
                    }
                }
                groups.sort();
                groups.dedup();
                Ok(QueryReply::Groups(groups))
            }
        }
    }

    /// `jamf:computer-group-name:X` as a group id, when the MDM has told us X's id.
    fn named_group(&self, uem: &str) -> Option<(DeviceKind, i64)> {
        let (prefix, kind) = if let Some(n) = uem.strip_prefix("jamf:computer-group-name:") {
            (n, "jamf:computer-group:")
        } else {
            (
                uem.strip_prefix("jamf:mobile-group-name:")?,
                "jamf:mobile-group:",
            )
        };
        self.state
            .group_names
            .iter()
            .find(|(k, name)| k.starts_with(kind) && name.as_str() == prefix)
            .and_then(|(k, _)| parse_group_key(k))
    }

    fn info(&self, device: DeviceId) -> DeviceInfo {
        let d = &self.state.devices[&device];
        let group = group_of(&self.parts, &self.state, device).unwrap_or(self.parts.default_group);
        let g = &self.parts.groups[group.index()];
        DeviceInfo {
            id: device.to_string(),
            label: d.label.clone(),
            aliases: d.aliases.iter().map(Alias::key).collect(),
            uem_groups: d
                .memberships
                .iter()
                .map(|k| match self.state.group_names.get(k) {
                    Some(n) => format!("{k} ({n})"),
                    None => k.clone(),
                })
                .collect(),
            group: g.name.clone(),
            policy: g.policy.name.clone(),
            bindings: self
                .state
                .addresses_of(device)
                .iter()
                .map(IpAddr::to_string)
                .collect(),
            critical: d.critical,
            isolation: d.hold.clone(),
        }
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

fn group_key(kind: DeviceKind, id: i64) -> String {
    match kind {
        DeviceKind::Computer => format!("jamf:computer-group:{id}"),
        DeviceKind::Mobile => format!("jamf:mobile-group:{id}"),
    }
}

fn parse_group_key(key: &str) -> Option<(DeviceKind, i64)> {
    if let Some(id) = key.strip_prefix("jamf:computer-group:") {
        return Some((DeviceKind::Computer, id.parse().ok()?));
    }
    Some((
        DeviceKind::Mobile,
        key.strip_prefix("jamf:mobile-group:")?.parse().ok()?,
    ))
}

fn epoch_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
