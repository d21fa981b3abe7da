//! The single writer's loop: commands come in over a channel; each batch of them is validated,
//! turned into [`Change`]s, committed to the store in one transaction, applied, and published as
//! one new snapshot, and only then does any caller hear back (contract 2).
//!
//! What each request turns into lives beside this file, one concern each: `membership.rs`,
//! `inventory.rs`, `holds.rs`, `reload.rs`; reads are in `queries.rs`.
//!
//! With a shared store, a batch's write starts by applying what other nodes committed since
//! this node's position (under the log's lock, so no one commits in between): requests are
//! decided on the latest state, and new ids follow everyone's. Between writes, `Sync` commands
//! (from `replica.rs`) bring those changes in and publish them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::clock::Clock;
use super::command::{ApplyError, Command, HoldRequest, Outcome, ReloadStatus, Request};
use super::replica::Replica;
use super::state::{AuditEvent, Change, State};
use super::store::{Logged, Store, StoreError, PAGE};
use super::view::{group_of, Crossing, View};
use crate::metrics::Metrics;
use crate::policy::build::{PolicyParts, StaticBinding};
use crate::policy::cidr::PrefixTable;
use crate::policy::load::ListCache;
use crate::policy::{DeviceId, FeedDb, PolicySet, Published, Snapshot};

/// What the writer needs from config.
#[derive(Clone)]
pub struct WriterConfig {
    pub policies_dir: PathBuf,
    /// Where the copies of lists named by URL are read from (`[lists] cache_dir`).
    pub lists_cache: Option<ListCache>,
    pub statics: Vec<StaticBinding>,
    /// Networks shared by design (NATs, forwarders): never bound to a device.
    pub shared_networks: Vec<ipnet::IpNet>,
    pub binding_lifetime: Duration,
    pub critical: Vec<String>,
    pub clock: Arc<dyn Clock>,
}

/// The writer's own state; nothing else touches it.
pub(super) struct Writer {
    pub(super) config: WriterConfig,
    pub(super) store: Store,
    pub(super) state: State,
    pub(super) parts: PolicyParts,
    pub(super) view: View,
    pub(super) version: u64,
    pub(super) published: Arc<Published>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) status: Arc<Mutex<ReloadStatus>>,
    pub(super) shared: PrefixTable<()>,
    /// The id of the last logged change applied to `state`.
    pub(super) position: i64,
    /// The state may hold changes that failed to commit, and the store could not be read to
    /// undo them: no write or read is served until it can.
    pub(super) stale: bool,
    pub(super) replica: Arc<Replica>,
    /// When the oldest change absorbed from another node and not yet published was committed.
    absorbed_at_ms: Option<i64>,
    /// What the RPZ feeds list, as the feeds task last sent it: laid into every snapshot.
    feeds: Arc<FeedDb>,
}

/// How many queued commands one transaction takes at most.
const BATCH: usize = 256;

/// A command's changes and audit records, gathered before anything is committed.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) changes: Vec<Change>,
    pub(super) audit: Vec<AuditEvent>,
    /// The store's write is started (and other nodes' changes applied).
    open: bool,
    /// Other nodes' changes were applied on opening: publish even if this batch adds none.
    pub(super) absorbed: bool,
    /// Why the store's write could not start: the rest of the batch fails the same way at
    /// once, rather than each request waiting out the store's timeout again.
    refused: Option<ApplyError>,
}

type Reply = oneshot::Sender<Result<Outcome, ApplyError>>;

impl Writer {
    /// The writer over what `store` holds, with its first snapshot published.
    pub(super) async fn new(
        config: WriterConfig,
        mut store: Store,
        set: PolicySet,
        published: Arc<Published>,
        metrics: Arc<Metrics>,
        replica: Arc<Replica>,
    ) -> Result<Writer, StoreError> {
        let loaded = store.load().await?;
        let state = loaded.state;
        let mut shared = PrefixTable::new();
        for net in &config.shared_networks {
            shared.insert_with(*net, (), |_, _| {});
        }
        let parts = PolicyParts::new(set);
        let view = View::build(&parts, &state, &config.statics);
        let status = Arc::new(Mutex::new(ReloadStatus {
            at: config.clock.now() as u64,
            ok: true,
            errors: Vec::new(),
        }));
        let mut writer = Writer {
            version: published.load().version,
            config,
            store,
            state,
            parts,
            view,
            published,
            metrics,
            status,
            shared,
            position: loaded.position,
            stale: false,
            replica,
            absorbed_at_ms: None,
            feeds: Arc::default(),
        };
        writer.replica.synced(loaded.position);
        writer.ensure_config_devices().await;
        writer.publish();
        writer.report_policies();
        // Reading the store allocates far more than the state it leaves.
        crate::alloc::release_free_memory();
        Ok(writer)
    }

