//! Policy reloads: new policy files and lists put in force over the same device state, or, if
//! any file is bad, the snapshot in force stays (contract 4); and the devices config names.

use std::path::PathBuf;

use super::command::{ReloadReport, ReloadStatus};
use super::state::Change;
use super::view::{config_device_names, View};
use super::writer::{Batch, Writer};
use crate::policy::build::PolicyParts;
use crate::policy::{FileError, PolicyErrors, PolicySet};

impl Writer {
    pub(super) async fn reload(&mut self) -> Result<ReloadReport, PolicyErrors> {
        let dir = self.config.policies_dir.clone();
        let cache = self.config.lists_cache.clone();
        let loaded =
            tokio::task::spawn_blocking(move || PolicySet::load_with(&dir, cache.as_ref()))
                .await
                .unwrap_or_else(|e| {
                    Err(PolicyErrors(vec![FileError {
                        file: PathBuf::new(),
                        line: None,
                        message: format!("loader failed: {e}"),
                    }]))
                });
        let set = match loaded {
            Ok(set) => {
                for w in &set.warnings {
                    tracing::warn!("{w}");
                }
                set
            }
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
        self.ensure_config_devices().await;
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
            lists: self.parts.set.lists.len()
                + self
                    .parts
                    .set
                    .urls
                    .iter()
                    .filter(|u| u.stats.is_some())
                    .count(),
        })
    }

    fn set_status(&self, ok: bool, errors: Vec<FileError>) {
        if let Ok(mut s) = self.status.lock() {
            *s = ReloadStatus {
                at: self.now() as u64,
                ok,
                errors,
            };
        }
    }

    pub(super) fn report_policies(&self) {
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

    /// Devices that config names (groups.toml placements, identity.static, critical) exist in
    /// the store, so that they have ids, bindings and a timeline like any other.
    pub(super) async fn ensure_config_devices(&mut self) {
        let mut batch = Batch::default();
        if let Err(e) = self.open(&mut batch).await {
            tracing::error!("cannot record the devices config names: {e}");
            return;
        }
        let names = config_device_names(&self.parts, &self.config.statics, &self.config.critical);
        batch.changes = self.state.create_named(names.iter().map(String::as_str));
        let critical: Vec<_> = self
            .config
            .critical
            .iter()
            .filter_map(|name| self.state.find(name))
            .filter(|device| !self.state.devices[device].critical)
            .collect();
        for device in critical {
            let critical = true;
            self.emit(&mut batch, Change::CriticalSet { device, critical });
        }
        if let Err(e) = self.write(&batch).await {
            tracing::error!("cannot record the devices config names: {e}");
            return;
        }
        // Another view is built only when the state moved: with a million devices a view is
        // some 150 MB, and the old one is alive while the new one is built.
        if !batch.changes.is_empty() || batch.absorbed {
            self.view = View::build(&self.parts, &self.state, &self.config.statics);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Harness;
    use super::super::Request;
    use crate::policy::DeviceId;

    #[tokio::test]
    async fn a_reload_keeps_every_isolation_and_a_broken_file_keeps_the_snapshot() {
        let h = Harness::start_with_own_policies().await;
        let isolate = Request::Isolate {
            device: "C02CRITICAL".into(),
            reason: "EDR".into(),
            ticket: "IR-1".into(),
            expires_in: None,
            actor: "alice".into(),
        };
        // Critical: the second admin approves.
        let Err(super::super::ApplyError::NeedsApproval(id)) = h.control.apply(isolate).await
        else {
            panic!("an approval is needed");
        };
        let approve = Request::Approve {
            approval: id,
            actor: "bob".into(),
        };
        h.control.apply(approve).await.unwrap();
        let device = DeviceId(1);
        assert_eq!(h.group_of(device), "restricted");

        let report = h.control.reload().await.unwrap();
        assert_eq!(h.published.get().version, report.version);
        assert_eq!(
            h.group_of(device),
            "restricted",
            "still isolated after a reload"
        );

        let groups = h.policies().join("groups.toml");
        let good = std::fs::read_to_string(&groups).unwrap();
        std::fs::write(
            &groups,
            good.replace("priority = 100", "priority = \"high\""),
        )
        .unwrap();
        let errors = h.control.reload().await.unwrap_err();
        assert!(errors.0[0].to_string().contains("groups.toml"), "{errors}");
        assert_eq!(
            h.published.get().version,
            report.version,
            "the snapshot stays"
        );
        assert!(!h.control.status().ok);
        assert_eq!(h.group_of(device), "restricted");

        std::fs::write(&groups, good).unwrap();
        let fixed = h.control.reload().await.unwrap();
        assert!(fixed.version > report.version);
        assert!(h.control.status().ok);
        assert_eq!(h.group_of(device), "restricted");
    }
}
