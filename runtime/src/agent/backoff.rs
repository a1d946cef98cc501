//! How soon a job, or a guest, gets another try.
//!
//! - [`JobBackoff`]: a job this agent released is not locked again by it
//!   before a per-job back-off (2 s, doubling to 5 min), so a job that keeps
//!   coming back costs a few registry calls a minute, not thousands a second.
//!   Another agent may take it at once: the registry offers it to everyone.
//! - [`GuestBreakers`]: a guest that answers `unavailable` three times in a
//!   row is not given jobs for a while (5 s, doubling to 5 min), like a
//!   circuit breaker: after the pause one job tries again, and a success
//!   closes the breaker. A guest whose camera refused the host's credentials
//!   (401/403) is *degraded*: no job goes to it for 30 s, doubling to 10 min,
//!   or until it is reloaded (a new manifest or module is a new guest).
//!
//! Both are keyed by what they pause and forget it on success; both are
//! bounded in size.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::guest::Guest;

/// Entries kept before the oldest are forgotten.
const KEPT: usize = 10_000;

/// A pause that doubles from `first` to `longest` with each repeat.
#[derive(Debug, Clone, Copy)]
struct Doubling {
    first: Duration,
    longest: Duration,
}

impl Doubling {
    fn after(self, repeats: u32) -> Duration {
        self.first
            .saturating_mul(1u32 << repeats.saturating_sub(1).min(16))
            .min(self.longest)
    }
}

const JOB_PAUSE: Doubling = Doubling {
    first: Duration::from_secs(2),
    longest: Duration::from_secs(300),
};
const UNAVAILABLE_PAUSE: Doubling = Doubling {
    first: Duration::from_secs(5),
    longest: Duration::from_secs(300),
};
const DEGRADED_PAUSE: Doubling = Doubling {
    first: Duration::from_secs(30),
    longest: Duration::from_secs(600),
};

/// `unavailable` answers in a row that open a guest's breaker.
pub const UNAVAILABLE_IN_A_ROW: u32 = 3;

/// When each released job may be locked again.
#[derive(Debug, Default)]
pub struct JobBackoff {
    jobs: Mutex<HashMap<String, Paused>>,
}

#[derive(Debug, Clone, Copy)]
struct Paused {
    repeats: u32,
    until: Instant,
}

impl JobBackoff {
    /// Records that `job_id` was released; returns how long it now waits.
    pub fn released(&self, job_id: &str) -> Duration {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if jobs.len() >= KEPT && !jobs.contains_key(job_id) {
            forget_oldest(&mut jobs, |paused| paused.until);
        }
        let entry = jobs.entry(job_id.to_string()).or_insert(Paused {
            repeats: 0,
            until: Instant::now(),
        });
        entry.repeats += 1;
        let pause = JOB_PAUSE.after(entry.repeats);
        entry.until = Instant::now() + pause;
        pause
    }

    /// Whether `job_id` may be locked now.
    pub fn ready(&self, job_id: &str) -> bool {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(job_id)
            .is_none_or(|paused| paused.until <= Instant::now())
    }

    /// Forgets `job_id`: it ended for good.
    pub fn ended(&self, job_id: &str) {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(job_id);
    }
}

fn forget_oldest<V>(map: &mut HashMap<String, V>, when: impl Fn(&V) -> Instant) {
    if let Some(oldest) = map
        .iter()
        .min_by_key(|(_, value)| when(value))
        .map(|(key, _)| key.clone())
    {
        map.remove(&oldest);
    }
}

/// What a job's run said about its guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestVerdict {
    /// It did the job, or failed it by its own verdict: it works.
    Worked,
    /// It answered `unavailable`.
    Unavailable,
    /// A camera refused the credentials the host added: the reason.
    AuthRefused(String),
}

/// The breaker of each loaded guest, by guest name.
#[derive(Debug, Default)]
pub struct GuestBreakers {
    guests: Mutex<HashMap<String, Breaker>>,
}

#[derive(Debug, Clone)]
struct Breaker {
    /// The guest instance it is about (a reload starts afresh).
    instance: String,
    unavailable_in_a_row: u32,
    opened: u32,
    until: Option<Instant>,
    degraded: Option<String>,
    touched: Instant,
}

impl Breaker {
    fn new(instance: String) -> Breaker {
        Breaker {
            instance,
            unavailable_in_a_row: 0,
            opened: 0,
            until: None,
            degraded: None,
            touched: Instant::now(),
        }
    }

