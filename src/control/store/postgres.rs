//! The shared store: a PostgreSQL database that several equal nodes read and write.
//!
//! A write holds the log's transaction-level advisory lock from its first statement to its
//! commit, reads the changes other nodes logged since this node's position (the caller applies
//! them before deciding anything), then writes the state tables and logs its own changes with
//! the ids that follow, and NOTIFYs. Since ids are given under the lock, one after the last,
//! and a transaction's commit is visible before its lock is released, a reader that sees id N
//! has already been able to see every id below it (ARCHITECTURE.md, "Replicas").
//!
//! Every call has a deadline (`store.timeout_ms`): a database that hangs, as much as one that
//! refuses, fails the call, and the connection is dropped and made anew on the next one.

use std::path::PathBuf;
use std::pin::pin;
use std::str::FromStr;
use std::time::Duration;

use futures_util::future::{try_join_all, BoxFuture};
use futures_util::stream::{Stream, StreamExt, TryStreamExt};
use futures_util::FutureExt;
use refinery::Target;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    alias_lines, continues, hold_of, Audited, Fault, Loaded, Logged, Outbox, Rows, StoreError,
    CHANGE_LOG_KEEP, PAGE,
};
use crate::control::state::{AuditEvent, Change, Hold, APPROVAL_LIFETIME};
use crate::policy::DeviceId;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// The NOTIFY channel a commit signals on; its payload is the last id it logged.
pub const CHANNEL: &str = "cordon_changes";

/// Advisory lock keys (arbitrary, fixed): the log's writers, migrations, the leader.
const LOG_LOCK: i64 = 0x0063_6f72_646f_6e01;
const MIGRATION_LOCK: i64 = 0x0063_6f72_646f_6e02;
pub const LEADER_LOCK: i64 = 0x0063_6f72_646f_6e03;

