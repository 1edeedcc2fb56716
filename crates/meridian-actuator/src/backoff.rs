//! Exponential backoff with full jitter: before retry `n` (0-based) wait a uniformly random
//! time in `[0, min(cap, base * 2^n)]`.
//!
//! Full jitter spreads the retries of many controllers hitting one recovering endpoint. The
//! randomness is a small seedable generator (SplitMix64), so tests get the exact sequence a
//! seed gives; it is not, and need not be, cryptographic.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default delay ceiling before the first retry.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Default largest delay ceiling.
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Computes retry delays; shared by every call of one actuator.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    rng: Mutex<u64>,
}

impl Backoff {
    /// A backoff whose jitter follows `seed`: the same seed gives the same delays.
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Self {
        Backoff { base, cap, rng: Mutex::new(seed) }
    }

    /// A backoff seeded from the process's hash keys and the clock.
    pub fn unseeded(base: Duration, cap: Duration) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        Backoff::new(base, cap, RandomState::new().hash_one(nanos))
    }

    /// The largest delay before retry `retry` (0-based): `min(cap, base * 2^retry)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        self.base.saturating_mul(1u32 << retry.min(31)).min(self.cap)
    }

    /// The delay before retry `retry` (0-based), uniform in `[0, ceiling(retry)]`. Advances the
    /// generator.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = u64::try_from(self.ceiling(retry).as_nanos()).unwrap_or(u64::MAX);
        let random = {
            // A poisoned lock only means another thread panicked mid-update of a u64; the
            // value is still a usable random state.
            let mut state = self.rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            splitmix64(&mut state)
        };
        // Multiply-shift maps the random word onto [0, ceiling] without modulo bias.
        let nanos = ((u128::from(random) * (u128::from(ceiling) + 1)) >> 64) as u64;
        Duration::from_nanos(nanos)
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(2);

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = Backoff::new(BASE, CAP, 1);
        let ceilings: Vec<u128> = (0..8).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        // No overflow for absurd retry counts.
        assert_eq!(b.ceiling(u32::MAX), CAP);
        assert_eq!(Backoff::new(Duration::MAX, Duration::MAX, 1).ceiling(40), Duration::MAX);
    }

    #[test]
    fn delays_stay_within_bounds_and_use_the_whole_range() {
        for seed in [0, 1, 42, 0xDEAD_BEEF, u64::MAX] {
            let b = Backoff::new(BASE, CAP, seed);
            for retry in 0..12 {
                let mut low = Duration::MAX;
                let mut high = Duration::ZERO;
                for _ in 0..400 {
                    let d = b.delay(retry);
                    assert!(d <= b.ceiling(retry), "seed {seed} retry {retry}: {d:?} > {:?}", b.ceiling(retry));
                    low = low.min(d);
                    high = high.max(d);
                }
                // Full jitter: the draws reach both ends of [0, ceiling].
                assert!(low < b.ceiling(retry) / 10, "seed {seed} retry {retry}: lowest {low:?}");
                assert!(high > b.ceiling(retry) * 9 / 10, "seed {seed} retry {retry}: highest {high:?}");
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let a = Backoff::new(BASE, CAP, 7);
        let b = Backoff::new(BASE, CAP, 7);
        let c = Backoff::new(BASE, CAP, 8);
        let sa: Vec<Duration> = (0..6).map(|n| a.delay(n)).collect();
        let sb: Vec<Duration> = (0..6).map(|n| b.delay(n)).collect();
        let sc: Vec<Duration> = (0..6).map(|n| c.delay(n)).collect();
        assert_eq!(sa, sb);
        assert_ne!(sa, sc);
    }

    #[test]
    fn zero_base_means_no_wait() {
        let b = Backoff::new(Duration::ZERO, CAP, 3);
        assert!((0..5).all(|n| b.delay(n).is_zero()));
    }
}
