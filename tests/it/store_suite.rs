//! One store suite, run on both engines: the embedded SQLite file and a real PostgreSQL
//! server. What one commits, the other must give back the same way; plus what only a shared
//! store has: writers that take turns, and upgrades from an older schema.

use std::net::IpAddr;
use std::time::Duration;

use cordon::control::state::State;
use cordon::control::store::postgres::migrate_to;
use cordon::control::store::trail::chunk::chunks_of;
use cordon::control::store::trail::{TrailFilter, TrailRow};
use cordon::control::store::{PgSettings, Store, StoreTarget};
use cordon::control::{Alias, AliasKind, AuditEvent, Change, Hold};
use cordon::policy::DeviceId;

use crate::pg::PgServer;

fn hold(reason: &str, at: i64) -> Hold {
    Hold {
        reason: reason.into(),
        ticket: "IR-1".into(),
        by: "alice".into(),
        at,
        expires: None,
    }
}

fn event(device: DeviceId, action: &str) -> AuditEvent {
    AuditEvent {
        at: 7,
        device: Some(device),
        actor: "test".into(),
        action: action.into(),
        detail: "{}".into(),
        reason: "why".into(),
    }
}

/// A day's changes to three devices, with every kind of change in it.
fn changes() -> Vec<Change> {
    let (a, b, c) = (DeviceId(1), DeviceId(2), DeviceId(3));
    let addr = |s: &str| s.parse::<IpAddr>().unwrap();
    let serial = Alias::new(AliasKind::Serial, "C02AAA");
    vec![
        Change::DeviceAdded {
            device: a,
            label: "FIN-MBP".into(),
        },
        Change::DeviceAdded {
            device: b,
            label: "HR-MBP".into(),
        },
        Change::DeviceAdded {
            device: c,
            label: "CEO-MBP".into(),
        },
        Change::LabelSet {
            device: b,
            label: "HR-MBA".into(),
        },
        Change::AliasSeen {
            alias: serial.clone(),
            device: a,
        },
        Change::AliasSeen {
            alias: Alias::new(AliasKind::Udid, "udid-b"),
            device: b,
        },
        // the serial moves to the device that reports it last
        Change::AliasSeen {
            alias: serial,
            device: b,
        },
        Change::MembershipSet {
            device: a,
            group: "jamf:computer-group:42".into(),
        },
        Change::MembershipSet {
            device: b,
            group: "jamf:computer-group:42".into(),
        },
        Change::MembershipUnset {
            device: a,
            group: "jamf:computer-group:42".into(),
        },
        Change::GroupNamed {
            group: "jamf:computer-group:42".into(),
            name: "Jamf Protect - High".into(),
        },
        Change::BindingSeen {
            addr: addr("10.0.0.1"),
            device: a,
            at: 100,
        },
        Change::BindingSeen {
            addr: addr("2001:db8::2"),
            device: b,
            at: 101,
        },
        Change::BindingSeen {
            addr: addr("10.0.0.3"),
            device: c,
            at: 102,
        },
        Change::BindingLapsed {
            addr: addr("10.0.0.3"),
        },
        Change::HoldPlaced {
            device: a,
            hold: hold("EDR", 5),
        },
        Change::HoldPlaced {
            device: b,
            hold: Hold {
                expires: Some(86_406),
                ..hold("EDR", 6)
            },
        },
        Change::HoldReleased { device: a },
        Change::CriticalSet {
            device: c,
            critical: true,
        },
        Change::ApprovalRequested {
            approval: 77,
            device: c,
            hold: hold("second", 8),
        },
        Change::ApprovalRequested {
            approval: 78,
            device: c,
            hold: hold("third", 9),
        },
        Change::ApprovalGranted { approval: 77 },
        // holds for devices not seen yet: one waits, one was placed, one ran out
        Change::HoldWaiting {
            key: "serial:c02new".into(),
            hold: Hold {
                expires: Some(86_410),
                ..hold("playbook", 10)
            },
        },
        Change::HoldWaiting {
            key: "c02bare".into(),
            hold: hold("alert", 11),
        },
        Change::HoldWaiting {
            key: "serial:c02gone".into(),
            hold: hold("old", 12),
        },
        Change::HoldWaitingEnded {
            key: "serial:c02gone".into(),
        },
        // one-time keys: the second comes after the first's time, which lapses
        Change::TokenSeen {
            key: r#"["https://idp.example.com/","jti-1"]"#.into(),
            until: 50,
            at: 10,
        },
        Change::TokenSeen {
            key: r#"["https://idp.example.com/","jti-2"]"#.into(),
            until: 90_000,
            at: 60,
        },
        // watches: one kept (time-boxed), one replaced and ended
        Change::WatchSet {
            device: b,
            watch: hold("beaconing", 13),
        },
        Change::WatchSet {
            device: a,
            watch: Hold {
                expires: Some(99),
                ..hold("probe", 14)
            },
        },
        Change::WatchSet {
            device: b,
            watch: hold("still beaconing", 15),
        },
        Change::WatchEnded { device: b },
    ]
}