/// Reading every table of a large fleet takes longer than any one write may.
const LOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// How to reach the database.
#[derive(Clone)]
pub struct PgSettings {
    config: tokio_postgres::Config,
    /// The URL without its password, for messages.
    label: String,
    /// A CA bundle for TLS to the database; the system's roots when none.
    pub ca_file: Option<PathBuf>,
    /// How long any one call may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

/// A database URL that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("not a PostgreSQL URL ({0})")]
pub struct BadUrl(String);

impl PgSettings {
    pub fn new(
        url: &str,
        ca_file: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<PgSettings, BadUrl> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(BadUrl("it must start with postgres://".into()));
        }
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| BadUrl(describe(&e)))?;
        if config.get_hosts().is_empty() {
            return Err(BadUrl("it names no host".into()));
        }
        config
            .connect_timeout(timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .application_name("cordon");
        let label = label(&config);
        Ok(PgSettings {
            config,
            label,
            ca_file,
            timeout,
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// A new connection, and the stream of what the server sends on its own (notifications),
    /// which must be polled for the connection to make progress.
    pub async fn connect(
        &self,
        tls: &MakeRustlsConnect,
    ) -> Result<
        (
            Client,
            impl Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Send + 'static,
        ),
        Fault,
    > {
        let connect = self.config.connect(tls.clone());
        let (client, mut connection) = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| Fault::Timeout(self.timeout))??;
        let messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        Ok((client, messages))
    }

    /// The TLS connector for `sslmode=prefer|require` (tokio-postgres skips it for `disable`).
    pub fn tls(&self) -> Result<MakeRustlsConnect, Fault> {
        let config = crate::tls::client_config(self.ca_file.as_deref())
            .map_err(|e| Fault::Tls(e.to_string()))?;
        Ok(MakeRustlsConnect::new(config))
    }
}

/// `postgres://user@host:port/db`: what a message may show of a URL.
fn label(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            Host::Tcp(name) => format!("{name}:{port}"),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

/// A PostgreSQL error with the server's own words, which tokio-postgres keeps in its source.
pub fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// The shared store's connection for the writer.
pub struct PgStore {
    settings: PgSettings,
    tls: MakeRustlsConnect,
    conn: Option<Conn>,
}

/// A connection with its prepared statements.
pub(super) struct Conn {
    pub(super) client: Client,
    st: Statements,
    /// A write transaction is open on it.
    in_tx: bool,
}

pub(super) type Op<'c, T> = BoxFuture<'c, Result<T, Fault>>;

impl PgStore {
    /// Connects, and creates or upgrades the tables (one node at a time).
    pub async fn open(settings: PgSettings) -> Result<PgStore, StoreError> {
        let err = |fault| StoreError {
            store: settings.label.clone(),
            fault,
        };
        let tls = settings.tls().map_err(err)?;
        let (mut client, messages) = settings.connect(&tls).await.map_err(err)?;
        tokio::spawn(drain(messages));
        migrate(&mut client, Target::Latest).await.map_err(err)?;
        let conn = Conn::new(client).await.map_err(err)?;
        Ok(PgStore {
            settings,
            tls,
            conn: Some(conn),
        })
    }

    pub fn settings(&self) -> &PgSettings {
        &self.settings
    }

    /// Runs `op` on a connection (made anew if the last one failed) within `deadline`. A
    /// failure drops the connection, and with it any transaction open on it.
    pub(super) async fn run<T>(
        &mut self,
        deadline: Duration,
        op: impl for<'c> FnOnce(&'c mut Conn) -> Op<'c, T>,
    ) -> Result<T, StoreError> {
        let result = tokio::time::timeout(deadline, async {
            if self.conn.is_none() {
                let (client, messages) = self.settings.connect(&self.tls).await?;
                tokio::spawn(drain(messages));
                self.conn = Some(Conn::new(client).await?);
            }
            match self.conn.as_mut() {
                Some(conn) => op(conn).await,
                None => Err(Fault::NoTransaction),
            }
        })
        .await
        .unwrap_or(Err(Fault::Timeout(deadline)));
        result.map_err(|fault| {
            if !matches!(fault, Fault::Behind(_)) {
                self.conn = None;
            }
            StoreError {
                store: self.settings.label.clone(),
                fault,
            }
        })
    }

    /// Within an open write the lock keeps every other writer out, so the tables read as
    /// one state without a snapshot of their own.
    pub async fn load(&mut self) -> Result<Loaded, StoreError> {
        self.run(LOAD_TIMEOUT, |c| {
            async move {
                if c.in_tx {
                    load_in(&c.client).await
                } else {
                    load(&c.client).await
                }
            }
            .boxed()
        })
        .await
    }

    pub async fn begin(&mut self, position: i64) -> Result<Vec<Logged>, StoreError> {
        let timeout = self.settings.timeout;
        self.run(timeout, move |c| {
            async move {
                c.client.batch_execute("BEGIN").await?;
                c.in_tx = true;
                c.client.execute(&c.st.lock, &[&LOG_LOCK]).await?;
                let read = read_after(c, position).await;
                if read.is_err() {
                    c.client.batch_execute("ROLLBACK").await?;
                    c.in_tx = false;
                }
                read
            }
            .boxed()
        })
        .await
    }

    /// Rolls back the open write, if any; a connection that cannot is dropped (which rolls
    /// it back too).
    pub async fn abort(&mut self) {
        let timeout = self.settings.timeout;
        let _ = self
            .run(timeout, |c| {
                async move {
                    if c.in_tx {
                        c.client.batch_execute("ROLLBACK").await?;
                        c.in_tx = false;
                    }
                    Ok(())
                }
                .boxed()
            })
            .await;
    }

    pub async fn commit(
        &mut self,
        position: i64,
        changes: &[Change],
        audit: &[AuditEvent],
        now: i64,
    ) -> Result<i64, StoreError> {
        let timeout = self.settings.timeout;
        // Owned: the write may outlive this call's borrow when it times out.
        let (changes, audit) = (changes.to_vec(), audit.to_vec());
        self.run(timeout, move |c| {
            async move {
                if !c.in_tx {
                    return Err(Fault::NoTransaction);
                }
                write(c, position, &changes, &audit, now).await?;
                c.client.batch_execute("COMMIT").await?;
                c.in_tx = false;
                Ok(position + changes.len() as i64)
            }
            .boxed()
        })
        .await
    }

    pub async fn changes_after(&mut self, position: i64) -> Result<Vec<Logged>, StoreError> {
        let timeout = self.settings.timeout;
        self.run(timeout, move |c| read_after(c, position).boxed())
            .await
    }

    pub async fn timeline(
        &mut self,
        device: DeviceId,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let timeout = self.settings.timeout;
        self.run(timeout, move |c| {
            async move {
                let params: [&(dyn ToSql + Sync); 2] = [&(device.0 as i64), &(limit as i64)];
                let rows = c.client.query(&c.st.timeline, &params).await?;
                let events = rows
                    .iter()
                    .map(|r| AuditEvent {
                        at: r.get(0),
                        device: r.get::<_, Option<i64>>(1).map(|d| DeviceId(d as u64)),
                        actor: r.get(2),
                        action: r.get(3),
                        detail: r.get(4),
                        reason: r.get(5),
                    })
                    .collect();
                Ok(events)
            }
            .boxed()
        })
        .await
    }
}

/// The audit log read as the events' outbox, and each sink's cursor (see [`super::Store`]).
/// The events task has a connection of its own; these run seldom, so their statements are not
/// kept prepared.
impl PgStore {
    pub async fn outbox(
        &mut self,
        after: i64,
        actions: &[&str],
        limit: usize,
    ) -> Result<Outbox, StoreError> {
        let timeout = self.settings.timeout;
        let actions: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
        self.run(timeout, move |c| {
            async move {
                // One snapshot: the rows, the count and the end are one view.
                c.client
                    .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?;
                let read = outbox_in(&c.client, after, &actions, limit).await;
                c.client.batch_execute("COMMIT").await?;
                read
            }
            .boxed()
        })
        .await
    }

    pub async fn sink_cursor(&mut self, sink: &str) -> Result<i64, StoreError> {
        let timeout = self.settings.timeout;
        let sink = sink.to_string();
        self.run(timeout, move |c| {
            async move {
                c.client
                    .execute(
                        "INSERT INTO event_sinks (name, delivered)
                         SELECT $1, COALESCE(MAX(id), 0) FROM audit
                         ON CONFLICT (name) DO NOTHING",
                        &[&sink],
                    )
                    .await?;
                let row = c
                    .client
                    .query_one(
                        "SELECT delivered FROM event_sinks WHERE name = $1",
                        &[&sink],
                    )
                    .await?;
                Ok(row.get(0))
            }
            .boxed()
        })
        .await
    }

    pub async fn set_sink_cursor(&mut self, sink: &str, id: i64) -> Result<(), StoreError> {
        let timeout = self.settings.timeout;
        let sink = sink.to_string();
        self.run(timeout, move |c| {
            async move {
                c.client
                    .execute(
                        "INSERT INTO event_sinks (name, delivered) VALUES ($1, $2)
                         ON CONFLICT (name) DO UPDATE
                         SET delivered = GREATEST(event_sinks.delivered, excluded.delivered)",
                        &[&sink, &id],
                    )
                    .await?;
                Ok(())
            }
            .boxed()
        })
        .await
    }
}

async fn outbox_in(
    client: &Client,
    after: i64,
    actions: &[String],
    limit: usize,
) -> Result<Outbox, Fault> {
    let end: i64 = client
        .query_one("SELECT COALESCE(MAX(id), 0) FROM audit", &[])
        .await?
        .get(0);
    let pending: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM audit WHERE id > $1 AND action = ANY($2)",
            &[&after, &actions],
        )
        .await?
        .get(0);
    let rows = client
        .query(
            "SELECT a.id, a.at, a.device, a.actor, a.action, a.detail, a.reason, d.label,
                    (SELECT string_agg(kind || ':' || value, E'\\n') FROM aliases
                     WHERE device = a.device AND kind <> 'token')
             FROM audit a LEFT JOIN devices d ON d.id = a.device
             WHERE a.id > $1 AND a.action = ANY($2)
             ORDER BY a.id LIMIT $3",
            &[&after, &actions, &(limit as i64)],
        )
        .await?;
    let rows = rows
        .iter()
        .map(|r| Audited {
            id: r.get(0),
            event: AuditEvent {
                at: r.get(1),
                device: r.get::<_, Option<i64>>(2).map(|d| DeviceId(d as u64)),
                actor: r.get(3),
                action: r.get(4),
                detail: r.get(5),
                reason: r.get(6),
            },
            label: r.get(7),
            aliases: alias_lines(r.get(8)),
        })
        .collect();
    Ok(Outbox { rows, pending, end })
}

/// Polls a connection's own messages until it closes; the store's connections listen to
/// nothing, but the connection only makes progress while polled.
async fn drain(messages: impl Stream<Item = Result<AsyncMessage, tokio_postgres::Error>>) {
    let mut messages = pin!(messages);
    while let Some(message) = messages.next().await {
        if let Err(e) = message {
            tracing::warn!("store connection closed: {}", describe(&e));
            return;
        }
    }
}

/// Brings the schema of the database `settings` names to `version` exactly, and no further:
/// for upgrade tests, and for a rollout that holds the schema back while old nodes still run.
pub async fn migrate_to(settings: &PgSettings, version: i32) -> Result<(), StoreError> {
    let migrated = async {
        let (mut client, messages) = settings.connect(&settings.tls()?).await?;
        tokio::spawn(drain(messages));
        migrate(&mut client, Target::Version(version)).await
    };
    migrated.await.map_err(|fault| StoreError {
        store: settings.label.clone(),
        fault,
    })
}

/// Creates or upgrades the tables; nodes starting together take turns.
async fn migrate(client: &mut Client, target: Target) -> Result<(), Fault> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = embedded::migrations::runner()
        .set_target(target)
        .run_async(client)
        .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    for m in report?.applied_migrations() {
        tracing::info!("store: applied migration {}", m);
    }
    Ok(())
}

