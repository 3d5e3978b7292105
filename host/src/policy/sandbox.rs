//! What a policy module's instance lives in: the state of its `Store`, which grants nothing.
//!
//! A fresh [`StoreState`] is made for every evaluation; it holds the WASI context (no files,
//! sockets, environment or arguments; standard output and error are discarded), the memory cap,
//! and the budget for the module's log lines.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The longest log line a module may write; the rest is cut.
pub const MAX_LOG_LINE: usize = 1024;
/// Log lines per evaluation; more are dropped, so a module cannot flood the relay's log.
pub const MAX_LOG_LINES: u32 = 16;

pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub memory: MemoryCap,
    module: Arc<str>,
    log_lines: u32,
}

impl StoreState {
    pub fn new(module: Arc<str>, memory_limit: usize) -> StoreState {
        StoreState {
            // The builder's defaults deny everything that reaches outside (see its docs); only
            // clocks and random numbers remain, which a policy may use harmlessly.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            memory: MemoryCap {
                limit: memory_limit,
                exceeded: false,
            },
            module,
            log_lines: 0,
        }
    }

    /// The module's `log` import.
    pub fn log(&mut self, level: tracing::Level, message: &str) {
        let Some(message) = self.admit(message) else {
            return;
        };
        let module = &*self.module;
        match level {
            tracing::Level::ERROR => tracing::error!(module, "{message}"),
            tracing::Level::WARN => tracing::warn!(module, "{message}"),
            tracing::Level::INFO => tracing::info!(module, "{message}"),
            _ => tracing::debug!(module, "{message}"),
        }
    }
}

impl StoreState {
    /// What of a log line may be written: none past the budget of lines, at most
    /// [`MAX_LOG_LINE`] bytes of any.
    fn admit<'a>(&mut self, message: &'a str) -> Option<&'a str> {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(module = %self.module, "policy module logs too much; dropping the rest");
            }
            return None;
        }
        Some(truncate(message, MAX_LOG_LINE))
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory and remembers that the cap was hit, so the failure says "memory".
pub struct MemoryCap {
    limit: usize,
    pub exceeded: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            // A trap rather than a failed grow: a Rust guest would abort anyway, and the trap
            // names the cause.
            wasmtime::bail!(
                "policy module memory limit of {} bytes exceeded",
                self.limit
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Table elements cost a pointer each; hold them to the same budget.
        Ok(desired.saturating_mul(size_of::<usize>()) <= self.limit)
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_cut_and_counted() {
        let mut state = StoreState::new("test".into(), 1 << 20);
        let long = "é".repeat(MAX_LOG_LINE);
        for _ in 0..MAX_LOG_LINES {
            let kept = state.admit(&long).expect("within the budget");
            assert!(kept.len() <= MAX_LOG_LINE && kept.len() > MAX_LOG_LINE - 2);
        }
        assert_eq!(state.admit("one more"), None);
        assert_eq!(state.admit("and another"), None);
    }
}