fn replayed(changes: &[Change]) -> State {
    let mut state = State::default();
    for c in changes {
        state.apply(c);
    }
    state
}

fn assert_same(loaded: &State, expected: &State) {
    assert_eq!(loaded.devices.len(), expected.devices.len());
    for (id, want) in expected.devices.iter() {
        let got = &loaded.devices[&id];
        assert_eq!(got.label, want.label, "{id}");
        assert_eq!(got.aliases, want.aliases, "{id}");
        assert_eq!(got.memberships, want.memberships, "{id}");
        assert_eq!(got.hold, want.hold, "{id}");
        assert_eq!(got.critical, want.critical, "{id}");
        assert_eq!(got.addresses, want.addresses, "{id}");
        assert_eq!(got.watch, want.watch, "{id}");
    }
    assert!(loaded.devices[&DeviceId(1)].watch.is_some());
    assert_eq!(loaded.bindings, expected.bindings);
    assert_eq!(loaded.group_names, expected.group_names);
    assert_eq!(loaded.approvals, expected.approvals);
    assert_eq!(loaded.waiting, expected.waiting);
    assert_eq!(loaded.waiting.len(), 2);
    assert_eq!(loaded.seen, expected.seen);
    assert_eq!(loaded.seen.len(), 1, "the lapsed key is gone");
    assert_eq!(loaded.next_id, expected.next_id);
}

/// Commits `changes` as a write does: begin (others' changes first), then commit.
async fn write(store: &mut Store, position: i64, changes: &[Change], audit: &[AuditEvent]) -> i64 {
    let others = store.begin(position).await.unwrap();
    assert!(others.is_empty(), "no other writer: {others:?}");
    store.commit(position, changes, audit, 1_000).await.unwrap()
}

/// The suite: `open` opens the same store anew each time it is called.
async fn suite<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Store>,
{
    let all = changes();
    let (first, rest) = all.split_at(9);
    let mut store = open().await;
    let empty = store.load().await.unwrap();
    assert_eq!(empty.position, 0);
    assert!(empty.state.devices.is_empty());

    // two writes, the second continuing the log where the first ended
    let a = DeviceId(1);
    let position = write(&mut store, 0, first, &[event(a, "first")]).await;
    assert_eq!(position, first.len() as i64);
    let position = write(&mut store, position, rest, &[event(a, "second")]).await;
    assert_eq!(position, all.len() as i64);
    // an empty write changes nothing and keeps the position
    assert_eq!(write(&mut store, position, &[], &[]).await, position);
    drop(store);

    // what was committed comes back, from a store opened anew
    let mut store = open().await;
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.position, all.len() as i64);
    assert_same(&loaded.state, &replayed(&all));
    let serial = Alias::new(AliasKind::Serial, "C02AAA");
    assert_eq!(loaded.state.device_by_alias(&serial), Some(DeviceId(2)));

    // the log: every change, in order, with dense ids; and the tail after any position
    let log = store.changes_after(0).await.unwrap();
    let ids: Vec<i64> = log.iter().map(|l| l.id).collect();
    assert_eq!(ids, (1..=all.len() as i64).collect::<Vec<_>>());
    let logged: Vec<Change> = log.into_iter().map(|l| l.change).collect();
    assert_eq!(logged, all);
    let tail = store.changes_after(9).await.unwrap();
    assert_eq!(tail.len(), rest.len());
    assert_eq!(tail[0].id, 10);
    assert!(store
        .changes_after(all.len() as i64)
        .await
        .unwrap()
        .is_empty());

    // the timeline: newest first, as many as asked
    let timeline = store.timeline(a, 10).await.unwrap();
    let actions: Vec<&str> = timeline.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["second", "first"]);
    assert_eq!(store.timeline(a, 1).await.unwrap().len(), 1);
    assert!(store.timeline(DeviceId(3), 10).await.unwrap().is_empty());

    trail(&mut store).await;
}

