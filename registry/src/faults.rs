//! Fault injection, for tests of clients and for chaos runs: any agent-service
//! call and the token endpoint (the admin API never) may be refused with a 5xx
//! or a 429 (with or without `Retry-After`), have its connection dropped before
//! it is carried out, or have its answer lost after it took effect.
//!
//! Two ways to ask for faults:
//! - rates ([`FaultRates`], e.g. `fail=0.2,drop=0.05,lose=0.05`): the faulty
//!   requests are spread evenly over the sequence of requests, and their kinds
//!   interleave evenly, so a run sees every kind every time (at random, a 30%
//!   rate gave no fault at all to a 6-block upload one run in nine);
//! - scripted faults ([`Faults::inject`]): the next call of one endpoint gets
//!   this fault, for tests that need one exact fault at one exact place.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::routes::Endpoint;

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer `status` (a 5xx or 429) before doing anything, with
    /// `Retry-After: retry_after` seconds if given.
    Refuse {
        /// The status.
        status: u16,
        /// The `Retry-After` header's seconds, if any.
        retry_after: Option<u64>,
    },
    /// Close the connection before the call is carried out.
    Drop,
    /// Carry the call out, then close the connection without an answer.
    Lose,
}

/// The refusals of [`FaultRates::fail`], in turn: 5xx with and without
/// `Retry-After`, and 429.
const REFUSALS: [Fault; 4] = [
    Fault::Refuse {
        status: 503,
        retry_after: Some(1),
    },
    Fault::Refuse {
        status: 500,
        retry_after: None,
    },
    Fault::Refuse {
        status: 429,
        retry_after: Some(1),
    },
    Fault::Refuse {
        status: 502,
        retry_after: None,
    },
];

/// Shares of requests that get each kind of fault, each from 0 to 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct FaultRates {
    /// Refused before any work (503 or 502 or 500, 429), see [`REFUSALS`].
    pub fail: f64,
    /// Connection dropped before the call is carried out.
    pub drop: f64,
    /// Answer lost after the call took effect.
    pub lose: f64,
}

/// A `--faults` value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "bad fault rates `{0}`: write kind=share pairs separated by commas, kinds fail, drop and lose, shares from 0 to 1 adding up to at most 1 (e.g. fail=0.2,drop=0.05,lose=0.05), or `off`"
)]
pub struct BadFaultRates(String);

impl FromStr for FaultRates {
    type Err = BadFaultRates;

    fn from_str(text: &str) -> Result<FaultRates, BadFaultRates> {
        let bad = || BadFaultRates(text.to_string());
        let mut rates = FaultRates::default();
        if text.trim() == "off" {
            return Ok(rates);
        }
        for pair in text
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
        {
            let (kind, share) = pair.split_once('=').ok_or_else(bad)?;
            let share: f64 = share.trim().parse().map_err(|_| bad())?;
            if !(0.0..=1.0).contains(&share) {
                return Err(bad());
            }
            match kind.trim() {
                "fail" => rates.fail = share,
                "drop" => rates.drop = share,
                "lose" => rates.lose = share,
                _ => return Err(bad()),
            }
        }
        if rates.fail + rates.drop + rates.lose > 1.0 + 1e-9 {
            return Err(bad());
        }
        Ok(rates)
    }
}

impl FaultRates {
    fn per_mille(share: f64) -> u64 {
        (share.clamp(0.0, 1.0) * 1000.0).round() as u64
    }
}

/// How many faults were injected, by kind, since the registry started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultCounts {
    /// Requests seen by the fault switches (admin calls excluded).
    pub requests: u64,
    /// Refused with a 5xx or 429.
    pub refused: u64,
    /// Connections dropped before the call.
    pub dropped: u64,
    /// Answers lost after the call took effect.
    pub lost: u64,
}

/// The fault switches of one registry.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<State>,
    requests: AtomicU64,
    /// Requests refused so far.
    pub refused: AtomicU64,
    /// Connections dropped so far.
    pub dropped: AtomicU64,
    /// Answers lost so far.
    pub lost: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    rates: FaultRates,
    /// Per mille: fail, drop, lose.
    weights: [u64; 3],
    /// Smooth weighted round-robin over the kinds.
    current: [i64; 3],
    faulty: u64,
    refusals: usize,
    scripted: VecDeque<(Endpoint, Fault)>,
}

impl Faults {
    /// Sets the rates of faults (all zero: no fault).
    pub fn set(&self, rates: FaultRates) {
        let mut state = self.lock();
        state.rates = rates;
        state.weights = [
            FaultRates::per_mille(rates.fail),
            FaultRates::per_mille(rates.drop),
            FaultRates::per_mille(rates.lose),
        ];
        state.current = [0; 3];
    }

