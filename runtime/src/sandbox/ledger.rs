//! The ledger of one job: what the host spends for it, charged by every
//! capability, against the job's limits.
//!
//! Memory: the guest's linear memories and tables (all of them, summed across
//! core instances, through the store's limiter) together with what the host
//! holds for the job (output chunks queued and sink buffers, header maps found
//! in the resource table, the log's tail and the guest's stdio) count against
//! one `limits.memory_mib`. CPU: the time of every poll of the job's futures
//! (guest code, and the host calls it makes: random bytes, copying, hashing,
//! TLS) counts against `limits.cpu_secs`; time spent waiting for the network
//! is not a poll and costs nothing. The job's own call, where guest code runs
//! and may be preempted for long on a busy machine, is charged its thread's
//! CPU time (a system call at each end of a poll); the helpers beside it (the
//! connection drivers, the output writers), whose polls are short, are
//! charged their polls' wall time from the monotonic clock (no system call),
//! which is never less than their CPU time. The first limit hit is recorded,
//! so the job's message names it whatever the guest made of the refusal.
//!
//! Every ledger also feeds two process-wide figures for `/metrics`: the bytes
//! held by each guest's running jobs, and the limit hits by resource.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use super::limits::LimitExceeded;

/// One job's accounts. Cheap to clone; clones share the accounts.
#[derive(Clone, Debug)]
pub struct Ledger {
    accounts: Arc<Accounts>,
}

#[derive(Debug)]
struct Accounts {
    memory_limit: u64,
    /// Linear memories and tables of every core instance.
    guest_memory: AtomicU64,
    /// Host buffers charged by capabilities (released when dropped).
    host_memory: AtomicU64,
    /// Header maps held in the resource table at the last sweep.
    swept_memory: AtomicU64,
    cpu_limit: Duration,
    cpu_nanos: AtomicU64,
    /// The thread CPU clock when the job's own poll began (0: not polling).
    poll_started: AtomicU64,
    hit: Mutex<Option<LimitExceeded>>,
    /// What this guest's running jobs hold, in all (for `/metrics`).
    gauge: Arc<AtomicU64>,
}

/// Memory a capability holds for the job; released when dropped.
#[derive(Debug)]
pub struct Held {
    ledger: Ledger,
    bytes: u64,
}

impl Held {
    /// The bytes charged.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.ledger.release_host(self.bytes);
    }
}

impl Ledger {
    /// A ledger for one job of `guest` allowing `memory_limit` bytes and
    /// `cpu_limit` of CPU time.
    pub fn new(guest: &str, memory_limit: u64, cpu_limit: Duration) -> Ledger {
        Ledger {
            accounts: Arc::new(Accounts {
                memory_limit,
                guest_memory: AtomicU64::new(0),
                host_memory: AtomicU64::new(0),
                swept_memory: AtomicU64::new(0),
                cpu_limit,
                cpu_nanos: AtomicU64::new(0),
                poll_started: AtomicU64::new(0),
                hit: Mutex::new(None),
                gauge: guest_gauge(guest),
            }),
        }
    }

    /// Bytes of memory the job holds now, guest and host together.
    pub fn memory_held(&self) -> u64 {
        let a = &self.accounts;
        a.guest_memory.load(Ordering::Relaxed)
            + a.host_memory.load(Ordering::Relaxed)
            + a.swept_memory.load(Ordering::Relaxed)
    }

    fn memory_exceeded(&self, asked: u64) -> LimitExceeded {
        let a = &self.accounts;
        LimitExceeded::Memory {
            limit_mib: a.memory_limit >> 20,
            asked_mib: asked.div_ceil(1 << 20),
            host_mib: (a.host_memory.load(Ordering::Relaxed)
                + a.swept_memory.load(Ordering::Relaxed))
            .div_ceil(1 << 20),
        }
    }

    /// The guest's memories or tables grow by `bytes`; `Err` past the limit.
    pub fn grow_guest(&self, bytes: u64) -> Result<(), LimitExceeded> {
        self.take(&self.accounts.guest_memory, bytes)
    }

