//! kill -9 of the real binary during a burst of webhooks loses no acknowledged change.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("the cordon binary starts")
}

async fn ready(http_addr: SocketAddr) -> bool {
    eventually(Duration::from_secs(20), || async move {
        tokio::net::TcpStream::connect(http_addr).await.is_ok()
            && http(http_addr, "GET", "/readyz", None).await.0 == 200
    })
    .await
}

#[tokio::test]
async fn kill_9_during_a_burst_loses_no_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    write_policies(&dir.path().join("policies"));
    let http_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dns_port = free_port();
    let config = dir.path().join("cordon.toml");
    std::fs::write(
        &config,
        format!(
            "[dns]\nlisten = [\"127.0.0.1:{dns_port}\"]\n[upstream]\nservers = [\"udp://127.0.0.1:9\"]\n\
             [http]\nlisten = \"{http_addr}\"\n[store]\npath = \"cordon.db\"\n[policies]\ndir = \"policies\"\n\
             [auth]\nwebhook_tokens = [\"{WEBHOOK}\"]\n[[auth.admin]]\ntoken = \"{VIEWER}\"\nrole = \"viewer\"\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("cordon.log");
    let mut child = spawn(&config, &log);
    assert!(
        ready(http_addr).await,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..300i64 {
        let id = 5000 + i;
        let acked = acked.clone();
        let body = fixture(
            "smart-group-computer-added.json",
            &[("[1042]", &format!("[{id}]"))],
        );
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i as u64 / 2)).await;
            let (status, _) = webhook(http_addr, &body).await;
            if status == 200 {
                acked.lock().unwrap().push(id);
            }
        }));
    }
    // kill -9 once some, not all, have been acknowledged
    let some = eventually(Duration::from_secs(20), || {
        let acked = acked.clone();
        async move { acked.lock().unwrap().len() >= 20 }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(some && !acked.is_empty());
    assert!(
        acked.len() < 300,
        "the kill came after the burst: nothing was tested"
    );

    let mut child = spawn(&config, &log);
    assert!(
        ready(http_addr).await,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    for id in &acked {
        let (status, body) = http(
            http_addr,
            "GET",
            &format!("/v1/devices/jamf-computer:{id}"),
            Some(VIEWER),
        )
        .await;
        assert_eq!(status, 200, "acknowledged device {id} lost: {body}");
        assert!(
            body.contains("\"group\":\"restricted\""),
            "device {id}: {body}"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