    pub(super) fn status(&self) -> Arc<Mutex<ReloadStatus>> {
        self.status.clone()
    }

    pub(super) fn now(&self) -> i64 {
        self.config.clock.now()
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
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
        let mut ticks = Vec::new();
        let mut sync = false;
        let mut feeds = Vec::new();
        for command in commands {
            match command {
                Command::Reload { reply } => {
                    // A reload is its own step: finish what came before it first.
                    self.commit(&mut batch, &mut replies).await;
                    let _ = reply.send(self.reload().await);
                }
                Command::Apply { request, reply } => {
                    let result = match self.open(&mut batch).await {
                        Ok(()) => self.apply_guarded(*request, &mut batch).await,
                        Err(e) => Err(e),
                    };
                    replies.push((reply, result));
                }
                Command::Query { query, reply } => queries.push((query, reply)),
                Command::Tick { reply } => {
                    if self.open(&mut batch).await.is_ok() {
                        let mark = batch.changes.len();
                        self.lapse_bindings(&mut batch);
                        self.expire_holds(&mut batch);
                        self.expire_watches(&mut batch);
                        self.end_probations(&mut batch);
                        self.follow_into(&mut batch, mark);
                    }
                    ticks.extend(reply);
                }
                Command::Sync => sync = true,
                Command::Feeds { db, reply } => {
                    self.feeds = db;
                    feeds.push(reply);
                }
            }
        }
        // A write brings in other nodes' changes by itself.
        let synced = batch.open;
        self.commit(&mut batch, &mut replies).await;
        if sync {
            self.replica.sync_taken();
            if !synced {
                self.sync().await;
            }
        }
        if !feeds.is_empty() {
            // Not a change of state: nothing to commit, only a snapshot to publish.
            self.publish();
            for reply in feeds {
                let _ = reply.send(());
            }
        }
        for (query, reply) in queries {
            let _ = reply.send(self.answer(query).await);
        }
        for reply in ticks {
            let _ = reply.send(());
        }
    }

    /// Starts the batch's write, once: applies what other nodes committed since this node's
    /// position first, so that the batch decides on the latest state.
    pub(super) async fn open(&mut self, batch: &mut Batch) -> Result<(), ApplyError> {
        if batch.open {
            return Ok(());
        }
        if let Some(e) = &batch.refused {
            return Err(e.clone());
        }
        let opened = self.start_write(batch).await;
        if let Err(e) = &opened {
            batch.refused = Some(e.clone());
        }
        opened
    }

    /// Begins the store's write and absorbs what it reports; a node that fell behind the log's
    /// trim line loads the tables first.
    async fn start_write(&mut self, batch: &mut Batch) -> Result<(), ApplyError> {
        self.recover().await?;
        loop {
            let begun = match self.store.begin(self.position).await {
                Err(e) if e.is_behind() => {
                    self.restore().await;
                    self.recover().await?;
                    self.store.begin(self.position).await
                }
                begun => begun,
            };
            let logged = begun.map_err(|e| self.store_failed(&e))?;
            batch.absorbed |= self.absorb(&logged);
            if logged.len() < PAGE {
                batch.open = true;
                return Ok(());
            }
            // Far behind: give the lock back while catching up page by page, then begin again.
            self.store.abort().await;
            batch.absorbed |= self.catch_up().await.map_err(|e| self.store_failed(&e))?;
        }
    }

    /// Applies changes another node committed; true if there were any.
    fn absorb(&mut self, logged: &[Logged]) -> bool {
        for l in logged {
            self.state.apply(&l.change);
            // Another node recorded what its changes moved.
            self.view
                .apply(&self.parts, &self.state, &l.change, &mut Vec::new());
            self.position = l.id;
            if let Some(at) = l.committed_ms {
                self.absorbed_at_ms = Some(self.absorbed_at_ms.map_or(at, |a| a.min(at)));
            }
        }
        !logged.is_empty()
    }