    /// Adds `bytes` to `account` if the job stays within its memory limit.
    fn take(&self, account: &AtomicU64, bytes: u64) -> Result<(), LimitExceeded> {
        let asked = self.memory_held() + bytes;
        if asked > self.accounts.memory_limit {
            return Err(self.refuse(self.memory_exceeded(asked)));
        }
        account.fetch_add(bytes, Ordering::Relaxed);
        self.accounts.gauge.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Charges `bytes` of host memory held for the job, until the [`Held`] is
    /// dropped; `Err` (recorded) past the limit.
    pub fn hold(&self, bytes: u64) -> Result<Held, LimitExceeded> {
        self.take(&self.accounts.host_memory, bytes)?;
        Ok(Held {
            ledger: self.clone(),
            bytes,
        })
    }

    fn release_host(&self, bytes: u64) {
        self.accounts
            .host_memory
            .fetch_sub(bytes, Ordering::Relaxed);
        self.accounts.gauge.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Records what a sweep of the resource table found held there (header
    /// maps); `Err` (recorded) if the job is then over its memory limit.
    pub fn set_swept(&self, bytes: u64) -> Result<(), LimitExceeded> {
        let before = self.accounts.swept_memory.swap(bytes, Ordering::Relaxed);
        let gauge = &self.accounts.gauge;
        gauge.fetch_add(bytes, Ordering::Relaxed);
        gauge.fetch_sub(before, Ordering::Relaxed);
        let held = self.memory_held();
        if held > self.accounts.memory_limit {
            return Err(self.refuse(self.memory_exceeded(held)));
        }
        Ok(())
    }

    /// CPU time charged so far, the job's poll under way included.
    pub fn cpu_spent(&self) -> Duration {
        let mut nanos = self.accounts.cpu_nanos.load(Ordering::Relaxed);
        let started = self.accounts.poll_started.load(Ordering::Relaxed);
        if started != 0 {
            nanos += thread_cpu_nanos().saturating_sub(started);
        }
        Duration::from_nanos(nanos)
    }

    /// `Err` (recorded) once the CPU limit is passed.
    pub fn check_cpu(&self) -> Result<(), LimitExceeded> {
        if self.cpu_spent() > self.accounts.cpu_limit {
            return Err(self.refuse(LimitExceeded::Cpu(self.accounts.cpu_limit)));
        }
        Ok(())
    }

    /// Records `hit` as the job's limit (the first one stays) and counts it
    /// for `/metrics`; returns it.
    pub fn refuse(&self, hit: LimitExceeded) -> LimitExceeded {
        let mut first = self
            .accounts
            .hit
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            count_hit(hit.resource());
            *first = Some(hit.clone());
        }
        hit
    }

    /// The first limit the job hit, if any.
    pub fn hit(&self) -> Option<LimitExceeded> {
        self.accounts
            .hit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `future`, its polls' time charged to this job. `main` marks the job's
    /// own call (the one the epoch callback runs inside): its polls are
    /// charged thread CPU time, and the poll under way counts in
    /// [`Ledger::cpu_spent`]; the others are charged their polls' wall time.
    pub fn meter<F: Future>(&self, future: F, main: bool) -> Metered<F> {
        Metered {
            future: Box::pin(future),
            ledger: self.clone(),
            main,
        }
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        let held = self.guest_memory.load(Ordering::Relaxed)
            + self.host_memory.load(Ordering::Relaxed)
            + self.swept_memory.load(Ordering::Relaxed);
        self.gauge.fetch_sub(held, Ordering::Relaxed);
    }
}

/// A future whose polls are charged to a job's CPU account.
pub struct Metered<F> {
    future: Pin<Box<F>>,
    ledger: Ledger,
    main: bool,
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let accounts = &this.ledger.accounts;
        let (poll, spent) = if this.main {
            let started = thread_cpu_nanos();
            accounts.poll_started.store(started, Ordering::Relaxed);
            let poll = this.future.as_mut().poll(cx);
            accounts.poll_started.store(0, Ordering::Relaxed);
            (poll, thread_cpu_nanos().saturating_sub(started))
        } else {
            let started = std::time::Instant::now();
            let poll = this.future.as_mut().poll(cx);
            let spent = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            (poll, spent)
        };
        accounts.cpu_nanos.fetch_add(spent, Ordering::Relaxed);
        poll
    }
}

/// CPU time of the calling thread, in nanoseconds (never 0).
fn thread_cpu_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write to; the clock id is constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
        .max(1)
}

/// Process-wide figures of every ledger, for `/metrics`.
#[derive(Default)]
struct Figures {
    held_by_guest: BTreeMap<String, Arc<AtomicU64>>,
    hits_by_resource: BTreeMap<&'static str, u64>,
}

fn figures() -> &'static Mutex<Figures> {
    static FIGURES: OnceLock<Mutex<Figures>> = OnceLock::new();
    FIGURES.get_or_init(Mutex::default)
}