fn trail_row(device: DeviceId, at_ms: i64, name: &str, decision: &str, security: bool) -> TrailRow {
    TrailRow {
        id: 0,
        device,
        at_ms,
        name: name.into(),
        qtype: 1,
        transport: "udp".into(),
        source: "10.0.0.7".into(),
        decision: decision.into(),
        reason: "not on the allow-list (policy isolation, group restricted)".into(),
        group: "restricted".into(),
        category: None,
        categories: match security {
            true => vec!["malware".into(), "newly_registered".into()],
            false => Vec::new(),
        },
        security,
        rcode: 3,
        node: "node-a".into(),
    }
}

/// The trail's rows: written in a batch, read a page at a time, summarised, trimmed.
async fn trail(store: &mut Store) {
    let (a, c) = (DeviceId(1), DeviceId(3));
    let rows = vec![
        trail_row(a, 1_000, "www.example.com", "blocked", false),
        trail_row(a, 2_000, "c2.example.net", "blocked", true),
        trail_row(c, 2_500, "other.example", "allowed", false),
        trail_row(a, 3_000, "www.example.com", "blocked", false),
        trail_row(a, 4_000, "mdm.example.com", "allowed", false),
        trail_row(a, 5_000, "www.example.com", "blocked", false),
    ];
    store.record_trail(&chunks_of(&rows)).await.unwrap();
    let filter = |after_id, since_ms, decision: Option<&str>| TrailFilter {
        device: a,
        since_ms,
        after_id,
        decision: decision.map(str::to_string),
        limit: 2,
        newest_first: false,
    };
    let page = store.queries(&filter(0, 0, None)).await.unwrap();
    let names: Vec<&str> = page.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["www.example.com", "c2.example.net"]);
    assert_eq!(page[1].categories, ["malware", "newly_registered"]);
    assert!(page[1].security && !page[0].security);
    assert_eq!((page[1].rcode, page[1].node.as_str()), (3, "node-a"));
    let next = store.queries(&filter(page[1].id, 0, None)).await.unwrap();
    let names: Vec<i64> = next.iter().map(|r| r.at_ms).collect();
    assert_eq!(
        names,
        [3_000, 4_000],
        "the next page, without the other device's row"
    );
    let allowed = store.queries(&filter(0, 0, Some("allowed"))).await.unwrap();
    assert_eq!(allowed.len(), 1);
    let recent = store.queries(&filter(0, 4_000, None)).await.unwrap();
    assert_eq!(recent.len(), 2);
    let newest = TrailFilter {
        newest_first: true,
        ..filter(0, 0, None)
    };
    let newest = store.queries(&newest).await.unwrap();
    assert_eq!(newest[0].at_ms, 5_000);

    let summary = store.query_summary(a, 0, 10).await.unwrap();
    let order: Vec<(&str, i64, i64)> = summary
        .iter()
        .map(|n| (n.name.as_str(), n.count, n.blocked))
        .collect();
    assert_eq!(
        order,
        [
            ("c2.example.net", 1, 1),
            ("www.example.com", 3, 3),
            ("mdm.example.com", 1, 0)
        ]
    );
    assert_eq!((summary[1].first_ms, summary[1].last_ms), (1_000, 5_000));
    assert!(summary[0].security);

    // Past the retention (before 2 s) and over a cap of 2 for device a: a keeps its newest two.
    let gone = store.trim_queries(2_000, &[a], 2).await.unwrap();
    assert_eq!(gone, 3, "one too old, two over the cap");
    let kept = store
        .queries(&TrailFilter {
            limit: 10,
            ..filter(0, 0, None)
        })
        .await
        .unwrap();
    let kept: Vec<i64> = kept.iter().map(|r| r.at_ms).collect();
    assert_eq!(kept, [4_000, 5_000]);
    let other = TrailFilter {
        device: c,
        limit: 10,
        ..filter(0, 0, None)
    };
    assert_eq!(store.queries(&other).await.unwrap().len(), 1);

    // An erasure takes one device's trail, all of it, and no other's.
    assert_eq!(store.erase_queries(a).await.unwrap(), 2);
    let all = TrailFilter {
        limit: 10,
        ..filter(0, 0, None)
    };
    assert!(store.queries(&all).await.unwrap().is_empty());
    assert_eq!(store.queries(&other).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_sqlite_store_passes_the_store_suite() {
    let dir = tempfile::tempdir().unwrap();
    let target = StoreTarget::Sqlite(dir.path().join("cordon.db"));
    suite(|| async { Store::open(&target).await.unwrap() }).await;
}

fn settings(url: &str) -> PgSettings {
    PgSettings::new(url, None, Duration::from_secs(5)).unwrap()
}

#[tokio::test]
async fn the_postgres_store_passes_the_store_suite() {
    let pg = PgServer::start().await;
    let target = StoreTarget::Postgres(Box::new(settings(&pg.database("suite").await)));
    suite(|| async { Store::open(&target).await.unwrap() }).await;
}

#[tokio::test]
async fn writers_on_a_shared_store_take_turns_and_each_starts_from_the_others_changes() {
    let pg = PgServer::start().await;
    let target = StoreTarget::Postgres(Box::new(settings(&pg.database("turns").await)));
    let mut one = Store::open(&target).await.unwrap();
    let mut two = Store::open(&target).await.unwrap();
    let added = |id: u64| Change::DeviceAdded {
        device: DeviceId(id),
        label: format!("mac-{id}"),
    };

    // node one holds the write; node two's begin waits for it
    assert!(one.begin(0).await.unwrap().is_empty());
    let waiting = tokio::spawn(async move {
        let others = two.begin(0).await.unwrap();
        (two, others)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a second writer must wait for the first"
    );
    assert_eq!(one.commit(0, &[added(1)], &[], 1).await.unwrap(), 1);

    // and then starts from node one's change, and logs after it
    let (mut two, others) = waiting.await.unwrap();
    assert_eq!(others.len(), 1);
    assert_eq!((others[0].id, &others[0].change), (1, &added(1)));
    assert!(others[0].committed_ms.is_some(), "a shared log says when");
    assert_eq!(two.commit(1, &[added(2)], &[], 1).await.unwrap(), 2);
    let log = one.changes_after(1).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].id, &log[0].change), (2, &added(2)));
}

