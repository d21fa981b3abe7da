//! A writer over a temporary store and the shipped policies, on a clock the test moves: for the
//! unit tests of each concern.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::clock::ManualClock;
use super::command::{DeviceRef, Outcome, Query, QueryReply, Request, Source, UemGroup};
use super::handle::Control;
use super::state::{Alias, AliasKind};
use super::store::Store;
use super::writer::WriterConfig;
use crate::metrics::Metrics;
use crate::policy::build::PolicyParts;
use crate::policy::cidr::PrefixTable;
use crate::policy::snapshot::Devices;
use crate::policy::{PolicySet, Published, Snapshot};

pub struct Harness {
    pub control: Control,
    pub published: Arc<Published>,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
}

/// A Jamf-style computer reference.
pub fn computer(id: u32) -> DeviceRef {
    DeviceRef {
        alias: Alias::new(AliasKind::JamfComputer, &id.to_string()),
        label: format!("computer {id}"),
    }
}

pub fn policies() -> PolicySet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    PolicySet::load(&dir).expect("the shipped policies load")
}

pub fn config(clock: &ManualClock) -> WriterConfig {
    WriterConfig {
        policies_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        statics: Vec::new(),
        shared_networks: vec!["192.0.2.0/24".parse().unwrap()],
        binding_lifetime: Duration::from_secs(24 * 3600),
        critical: vec!["C02CRITICAL".into()],
        clock: Arc::new(clock.clone()),
    }
}

/// An empty snapshot, version 0, as a server starts with.
pub fn empty(set: PolicySet) -> Snapshot {
    PolicyParts::new(set).snapshot(Devices::default(), Arc::new(PrefixTable::new()), 0)
}

impl Harness {
    pub async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Harness::start_in(dir, ManualClock::at(1_800_000_000)).await
    }

    /// A writer over the store in `dir` (made again after a restart).
    pub async fn start_in(dir: tempfile::TempDir, clock: ManualClock) -> Harness {
        let store = Store::open(&dir.path().join("cordon.db")).unwrap();
        let set = policies();
        let published = Arc::new(Published::new(empty(set.clone())));
        let metrics = Arc::new(Metrics::new());
        let control = Control::start(config(&clock), store, set, published.clone(), metrics)
            .expect("the writer starts");
        Harness {
            control,
            published,
            clock,
            dir,
        }
    }

    pub async fn members(
        &self,
        group: UemGroup,
        joined: Vec<DeviceRef>,
        left: Vec<Alias>,
    ) -> Outcome {
        let request = Request::Members {
            group,
            joined,
            left,
            reports: Vec::new(),
            source: Source::new("test", "a test"),
        };
        self.control.apply(request).await.unwrap()
    }

    /// The aliases of every device in `group`, by their `kind:value` keys.
    pub async fn members_of(&self, group: &str) -> Vec<String> {
        let mut found = Vec::new();
        for n in 1.. {
            match self
                .control
                .query(Query::Device(format!("device#{n}")))
                .await
            {
                Ok(QueryReply::Device(d)) => {
                    if d.uem_groups
                        .iter()
                        .any(|g| g.split(' ').next() == Some(group))
                    {
                        found.extend(d.aliases.iter().filter(|a| a.starts_with("jamf")).cloned());
                    }
                }
                _ => break,
            }
        }
        found.sort();
        found
    }

    /// The group the published snapshot puts `alias`'s device in, by name.
    pub fn group_of(&self, device: crate::policy::DeviceId) -> String {
        let snapshot = self.published.get();
        let group = snapshot
            .devices
            .groups
            .get(&device)
            .copied()
            .unwrap_or(snapshot.default_group);
        snapshot.group(group).name.clone()
    }
}
