//! The decision on the hot path: identify -> group -> policy -> category lookup, with 2M listed
//! domains loaded from a list file through the real policy loader.
//!
//! `cargo bench --bench decide`; `CORDON_BENCH_DOMAINS=N` changes the list size.

use std::hint::black_box;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

use cordon::control::state::State;
use cordon::control::view::offline_snapshot;
use cordon::identity::{identify, Client, Forwarded, IdentityRules, Transport};
use cordon::policy::{decide, decide_and_tripwire, PolicySet, QName, Snapshot, StaticBinding};

/// A deterministic generator (SplitMix64), so every run lists the same names.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn label(&mut self, min: usize, max: usize) -> String {
        let len = min + (self.next() as usize) % (max - min + 1);
        (0..len)
            .map(|_| (b'a' + (self.next() % 26) as u8) as char)
            .collect()
    }
}

const TLDS: [&str; 6] = ["com", "net", "org", "io", "de", "example"];

/// A listed domain of 2 or 3 labels, shaped like real block-list entries.
fn listed_domain(rng: &mut Rng) -> String {
    let tld = TLDS[(rng.next() % TLDS.len() as u64) as usize];
    if rng.next().is_multiple_of(5) {
        format!("{}.{}.{tld}", rng.label(2, 8), rng.label(4, 14))
    } else {
        format!("{}.{tld}", rng.label(4, 16))
    }
}

/// Writes a policy dir with `n` listed malware domains; returns the listed names.
fn policy_dir(dir: &std::path::Path, n: usize) -> Vec<String> {
    let mut rng = Rng(20261121);
    let mut listed = Vec::with_capacity(n);
    let lists = dir.join("lists");
    std::fs::create_dir_all(&lists).unwrap();
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(lists.join("malware.txt")).unwrap());
    for _ in 0..n {
        let d = listed_domain(&mut rng);
        writeln!(file, "{d}").unwrap();
        listed.push(d);
    }
    file.flush().unwrap();
    let files = [
        ("categories.toml", "[[category]]\nid = 0\nname = \"malware\"\nlists = [\"lists/malware.txt\"]\n[[category]]\nid = 16\nname = \"ads\"\n"),
        ("groups.toml", "default_group = \"standard\"\n[[group]]\nname = \"restricted\"\npriority = 100\npolicy = \"isolation\"\ndevices = [\"C02ISOLATED\"]\n[[group]]\nname = \"standard\"\npriority = 0\npolicy = \"standard\"\n"),
        // The tripwires are only read by `tripwire_check`: `ads` lists nothing, so no name trips
        // and each one pays the whole check.
        ("standard.toml", "block_categories = [\"malware\", \"ads\"]\ntripwire_categories = [\"ads\"]\ntripwire = [\"beacon.incident.example\"]\n"),
        ("isolation.toml", "default = \"block\"\nallow = [\"*.jamfcloud.com\", \"*.apple.com\"]\n"),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    listed
}

/// Query names of 2 to 6 labels: a third listed, a third below a listed domain, a third not.
fn query_names(listed: &[String], count: usize) -> Vec<QName> {
    let mut rng = Rng(7);
    (0..count)
        .map(|i| {
            let base = &listed[(rng.next() as usize) % listed.len()];
            let text = match i % 3 {
                0 => base.clone(),
                1 => format!("{}.{base}", rng.label(1, 10)),
                _ => {
                    let labels = 2 + (rng.next() % 5) as usize;
                    let mut parts: Vec<String> =
                        (0..labels - 1).map(|_| rng.label(2, 12)).collect();
                    parts.push(TLDS[i % TLDS.len()].to_string());
                    parts.join(".")
                }
            };
            QName::from_dotted(&text).unwrap()
        })
        .collect()
}