    /// Brings this node up to what the store holds, between writes.
    async fn sync(&mut self) {
        if self.recover().await.is_err() {
            return;
        }
        match self.catch_up().await {
            Ok(true) => self.publish(),
            Ok(false) => {}
            Err(e) if e.is_behind() => {
                tracing::warn!("{e}: loading the state tables");
                self.restore().await;
            }
            Err(e) => {
                self.store_failed(&e);
            }
        }
    }

    /// Applies the log's pages after this node's position until a page is not full; true if
    /// there were any changes. Each page is one read within the store's deadline, however far
    /// behind the node is.
    async fn catch_up(&mut self) -> Result<bool, StoreError> {
        let mut absorbed = false;
        loop {
            let page = self.store.changes_after(self.position).await?;
            absorbed |= self.absorb(&page);
            if page.len() < PAGE {
                self.store_ok();
                return Ok(absorbed);
            }
        }
    }

    /// After a failed commit the state was reloaded; if that failed too, try again now.
    pub(super) async fn recover(&mut self) -> Result<(), ApplyError> {
        if self.stale {
            self.restore().await;
        }
        if self.stale {
            return Err(ApplyError::Store("the store cannot be read".into()));
        }
        Ok(())
    }

    fn store_ok(&self) {
        self.metrics.store_up.set(1);
        self.replica.synced(self.position);
    }

    pub(super) fn store_failed(&self, e: &StoreError) -> ApplyError {
        tracing::error!("{e}");
        self.metrics.store_up.set(0);
        ApplyError::Store(e.to_string())
    }

