//! Admission control: a bounded number of images computed at once, a bounded queue behind them,
//! and "busy" (503) for everything past that, so one server survives its users.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

/// Why a job did not run.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Every worker is busy and the queue is full.
    Busy,
    /// The job panicked or its thread was lost.
    Failed,
}

/// `workers` jobs at once on blocking threads, `queue` more waiting.
#[derive(Debug)]
pub struct Gate {
    permits: Arc<Semaphore>,
    admitted: AtomicUsize,
    limit: usize,
}

/// Gives a place back when the request is done (or dropped: a timed-out or closed request).
struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    /// A gate for `workers` (≥ 1) running jobs and `queue` waiting ones.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        Gate {
            permits: Arc::new(Semaphore::new(workers)),
            admitted: AtomicUsize::new(0),
            limit: workers + queue,
        }
    }

    /// Runs `job` on a blocking thread once a worker is free; [`Refused::Busy`] at once when
    /// the queue is full. The worker stays taken until `job` returns, even if the caller stops
    /// waiting (a timeout): the machine is never asked for more than `workers` jobs.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Refused> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Busy);
        }
        let _place = Admission(&self.admitted);
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Refused::Failed)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|_| Refused::Failed)
    }

    /// Requests admitted now (running and waiting).
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_past_workers_plus_queue_and_recovers() {
        let gate = Arc::new(Gate::new(1, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        // One running (blocked on the channel), one waiting.
        let mut held = Vec::new();
        for _ in 0..2 {
            let (g, rx) = (Arc::clone(&gate), Arc::clone(&rx));
            held.push(tokio::spawn(async move {
                g.run(move || rx.lock().map(|r| r.recv().is_ok()).unwrap_or(false))
                    .await
            }));
        }
        while gate.admitted() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.run(|| ()).await, Err(Refused::Busy));
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        for h in held {
            assert_eq!(h.await.unwrap(), Ok(true));
        }
        assert_eq!(gate.admitted(), 0);
        assert_eq!(gate.run(|| 7).await, Ok(7));
    }
}
