//! A writer over a temporary store and the shipped policies, on a clock the test moves: for the
//! unit tests of each concern.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::clock::ManualClock;
use super::command::{DeviceRef, Outcome, Query, QueryReply, Request, Source, UemGroup};
use super::handle::Control;
use super::state::{Alias, AliasKind};
use super::store::{Store, StoreTarget};
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
    /// The store (`cordon.db`) and, with [`Harness::start_with_own_policies`], `policies/`.
    pub dir: tempfile::TempDir,
}

/// A Jamf-style computer reference.
pub fn computer(id: u32) -> DeviceRef {
    DeviceRef {
        alias: Alias::new(AliasKind::JamfComputer, &id.to_string()),
        label: format!("computer {id}"),
    }
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

pub fn policies() -> PolicySet {
    PolicySet::load(&shipped()).expect("the shipped policies load")
}

pub fn config(clock: &ManualClock) -> WriterConfig {
    WriterConfig {
        policies_dir: shipped(),
        lists_cache: None,
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

    /// A writer whose policies are a copy in its own dir, for tests that edit them.
    pub async fn start_with_own_policies() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("policies");
        copy_dir(&shipped(), &copy);
        Harness::start_in(dir, ManualClock::at(1_800_000_000)).await
    }

    /// A writer over the store in `dir` (made again after a restart), with the policies of
    /// `dir/policies` if there are, else the shipped ones.
    pub async fn start_in(dir: tempfile::TempDir, clock: ManualClock) -> Harness {
        let target = StoreTarget::Sqlite(dir.path().join("cordon.db"));
        let store = Store::open(&target).await.unwrap();
        let mut config = config(&clock);
        if dir.path().join("policies").is_dir() {
            config.policies_dir = dir.path().join("policies");
        }
        let set = PolicySet::load(&config.policies_dir).expect("the policies load");
        let published = Arc::new(Published::new(empty(set.clone())));
        let metrics = Arc::new(Metrics::new());
        let control = Control::start(
            config,
            store,
            set,
            published.clone(),
            metrics,
            "test".into(),
        )
        .await
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

    /// The policies this writer reads.
    pub fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