    /// The rates now.
    pub fn rates(&self) -> FaultRates {
        self.lock().rates
    }

    /// Makes `rate` of requests fail: two thirds refused (5xx or 429), one
    /// third with the answer lost after the work.
    pub fn set_rate(&self, rate: f64) {
        self.set(FaultRates {
            fail: rate * 2.0 / 3.0,
            drop: 0.0,
            lose: rate / 3.0,
        });
    }

    /// The next call of `endpoint` gets `fault` (faults queue up in order).
    pub fn inject(&self, endpoint: Endpoint, fault: Fault) {
        self.lock().scripted.push_back((endpoint, fault));
    }

    /// Drops the faults injected and not yet met.
    pub fn forget_injected(&self) {
        self.lock().scripted.clear();
    }

    /// The counts so far.
    pub fn counts(&self) -> FaultCounts {
        FaultCounts {
            requests: self.requests.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }

    /// Decides the fate of one call of `endpoint`, and counts it.
    pub fn roll(&self, endpoint: Endpoint) -> Option<Fault> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let fault = self.pick(endpoint, n)?;
        let counter = match fault {
            Fault::Refuse { .. } => &self.refused,
            Fault::Drop => &self.dropped,
            Fault::Lose => &self.lost,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Some(fault)
    }

    fn pick(&self, endpoint: Endpoint, n: u64) -> Option<Fault> {
        let mut state = self.lock();
        if let Some(index) = state
            .scripted
            .iter()
            .position(|(wanted, _)| *wanted == endpoint)
        {
            return state.scripted.remove(index).map(|(_, fault)| fault);
        }
        let total: u64 = state.weights.iter().sum();
        if total == 0 || (n + 1) * total / 1000 == n * total / 1000 {
            return None;
        }
        // Smooth weighted round-robin: each kind in proportion, evenly mixed.
        let weights = state.weights;
        for (current, weight) in state.current.iter_mut().zip(weights) {
            *current += weight as i64;
        }
        let kind = (0..3)
            .max_by_key(|&kind| (state.current[kind], std::cmp::Reverse(kind)))
            .unwrap_or(0);
        state.current[kind] -= total as i64;
        state.faulty += 1;
        Some(match kind {
            0 => {
                let refusal = REFUSALS[state.refusals % REFUSALS.len()];
                state.refusals += 1;
                refusal
            }
            1 => Fault::Drop,
            _ => Fault::Lose,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_bad_ones_say_how_to_write_them() {
        let rates: FaultRates = "fail=0.2,drop=0.05,lose=0.05".parse().unwrap();
        assert_eq!(
            rates,
            FaultRates {
                fail: 0.2,
                drop: 0.05,
                lose: 0.05
            }
        );
        assert_eq!("off".parse::<FaultRates>().unwrap(), FaultRates::default());
        for bad in ["fail", "fail=2", "boom=0.1", "fail=0.6,lose=0.6"] {
            let error = bad.parse::<FaultRates>().unwrap_err().to_string();
            assert!(error.contains("fail=0.2,drop=0.05,lose=0.05"), "{error}");
        }
    }

    #[test]
    fn rates_give_each_kind_its_share_spread_evenly() {
        let faults = Faults::default();
        faults.set("fail=0.2,drop=0.05,lose=0.05".parse().unwrap());
        let mut longest_gap = 0;
        let mut gap = 0;
        for _ in 0..1000 {
            match faults.roll(Endpoint::PutBlock) {
                Some(_) => gap = 0,
                None => {
                    gap += 1;
                    longest_gap = longest_gap.max(gap);
                }
            }
        }
        let counts = faults.counts();
        assert_eq!((counts.refused, counts.dropped, counts.lost), (200, 50, 50));
        assert!(longest_gap <= 3, "faults spread evenly: gap {longest_gap}");
    }

    #[test]
    fn refusals_come_with_and_without_retry_after_and_as_429() {
        let faults = Faults::default();
        faults.set(FaultRates {
            fail: 1.0,
            ..FaultRates::default()
        });
        let seen: Vec<_> = (0..4).filter_map(|_| faults.roll(Endpoint::Lock)).collect();
        assert_eq!(seen, REFUSALS);
    }

    #[test]
    fn a_scripted_fault_hits_the_next_call_of_its_endpoint_only() {
        let faults = Faults::default();
        faults.inject(Endpoint::Initialize, Fault::Lose);
        assert_eq!(faults.roll(Endpoint::Lock), None);
        assert_eq!(faults.roll(Endpoint::Initialize), Some(Fault::Lose));
        assert_eq!(faults.roll(Endpoint::Initialize), None);
        faults.set(FaultRates::default());
        assert_eq!(faults.counts().lost, 1);
    }
}