/// The statements the writer runs, prepared once per connection.
struct Statements {
    lock: Statement,
    device_added: Statement,
    label_set: Statement,
    alias_seen: Statement,
    membership_set: Statement,
    membership_unset: Statement,
    group_named: Statement,
    binding_seen: Statement,
    binding_lapsed: Statement,
    hold: Statement,
    critical_set: Statement,
    approvals_lapse: Statement,
    approval_requested: Statement,
    approval_granted: Statement,
    waiting_set: Statement,
    waiting_ended: Statement,
    watch_set: Statement,
    watch_ended: Statement,
    probation: Statement,
    tokens_lapse: Statement,
    token_seen: Statement,
    log: Statement,
    trim: Statement,
    notify: Statement,
    audit: Statement,
    after: Statement,
    timeline: Statement,
}

impl Conn {
    async fn new(client: Client) -> Result<Conn, Fault> {
        let sql = [
            "SELECT pg_advisory_xact_lock($1)",
            "INSERT INTO devices (id, label) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            "UPDATE devices SET label = $2 WHERE id = $1",
            "INSERT INTO aliases (kind, value, device) VALUES ($1, $2, $3)
             ON CONFLICT (kind, value) DO UPDATE SET device = excluded.device",
            "INSERT INTO memberships (device, uem_group) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            "DELETE FROM memberships WHERE device = $1 AND uem_group = $2",
            "INSERT INTO uem_groups (key, name) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET name = excluded.name",
            "INSERT INTO bindings (addr, device, seen) VALUES ($1, $2, $3)
             ON CONFLICT (addr) DO UPDATE SET device = excluded.device, seen = excluded.seen",
            "DELETE FROM bindings WHERE addr = $1",
            "UPDATE devices SET hold_reason = $2, hold_ticket = $3, hold_by = $4, hold_at = $5,
             hold_expires = $6 WHERE id = $1",
            "UPDATE devices SET critical = $2 WHERE id = $1",
            "DELETE FROM approvals WHERE at <= $1",
            "INSERT INTO approvals (id, device, reason, ticket, by, at, expires)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET device = excluded.device, reason = excluded.reason,
             ticket = excluded.ticket, by = excluded.by, at = excluded.at, expires = excluded.expires",
            "DELETE FROM approvals WHERE id = $1",
            "INSERT INTO waiting_holds (key, reason, ticket, by, at, expires)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (key) DO UPDATE SET reason = excluded.reason, ticket = excluded.ticket,
             by = excluded.by, at = excluded.at, expires = excluded.expires",
            "DELETE FROM waiting_holds WHERE key = $1",
            "INSERT INTO watches (device, reason, ticket, by, at, expires)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (device) DO UPDATE SET reason = excluded.reason, ticket = excluded.ticket,
             by = excluded.by, at = excluded.at, expires = excluded.expires",
            "DELETE FROM watches WHERE device = $1",
            "UPDATE devices SET probation_until = $2 WHERE id = $1",
            "DELETE FROM seen_tokens WHERE until < $1",
            "INSERT INTO seen_tokens (key, until) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET until = excluded.until",
            "INSERT INTO changes (id, at, change)
             SELECT l.id, $2, l.change FROM UNNEST($1::BIGINT[], $3::TEXT[]) AS l(id, change)",
            "DELETE FROM changes WHERE id <= $1",
            "SELECT pg_notify($1, $2)",
            "INSERT INTO audit (at, device, actor, action, detail, reason)
             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[])",
            "SELECT id, change, (EXTRACT(EPOCH FROM committed) * 1000)::BIGINT
             FROM changes WHERE id > $1 ORDER BY id LIMIT $2",
            "SELECT at, device, actor, action, detail, reason FROM audit WHERE device = $1
             ORDER BY id DESC LIMIT $2",
        ];
        // Sent together: one round trip's wait, not twenty-seven.
        let prepared = try_join_all(sql.iter().map(|s| client.prepare(s))).await?;
        // One statement for each text, in order: try_join_all keeps both.
        let Ok(
            [lock, device_added, label_set, alias_seen, membership_set, membership_unset, group_named, binding_seen, binding_lapsed, hold, critical_set, approvals_lapse, approval_requested, approval_granted, waiting_set, waiting_ended, watch_set, watch_ended, probation, tokens_lapse, token_seen, log, trim, notify, audit, after, timeline],
        ) = <[Statement; 27]>::try_from(prepared)
        else {
            unreachable!("one prepared statement for each of the 27 texts");
        };
        let st = Statements {
            lock,
            device_added,
            label_set,
            alias_seen,
            membership_set,
            membership_unset,
            group_named,
            binding_seen,
            binding_lapsed,
            hold,
            critical_set,
            approvals_lapse,
            approval_requested,
            approval_granted,
            waiting_set,
            waiting_ended,
            watch_set,
            watch_ended,
            probation,
            tokens_lapse,
            token_seen,
            log,
            trim,
            notify,
            audit,
            after,
            timeline,
        };
        Ok(Conn {
            client,
            st,
            in_tx: false,
        })
    }
}

