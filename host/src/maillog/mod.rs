//! The mail log: one line per event in the grammar of the gateway's `mail_logs`
//! (`Www Mmm dd hh:mm:ss yyyy Level: text`), written by a background thread so that no session waits
//! on log I/O. Every stage (session, spool, policy, queue, delivery) writes here; the formats of the
//! time stamp and of quoted values live in [`format`].

pub mod format;

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// How often buffered lines reach their destinations when the buffer is not full.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// A buffer this large is flushed at once.
const FLUSH_BYTES: usize = 64 * 1024;

/// The level word of a line, as the gateway writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Critical,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "Debug",
            Level::Info => "Info",
            Level::Warning => "Warning",
            Level::Critical => "Critical",
        }
    }
}

/// Where the lines go.
#[derive(Clone, Debug, Default)]
pub struct Destinations {
    /// Append to this file (created if missing; reopened by [`MailLog::reopen`]).
    pub file: Option<PathBuf>,
    /// Copy every line to standard output.
    pub stdout: bool,
    /// Keep every line in memory too (for `demo` and tests), readable by [`MailLog::captured`].
    pub capture: bool,
}

/// A handle to the mail log; cheap to clone.
#[derive(Clone)]
pub struct MailLog {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    destinations: Destinations,
}

struct State {
    pending: Vec<u8>,
    file: Option<File>,
    captured: Vec<String>,
    reopen: bool,
    closed: bool,
    /// Bumped after each write-out, so [`MailLog::flush`] can wait for its lines.
    written_epoch: u64,
    pending_epoch: u64,
    clock: format::ClockCache,
}

impl fmt::Debug for MailLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailLog")
            .field("destinations", &self.shared.destinations)
            .finish()
    }
}

impl MailLog {
    /// Opens the destinations and starts the writer thread.
    pub fn open(destinations: Destinations) -> io::Result<MailLog> {
        let file = match &destinations.file {
            Some(path) => Some(open_append(path)?),
            None => None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Vec::with_capacity(FLUSH_BYTES),
                file,
                captured: Vec::new(),
                reopen: false,
                closed: false,
                written_epoch: 0,
                pending_epoch: 0,
                clock: format::ClockCache::default(),
            }),
            wake: Condvar::new(),
            destinations,
        });
        let writer = Arc::clone(&shared);
        thread::Builder::new()
            .name("postern-maillog".into())
            .spawn(move || writer.run())?;
        Ok(MailLog { shared })
    }

    /// A log that keeps lines in memory only.
    pub fn in_memory() -> MailLog {
        MailLog::open(Destinations {
            capture: true,
            ..Destinations::default()
        })
        .expect("an in-memory mail log opens no file")
    }

    pub fn info(&self, text: fmt::Arguments<'_>) {
        self.line(Level::Info, text);
    }

    pub fn warning(&self, text: fmt::Arguments<'_>) {
        self.line(Level::Warning, text);
    }

    pub fn critical(&self, text: fmt::Arguments<'_>) {
        self.line(Level::Critical, text);
    }

    /// Appends one line. Line breaks inside `text` are escaped so that one event stays one line.
    pub fn line(&self, level: Level, text: fmt::Arguments<'_>) {
        let mut state = self.shared.state.lock().expect("mail log lock");
        let State { pending, clock, .. } = &mut *state;
        let start = pending.len();
        pending.extend_from_slice(clock.asctime_now().as_bytes());
        pending.push(b' ');
        pending.extend_from_slice(level.as_str().as_bytes());
        pending.extend_from_slice(b": ");
        let text_start = pending.len();
        let mut out = LineWriter(pending);
        let _ = out.write_fmt(text);
        format::escape_line_breaks(pending, text_start);
        pending.push(b'\n');
        if self.shared.destinations.capture {
            let line = String::from_utf8_lossy(&state.pending[start..state.pending.len() - 1]);
            let line = line.into_owned();
            state.captured.push(line);
        }
        state.pending_epoch += 1;
        if state.pending.len() >= FLUSH_BYTES {
            self.shared.wake.notify_one();
        }
    }

    /// Waits until every line logged so far has been written out.
    pub fn flush(&self) {
        let mut state = self.shared.state.lock().expect("mail log lock");
        let target = state.pending_epoch;
        self.shared.wake.notify_one();
        while state.written_epoch < target && !state.closed {
            state = self.shared.wake.wait(state).expect("mail log lock");
        }
    }

    /// Reopens the log file (after rotation by an outside tool); called on SIGHUP.
    pub fn reopen(&self) {
        let mut state = self.shared.state.lock().expect("mail log lock");
        state.reopen = true;
        self.shared.wake.notify_one();
    }

    /// The lines logged so far, when [`Destinations::capture`] is on.
    pub fn captured(&self) -> Vec<String> {
        self.shared
            .state
            .lock()
            .expect("mail log lock")
            .captured
            .clone()
    }

    /// Writes out what is pending and stops the writer thread.
    pub fn close(&self) {
        self.flush();
        let mut state = self.shared.state.lock().expect("mail log lock");
        state.closed = true;
        self.shared.wake.notify_all();
    }
}

impl Shared {
    fn run(&self) {
        let mut state = self.state.lock().expect("mail log lock");
        loop {
            if state.pending.is_empty() && !state.reopen {
                if state.closed {
                    return;
                }
                state = self
                    .wake
                    .wait_timeout(state, FLUSH_INTERVAL)
                    .expect("mail log lock")
                    .0;
                continue;
            }
            let lines = std::mem::replace(&mut state.pending, Vec::with_capacity(FLUSH_BYTES));
            let epoch = state.pending_epoch;
            if std::mem::take(&mut state.reopen)
                && let Some(path) = &self.destinations.file
            {
                match open_append(path) {
                    Ok(file) => state.file = Some(file),
                    Err(e) => tracing::error!("cannot reopen mail log {}: {e}", path.display()),
                }
            }
            let mut file = state.file.take();
            drop(state);
            if let Some(f) = file.as_mut()
                && let Err(e) = f.write_all(&lines)
            {
                tracing::error!("cannot write the mail log: {e}");
            }
            if self.destinations.stdout {
                let _ = io::stdout().lock().write_all(&lines);
            }
            state = self.state.lock().expect("mail log lock");
            if state.file.is_none() {
                state.file = file;
            }
            state.written_epoch = epoch;
            self.wake.notify_all();
            if !state.closed {
                state = self
                    .wake
                    .wait_timeout(state, FLUSH_INTERVAL)
                    .expect("mail log lock")
                    .0;
            }
        }
    }
}

fn open_append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

struct LineWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for LineWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_gateway_shape_and_stay_one_line() {
        let log = MailLog::in_memory();
        log.info(format_args!("MID {} Subject {}", 6, "\"two\nlines\""));
        let lines = log.captured();
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        // "Fri Feb 16 21:19:22 2024 Info: ..."
        assert_eq!(&line[24..31], " Info: ", "{line}");
        assert!(line.ends_with("MID 6 Subject \"two\\nlines\""), "{line}");
    }

    #[test]
    fn file_destination_receives_lines_on_flush() {
        let dir = std::env::temp_dir().join(format!("postern-maillog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mail.log");
        let log = MailLog::open(Destinations {
            file: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        log.warning(format_args!("ICID {} close", 5));
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(" Warning: ICID 5 close\n"), "{text}");
        log.close();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