#[tokio::test]
async fn a_reader_whose_position_was_trimmed_from_the_log_is_told_to_load_the_tables() {
    let pg = PgServer::start().await;
    let url = pg.database("trimmed").await;
    let mut store = Store::open(&StoreTarget::Postgres(Box::new(settings(&url))))
        .await
        .unwrap();
    let changes: Vec<Change> = (1..=5)
        .map(|id| Change::DeviceAdded {
            device: DeviceId(id),
            label: format!("mac-{id}"),
        })
        .collect();
    write(&mut store, 0, &changes, &[]).await;
    let client = pg.client("trimmed").await;
    client
        .execute("DELETE FROM changes WHERE id <= 3", &[])
        .await
        .unwrap();
    let error = store.changes_after(1).await.unwrap_err();
    assert!(error.is_behind(), "{error}");
    // a reader at the trim line is not behind
    assert_eq!(store.changes_after(3).await.unwrap().len(), 2);
    // and loading the tables gives the whole state and the position to go on from
    let loaded = store.load().await.unwrap();
    assert_eq!((loaded.state.devices.len(), loaded.position), (5, 5));
}

/// The first change of an older store, as the log holds it.
fn first_change() -> String {
    serde_json::to_string(&Change::DeviceAdded {
        device: DeviceId(1),
        label: "FIN-MBP".into(),
    })
    .unwrap()
}

#[tokio::test]
async fn a_sqlite_file_from_before_versioned_migrations_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cordon.db");
    {
        // The 0.4 schema and rows, as that version wrote them: no migration history.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../../migrations/sqlite/V1__initial.sql"))
            .unwrap();
        conn.execute_batch(
            "INSERT INTO devices (id, label, hold_reason, hold_ticket, hold_by, hold_at)
                 VALUES (1, 'FIN-MBP', 'EDR', 'IR-4', 'alice', 5);
             INSERT INTO aliases (kind, value, device) VALUES ('serial', 'C02OLD', 1);
             INSERT INTO memberships (device, uem_group) VALUES (1, 'jamf:computer-group:42');
             INSERT INTO bindings (addr, device, seen) VALUES ('10.0.0.9', 1, 50);
             INSERT INTO audit (at, device, actor, action, detail, reason)
                 VALUES (5, 1, 'alice', 'isolated', '{}', 'EDR');",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO changes (at, change) VALUES (5, ?1)",
            [first_change()],
        )
        .unwrap();
    }
    let mut store = Store::open(&StoreTarget::Sqlite(path)).await.unwrap();
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.position, 1);
    assert_eq!(store.changes_after(0).await.unwrap().len(), 1);
    let device = loaded
        .state
        .find("C02OLD")
        .expect("the device is still there");
    let d = &loaded.state.devices[&device];
    assert_eq!(d.hold.as_ref().map(|h| h.ticket.as_str()), Some("IR-4"));
    assert!(d.memberships.contains("jamf:computer-group:42"));
    assert_eq!(store.timeline(device, 10).await.unwrap().len(), 1);
}

