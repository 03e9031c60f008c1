//! The progress bar on stderr (only at a terminal, without `--quiet`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::args::TestKind;
use super::job::AbortOnDrop;
use super::job::Job;
use super::plan::{DEFAULT_REQUESTS, Plan};
use super::summary::per_second;

/// How often the progress bar is redrawn.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// The progress bar of one test, redrawn by a ticker task from the job's
/// counters so that clients never touch it.
pub(super) struct Progress {
    pub(super) bar: ProgressBar,
    _ticker: Option<AbortOnDrop>,
}

impl Progress {
    pub(super) fn start(plan: &Plan, kind: TestKind, job: &Arc<Job>, start: Instant) -> Self {
        if !plan.progress {
            return Progress {
                bar: ProgressBar::hidden(),
                _ticker: None,
            };
        }
        let style = ProgressStyle::with_template("{prefix:>5} [{bar:40}] {msg}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        // With a duration the bar shows time, otherwise requests.
        let requests = plan.budget.requests;
        let duration = plan.budget.duration;
        let len = match (duration, requests) {
            (Some(d), _) => d.as_millis() as u64,
            (None, n) => n.unwrap_or(DEFAULT_REQUESTS),
        };
        let bar = ProgressBar::new(len).with_style(style);
        bar.set_prefix(kind.label());
        let ticker = tokio::spawn({
            let bar = bar.clone();
            let job = Arc::clone(job);
            async move {
                let mut tick = tokio::time::interval(PROGRESS_TICK);
                loop {
                    tick.tick().await;
                    let done = job.done.load(Ordering::Relaxed);
                    let elapsed = start.elapsed();
                    let rate = per_second(done, elapsed);
                    let of = requests.map(|n| format!("/{n}")).unwrap_or_default();
                    match duration {
                        None => {
                            bar.set_position(done);
                            bar.set_message(format!("{done}{of} requests, {rate:.0}/s"));
                        }
                        Some(total) => {
                            bar.set_position(elapsed.as_millis() as u64);
                            bar.set_message(format!(
                                "{:.1}/{:.1} s, {done}{of} requests, {rate:.0}/s",
                                elapsed.as_secs_f64(),
                                total.as_secs_f64()
                            ));
                        }
                    }
                }
            }
        });
        Progress {
            bar,
            _ticker: Some(AbortOnDrop(ticker)),
        }
    }

    pub(super) fn finish(self) {
        self.bar.finish_and_clear();
    }
}
