//! Several `cordon run` processes sharing one state through a real PostgreSQL server: any
//! node takes a change, every node enforces it; the database stopped, restarted or frozen costs
//! DNS nothing and loses no acknowledged change; one leader runs the fleet-wide jobs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;

use crate::pg::PgServer;
use crate::support::*;

/// A set of nodes on one database, all forwarding to one upstream.
struct Fleet {
    pg: PgServer,
    nodes: Vec<Binary>,
    _upstream: Upstream,
}

fn store_section(url: &str, timeout_ms: u64) -> String {
    format!("url = \"{url}\"\ntimeout_ms = {timeout_ms}")
}

async fn fleet(size: usize, timeout_ms: u64, extra: &str) -> Fleet {
    let pg = PgServer::start().await;
    let url = pg.database("fleet").await;
    let upstream = start_upstream().await;
    let mut nodes = Vec::new();
    for _ in 0..size {
        let store = store_section(&url, timeout_ms);
        nodes.push(Binary::start_on(upstream.addr, &store, extra).await);
    }
    Fleet {
        pg,
        nodes,
        _upstream: upstream,
    }
}

/// Waits until every node in `nodes` answers `from` with `want` (blocked or not).
async fn all_enforce(nodes: &[&Binary], from: [u8; 4], want: bool) -> bool {
    for node in nodes {
        let dns = node.dns;
        if !eventually(Duration::from_secs(10), || async move {
            blocked_from(dns, from).await == want
        })
        .await
        {
            return false;
        }
    }
    true
}

fn added(ids: &str) -> String {
    fixture("smart-group-computer-added.json", &[("[1042]", ids)])
}

fn removed(ids: &str) -> String {
    fixture("smart-group-computer-removed.json", &[("[1042]", ids)])
}

async fn leaders(nodes: &[&Binary]) -> Vec<usize> {
    let mut leaders = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        if metric(node.http, "cordon_leader").await == 1.0 {
            leaders.push(i);
        }
    }
    leaders
}

