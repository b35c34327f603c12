//! The progress line on stderr while a run goes: phase and counters, redrawn a few times a
//! second. indicatif hides it when stderr is not a terminal, so logs and pipes stay clean.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use crate::scenario::Counters;

/// How often the line is redrawn.
const REDRAW: Duration = Duration::from_millis(200);

/// A live progress line for one run; cleared when dropped.
pub(crate) struct Progress {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl Progress {
    /// Starts a line labelled `label` showing `counters`.
    pub(crate) fn start(label: String, counters: Arc<Counters>) -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
            bar.set_style(style);
        }
        let line = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(REDRAW);
            loop {
                every.tick().await;
                line.set_message(format!("{label} {}", counters.describe()));
                line.tick();
            }
        });
        Progress { bar, ticker }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
