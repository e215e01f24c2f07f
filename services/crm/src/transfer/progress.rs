//! Progress of an import or export on standard error: a bar with rows,
//! rows/s and the time left (by the bytes of the input read) on a
//! terminal; a plain line every five seconds otherwise (a log, a pipe).

use std::{
    io::IsTerminal,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a line is printed when standard error is not a terminal.
const EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    verb: &'static str,
    started: Instant,
    bar: Option<ProgressBar>,
    last_line: Instant,
    /// Bytes of the input read, and the input's size, when known.
    bytes: Option<(Arc<AtomicU64>, u64)>,
}

impl Progress {
    /// Progress of `verb` ("imported", "exported"); `bytes` gives the share
    /// of the input read when the input's size is known.
    pub fn start(verb: &'static str, bytes: Option<(Arc<AtomicU64>, u64)>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match &bytes {
                Some((_, total)) => ProgressBar::new(*total).with_style(
                    ProgressStyle::with_template("{bar:30} {percent:>3}% {msg} ({eta} left)")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                ),
                None => ProgressBar::new_spinner(),
            };
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { verb, started: Instant::now(), bar, last_line: Instant::now(), bytes }
    }

    /// `rows` are done so far.
    pub fn update(&mut self, rows: u64) {
        let rate = rows as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let share = self.bytes.as_ref().map(|(read, total)| (read.load(Ordering::Relaxed), *total));
        match &self.bar {
            Some(bar) => {
                if let Some((read, _)) = share {
                    bar.set_position(read);
                }
                bar.set_message(format!("{rows} rows {}, {rate:.0} rows/s", self.verb));
            }
            None if self.last_line.elapsed() >= EVERY => {
                self.last_line = Instant::now();
                let share = match share {
                    Some((read, total)) if total > 0 => {
                        format!(", {:.0}% of the input", 100.0 * read as f64 / total as f64)
                    }
                    _ => String::new(),
                };
                eprintln!("{rows} rows {} ({rate:.0} rows/s){share}", self.verb);
            }
            None => {}
        }
    }

    /// Clears the bar; answers the time taken.
    pub fn finish(self) -> Duration {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        self.started.elapsed()
    }
}