type Args = Vec<Box<dyn ToSql + Sync + Send>>;

/// `args`, then a hold's columns as every table that keeps one has them: reason, ticket, by,
/// at, expires.
fn with_hold(mut args: Args, h: &Hold) -> Args {
    args.push(Box::new(h.reason.clone()));
    args.push(Box::new(h.ticket.clone()));
    args.push(Box::new(h.by.clone()));
    args.push(Box::new(h.at));
    args.push(Box::new(h.expires));
    args
}

/// The statement and arguments that write `change` to the state tables.
fn statement_for<'s>(st: &'s Statements, change: &Change) -> Vec<(&'s Statement, Args)> {
    let id = |d: &DeviceId| Box::new(d.0 as i64) as Box<dyn ToSql + Sync + Send>;
    let text = |s: &str| Box::new(s.to_string()) as Box<dyn ToSql + Sync + Send>;
    let int = |n: i64| Box::new(n) as Box<dyn ToSql + Sync + Send>;
    let none = || Box::new(None::<String>) as Box<dyn ToSql + Sync + Send>;
    match change {
        Change::DeviceAdded { device, label } => {
            vec![(&st.device_added, vec![id(device), text(label)])]
        }
        Change::LabelSet { device, label } => vec![(&st.label_set, vec![id(device), text(label)])],
        Change::AliasSeen { alias, device } => vec![(
            &st.alias_seen,
            vec![text(alias.kind.as_str()), text(&alias.value), id(device)],
        )],
        Change::MembershipSet { device, group } => {
            vec![(&st.membership_set, vec![id(device), text(group)])]
        }
        Change::MembershipUnset { device, group } => {
            vec![(&st.membership_unset, vec![id(device), text(group)])]
        }
        Change::GroupNamed { group, name } => {
            vec![(&st.group_named, vec![text(group), text(name)])]
        }
        Change::BindingSeen { addr, device, at } => vec![(
            &st.binding_seen,
            vec![text(&addr.to_string()), id(device), int(*at)],
        )],
        Change::BindingLapsed { addr } => {
            vec![(&st.binding_lapsed, vec![text(&addr.to_string())])]
        }
        Change::HoldPlaced { device, hold: h } => {
            vec![(&st.hold, with_hold(vec![id(device)], h))]
        }
        Change::HoldReleased { device } => vec![(
            &st.hold,
            vec![
                id(device),
                none(),
                none(),
                none(),
                Box::new(None::<i64>),
                Box::new(None::<i64>),
            ],
        )],
        Change::CriticalSet { device, critical } => {
            vec![(&st.critical_set, vec![id(device), Box::new(*critical)])]
        }
        Change::ApprovalRequested {
            approval,
            device,
            hold: h,
        } => vec![
            // Lapsed ones go as a new one comes, as in the state.
            (&st.approvals_lapse, vec![int(h.at - APPROVAL_LIFETIME)]),
            (
                &st.approval_requested,
                with_hold(vec![int(*approval as i64), id(device)], h),
            ),
        ],
        Change::ApprovalGranted { approval } | Change::ApprovalRefused { approval } => {
            vec![(&st.approval_granted, vec![int(*approval as i64)])]
        }
        Change::HoldWaiting { key, hold: h } => {
            vec![(&st.waiting_set, with_hold(vec![text(key)], h))]
        }
        Change::HoldWaitingEnded { key } => vec![(&st.waiting_ended, vec![text(key)])],
        Change::WatchSet { device, watch: h } => {
            vec![(&st.watch_set, with_hold(vec![id(device)], h))]
        }
        Change::WatchEnded { device } => vec![(&st.watch_ended, vec![id(device)])],
        Change::ProbationStarted { device, until } => {
            vec![(&st.probation, vec![id(device), Box::new(Some(*until))])]
        }
        Change::ProbationEnded { device } => {
            vec![(&st.probation, vec![id(device), Box::new(None::<i64>)])]
        }
        Change::TokenSeen { key, until, at } => vec![
            // Lapsed ones go as a new one comes, as in the state.
            (&st.tokens_lapse, vec![int(*at)]),
            (&st.token_seen, vec![text(key), int(*until)]),
        ],
    }
}

