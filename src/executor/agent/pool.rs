//! The agent's worker threads: each call needs two (its waiter and its
//! pipe reader), and starting and ending two threads per call (clone, a
//! stack mapped and unmapped, a TLB flush on the other CPUs) cost more
//! than the rest of a quick call's bookkeeping. Idle workers wait for the
//! next job and end after `IDLE_FOR`; at most `MAX_IDLE` wait.

use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use super::lock;

type Job = Box<dyn FnOnce() + Send>;

const IDLE_FOR: Duration = Duration::from_secs(30);
const MAX_IDLE: usize = 32;
/// Small stacks: many calls may run at once in a memory-limited sandbox.
const STACK: usize = 256 * 1024;

/// An idle worker: its id and the sender of its job channel.
type Idle = (u64, mpsc::Sender<Job>);

static IDLE: Mutex<Vec<Idle>> = Mutex::new(Vec::new());

/// Runs `f` on an idle worker, or on a new thread if none is idle.
pub(super) fn run(f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let mut job: Job = Box::new(f);
    loop {
        let Some((_, tx)) = lock(&IDLE).pop() else {
            break;
        };
        match tx.send(job) {
            Ok(()) => return Ok(()),
            // That worker has ended (it cannot, while listed; kept safe).
            Err(mpsc::SendError(j)) => job = j,
        }
    }
    spawn("worker", move || worker(job)).map(drop)
}

/// A named thread with a small stack, for the agent's long-lived threads
/// and new workers.
pub(super) fn spawn(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(STACK)
        .spawn(f)
}

fn worker(first: Job) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Job>();
    first();
    loop {
        {
            let mut idle = lock(&IDLE);
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push((id, tx.clone()));
        }
        match rx.recv_timeout(IDLE_FOR) {
            Ok(job) => job(),
            Err(RecvTimeoutError::Timeout) => {
                let mut idle = lock(&IDLE);
                if let Some(i) = idle.iter().position(|(w, _)| *w == id) {
                    idle.remove(i);
                    return;
                }
                drop(idle);
                // Taken off the list by `run` just now: its job is sent
                // right after, so this wait is short.
                match rx.recv() {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            }
            // This worker holds a sender itself.
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
