//! The retry budget: retries of idempotent reads may add at most 20% to the recent request
//! volume, plus a floor of 3 per second so a quiet server can still retry a lone failure.
//! When ComfyUI is dead, every caller's retries draw from the same budget, so failures cost
//! one attempt each instead of a storm of them.

use std::time::Duration;

use tokio::time::Instant;

/// How far back "recent" reaches.
const WINDOW_SECS: usize = 10;
/// The share of recent requests that may be retried.
const RATIO: f64 = 0.2;
/// Retries allowed per second beyond the ratio.
const FLOOR_PER_SECOND: u32 = 3;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Which second since `start` this slot holds.
    second: u64,
    requests: u32,
    /// Retries paid for by the ratio.
    ratio_retries: u32,
    /// Retries paid for by the per-second floor.
    floor_retries: u32,
}

#[derive(Debug)]
pub struct RetryBudget {
    start: Instant,
    slots: [Slot; WINDOW_SECS],
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryBudget {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            slots: [Slot::default(); WINDOW_SECS],
        }
    }

    fn current(&mut self) -> &mut Slot {
        let second = self.start.elapsed().as_secs();
        let slot = &mut self.slots[(second % WINDOW_SECS as u64) as usize];
        if slot.second != second {
            *slot = Slot {
                second,
                ..Slot::default()
            };
        }
        slot
    }

    fn recent(&self) -> (u32, u32) {
        let now = self.start.elapsed().as_secs();
        self.slots
            .iter()
            .filter(|slot| now.saturating_sub(slot.second) < WINDOW_SECS as u64)
            .fold((0, 0), |(requests, retries), slot| {
                (requests + slot.requests, retries + slot.ratio_retries)
            })
    }

    /// Counts a first attempt (retries are not requests).
    pub fn record_request(&mut self) {
        self.current().requests += 1;
    }

    /// Takes one retry from the budget, or says no.
    pub fn try_retry(&mut self) -> bool {
        let (requests, ratio_retries) = self.recent();
        if f64::from(ratio_retries + 1) <= RATIO * f64::from(requests) {
            self.current().ratio_retries += 1;
            return true;
        }
        let slot = self.current();
        if slot.floor_retries < FLOOR_PER_SECOND {
            slot.floor_retries += 1;
            return true;
        }
        false
    }
}

/// Fresh random-ish numbers for spreading retries, without a random-number dependency: the
/// process's random hash keys over a counter, so every draw differs.
#[derive(Debug, Default)]
pub struct Jitter {
    keys: std::hash::RandomState,
    draws: std::sync::atomic::AtomicU64,
}

impl Jitter {
    pub fn draw(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let n = self
            .draws
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut hasher = self.keys.build_hasher();
        hasher.write_u64(n);
        hasher.finish()
    }
}

/// The wait before retry number `attempt` (1-based): 100 ms doubling, capped at 2 s, with
/// "equal jitter" (between half and all of it) so that callers failing together don't retry
/// together. `entropy` is any fresh random-ish number.
pub fn backoff(attempt: u32, entropy: u64) -> Duration {
    let full = Duration::from_millis(100)
        .saturating_mul(1 << attempt.saturating_sub(1).min(8))
        .min(Duration::from_secs(2));
    let half = full / 2;
    let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_micros(entropy % spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_draws_differ() {
        let jitter = Jitter::default();
        let draws: std::collections::HashSet<u64> = (0..100).map(|_| jitter.draw()).collect();
        assert_eq!(draws.len(), 100);
        let waits: std::collections::HashSet<Duration> =
            (0..20).map(|_| backoff(3, jitter.draw())).collect();
        assert!(waits.len() > 10, "retries spread out: {waits:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_server_gets_the_floor_and_a_fifth_of_the_traffic() {
        let mut budget = RetryBudget::new();
        // 100 requests in one second, each wanting a retry.
        let mut granted = 0;
        for _ in 0..100 {
            budget.record_request();
            if budget.try_retry() {
                granted += 1;
            }
        }
        // 20 from the ratio, 3 from the floor.
        assert_eq!(granted, 23);
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_refills_every_second_and_the_ratio_ages_out() {
        let mut budget = RetryBudget::new();
        for _ in 0..10 {
            budget.record_request();
        }
        let first: usize = (0..10).filter(|_| budget.try_retry()).count();
        assert_eq!(first, 2 + 3);
        tokio::time::advance(Duration::from_secs(1)).await;
        let second: usize = (0..10).filter(|_| budget.try_retry()).count();
        assert_eq!(second, 3, "only the floor is left");
        // Once the requests age out of the window, the ratio gives nothing more.
        tokio::time::advance(Duration::from_secs(WINDOW_SECS as u64)).await;
        for _ in 0..5 {
            budget.record_request();
        }
        let third: usize = (0..10).filter(|_| budget.try_retry()).count();
        assert_eq!(third, 1 + 3);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for entropy in [0, 1, 12_345, u64::MAX] {
            let first = backoff(1, entropy);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = backoff(3, entropy);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = backoff(30, entropy);
            assert!(late >= Duration::from_secs(1) && late <= Duration::from_secs(2));
        }
        assert_ne!(backoff(2, 1), backoff(2, 99_999));
    }
}
