//! Publishing one membership change with 10k, 100k and 1M known devices: the writer's in-memory
//! part (apply to state and device view, assemble the snapshot, swap it in), without the store's
//! commit, which BENCHMARKS.md measures end to end.
//!
//! `cargo bench --bench publish`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

use cordon::control::state::{Alias, AliasKind, Change, State};
use cordon::control::view::View;
use cordon::policy::{DeviceId, PolicyParts, PolicySet, Published};

const GROUP: &str = "jamf:computer-group:42";

fn policies() -> (PolicySet, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("categories.toml", "[[category]]\nid = 0\nname = \"malware\"\n"),
        ("groups.toml", "default_group = \"standard\"\n[[group]]\nname = \"restricted\"\npriority = 100\npolicy = \"isolation\"\nuem_groups = [\"jamf:computer-group:42\"]\n[[group]]\nname = \"standard\"\npolicy = \"standard\"\n"),
        ("standard.toml", "block_categories = [\"malware\"]\n"),
        ("isolation.toml", "default = \"block\"\n"),
    ];
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    (PolicySet::load(dir.path()).unwrap(), dir)
}

/// `n` devices, each with a serial and a bound address; one in a hundred in the restricted group.
fn fleet(n: u32) -> State {
    let mut state = State::default();
    for i in 0..n {
        let id = DeviceId(i as u64 + 1);
        let addr = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i));
        let mut changes = vec![
            Change::DeviceAdded {
                device: id,
                label: format!("MAC-{i:07}"),
            },
            Change::AliasSeen {
                alias: Alias::new(AliasKind::Serial, &format!("C02{i:09}")),
                device: id,
            },
            Change::BindingSeen {
                addr,
                device: id,
                at: 0,
            },
        ];
        if i % 100 == 0 {
            changes.push(Change::MembershipSet {
                device: id,
                group: GROUP.into(),
            });
        }
        for c in &changes {
            state.apply(c);
        }
    }
    state
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn bench_publish(c: &mut Criterion) {
    let (set, _dir) = policies();
    let mut group = c.benchmark_group("publish_one_membership_change");
    group.measurement_time(Duration::from_secs(5));
    for n in [10_000u32, 100_000, 1_000_000] {
        let before = rss_kib();
        let started = Instant::now();
        let mut state = fleet(n);
        let after_state = rss_kib();
        let parts = PolicyParts::new(set.clone());
        let mut view = View::build(&parts, &state, &[]);
        eprintln!(
            "{n} devices: built in {:.2?}; RSS grew by {} MiB for the writer's state and {} MiB for the device view",
            started.elapsed(),
            after_state.saturating_sub(before) / 1024,
            rss_kib().saturating_sub(after_state) / 1024
        );
        let first = parts.snapshot(view.devices.clone(), view.statics.clone(), 0);
        let published = Published::new(first);
        let mut k = 0u32;
        let mut version = 0;
        let mut crossed = Vec::new();
        group.bench_function(format!("{}k_devices", n / 1000), |b| {
            b.iter(|| {
                k = (k + 7919) % n;
                let device = DeviceId(k as u64 + 1);
                let member = state.devices[&device].memberships.contains(GROUP);
                let change = if member {
                    Change::MembershipUnset {
                        device,
                        group: GROUP.into(),
                    }
                } else {
                    Change::MembershipSet {
                        device,
                        group: GROUP.into(),
                    }
                };
                state.apply(&change);
                // The writer records the crossings; publishing is what this measures.
                view.apply(&parts, &state, &change, &mut crossed);
                crossed.clear();
                version += 1;
                let snapshot = parts.snapshot(view.devices.clone(), view.statics.clone(), version);
                published.publish(Arc::new(snapshot));
                black_box(&published);
            })
        });
    }
    group.finish();
}

/// The rare publish that folds an overlay into a new base: the view's biggest map (2M alias keys)
/// merged with the most changes an overlay holds before it folds (a sixty-fourth of the base).
fn bench_fold(c: &mut Criterion) {
    use cordon::policy::layered::LayeredMap;
    const N: u64 = 2_000_000;
    let key = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let base: LayeredMap<u64, DeviceId> = base_entries(N).collect();
    let mut full = base.clone();
    // One change short of folding.
    for i in 0..N / 64 {
        full.insert(key(N + i), DeviceId(i));
    }
    let mut group = c.benchmark_group("fold_the_device_view");
    group.sample_size(10);
    group.bench_function("2M_aliases", |b| {
        b.iter_batched(
            || full.clone(),
            |mut map| {
                map.insert(key(3 * N), DeviceId(1));
                map
            },
            criterion::BatchSize::LargeInput,
        )
    });
    // What a fold cost when the base was a hash map (before 0.10): a copy, then the changes.
    let map: rustc_hash::FxHashMap<u64, DeviceId> = base_entries(N).collect();
    group.bench_function("2M_aliases_in_a_hash_map", |b| {
        b.iter(|| {
            let mut copy = map.clone();
            copy.extend((0..=N / 64).map(|i| (key(N + i), DeviceId(i))));
            copy
        })
    });
    group.finish();
}

fn base_entries(n: u64) -> impl Iterator<Item = (u64, DeviceId)> {
    (0..n).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15), DeviceId(i)))
}

criterion_group!(benches, bench_publish, bench_fold);
criterion_main!(benches);