    fn open_for(&mut self, pause: Doubling) -> Duration {
        self.opened += 1;
        let wait = pause.after(self.opened);
        self.until = Some(Instant::now() + wait);
        wait
    }
}

/// One loaded guest, as the breakers tell guests apart.
fn instance_of(guest: &Guest) -> String {
    let loaded = guest
        .loaded_at()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}@{}", guest.sha256(), loaded.as_nanos())
}

impl GuestBreakers {
    /// Records what a job's run of `guest` said.
    pub fn record(&self, guest: &Guest, verdict: &GuestVerdict) {
        let name = &guest.manifest().name;
        let instance = instance_of(guest);
        let mut guests = self.guests.lock().unwrap_or_else(PoisonError::into_inner);
        if guests.len() >= KEPT && !guests.contains_key(name) {
            forget_oldest(&mut guests, |breaker| breaker.touched);
        }
        let breaker = guests
            .entry(name.clone())
            .or_insert_with(|| Breaker::new(instance.clone()));
        if breaker.instance != instance {
            *breaker = Breaker::new(instance);
        }
        breaker.touched = Instant::now();
        match verdict {
            GuestVerdict::Worked => {
                if breaker.until.is_some() {
                    tracing::info!("guest {name} works again: it gets jobs as usual");
                }
                *breaker = Breaker::new(breaker.instance.clone());
            }
            GuestVerdict::Unavailable => {
                breaker.unavailable_in_a_row += 1;
                if breaker.unavailable_in_a_row >= UNAVAILABLE_IN_A_ROW {
                    let wait = breaker.open_for(UNAVAILABLE_PAUSE);
                    tracing::warn!(
                        "guest {name} answered unavailable {} times in a row: no jobs go to it for {} s",
                        breaker.unavailable_in_a_row,
                        wait.as_secs()
                    );
                }
            }
            GuestVerdict::AuthRefused(why) => {
                let wait = breaker.open_for(DEGRADED_PAUSE);
                tracing::warn!(
                    "guest {name} is degraded: {why}; its jobs are released, and none goes to it for {} s or until it is reloaded",
                    wait.as_secs()
                );
                breaker.degraded = Some(why.clone());
            }
        }
    }

    /// Whether `guest` may be given a job now.
    pub fn admits(&self, guest: &Guest) -> bool {
        let guests = self.guests.lock().unwrap_or_else(PoisonError::into_inner);
        match guests.get(&guest.manifest().name) {
            Some(breaker) if breaker.instance == instance_of(guest) => {
                breaker.until.is_none_or(|until| until <= Instant::now())
            }
            _ => true,
        }
    }

    /// Why `guest` is degraded, if it is.
    pub fn degraded(&self, guest: &Guest) -> Option<String> {
        let guests = self.guests.lock().unwrap_or_else(PoisonError::into_inner);
        guests
            .get(&guest.manifest().name)
            .filter(|breaker| breaker.instance == instance_of(guest))
            .and_then(|breaker| breaker.degraded.clone())
    }

    /// When `guest` gets jobs again, if it is paused now.
    pub fn paused_for(&self, guest: &Guest) -> Option<Duration> {
        let guests = self.guests.lock().unwrap_or_else(PoisonError::into_inner);
        let breaker = guests
            .get(&guest.manifest().name)
            .filter(|breaker| breaker.instance == instance_of(guest))?;
        breaker
            .until
            .and_then(|until| until.checked_duration_since(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_waits_longer_each_time_it_comes_back() {
        let backoff = JobBackoff::default();
        assert!(backoff.ready("j"));
        assert_eq!(backoff.released("j"), Duration::from_secs(2));
        assert!(!backoff.ready("j"));
        assert_eq!(backoff.released("j"), Duration::from_secs(4));
        assert_eq!(backoff.released("j"), Duration::from_secs(8));
        for _ in 0..20 {
            backoff.released("j");
        }
        assert_eq!(backoff.released("j"), Duration::from_secs(300));
        assert!(backoff.ready("other"));
        backoff.ended("j");
        assert!(backoff.ready("j"));
    }

    #[test]
    fn the_table_stays_bounded() {
        let backoff = JobBackoff::default();
        for job in 0..KEPT + 50 {
            backoff.released(&job.to_string());
        }
        assert_eq!(backoff.jobs.lock().unwrap().len(), KEPT);
    }
}