/// Writes the state tables, the log, the audit records and the notification, inside the open
/// transaction. The statements go out together (pipelined) and run in order.
async fn write(
    c: &Conn,
    position: i64,
    changes: &[Change],
    audit: &[AuditEvent],
    now: i64,
) -> Result<(), Fault> {
    let mut writes: Vec<(&Statement, Args)> = changes
        .iter()
        .flat_map(|change| statement_for(&c.st, change))
        .collect();
    if !changes.is_empty() {
        let last = position + changes.len() as i64;
        let ids: Vec<i64> = (position + 1..=last).collect();
        let texts = changes
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<String>, _>>()?;
        writes.push((
            &c.st.log,
            vec![Box::new(ids), Box::new(now), Box::new(texts)],
        ));
        writes.push((&c.st.trim, vec![Box::new(last - CHANGE_LOG_KEEP)]));
        writes.push((
            &c.st.notify,
            vec![Box::new(CHANNEL.to_string()), Box::new(last.to_string())],
        ));
    }
    if !audit.is_empty() {
        let column = |f: fn(&AuditEvent) -> String| audit.iter().map(f).collect::<Vec<_>>();
        writes.push((
            &c.st.audit,
            vec![
                Box::new(audit.iter().map(|a| a.at).collect::<Vec<_>>()),
                Box::new(
                    audit
                        .iter()
                        .map(|a| a.device.map(|d| d.0 as i64))
                        .collect::<Vec<_>>(),
                ),
                Box::new(column(|a| a.actor.clone())),
                Box::new(column(|a| a.action.clone())),
                Box::new(column(|a| a.detail.clone())),
                Box::new(column(|a| a.reason.clone())),
            ],
        ));
    }
    let refs: Vec<Vec<&(dyn ToSql + Sync)>> = writes
        .iter()
        .map(|(_, args)| args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect())
        .collect();
    let sent = writes
        .iter()
        .zip(&refs)
        .map(|((statement, _), args)| c.client.execute(*statement, args));
    try_join_all(sent).await?;
    Ok(())
}