    /// Turns one request into changes in `batch`, already applied to the state and the view so
    /// that later requests in the batch see them. A bug in one request must not take the control
    /// plane down: a panic drops what that request added and fails only its caller.
    async fn apply_guarded(
        &mut self,
        request: Request,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let (mark, audit_mark) = (batch.changes.len(), batch.audit.len());
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.request(request, batch)
        }));
        let Ok(result) = applied else {
            tracing::error!("a control-plane request panicked; its changes are dropped");
            batch.changes.truncate(mark);
            batch.audit.truncate(audit_mark);
            self.reread(&batch.changes).await;
            return Err(ApplyError::Internal);
        };
        self.follow_into(batch, mark);
        result
    }

    /// Brings the device view up to the batch's changes from `mark` on (already applied to the
    /// state), and puts every device they took out of isolation on probation.
    fn follow_into(&mut self, batch: &mut Batch, mut mark: usize) {
        // What a crossing adds (probation) is followed too: it marks the device for the trail.
        // It moves no device, so the second round crosses nothing.
        while mark < batch.changes.len() {
            let end = batch.changes.len();
            for crossing in self.follow(&batch.changes[mark..end]) {
                self.crossed(crossing, batch);
            }
            mark = end;
        }
    }

    /// Brings the device view up to changes already applied to the state; the devices they
    /// moved into or out of isolation.
    fn follow(&mut self, changes: &[Change]) -> Vec<Crossing> {
        let mut crossed = Vec::new();
        for c in changes {
            self.view.apply(&self.parts, &self.state, c, &mut crossed);
        }
        crossed
    }

    /// Records a device's isolation starting or ending, whatever caused it (the SOC hears of
    /// these), and starts the probation that follows an isolation.
    fn crossed(&mut self, crossing: Crossing, batch: &mut Batch) {
        match crossing {
            Crossing::Into(device, group) => {
                let name = self.parts.groups[group.index()].name.clone();
                // A hold's own words say more than the group: who, and why.
                let (actor, reason) = match self.state.devices[&device].hold.as_deref() {
                    Some(hold) => (hold.by.clone(), hold.reason.clone()),
                    None => ("cordon".to_string(), format!("now in group {name}")),
                };
                self.audit(batch, device, &actor, "isolation_entered", name, &reason);
            }
            Crossing::OutOf(device) => {
                let group =
                    group_of(&self.parts, &self.state, device).unwrap_or(self.parts.default_group);
                let name = self.parts.groups[group.index()].name.clone();
                let reason = format!("now in group {name}");
                self.audit(batch, device, "cordon", "isolation_left", name, &reason);
                self.start_probation(device, batch);
            }
        }
    }

    /// Which concern a request belongs to.
    fn request(&mut self, request: Request, batch: &mut Batch) -> Result<Outcome, ApplyError> {
        match request {
            Request::Report { report, source } => {
                let mut outcome = Outcome::default();
                self.report(&report, &source, batch, &mut outcome);
                Ok(outcome)
            }
            Request::Members {
                group,
                joined,
                left,
                reports,
                source,
            } => Ok(self.members(&group, &joined, &left, &reports, &source, batch)),
            Request::ReplaceMembers {
                group,
                members,
                source,
            } => Ok(self.replace_members(&group, &members, &source, batch)),
            Request::Unenrolled { device, source } => Ok(self.unenrolled(&device, &source, batch)),
            Request::SetGroups {
                device,
                groups,
                actor,
            } => Ok(self.set_groups(&device, groups, &actor, batch)),
            Request::Isolate {
                device,
                reason,
                ticket,
                expires_in,
                actor,
            } => {
                let asked = HoldRequest {
                    reason,
                    ticket,
                    expires_in,
                };
                self.isolate(&device, asked, &actor, batch)
            }
            Request::Tripped { device, name, why } => self.tripped(device, &name, &why, batch),
            Request::Release {
                device,
                actor,
                reason,
            } => self.release(&device, &actor, &reason, batch),
            Request::Watch {
                device,
                reason,
                ticket,
                expires_in,
                actor,
            } => {
                let asked = HoldRequest {
                    reason,
                    ticket,
                    expires_in,
                };
                self.watch(&device, asked, &actor, batch)
            }
            Request::Unwatch {
                device,
                actor,
                reason,
            } => self.unwatch(&device, &actor, &reason, batch),
            Request::TrailErased {
                device,
                queries,
                actor,
                reason,
            } => self.trail_erased(device, queries, &actor, &reason, batch),
            Request::Approve { approval, actor } => self.approve(approval, &actor, batch),
            Request::Refuse {
                approval,
                actor,
                reason,
            } => self.refuse(approval, &actor, &reason, batch),
            Request::SetCritical {
                device,
                critical,
                actor,
            } => self.set_critical(&device, critical, &actor, batch),
            Request::Once { key, until, then } => {
                // Checked under the store's write (the log's lock, with a shared store) and
                // recorded in the same commit as what `then` changes: no node applies it twice.
                let at = self.now();
                if self.state.seen.contains(&key, at) {
                    return Err(ApplyError::Seen);
                }
                let outcome = match then {
                    Some(then) => self.request(*then, batch)?,
                    None => Outcome::default(),
                };
                self.emit(batch, Change::TokenSeen { key, until, at });
                Ok(outcome)
            }
        }
    }

    /// Records `change` in the batch and applies it to the state at once.
    pub(super) fn emit(&mut self, batch: &mut Batch, change: Change) {
        self.state.apply(&change);
        let gained = match &change {
            Change::AliasSeen { alias, device } if !self.state.waiting.is_empty() => {
                Some((alias.clone(), *device))
            }
            _ => None,
        };
        batch.changes.push(change);
        if let Some((alias, device)) = gained {
            self.place_waiting(&alias, device, batch);
        }
    }

    pub(super) fn audit(
        &self,
        batch: &mut Batch,
        device: impl Into<Option<DeviceId>>,
        actor: &str,
        action: &str,
        detail: String,
        reason: &str,
    ) {
        batch.audit.push(AuditEvent {
            at: self.now(),
            device: device.into(),
            actor: actor.to_string(),
            action: action.to_string(),
            detail,
            reason: reason.to_string(),
        });
    }

    /// Makes the batch durable and in force, then answers its callers.
    async fn commit(
        &mut self,
        batch: &mut Batch,
        replies: &mut Vec<(Reply, Result<Outcome, ApplyError>)>,
    ) {
        let batch = std::mem::take(batch);
        let written = self.write(&batch).await;
        if let Err(e) = &written {
            for (reply, _) in replies.drain(..) {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
        if !batch.changes.is_empty() {
            self.count_changes(&batch.changes);
        }
        // A one-time key alone changes nothing a snapshot shows.
        let shown = batch
            .changes
            .iter()
            .any(|c| !matches!(c, Change::TokenSeen { .. }));
        if shown || batch.absorbed {
            self.publish();
        }
        for (reply, mut result) in replies.drain(..) {
            if let Ok(outcome) = &mut result {
                outcome.version = self.version;
            }
            let _ = reply.send(result);
        }
    }

    /// Commits the batch's write; if it fails, nothing of it applies: back to what the store
    /// holds.
    pub(super) async fn write(&mut self, batch: &Batch) -> Result<(), ApplyError> {
        if !batch.open {
            return Ok(());
        }
        let committed = self
            .store
            .commit(self.position, &batch.changes, &batch.audit, self.now())
            .await;
        match committed {
            Ok(position) => {
                self.position = position;
                self.store_ok();
                Ok(())
            }
            Err(e) => {
                let error = self.store_failed(&e);
                tracing::error!("nothing of this batch applies");
                self.restore().await;
                Err(error)
            }
        }
    }

    /// Back to exactly what the store holds (after a failed commit, or when this node fell
    /// too far behind the log); published if that differs from what is in force.
    pub(super) async fn restore(&mut self) {
        let before = self.position;
        if self.reread(&[]).await && self.position != before {
            self.publish();
        }
    }

    /// The state as the store holds it, then `pending` (changes not committed yet) applied;
    /// if the store cannot be read, the state is stale until it can. True when it was read.
    async fn reread(&mut self, pending: &[Change]) -> bool {
        match self.store.load().await {
            Ok(loaded) => {
                self.state = loaded.state;
                self.position = loaded.position;
                for c in pending {
                    self.state.apply(c);
                }
                self.stale = false;
                self.store_ok();
            }
            Err(e) => {
                self.store_failed(&e);
                self.stale = true;
            }
        }
        self.view = View::build(&self.parts, &self.state, &self.config.statics);
        !self.stale
    }

    pub(super) fn publish(&mut self) {
        let started = Instant::now();
        self.version += 1;
        let snapshot = Snapshot {
            feeds: self.feeds.clone(),
            ..self.parts.snapshot(
                self.view.devices.clone(),
                self.view.statics.clone(),
                self.version,
            )
        };
        self.published.publish(Arc::new(snapshot));
        let m = &self.metrics;
        if let Some(at) = self.absorbed_at_ms.take() {
            let delay = crate::control::clock::now_ms() - at;
            m.replication_delay.observe(delay.max(0) as f64 / 1000.0);
        }
        m.snapshot_publish_duration
            .observe(started.elapsed().as_secs_f64());
        m.snapshot_version.set(self.version as i64);
        m.snapshot_publish.inc();
        self.report_devices();
    }

    pub(super) fn report_devices(&self) {
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

    fn count_changes(&self, changes: &[Change]) {
        for c in changes {
            let (device, direction) = match c {
                Change::MembershipSet { device, .. } => (device, "added"),
                Change::MembershipUnset { device, .. } => (device, "removed"),
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

    /// The device `text` names (any alias spelling, or `device#N`).
    pub(super) fn device(&self, text: &str) -> Result<DeviceId, ApplyError> {
        self.state
            .find(text)
            .ok_or_else(|| ApplyError::UnknownDevice(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::command::{DeviceReport, Source, UemGroup};
    use super::super::state::{Alias, AliasKind};
    use super::super::testing::{computer, config, policies, Harness};
    use super::*;
    use crate::policy::Snapshot;

    /// A day in a fleet: check-ins, an isolation by group and by hand, a critical device's
    /// approval, a reconciliation, an unenrolment, and a binding that lapses.
    async fn a_day(h: &Harness) {
        let source = || Source::new("test", "a day");
        let check_in = |id: u32, addr: &str| Request::Report {
            report: DeviceReport {
                device: computer(id),
                name: Some(format!("MAC-{id}")),
                aliases: vec![
                    Alias::new(AliasKind::Serial, &format!("C02SER{id}")),
                    Alias::new(AliasKind::Udid, &format!("udid-{id}")),
                ],
                address: Some(addr.parse().unwrap()),
            },
            source: source(),
        };
        let isolate_group = UemGroup {
            key: "jamf:computer-group:42".into(),
            name: Some("Jamf Protect - High".into()),
        };
        let requests = vec![
            check_in(1, "10.0.0.1"),
            check_in(2, "10.0.0.2"),
            check_in(3, "10.0.0.3"),
            Request::Members {
                group: isolate_group.clone(),
                joined: vec![computer(1), computer(4)],
                left: vec![],
                reports: vec![],
                source: source(),
            },
            Request::SetGroups {
                device: "serial:C02OTHER".into(),
                groups: vec!["mdm:finance".into(), "jamf:computer-group:43".into()],
                actor: "admin".into(),
            },
            Request::Isolate {
                device: "C02SER2".into(),
                reason: "EDR".into(),
                ticket: "IR-9".into(),
                expires_in: None,
                actor: "alice".into(),
            },
            check_in(3, "10.0.0.2"),
            Request::Release {
                device: "C02SER2".into(),
                actor: "bob".into(),
                reason: "clean".into(),
            },
            Request::Isolate {
                device: "C02CRITICAL".into(),
                reason: "EDR".into(),
                ticket: "IR-10".into(),
                expires_in: None,
                actor: "alice".into(),
            },
            Request::ReplaceMembers {
                group: isolate_group.key.clone(),
                members: vec![computer(4), computer(5)],
                source: source(),
            },
            Request::Unenrolled {
                device: computer(3).alias,
                source: source(),
            },
        ];
        for request in requests {
            let _ = h.control.apply(request).await;
        }
        h.clock.advance(25 * 3600);
        h.control.apply(check_in(5, "10.0.0.5")).await.unwrap();
        h.control.tick().await.unwrap();
    }

    /// Every device-dependent answer the two snapshots could give, side by side.
    fn assert_same_devices(live: &Snapshot, replayed: &Snapshot, state: &State) {
        assert_eq!(live.devices.groups, replayed.devices.groups);
        assert_eq!(live.devices.labels, replayed.devices.labels);
        for (alias, _) in state.all_aliases() {
            let (a, b) = (&live.devices, &replayed.devices);
            assert_eq!(
                a.by_alias(alias.value),
                b.by_alias(alias.value),
                "{alias:?}"
            );
        }
        for n in 0..=8u8 {
            let addr = std::net::IpAddr::from([10, 0, 0, n]);
            let (a, b) = (&live.devices, &replayed.devices);
            assert_eq!(a.bindings.get(&addr), b.bindings.get(&addr), "{addr}");
        }
    }

    #[tokio::test]
    async fn replaying_the_change_log_into_an_empty_state_gives_the_live_snapshot() {
        let h = Harness::start().await;
        a_day(&h).await;
        let live = h.published.get();
        let target = super::super::store::StoreTarget::Sqlite(h.dir.path().join("cordon.db"));
        let mut store = Store::open(&target).await.unwrap();
        let mut state = State::default();
        let log = store.changes_after(0).await.unwrap();
        assert!(log.len() > 20, "the day left {} changes", log.len());
        for logged in &log {
            state.apply(&logged.change);
        }
        let config = config(&h.clock);
        let parts = PolicyParts::new(policies());
        let view = View::build(&parts, &state, &config.statics);
        let replayed = parts.snapshot(view.devices, view.statics, live.version);
        assert_same_devices(&live, &replayed, &state);
        // The day's outcome, as it should be: the snapshot says what happened.
        let device = |alias: &str| state.find(alias).unwrap();
        let group = |id| h.group_of(id);
        assert_eq!(
            group(device("jamf-computer:1")),
            "standard",
            "reconciled out"
        );
        assert_eq!(group(device("jamf-computer:4")), "restricted");
        assert_eq!(group(device("jamf-computer:5")), "restricted");
        assert_eq!(group(device("C02SER2")), "standard", "released");
        assert_eq!(group(device("C02OTHER")), "noncompliant");
        assert_eq!(
            group(device("C02CRITICAL")),
            "standard",
            "waits for approval"
        );
        assert_eq!(state.approvals.len(), 1);
        let addr = |a: &str| live.devices.bound(&a.parse().unwrap());
        assert_eq!(addr("10.0.0.1"), None, "lapsed");
        assert_eq!(addr("10.0.0.2"), None, "moved to device 3, gone with it");
        assert_eq!(addr("10.0.0.5"), Some(device("jamf-computer:5")));
    }
}
