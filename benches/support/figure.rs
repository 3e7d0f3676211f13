//! The figure reporting the benches share: samples, quantiles, one line per figure against its
//! target.

use std::io::Write;
use std::time::{Duration, Instant};

pub(crate) struct Figure {
    pub(crate) name: String,
    pub(crate) target: Duration,
    /// Judge on p99 rather than the median.
    pub(crate) tail: bool,
    pub(crate) samples: Vec<Duration>,
}

impl Figure {
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let at = ((sorted.len() - 1) as f64 * q).round() as usize;
        sorted[at]
    }

    /// One line of the report; whether the figure met its target.
    pub(crate) fn report(&self, out: &mut impl Write) -> bool {
        let judged = self.quantile(if self.tail { 0.99 } else { 0.5 });
        let ok = judged < self.target;
        let _ = writeln!(
            out,
            "{:<48} median {:>10.1?}  p99 {:>10.1?}  max {:>10.1?}  target {} < {:?}  {}",
            self.name,
            self.quantile(0.5),
            self.quantile(0.99),
            self.quantile(1.0),
            if self.tail { "p99" } else { "median" },
            self.target,
            if ok { "ok" } else { "MISSED" }
        );
        ok
    }
}

/// Times `f` `iterations` times.
pub(crate) fn measure(iterations: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..iterations)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect()
}

/// Prints every figure; the process's exit code says whether all met their targets.
pub(crate) fn finish(figures: &[Figure]) -> std::process::ExitCode {
    let mut out = std::io::stdout().lock();
    let met: Vec<bool> = figures.iter().map(|f| f.report(&mut out)).collect();
    if met.iter().all(|ok| *ok) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