fn guest_gauge(guest: &str) -> Arc<AtomicU64> {
    let mut figures = figures().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(gauge) = figures.held_by_guest.get(guest) {
        return gauge.clone();
    }
    figures
        .held_by_guest
        .entry(guest.to_string())
        .or_default()
        .clone()
}

fn count_hit(resource: &'static str) {
    let mut figures = figures().lock().unwrap_or_else(PoisonError::into_inner);
    *figures.hits_by_resource.entry(resource).or_default() += 1;
}

/// Limit hits so far in this process, by resource.
pub fn limit_hits() -> BTreeMap<&'static str, u64> {
    let figures = figures().lock().unwrap_or_else(PoisonError::into_inner);
    figures.hits_by_resource.clone()
}

/// Appends the ledgers' figures to a Prometheus text exposition:
/// `corral_guest_held_bytes{guest}` and `corral_limit_hits_total{resource}`.
pub fn render_metrics(text: &mut String) {
    use std::fmt::Write as _;
    let figures = figures().lock().unwrap_or_else(PoisonError::into_inner);
    text.push_str(
        "# HELP corral_guest_held_bytes Memory the running jobs of a guest hold (guest memories and tables, and host buffers charged to them).\n# TYPE corral_guest_held_bytes gauge\n",
    );
    for (guest, held) in &figures.held_by_guest {
        let guest = guest.replace(['\\', '"', '\n'], "_");
        let _ = writeln!(
            text,
            "corral_guest_held_bytes{{guest=\"{guest}\"}} {}",
            held.load(Ordering::Relaxed)
        );
    }
    text.push_str(
        "# HELP corral_limit_hits_total Jobs stopped by a limit or refused by a cap, by resource.\n# TYPE corral_limit_hits_total counter\n",
    );
    for (resource, hits) in &figures.hits_by_resource {
        let _ = writeln!(
            text,
            "corral_limit_hits_total{{resource=\"{resource}\"}} {hits}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_and_host_memory_share_one_limit() {
        let ledger = Ledger::new("ledger-test", 10 << 20, Duration::from_secs(1));
        ledger.grow_guest(6 << 20).unwrap();
        let held = ledger.hold(3 << 20).unwrap();
        assert!(ledger.hold(2 << 20).is_err());
        drop(held);
        let _again = ledger.hold(2 << 20).unwrap();
        assert!(ledger.grow_guest(3 << 20).is_err());
        assert!(matches!(ledger.hit(), Some(LimitExceeded::Memory { .. })));
        assert_eq!(ledger.memory_held(), 8 << 20);
        let mut text = String::new();
        render_metrics(&mut text);
        assert!(
            text.contains("corral_guest_held_bytes{guest=\"ledger-test\"}"),
            "{text}"
        );
        assert!(
            text.contains("corral_limit_hits_total{resource=\"memory\"}"),
            "{text}"
        );
    }

    /// Spins until this thread has had 20 ms of CPU (however busy the
    /// machine is, so that the figure charged does not depend on it).
    async fn spin_20ms_of_cpu() {
        let start = thread_cpu_nanos();
        while thread_cpu_nanos() - start < 20_000_000 {
            std::hint::black_box(0u64);
        }
    }

    #[test]
    fn host_work_inside_a_poll_is_charged() {
        for main in [true, false] {
            let ledger = Ledger::new("ledger-test", 1 << 20, Duration::from_millis(5));
            futures::executor::block_on(ledger.meter(spin_20ms_of_cpu(), main));
            // The job's own call is charged its thread's CPU time; a helper
            // its polls' wall time, which is never less.
            assert!(
                ledger.cpu_spent() >= Duration::from_millis(20),
                "main {main}: {:?}",
                ledger.cpu_spent()
            );
            assert!(ledger.check_cpu().is_err());
        }
    }
}