fn load(n: usize) -> (Snapshot, Vec<String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let listed = policy_dir(dir.path(), n);
    let started = Instant::now();
    let set = PolicySet::load(dir.path()).expect("policies load");
    let took = started.elapsed();
    let statics = [StaticBinding {
        net: "10.9.0.0/16".parse().unwrap(),
        device: "C02ISOLATED".into(),
    }];
    let snapshot = offline_snapshot(set, State::default(), &statics, &[]);
    let db = &snapshot.categories;
    eprintln!(
        "loaded {} listed domains from a list file in {:.2?}; category DB holds {} bytes ({:.1} bytes per domain)",
        db.len(),
        took,
        db.heap_bytes(),
        db.heap_bytes() as f64 / db.len() as f64
    );
    (snapshot, listed, dir)
}

fn bench_decide(c: &mut Criterion) {
    let n = std::env::var("CORDON_BENCH_DOMAINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let (snapshot, listed, _dir) = load(n);
    let names = query_names(&listed, 4096);
    let standard = Client {
        addr: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 7)),
        port: 53_000,
        transport: Transport::Udp,
        token: None,
    };
    let isolated = Client {
        addr: IpAddr::V4(Ipv4Addr::new(10, 9, 0, 7)),
        port: 53_000,
        transport: Transport::Udp,
        token: None,
    };

    let rules = IdentityRules::source_only();
    let none = Forwarded::default();
    let mut group = c.benchmark_group(format!("decide_{}k_listed", n / 1000));
    for (label, client) in [("standard", standard), ("isolated", isolated)] {
        let mut i = 0;
        group.bench_function(label, |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                let identity = identify(&snapshot, &client, &rules, &none);
                black_box(decide(&snapshot, identity.group, black_box(&names[i])))
            })
        });
    }
    // What `[tripwire] enabled` adds to an identified device's query: the policy's tripwire
    // list and categories, looked up after the decision (dns/tripwire.rs).
    let mut i = 0;
    group.bench_function("standard_with_tripwire_check", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            let identity = identify(&snapshot, &standard, &rules, &none);
            black_box(decide_and_tripwire(
                &snapshot,
                identity.group,
                black_box(&names[i]),
            ))
        })
    });
    group.bench_function("category_lookup", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(snapshot.categories.lookup(black_box(&names[i])))
        })
    });
    group.bench_function("qname_from_wire", |b| {
        let wire: Vec<Vec<u8>> = names.iter().map(|n| n.wire().to_vec()).collect();
        let mut i = 0;
        b.iter_batched(
            || {
                i = (i + 1) & 4095;
                &wire[i]
            },
            |w| black_box(QName::from_wire(w).unwrap()),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The device behind a source address among a million bound Macs, as the view keeps them (a hash
/// table of 32-bit numbers), beside the packed table the view's other maps use and the hash map
/// of 64-bit ids it used before; addresses asked in a random order, so that most lookups miss the
/// CPU's caches as they do in a real fleet.
fn bench_bound_address(c: &mut Criterion) {
    use cordon::policy::snapshot::Devices;
    use cordon::policy::DeviceId;
    const N: u32 = 1_000_000;
    let addr = |i: u32| Ipv4Addr::from(0x0a00_0000 + i);
    let view = Devices {
        bindings: (0..N).map(|i| (IpAddr::V4(addr(i)), i)).collect(),
        ..Devices::default()
    };
    let packed: cordon::policy::packed::PackedTable<u32, u32> =
        (0..N).map(|i| (u32::from(addr(i)), i)).collect();
    let hashed: rustc_hash::FxHashMap<u32, DeviceId> = (0..N)
        .map(|i| (u32::from(addr(i)), DeviceId(i.into())))
        .collect();
    let mut rng = Rng(11);
    let asked: Vec<Ipv4Addr> = (0..65_536).map(|_| addr(rng.next() as u32 % N)).collect();
    let mut group = c.benchmark_group("bound_address_1M");
    group.bench_function("view", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 65_535;
            black_box(view.bound(&IpAddr::V4(black_box(asked[i]))))
        })
    });
    group.bench_function("packed_table", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 65_535;
            black_box(packed.get(&u32::from(black_box(asked[i]))))
        })
    });
    group.bench_function("hash_map", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 65_535;
            black_box(hashed.get(&u32::from(black_box(asked[i]))).copied())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_decide, bench_bound_address);
criterion_main!(benches);