/// The newest migration the database has run.
async fn schema_version(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT MAX(version) FROM refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_postgres_schema_of_an_older_version_is_upgraded_keeping_every_row() {
    let pg = PgServer::start().await;
    let url = pg.database("upgrade").await;
    migrate_to(&settings(&url), 1).await.unwrap();
    let client = pg.client("upgrade").await;
    client
        .batch_execute(
            "INSERT INTO devices (id, label, critical) VALUES (1, 'FIN-MBP', TRUE);
             INSERT INTO aliases (kind, value, device) VALUES ('serial', 'C02OLD', 1);
             INSERT INTO bindings (addr, device, seen) VALUES ('10.0.0.9', 1, 50);
             INSERT INTO approvals (id, device, reason, ticket, by, at) VALUES (9, 1, 'r', 't', 'a', 5);
             INSERT INTO audit (at, device, actor, action, detail, reason)
                 VALUES (5, 1, 'alice', 'critical', '{}', 'x');",
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO changes (id, at, change) VALUES (1, 5, $1)",
            &[&first_change()],
        )
        .await
        .unwrap();
    assert_eq!(schema_version(&client).await, 1);

    let mut store = Store::open(&StoreTarget::Postgres(Box::new(settings(&url))))
        .await
        .unwrap();
    let version = schema_version(&client).await;
    assert!(version >= 2, "upgraded to {version}");
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.position, 1);
    let device = loaded
        .state
        .find("C02OLD")
        .expect("the device is still there");
    assert!(loaded.state.devices[&device].critical);
    assert_eq!(loaded.state.approvals.len(), 1);
    assert_eq!(store.timeline(device, 10).await.unwrap().len(), 1);
    let logged = store.changes_after(0).await.unwrap();
    assert_eq!(logged.len(), 1);
    assert_eq!(
        logged[0].committed_ms, None,
        "written before commit times were kept"
    );
}

#[tokio::test]
async fn tls_to_the_database_verifies_the_server_against_the_configured_ca() {
    let mut pg = PgServer::init();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert_pem = cert.cert.pem();
    let crt = pg.write_private("server.crt", &cert_pem);
    let key = pg.write_private("server.key", &cert.signing_key.serialize_pem());
    pg.set("ssl=on");
    pg.set(&format!("ssl_cert_file={}", crt.display()));
    pg.set(&format!("ssl_key_file={}", key.display()));
    pg.run().await;
    let url = pg
        .database("tls")
        .await
        .replace("sslmode=disable", "sslmode=require");
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &cert_pem).unwrap();

    // with the server's CA: a working store, over TLS
    let with_ca = PgSettings::new(&url, Some(ca.path().to_path_buf()), Duration::from_secs(5));
    let mut store = Store::open(&StoreTarget::Postgres(Box::new(with_ca.unwrap())))
        .await
        .unwrap();
    let change = Change::DeviceAdded {
        device: DeviceId(1),
        label: "over-tls".into(),
    };
    write(&mut store, 0, &[change], &[]).await;
    let client = pg.client("tls").await;
    let tls_sessions: i64 = client
        .query_one("SELECT COUNT(*) FROM pg_stat_ssl WHERE ssl", &[])
        .await
        .unwrap()
        .get(0);
    assert!(tls_sessions >= 1, "the store's connection uses TLS");

    // without it, the server's certificate is not trusted and nothing is written
    let without = PgSettings::new(&url, None, Duration::from_secs(5)).unwrap();
    let error = Store::open(&StoreTarget::Postgres(Box::new(without)))
        .await
        .err()
        .expect("an untrusted server is refused")
        .to_string();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}
