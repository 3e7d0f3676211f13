//! The circuit breaker in front of one ComfyUI endpoint. When ComfyUI is down, calls fail at
//! once with a clear message instead of each waiting for a timeout, and a single probe at a
//! growing interval (5 s doubling to 60 s) finds out when it is back.
//!
//! Every admitted call ends in exactly one outcome: the [`Permit`] records success or failure,
//! and a permit dropped unused (a cancelled call) releases its probe slot. The original's
//! breaker counted neither success nor failure for an HTTP error during its probe and stayed
//! half-open with its slot used, refusing every call until a restart; that cannot happen here.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long the breaker stays open after it first opens.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between probes.
pub const MAX_RETRY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls flow normally.
    Closed,
    /// Calls fail at once until the next probe is due.
    Open,
    /// One probe call is finding out whether ComfyUI is back.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// What the breaker knows, for `/readyz`, tools and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSnapshot {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// State changes since start.
    pub transitions: u64,
    /// Until the next probe may start; zero unless open.
    pub retry_in: Duration,
}

/// A refused call: the breaker is open (or its one probe is under way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// Until the next probe; zero while a probe is in flight.
    pub retry_in: Duration,
    pub consecutive_failures: u32,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    transitions: u64,
    /// When an open breaker admits its next probe.
    open_until: Instant,
    /// The wait the next opening uses.
    next_wait: Duration,
    probe_in_flight: bool,
}

impl Inner {
    fn set(&mut self, state: BreakerState) {
        if self.state != state {
            self.state = state;
            self.transitions += 1;
        }
    }
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures.
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                transitions: 0,
                open_until: Instant::now(),
                next_wait: FIRST_RETRY,
                probe_in_flight: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a few plain fields updated in one step; a panic elsewhere cannot leave
        // it half-written, so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks to make a call. Cheap: one uncontended lock.
    pub fn admit(&self) -> Result<Permit<'_>, Rejected> {
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.state {
            BreakerState::Closed => Ok(Permit::new(self, false)),
            BreakerState::Open if now >= inner.open_until => {
                inner.set(BreakerState::HalfOpen);
                inner.probe_in_flight = true;
                Ok(Permit::new(self, true))
            }
            BreakerState::HalfOpen if !inner.probe_in_flight => {
                inner.probe_in_flight = true;
                Ok(Permit::new(self, true))
            }
            BreakerState::Open | BreakerState::HalfOpen => Err(Rejected {
                retry_in: inner.open_until.saturating_duration_since(now),
                consecutive_failures: inner.consecutive_failures,
            }),
        }
    }

    /// Admits a call whatever the state, as a probe: for an explicit "is ComfyUI up?" check,
    /// whose answer should not wait for the schedule. Its outcome closes or re-opens the
    /// breaker like any probe.
    pub fn force_probe(&self) -> Permit<'_> {
        let mut inner = self.lock();
        let probe = inner.state != BreakerState::Closed;
        if probe {
            inner.set(BreakerState::HalfOpen);
            inner.probe_in_flight = true;
        }
        Permit::new(self, probe)
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        let inner = self.lock();
        let retry_in = match inner.state {
            BreakerState::Open => inner.open_until.saturating_duration_since(Instant::now()),
            _ => Duration::ZERO,
        };
        BreakerSnapshot {
            state: inner.state,
            consecutive_failures: inner.consecutive_failures,
            transitions: inner.transitions,
            retry_in,
        }
    }

    fn record(&self, probe: bool, healthy: bool) {
        let mut inner = self.lock();
        if probe {
            inner.probe_in_flight = false;
        }
        if healthy {
            inner.consecutive_failures = 0;
            inner.next_wait = FIRST_RETRY;
            inner.set(BreakerState::Closed);
            return;
        }
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        let reopen = match inner.state {
            // A failed probe re-opens at once, with a longer wait than last time.
            BreakerState::HalfOpen => probe,
            BreakerState::Closed => inner.consecutive_failures >= self.threshold,
            // A call admitted before the breaker opened, finishing late: already open.
            BreakerState::Open => false,
        };
        if reopen {
            let wait = inner.next_wait;
            inner.open_until = Instant::now() + wait;
            inner.next_wait = (wait * 2).min(MAX_RETRY);
            inner.set(BreakerState::Open);
        }
    }

    /// A probe that ended without an outcome (the call was cancelled): let the next caller
    /// probe instead, so the breaker can't wait forever on a call that will never report.
    fn release(&self) {
        self.lock().probe_in_flight = false;
    }
}