/// The logged changes after `position`, checked to continue it.
async fn read_after(c: &Conn, position: i64) -> Result<Vec<Logged>, Fault> {
    let rows = c
        .client
        .query(&c.st.after, &[&position, &(PAGE as i64)])
        .await?;
    let mut logged = Vec::with_capacity(rows.len());
    for r in &rows {
        logged.push(Logged {
            id: r.get(0),
            change: serde_json::from_str(r.get(1))?,
            committed_ms: r.get(2),
        });
    }
    continues(position, logged)
}

/// Every table, read in one snapshot of the database, and the log position it reflects.
async fn load(client: &Client) -> Result<Loaded, Fault> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let loaded = load_in(client).await;
    client.batch_execute("COMMIT").await?;
    loaded
}

async fn load_in(client: &Client) -> Result<Loaded, Fault> {
    let position: i64 = client
        .query_one("SELECT COALESCE(MAX(id), 0) FROM changes", &[])
        .await?
        .get(0);
    let mut rows = Rows::default();
    let range = client
        .query_one("SELECT MIN(id), MAX(id) FROM devices", &[])
        .await?;
    rows.id_range(range.get(0), range.get(1))?;
    let each = |sql: &'static str| async move {
        let none: [&(dyn ToSql + Sync); 0] = [];
        client.query_raw(sql, none.iter().copied()).await
    };
    let mut it = pin!(
        each(
            "SELECT id, label, critical, hold_reason, hold_ticket, hold_by, hold_at, hold_expires,
                    probation_until
             FROM devices"
        )
        .await?
    );
    while let Some(r) = it.try_next().await? {
        let hold = hold_of(r.get(3), r.get(4), r.get(5), r.get(6), r.get(7));
        rows.device(r.get(0), r.get(1), r.get(2), hold, r.get(8));
    }
    let mut it = pin!(each("SELECT kind, value, device FROM aliases").await?);
    while let Some(r) = it.try_next().await? {
        rows.alias(r.get(0), r.get(1), r.get(2));
    }
    let mut it = pin!(each("SELECT device, uem_group FROM memberships").await?);
    while let Some(r) = it.try_next().await? {
        rows.membership(r.get(0), r.get(1));
    }
    let mut it = pin!(each("SELECT key, name FROM uem_groups").await?);
    while let Some(r) = it.try_next().await? {
        rows.group(r.get(0), r.get(1));
    }
    let mut it = pin!(each("SELECT addr, device, seen FROM bindings").await?);
    while let Some(r) = it.try_next().await? {
        rows.binding(r.get(0), r.get(1), r.get(2));
    }
    let mut it = pin!(
        each("SELECT id, device, reason, ticket, by, at, expires FROM approvals ORDER BY at")
            .await?
    );
    while let Some(r) = it.try_next().await? {
        if let Some(hold) = hold_of(r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)) {
            rows.approval(r.get(0), r.get(1), hold);
        }
    }
    let mut it =
        pin!(each("SELECT key, reason, ticket, by, at, expires FROM waiting_holds").await?);
    while let Some(r) = it.try_next().await? {
        if let Some(hold) = hold_of(r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)) {
            rows.waiting(r.get(0), hold);
        }
    }
    let mut it = pin!(each("SELECT device, reason, ticket, by, at, expires FROM watches").await?);
    while let Some(r) = it.try_next().await? {
        if let Some(watch) = hold_of(r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)) {
            rows.watch(r.get(0), watch);
        }
    }
    let mut it = pin!(each("SELECT key, until FROM seen_tokens").await?);
    while let Some(r) = it.try_next().await? {
        rows.token(r.get(0), r.get(1));
    }
    Ok(Loaded {
        state: rows.state,
        position,
    })
}
