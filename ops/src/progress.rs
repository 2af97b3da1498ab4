//! Progress of `--wait` on stderr, so stdout keeps only the result: a live bar when stderr
//! is a terminal, otherwise a plain line whenever the counts change (for logs and CI).

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::output;
use crate::view::StatusView;

/// How often the bar redraws, so its elapsed time moves while nothing else does.
const TICK: Duration = Duration::from_millis(100);

/// Until a replica reports our generation there is nothing to count.
const SPINNER: &str = "{spinner} {prefix} {msg} ({elapsed})";

/// Acknowledged out of connected.
const BAR: &str = "{prefix} [{bar:30}] {pos}/{len} acknowledged, {msg} ({elapsed})";

/// Shows how far the acknowledgements of one generation have got.
#[derive(Debug)]
pub struct Progress {
    generation: u64,
    label: String,
    started: Instant,
    display: Display,
}

#[derive(Debug)]
enum Display {
    Bar { bar: ProgressBar, counting: bool },
    Lines(LineFilter),
}

impl Progress {
    /// Starts showing progress for `generation` of `program`, timed from now.
    #[must_use]
    pub fn start(program: &str, generation: u64) -> Self {
        Self::labelled(&output::clean(program), generation, Instant::now())
    }

    /// Starts showing progress for `generation` under `label` (already escaped, e.g.
    /// `demo stage 2/3 (50%)`), timed from `started`.
    #[must_use]
    pub fn labelled(label: &str, generation: u64, started: Instant) -> Self {
        let display = if io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner()
                .with_style(style(SPINNER))
                .with_prefix(format!("{label}:"))
                .with_message(format!(
                    "waiting for the replicas to report generation {generation}"
                ));
            bar.enable_steady_tick(TICK);
            Display::Bar {
                bar,
                counting: false,
            }
        } else {
            Display::Lines(LineFilter::default())
        };
        Self {
            generation,
            label: label.to_owned(),
            started,
            display,
        }
    }

    /// Prints `line` (already escaped, without its newline) on stderr above the bar, to
    /// stay: e.g. that a new stage started.
    pub fn note(&self, line: &str) {
        match &self.display {
            Display::Bar { bar, .. } => bar.println(line),
            Display::Lines(_) => {
                let _ = writeln!(io::stderr().lock(), "{line}");
            }
        }
    }

    /// Shows `status` if it is about our generation; older ones come from replicas that
    /// have not caught up, and their counts would mislead.
    pub fn update(&mut self, status: &StatusView) {
        if status.state.generation != self.generation {
            return;
        }
        // Every replica's summary still predates our generation: its counts are of the
        // previous change (which may have covered other collectors).
        let behind = &status.replicas_behind;
        if !behind.is_empty() && status.replicas.iter().all(|r| behind.contains(r)) {
            return;
        }
        match &mut self.display {
            Display::Bar { bar, counting } => {
                if !*counting {
                    bar.set_style(style(BAR));
                    *counting = true;
                }
                let c = &status.collectors;
                bar.set_length(c.connected);
                bar.set_position(c.acked);
                let mut message =
                    format!("{} pending, {} errored", c.pending_count, c.errored_count);
                if c.diverged_count > 0 {
                    message.push_str(&format!(", {} diverged", c.diverged_count));
                }
                bar.set_message(message);
            }
            Display::Lines(filter) => {
                if let Some(line) = filter.line(&self.label, status, self.started.elapsed()) {
                    // Progress is best effort: a closed stderr must not fail the wait.
                    let _ = io::stderr().lock().write_all(line.as_bytes());
                }
            }
        }
    }

    /// Removes the bar, so the result printed next stands alone.
    pub fn finish(self) {
        if let Display::Bar { bar, .. } = self.display {
            bar.finish_and_clear();
        }
    }
}

/// A bar or spinner style; the templates are constants, so the fallback is for form only.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Decides when a plain progress line is due: when the counts differ from the last line's.
#[derive(Debug, Default)]
struct LineFilter {
    last: Option<[u64; 5]>,
}

impl LineFilter {
    fn line(&mut self, label: &str, status: &StatusView, elapsed: Duration) -> Option<String> {
        let c = &status.collectors;
        let counts = [
            c.acked,
            c.connected,
            c.pending_count,
            c.errored_count,
            c.diverged_count,
        ];
        if self.last == Some(counts) {
            return None;
        }
        self.last = Some(counts);
        Some(output::counts_line(label, status, elapsed))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use killswitch_proto::v1;

    use super::*;

    fn status(acked: u64, pending: u64) -> StatusView {
        diverged_status(acked, pending, 0)
    }

    fn diverged_status(acked: u64, pending: u64, diverged: u64) -> StatusView {
        StatusView::try_from(v1::StatusResponse {
            state: Some(v1::ProgramState {
                program: "demo".to_owned(),
                generation: 7,
                ..v1::ProgramState::default()
            }),
            collectors: Some(v1::CollectorCounts {
                connected: 3,
                acked,
                pending_count: pending,
                diverged_count: diverged,
                ..v1::CollectorCounts::default()
            }),
            replicas: vec![],
            replicas_behind: vec![],
            ack_times: None,
            stop_all: None,
            pinned_labels: vec![],
        })
        .unwrap()
    }

    #[test]
    fn a_line_only_when_the_counts_change() {
        let mut filter = LineFilter::default();
        let mut lines = vec![];
        for (acked, pending, ms) in [(1, 2, 100), (1, 2, 200), (2, 1, 400), (2, 1, 500)] {
            lines.extend(filter.line("demo", &status(acked, pending), Duration::from_millis(ms)));
        }
        assert_eq!(
            lines,
            [
                "demo: 1/3 acknowledged, 2 pending, 0 errored (0.1s)\n",
                "demo: 2/3 acknowledged, 1 pending, 0 errored (0.4s)\n",
            ]
        );
    }

    #[test]
    fn a_line_when_collectors_diverge_or_converge() {
        let mut filter = LineFilter::default();
        let mut lines = vec![];
        for (acked, diverged, ms) in [(1, 2, 100), (1, 2, 200), (2, 1, 300), (3, 0, 400)] {
            let status = diverged_status(acked, 0, diverged);
            lines.extend(filter.line("demo", &status, Duration::from_millis(ms)));
        }
        assert_eq!(
            lines,
            [
                "demo: 1/3 acknowledged, 0 pending, 0 errored, 2 diverged (0.1s)\n",
                "demo: 2/3 acknowledged, 0 pending, 0 errored, 1 diverged (0.3s)\n",
                "demo: 3/3 acknowledged, 0 pending, 0 errored (0.4s)\n",
            ]
        );
    }

    #[test]
    fn templates_are_valid() {
        for template in [SPINNER, BAR] {
            ProgressStyle::with_template(template).unwrap();
        }
    }
}