/// Permission for one call. Report how it went with [`Permit::succeeded`] or
/// [`Permit::failed`]; dropping it unreported counts as neither.
#[derive(Debug)]
#[must_use = "report the call's outcome, or the breaker learns nothing from it"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    reported: bool,
}

impl<'a> Permit<'a> {
    fn new(breaker: &'a Breaker, probe: bool) -> Self {
        Self {
            breaker,
            probe,
            reported: false,
        }
    }

    /// ComfyUI answered (any status below 500 counts: it is up and speaking HTTP).
    pub fn succeeded(mut self) {
        self.reported = true;
        self.breaker.record(self.probe, true);
    }

    /// No connection, a timeout, or a 5xx answer.
    pub fn failed(mut self) {
        self.reported = true;
        self.breaker.record(self.probe, false);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.breaker.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail_times(breaker: &Breaker, n: u32) {
        for _ in 0..n {
            breaker.admit().expect("admitted").failed();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_and_fails_fast() {
        let breaker = Breaker::new(5);
        fail_times(&breaker, 4);
        assert_eq!(breaker.snapshot().state, BreakerState::Closed);
        fail_times(&breaker, 1);
        let snapshot = breaker.snapshot();
        assert_eq!(snapshot.state, BreakerState::Open);
        assert_eq!(snapshot.retry_in, FIRST_RETRY);
        let rejected = breaker.admit().expect_err("open");
        assert_eq!(rejected.retry_in, FIRST_RETRY);
        assert_eq!(rejected.consecutive_failures, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let breaker = Breaker::new(3);
        fail_times(&breaker, 2);
        breaker.admit().expect("admitted").succeeded();
        fail_times(&breaker, 2);
        assert_eq!(breaker.snapshot().state, BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn one_probe_after_the_wait_then_closed_on_success() {
        let breaker = Breaker::new(1);
        fail_times(&breaker, 1);
        tokio::time::advance(FIRST_RETRY - Duration::from_millis(1)).await;
        assert!(
            breaker.admit().is_err(),
            "still open just before the wait ends"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        let probe = breaker.admit().expect("the probe");
        assert_eq!(breaker.snapshot().state, BreakerState::HalfOpen);
        let second = breaker.admit().expect_err("only one probe at a time");
        assert_eq!(second.retry_in, Duration::ZERO);
        probe.succeeded();
        assert_eq!(breaker.snapshot().state, BreakerState::Closed);
        breaker.admit().expect("closed again").succeeded();
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probes_double_the_wait_up_to_a_minute() {
        let breaker = Breaker::new(1);
        fail_times(&breaker, 1);
        let mut waits = Vec::new();
        for _ in 0..6 {
            let wait = breaker.snapshot().retry_in;
            waits.push(wait.as_secs());
            tokio::time::advance(wait).await;
            breaker.admit().expect("probe due").failed();
        }
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        // Recovery resets the schedule.
        tokio::time::advance(MAX_RETRY).await;
        breaker.admit().expect("probe").succeeded();
        fail_times(&breaker, 1);
        assert_eq!(breaker.snapshot().retry_in, FIRST_RETRY);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreported_probe_frees_the_slot() {
        let breaker = Breaker::new(1);
        fail_times(&breaker, 1);
        tokio::time::advance(FIRST_RETRY).await;
        drop(breaker.admit().expect("probe"));
        // Not wedged: the next caller probes.
        breaker.admit().expect("a new probe").succeeded();
        assert_eq!(breaker.snapshot().state, BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn late_outcomes_of_calls_admitted_before_opening_do_not_extend_the_wait() {
        let breaker = Breaker::new(2);
        let early = breaker.admit().expect("closed");
        fail_times(&breaker, 2);
        tokio::time::advance(Duration::from_secs(3)).await;
        early.failed();
        assert_eq!(breaker.snapshot().retry_in, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_forced_probe_runs_while_open_and_decides_the_state() {
        let breaker = Breaker::new(1);
        fail_times(&breaker, 1);
        breaker.force_probe().failed();
        let snapshot = breaker.snapshot();
        assert_eq!(snapshot.state, BreakerState::Open);
        assert_eq!(snapshot.retry_in, FIRST_RETRY * 2);
        breaker.force_probe().succeeded();
        assert_eq!(breaker.snapshot().state, BreakerState::Closed);
        breaker.force_probe().succeeded();
        assert_eq!(breaker.snapshot().state, BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn transitions_are_counted() {
        let breaker = Breaker::new(1);
        fail_times(&breaker, 1); // closed → open
        tokio::time::advance(FIRST_RETRY).await;
        breaker.admit().expect("probe").succeeded(); // → half-open → closed
        assert_eq!(breaker.snapshot().transitions, 3);
    }
}
