//! Starts a cache miss on the thread that received it. Spawning the miss onto the runtime from
//! the UDP listener's thread wakes a worker only to send the upstream query and sleep again;
//! on a busy core that crossing, not the work, is most of a miss's cost. Here the listener polls
//! the miss once itself (which sends the query), and the miss moves to the runtime only when
//! something wakes it: the upstream's answer or a timer, both on a worker already awake, where
//! the spawn stays on that worker's own queue.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Wake, Waker};

type Miss = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Polls `future` once on this thread, in `runtime`'s context; if it is not done, it goes on
/// the runtime at its first wake-up.
pub fn start_here(
    runtime: &tokio::runtime::Handle,
    future: impl Future<Output = ()> + Send + 'static,
) {
    let _context = runtime.enter();
    let mut future: Miss = Box::pin(future);
    let parked = Arc::new(Parked {
        runtime: runtime.clone(),
        state: Mutex::new(State::Polling),
    });
    let waker = Waker::from(parked.clone());
    if future
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_ready()
    {
        return;
    }
    let mut state = parked.lock();
    match *state {
        // Woken while this thread polled: it goes on now.
        State::Woken => {
            *state = State::Moved;
            runtime.spawn(future);
        }
        _ => *state = State::Parked(future),
    }
}

struct Parked {
    runtime: tokio::runtime::Handle,
    state: Mutex<State>,
}

enum State {
    /// Its first poll is under way.
    Polling,
    /// Woken during its first poll.
    Woken,
    /// Waiting for its first wake-up.
    Parked(Miss),
    /// On the runtime, which wakes it with its own waker from now on.
    Moved,
}

impl Parked {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Wake for Parked {
    fn wake(self: Arc<Self>) {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Moved) {
            State::Polling => *state = State::Woken,
            State::Parked(future) => {
                drop(state);
                self.runtime.spawn(future);
            }
            State::Woken => *state = State::Woken,
            State::Moved => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_future_finishes_on_this_thread() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let here = std::thread::current().id();
        let (tx, rx) = std::sync::mpsc::channel();
        start_here(rt.handle(), async move {
            tx.send(std::thread::current().id()).unwrap();
        });
        assert_eq!(rx.try_recv().unwrap(), here);
    }

    #[test]
    fn a_waiting_future_finishes_on_the_runtime_when_woken() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (wake_tx, wake_rx) = tokio::sync::oneshot::channel::<u32>();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        start_here(rt.handle(), async move {
            let got = wake_rx.await.unwrap();
            done_tx.send(got).unwrap();
        });
        assert!(done_rx.try_recv().is_err(), "it waits");
        rt.spawn(async move { wake_tx.send(7).unwrap() });
        let got = done_rx.recv_timeout(std::time::Duration::from_secs(5));
        assert_eq!(got, Ok(7));
    }

    #[test]
    fn a_timer_set_on_the_first_poll_wakes_it() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        start_here(rt.handle(), async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            done_tx.send(()).unwrap();
        });
        let got = done_rx.recv_timeout(std::time::Duration::from_secs(5));
        assert_eq!(got, Ok(()));
    }

    #[test]
    fn a_wake_during_the_first_poll_is_not_lost() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        start_here(rt.handle(), async move {
            // Wakes itself while still in its first poll, then waits.
            tokio::task::yield_now().await;
            done_tx.send(()).unwrap();
        });
        let got = done_rx.recv_timeout(std::time::Duration::from_secs(5));
        assert_eq!(got, Ok(()));
    }
}
