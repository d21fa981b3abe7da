//! The `cordon` command: run, check, explain.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use cordon::config::Config;
use cordon::control::state::State;
use cordon::control::store::{Store, StoreTarget};
use cordon::control::view::offline_snapshot;
use cordon::policy::PolicySet;

#[derive(Parser)]
#[command(
    name = "cordon",
    version,
    about = "A filtering DNS resolver for automated endpoint isolation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DNS and the HTTP API; with no --config, the embedded default.
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate config, policies and lists; errors as FILE:LINE: message; exit 1 on any.
    /// Lists named by URL are read from their cached copies unless --fetch is given.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Fetch every list named by URL now (into the cache) before checking; a failed
        /// fetch is an error.
        #[arg(long)]
        fetch: bool,
    },
    /// Print the decision trace for NAME asked from ADDR (and by DEVICE).
    Explain {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The client's source address.
        #[arg(long)]
        client: IpAddr,
        /// Any alias of the device (serial, UDID, ...).
        #[arg(long)]
        device: Option<String>,
        name: String,
        #[arg(default_value = "A")]
        qtype: String,
    },
    /// Print the signed identity token for DEVICE (its serial, UDID or other alias).
    Token {
        #[arg(long)]
        config: Option<PathBuf>,
        device: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(config),
        Command::Check { config, fetch } => check(config, fetch),
        Command::Token { config, device } => token(config, &device),
        Command::Explain {
            config,
            client,
            device,
            name,
            qtype,
        } => explain(config, client, device, &name, &qtype),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cordon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let mut running = cordon::app::start(config).await?;
        let control = running.control.clone();
        tokio::spawn(async move { reload_on_sighup(control).await });
        tokio::select! {
            _ = running.wait() => anyhow::bail!("a listener stopped"),
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

async fn reload_on_sighup(control: cordon::control::Control) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP; reload through POST /v1/reload");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading policies");
        // The writer logs and counts the outcome.
        let _ = control.reload().await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn check(path: Option<PathBuf>, fetch: bool) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if config.encrypted() {
        let (cert, key) = (
            config.resolve(&config.dns.tls_cert),
            config.resolve(&config.dns.tls_key),
        );
        if let Err(e) = cordon::tls::CertStore::load(&cert, &key) {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
        println!("{}: certificate and key match", cert.display());
    }
    // Shared Signals issuers' JWKS files are read as `run` reads them; URLs are fetched there.
    for issuer in &config.ssf.issuers {
        if issuer.jwks_url.is_empty() {
            let path = config.resolve(&issuer.jwks_file);
            match cordon::ssf::jwks::Jwks::load_file(&path) {
                Ok(keys) => println!(
                    "ssf issuer {}: {} keys from {}",
                    issuer.issuer,
                    keys.current().len(),
                    path.display()
                ),
                Err(e) => {
                    eprintln!("ssf issuer {}: {e}", issuer.issuer);
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    let dir = config.policies_dir();
    let failed_fetches = if fetch { fetch_lists(&config, &dir) } else { 0 };
    match PolicySet::load_with(&dir, Some(&config.lists_cache())) {
        Ok(set) => {
            for (path, stats) in &set.lists {
                println!("{}: {stats}", path.display());
            }
            let now = cordon::lists::unix_now();
            for list in &set.urls {
                println!("{}", describe_url_list(list, fetch, now));
            }
            // Warnings leave the exit status at 0: the set loads and works as written.
            for w in &set.warnings {
                eprintln!("{w}");
            }
            // Feeds are checked, never transferred: that needs the primary, at `run`.
            match cordon::feeds::feeds(&config.feeds, &config.base_dir, &set.taxonomy) {
                Ok(feeds) => {
                    for f in &feeds {
                        let key = f.tsig.as_ref().map_or("no TSIG key".into(), |k| {
                            format!("TSIG key {}", k.signer_name())
                        });
                        println!(
                            "feed {}: zone {} from {} ({key}) into {}",
                            f.name,
                            f.zone,
                            f.primary,
                            set.taxonomy.name(f.category)
                        );
                    }
                }
                Err(e) => {
                    let file = path.as_deref().unwrap_or("(embedded default)".as_ref());
                    eprintln!("{}: {e}", file.display());
                    return Ok(ExitCode::FAILURE);
                }
            }
            // Sinks are checked (secrets read, keys tried), never sent to: that is `run`'s.
            match cordon::events::sinks(&config.events, &config.base_dir) {
                Ok(sinks) => {
                    for s in &sinks {
                        println!("events sink {}: {}", s.name, s.describe());
                    }
                }
                Err(e) => {
                    let file = path.as_deref().unwrap_or("(embedded default)".as_ref());
                    eprintln!("{}: {e}", file.display());
                    return Ok(ExitCode::FAILURE);
                }
            }
            // The query log's key file is read; its file is opened and its collector reached
            // only by `run`.
            match config.query_log.settings(&config.base_dir, "(host name)") {
                Ok(Some(log)) => println!("query log: {}", log.describe()),
                Ok(None) => {}
                Err(e) => {
                    let file = path.as_deref().unwrap_or("(embedded default)".as_ref());
                    eprintln!("{}: {e}", file.display());
                    return Ok(ExitCode::FAILURE);
                }
            }
            let copies = set.urls.iter().filter(|u| u.stats.is_some()).count();
            println!(
                "ok: {} groups, {} listed domains in {} lists ({})",
                set.groups.len(),
                set.categories.len(),
                set.lists.len() + copies,
                dir.display()
            );
            if failed_fetches > 0 {
                eprintln!("{failed_fetches} list fetch(es) failed");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!("{} error(s) in {}", errors.0.len(), dir.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `check --fetch`: fetches every list named by URL into the cache, says how each went, and
/// returns how many failed.
fn fetch_lists(config: &Config, dir: &std::path::Path) -> usize {
    match cordon::lists::fetch_all(&config.lists(), dir) {
        Ok(results) => {
            let mut failed = 0;
            for (url, result) in results {
                let list = cordon::lists::label(&url);
                match result {
                    Ok(cordon::lists::Outcome::Updated(_)) => {
                        println!("{list}: fetched a new copy")
                    }
                    Ok(cordon::lists::Outcome::NotModified) => {
                        println!("{list}: fetched: not modified since the cached copy")
                    }
                    Err(e) => {
                        eprintln!("{list}: fetch failed: {e}");
                        failed += 1;
                    }
                }
            }
            failed
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// A list named by URL as `check` shows it: what its cached copy holds and how old it is, or
/// that there is none, and the last failed fetch if it came after the copy.
fn describe_url_list(
    list: &cordon::policy::load::UrlListReport,
    fetched: bool,
    now: u64,
) -> String {
    let label = cordon::lists::label(&list.url);
    let ago = |at: u64| cordon::lists::ago(now.saturating_sub(at));
    let meta = list.meta.clone().unwrap_or_default();
    let mut text = match (&list.stats, meta.fetched_at) {
        (Some(stats), Some(fetched_at)) => {
            let confirmed = meta.checked_at.unwrap_or(fetched_at);
            let source = if fetched {
                "fetched"
            } else {
                "not fetched: cached copy"
            };
            format!(
                "{label}: {stats} ({source}; downloaded {} ago, confirmed {} ago)",
                ago(fetched_at),
                ago(confirmed)
            )
        }
        _ => format!(
            "{label}: no cached copy (run `cordon check --fetch`, or start the server, to fetch it)"
        ),
    };
    let failed_after_copy = meta
        .failed_at
        .is_some_and(|f| meta.checked_at.is_none_or(|c| f >= c));
    if let (Some(error), Some(at), true) = (&meta.last_error, meta.failed_at, failed_after_copy) {
        text.push_str(&format!(
            "; the last fetch, {} ago, failed: {error}",
            ago(at)
        ));
    }
    text
}

fn explain(
    config: Option<PathBuf>,
    client: IpAddr,
    device: Option<String>,
    name: &str,
    qtype: &str,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config.as_deref())?;
    let set = PolicySet::load_with(&config.policies_dir(), Some(&config.lists_cache()))
        .map_err(|e| anyhow::anyhow!("policies rejected:\n{e}"))?;
    let statics = config.static_bindings().map_err(anyhow::Error::msg)?;
    // The store as it is now, read-only in effect: explain changes nothing.
    let target = config.store_target()?;
    let state = match &target {
        StoreTarget::Sqlite(path) if !path.exists() => State::default(),
        _ => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the runtime")?;
            runtime
                .block_on(async { Store::open(&target).await?.load().await })?
                .state
        }
    };
    let snapshot = offline_snapshot(set, state, &statics, &config.devices.critical);
    let trace = cordon::explain::explain(&snapshot, client, device.as_deref(), name, qtype)?;
    println!("{trace}");
    Ok(ExitCode::SUCCESS)
}

fn token(config: Option<PathBuf>, device: &str) -> anyhow::Result<ExitCode> {
    let config = Config::load(config.as_deref())?;
    let secret = config.auth.token_secret.trim();
    anyhow::ensure!(
        !secret.is_empty(),
        "auth.token_secret is not set: there is no key to sign tokens with"
    );
    let key = cordon::token::TokenKey::new(secret)?;
    let token = key.sign(device);
    println!("{token}");
    eprintln!("DoH: https://{}/dns-query/{token}", config.dns.server_name);
    eprintln!("DoT/DoQ server name: {token}.{}", config.dns.server_name);
    Ok(ExitCode::SUCCESS)
}