#[tokio::test]
async fn a_change_taken_by_any_node_is_enforced_and_shown_by_every_node() {
    let extra = "[devices]\ncritical = [\"C02CEO00001\"]\n\
                 [[identity.static]]\ncidr = \"127.0.0.20/32\"\ndevice = \"C02CEO00001\"\n";
    let fleet = fleet(3, 5000, extra).await;
    let [one, two, three] = [&fleet.nodes[0], &fleet.nodes[1], &fleet.nodes[2]];
    let all = [one, two, three];
    let mac = [127, 0, 0, 7];

    // a check-in through node one binds the Mac's address on every node
    let (status, body) = webhook(one.http, &checkin("127.0.0.7")).await;
    assert_eq!(status, 200, "{body}");
    assert!(all_enforce(&all, mac, false).await);

    // the Smart Group webhook on node one isolates it on nodes two and three
    let (status, body) = webhook(one.http, &added("[1042]")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        blocked_from(one.dns, mac).await,
        "in force on the node that answered 2xx"
    );
    assert!(all_enforce(&all, mac, true).await, "every node enforces it");

    // every node shows the same device, timeline and isolations
    for node in all {
        let info = device_info(node.http, "C02ZK1ABMD6T").await.unwrap();
        assert_eq!(info["group"], "restricted", "{info}");
        let (status, timeline) = http(
            node.http,
            "GET",
            "/v1/devices/C02ZK1ABMD6T/timeline",
            Some(VIEWER),
        )
        .await;
        assert_eq!(status, 200);
        assert!(timeline.contains("membership_added"), "{timeline}");
        assert_eq!(isolated_ids(node.http).await, isolated_ids(one.http).await);
    }

    // the isolated Mac's queries, answered by two nodes, are one trail that every node reads
    ask_from(two.dns, mac, "c2.test.").await;
    ask_from(three.dns, mac, "evil.test.").await;
    for node in all {
        let path = "/v1/devices/C02ZK1ABMD6T/queries?decision=blocked";
        let mut trail = String::new();
        let both = eventually(Duration::from_secs(10), || {
            let node = node.http;
            async move {
                let (_, body) = http(node, "GET", path, Some(VIEWER)).await;
                body.contains("\"c2.test\"") && body.contains("\"evil.test\"")
            }
        })
        .await;
        if !both {
            trail = http(node.http, "GET", path, Some(VIEWER)).await.1;
        }
        assert!(both, "{trail}");
    }

    // a release through node three is in force everywhere
    let (status, body) = webhook(three.http, &removed("[1042]")).await;
    assert_eq!(status, 200, "{body}");
    assert!(all_enforce(&all, mac, false).await);

    // a critical device: asked on node one, approved by another admin on node two
    let ceo = [127, 0, 0, 20];
    let hold = r#"{"reason":"suspicious login","ticket":"IR-9"}"#;
    let path = "/v1/devices/C02CEO00001/isolation";
    let (status, answer) = http_json(one.http, "POST", path, Some(ADMIN), hold).await;
    assert_eq!(status, 409, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let approval = answer["field"].as_str().unwrap().replace("approval:", "");
    let approve = format!("/v1/approvals/{approval}");
    assert_eq!(http(two.http, "POST", &approve, Some(ADMIN2)).await.0, 200);
    assert!(all_enforce(&all, ceo, true).await);

    // one leader for the fleet-wide jobs
    let one_leader = eventually(Duration::from_secs(10), || async {
        leaders(&all).await.len() == 1
    })
    .await;
    assert!(one_leader, "leaders: {:?}", leaders(&all).await);
    for node in all {
        assert_eq!(metric(node.http, "cordon_store_up").await, 1.0);
    }

    // /v1/status tells each node's place: a shared store, the same log position everywhere
    let same_position = eventually(Duration::from_secs(10), || async {
        let mut positions = Vec::new();
        for node in all {
            let store = node_status(node).await["store"].clone();
            assert_eq!(store["shared"], true, "{store}");
            positions.push(store["position"].as_i64().unwrap());
        }
        positions.iter().all(|p| *p == positions[0] && *p > 0)
    })
    .await;
    assert!(same_position);
}

async fn node_status(node: &Binary) -> serde_json::Value {
    let (code, body) = http(node.http, "GET", "/v1/status", Some(VIEWER)).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn the_leader_dies_and_another_node_takes_over_within_seconds() {
    let mut fleet = fleet(2, 5000, "").await;
    let found = eventually(Duration::from_secs(10), || async {
        leaders(&[&fleet.nodes[0], &fleet.nodes[1]]).await.len() == 1
    })
    .await;
    assert!(found);
    let leader = leaders(&[&fleet.nodes[0], &fleet.nodes[1]]).await[0];
    let other = 1 - leader;
    fleet.nodes[leader].kill_9();
    let http = fleet.nodes[other].http;
    let took_over = eventually(Duration::from_secs(10), || async move {
        metric(http, "cordon_leader").await == 1.0
    })
    .await;
    assert!(took_over, "{}", fleet.nodes[other].log_text());
}

/// Sends add webhooks for fresh Jamf ids to `node`, one after another, until `stop`; records
/// the acknowledged ids and how each unacknowledged one ended.
async fn burst(node: SocketAddr, first: u64, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<u64>>>) {
    let mut id = first;
    while !stop.load(Ordering::Relaxed) {
        let status = webhook(node, &added(&format!("[{id}]"))).await.0;
        if status == 200 {
            acked.lock().unwrap().push(id);
        } else {
            // 503 (store down) or no answer (node killed): try the next one.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        id += 1;
    }
}

/// Every acknowledged id is a member of group 42 as `node` tells.
async fn all_acked_isolated(node: SocketAddr, acked: &[u64]) -> Result<(), String> {
    for id in acked {
        match device_info(node, &format!("jamf-computer:{id}")).await {
            Some(info) if info["group"] == "restricted" => {}
            other => return Err(format!("jamf-computer:{id}: {other:?}")),
        }
    }
    Ok(())
}

#[tokio::test]
async fn kill_9_of_a_node_during_a_burst_of_webhooks_loses_no_acknowledged_change() {
    let mut fleet = fleet(2, 5000, "").await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let target = fleet.nodes[0].http;
    let workers: Vec<_> = (0..4u64)
        .map(|w| tokio::spawn(burst(target, 10_000 * (w + 1), stop.clone(), acked.clone())))
        .collect();
    let enough = eventually(Duration::from_secs(30), || async {
        acked.lock().unwrap().len() >= 40
    })
    .await;
    assert!(enough);
    fleet.nodes[0].kill_9();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    // read back through the other node: every acknowledged change is there
    let other = fleet.nodes[1].http;
    let caught_up = eventually(Duration::from_secs(10), || {
        let acked = acked.clone();
        async move { all_acked_isolated(other, &acked).await.is_ok() }
    })
    .await;
    assert!(caught_up, "{:?}", all_acked_isolated(other, &acked).await);
    // and the killed node, started again, has them too
    fleet.nodes[0].spawn().await;
    all_acked_isolated(fleet.nodes[0].http, &acked)
        .await
        .unwrap();
}

#[tokio::test]
async fn postgres_restarted_under_load_loses_no_acknowledged_change_and_every_node_catches_up() {
    let mut fleet = fleet(2, 2000, "").await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let node = fleet.nodes[(w % 2) as usize].http;
            tokio::spawn(burst(node, 10_000 * (w + 1), stop.clone(), acked.clone()))
        })
        .collect();
    let load = |n| {
        let acked = acked.clone();
        async move {
            eventually(Duration::from_secs(30), || async {
                acked.lock().unwrap().len() >= n
            })
            .await
        }
    };
    assert!(load(30).await);
    fleet.pg.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // DNS goes on while the database is down
    assert_eq!(
        rcode(&ask(fleet.nodes[1].dns, "www.allowed.test.").await),
        ResponseCode::NoError
    );
    fleet.pg.run().await;
    let before = acked.lock().unwrap().len();
    assert!(
        load(before + 30).await,
        "writes resume once the database is back"
    );
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    for node in &fleet.nodes {
        let http = node.http;
        let caught_up = eventually(Duration::from_secs(15), || {
            let acked = acked.clone();
            async move { all_acked_isolated(http, &acked).await.is_ok() }
        })
        .await;
        assert!(caught_up, "{:?}", all_acked_isolated(http, &acked).await);
        assert_eq!(metric(http, "cordon_store_up").await, 1.0);
    }
}

#[tokio::test]
async fn a_node_cut_off_from_a_frozen_database_serves_dns_refuses_writes_and_catches_up() {
    let fleet = fleet(2, 1000, "").await;
    let [one, two] = [&fleet.nodes[0], &fleet.nodes[1]];
    let mac = [127, 0, 0, 7];
    assert_eq!(webhook(one.http, &checkin("127.0.0.7")).await.0, 200);
    assert_eq!(webhook(one.http, &added("[1042]")).await.0, 200);
    assert!(all_enforce(&[one, two], mac, true).await);

    // SIGSTOP: connections hang rather than fail
    fleet.pg.freeze(true);
    let started = Instant::now();
    let (status, body) = webhook(two.http, &removed("[1042]")).await;
    let took = started.elapsed();
    assert_json_error(status, &body, 503);
    assert!(
        took < Duration::from_secs(10),
        "a hung database answers 503 within the timeout, not never: {took:?}"
    );
    // DNS goes on from the last snapshot, the isolation included; /readyz stays ready
    assert!(blocked_from(two.dns, mac).await);
    assert!(blocked_from(one.dns, mac).await);
    assert_eq!(
        rcode(&ask(one.dns, "www.allowed.test.").await),
        ResponseCode::NoError
    );
    assert_eq!(http(two.http, "GET", "/readyz", None).await.0, 200);
    let troubled = eventually(Duration::from_secs(15), || async {
        metric(one.http, "cordon_store_up").await == 0.0
            && metric(one.http, "cordon_replication_lag_seconds").await > 2.0
    })
    .await;
    assert!(troubled, "the gauges show the trouble");
    assert!(
        blocked_from(two.dns, mac).await,
        "the refused release changed nothing"
    );

    // SIGCONT: writes work again and every node catches up by itself
    fleet.pg.freeze(false);
    let released = eventually(Duration::from_secs(20), || async {
        webhook(two.http, &removed("[1042]")).await.0 == 200
    })
    .await;
    assert!(released, "{}", two.log_text());
    assert!(all_enforce(&[one, two], mac, false).await);
    let healthy = eventually(Duration::from_secs(10), || async {
        metric(one.http, "cordon_store_up").await == 1.0
            && metric(one.http, "cordon_replication_lag_seconds").await < 2.0
    })
    .await;
    assert!(healthy);
}

#[tokio::test]
async fn a_wrong_database_url_stops_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    write_policies(&dir.path().join("policies"));
    let closed = free_port();
    let cases = [
        (
            format!("postgres://cordon:secret@127.0.0.1:{closed}/cordon"),
            format!("postgres://cordon@127.0.0.1:{closed}/cordon"),
        ),
        (
            "mysql://127.0.0.1/cordon".to_string(),
            "must start with postgres://".to_string(),
        ),
    ];
    for (url, expected) in cases {
        let config = dir.path().join("cordon.toml");
        std::fs::write(
            &config,
            format!(
                "[dns]\nlisten = [\"127.0.0.1:{}\"]\n[upstream]\nservers = [\"udp://127.0.0.1:9\"]\n\
                 [http]\nlisten = \"127.0.0.1:{}\"\n[store]\nurl = \"{url}\"\ntimeout_ms = 2000\n\
                 [policies]\ndir = \"policies\"\n",
                free_port(),
                free_port()
            ),
        )
        .unwrap();
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || run.wait_with_output()),
        )
        .await
        .expect("it stops by itself")
        .unwrap()
        .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&expected), "{stderr}");
        assert!(
            !stderr.contains("secret"),
            "the password stays out of messages: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_node_paused_while_others_commit_more_than_a_page_catches_up_by_itself() {
    let fleet = fleet(2, 5000, "").await;
    let [one, two] = [&fleet.nodes[0], &fleet.nodes[1]];
    two.signal(libc::SIGSTOP);
    // 4,000 new Macs in the isolation group: three logged changes each, more than one page
    let ids: Vec<String> = (20_000..24_000).map(|i| i.to_string()).collect();
    let (status, body) = webhook(one.http, &added(&format!("[{}]", ids.join(",")))).await;
    assert_eq!(status, 200, "{body}");
    let head = node_status(one).await["store"]["position"]
        .as_i64()
        .unwrap();
    assert!(head > 10_000, "{head} changes logged");
    two.signal(libc::SIGCONT);
    let caught_up = eventually(Duration::from_secs(30), || async {
        node_status(two).await["store"]["position"].as_i64() == Some(head)
    })
    .await;
    assert!(caught_up, "{}", two.log_text());
    for id in ["jamf-computer:20000", "jamf-computer:23999"] {
        let info = device_info(two.http, id).await.unwrap();
        assert_eq!(info["group"], "restricted", "{info}");
    }
}
