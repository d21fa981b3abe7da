//! kill -9 of the real binary in the middle of a stream of changes loses no acknowledged one:
//! webhook adds and removals, and the API's isolations and releases.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

/// Each device goes through these in order, each one acknowledged before the next is sent.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// A SmartGroupComputerMembershipChange webhook adds it to group 42.
    Add,
    /// POST /v1/devices/{id}/isolation.
    Isolate,
    /// A SmartGroupComputerMembershipChange webhook removes it from group 42.
    Remove,
    /// DELETE /v1/devices/{id}/isolation.
    Release,
}

const STEPS: [Step; 4] = [Step::Add, Step::Isolate, Step::Remove, Step::Release];

/// Concurrent senders; each works through its own devices one step at a time.
const WORKERS: u64 = 6;

/// How many acknowledgements of each step to wait for before the kill.
const ACKED_BEFORE_KILL: usize = 8;

/// What the API shows of a device: `None` when it is unknown, else (a member of group 42, held).
type Seen = Option<(bool, bool)>;

/// The state of a device after the first `steps` of [`STEPS`].
fn after(steps: usize) -> Seen {
    match steps {
        0 => None,
        1 => Some((true, false)),
        2 => Some((true, true)),
        3 => Some((false, true)),
        4 => Some((false, false)),
        _ => unreachable!(),
    }
}

/// One device a worker sent steps for.
#[derive(Debug)]
struct Sent {
    jamf_id: u64,
    /// Steps answered 200.
    acked: usize,
    /// The status of the step that got no 200 (the worker's last request), if any.
    failed: Option<u16>,
}

async fn send(binary: std::net::SocketAddr, jamf_id: u64, step: Step) -> u16 {
    let path = format!("/v1/devices/jamf-computer:{jamf_id}/isolation");
    let ids = format!("[{jamf_id}]");
    match step {
        Step::Add => {
            let body = fixture("smart-group-computer-added.json", &[("[1042]", &ids)]);
            webhook(binary, &body).await.0
        }
        Step::Remove => {
            let body = fixture("smart-group-computer-removed.json", &[("[1042]", &ids)]);
            webhook(binary, &body).await.0
        }
        Step::Isolate => {
            let body = format!(r#"{{"reason":"crash test","ticket":"T-{jamf_id}"}}"#);
            http_json(binary, "POST", &path, Some(RESPONDER), &body)
                .await
                .0
        }
        Step::Release => {
            let bearer = format!("Bearer {RESPONDER}");
            send_http(binary, "DELETE", &path, Some(&bearer), None, "")
                .await
                .0
        }
    }
}

/// Sends steps for fresh devices until a request gets no 200 (the kill).
async fn worker(binary: std::net::SocketAddr, w: u64, acked: Arc<[AtomicUsize; 4]>) -> Vec<Sent> {
    let mut sent = Vec::new();
    for n in 0.. {
        let jamf_id = 100_000 * (w + 1) + n;
        sent.push(Sent {
            jamf_id,
            acked: 0,
            failed: None,
        });
        let device = sent.last_mut().unwrap();
        for (i, step) in STEPS.iter().enumerate() {
            let status = send(binary, jamf_id, *step).await;
            if status != 200 {
                device.failed = Some(status);
                return sent;
            }
            device.acked += 1;
            acked[i].fetch_add(1, Ordering::SeqCst);
        }
    }
    unreachable!()
}

async fn seen(binary: std::net::SocketAddr, jamf_id: u64) -> Seen {
    let info = device_info(binary, &format!("jamf-computer:{jamf_id}")).await?;
    let member = info["uem_groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g.as_str().unwrap().starts_with("jamf:computer-group:42"));
    let held = !info["isolation"].is_null();
    let group = if member || held {
        "restricted"
    } else {
        "standard"
    };
    assert_eq!(info["group"], group, "jamf-computer:{jamf_id}: {info}");
    Some((member, held))
}

#[tokio::test]
async fn kill_9_during_a_stream_of_changes_loses_no_acknowledged_one() {
    let nowhere = "127.0.0.1:9".parse().unwrap();
    let mut binary = Binary::start(nowhere, "").await;
    let acked: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(worker(binary.http, w, acked.clone())))
        .collect();
    // The workers never stop on their own, so the kill lands while changes are in flight,
    // however fast or slow this machine is.
    let enough = eventually(Duration::from_secs(120), || {
        let acked = acked.clone();
        async move {
            acked
                .iter()
                .all(|n| n.load(Ordering::SeqCst) >= ACKED_BEFORE_KILL)
        }
    })
    .await;
    binary.kill_9();
    let mut sent = Vec::new();
    for w in workers {
        sent.extend(w.await.unwrap());
    }
    assert!(
        enough,
        "too few acknowledgements: {acked:?}\n{}",
        binary.log_text()
    );
    // Every request before the kill was answered 200: each worker's one failure got no answer.
    let failures: Vec<&Sent> = sent.iter().filter(|s| s.failed.is_some()).collect();
    assert!(failures.iter().all(|s| s.failed == Some(0)), "{failures:?}");

    binary.spawn().await;
    for s in &sent {
        let now = seen(binary.http, s.jamf_id).await;
        // An acknowledged step is in force; the one step in flight at the kill may or may not be.
        let mut allowed = vec![after(s.acked)];
        if s.failed.is_some() {
            allowed.push(after(s.acked + 1));
        }
        assert!(
            allowed.contains(&now),
            "jamf-computer:{} after {} acknowledged step(s) of {STEPS:?}: {now:?}, expected one of {allowed:?}",
            s.jamf_id,
            s.acked
        );
    }
}
