//! Forwarding the SDK's log lines (connection problems, pauses for lost contact, refused
//! resumes) to a C callback.

use std::ffi::{c_char, c_void};
use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

use crate::error::{fail, guard, ks_result};

/// How serious a log line is.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ks_log_level {
    /// Something is wrong and collection may be affected.
    KS_LOG_ERROR = 1,
    /// Something unusual the collector should know (a refused resume, lost contact).
    KS_LOG_WARN = 2,
    /// A state change, a session opened.
    KS_LOG_INFO = 3,
    /// Details for debugging.
    KS_LOG_DEBUG = 4,
}

/// A log callback: `message` is `len` bytes of UTF-8, not NUL-terminated, valid during the
/// call. Called from library threads, possibly concurrently.
#[allow(non_camel_case_types)]
pub type ks_logger = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        level: ks_log_level,
        message: *const c_char,
        len: usize,
    ),
>;

#[derive(Clone, Copy)]
struct Logger {
    callback: unsafe extern "C" fn(*mut c_void, ks_log_level, *const c_char, usize),
    user: *mut c_void,
}

// SAFETY: the caller of ks_set_logger promises the callback and `user` may be used from
// any thread, concurrently (documented there).
unsafe impl Send for Logger {}
// SAFETY: as above.
unsafe impl Sync for Logger {}

/// Collects an event's message and fields into one line: `message key=value ...`.
#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for Logger {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = match *event.metadata().level() {
            Level::ERROR => ks_log_level::KS_LOG_ERROR,
            Level::WARN => ks_log_level::KS_LOG_WARN,
            Level::INFO => ks_log_level::KS_LOG_INFO,
            _ => ks_log_level::KS_LOG_DEBUG,
        };
        let mut line = Line::default();
        event.record(&mut line);
        // SAFETY: callable with `user` from any thread by ks_set_logger's contract; the
        // line outlives the call.
        unsafe { (self.callback)(self.user, level, line.0.as_ptr().cast(), line.0.len()) };
    }
}

/// Sends the library's log lines up to `max_level` (a [`ks_log_level`], e.g.
/// `KS_LOG_INFO`; lines more detailed are not even formatted) to `callback`, with `user`
/// passed back. Call it once, before starting clients: the logger is process-wide and
/// cannot be replaced (a second call fails with `KS_INVALID_ARGUMENT`), and it is not
/// installed if the process already set a Rust tracing subscriber. A `max_level` that is
/// not a `ks_log_level` is `KS_INVALID_ARGUMENT`.
///
/// # Safety
///
/// `callback` must stay callable, and `user` valid, for the rest of the process, from any
/// thread, concurrently.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_set_logger(
    callback: ks_logger,
    user: *mut c_void,
    max_level: u32,
) -> ks_result {
    guard(|| {
        let Some(callback) = callback else {
            return fail(ks_result::KS_NULL_ARGUMENT, "callback is NULL");
        };
        let filter = match max_level {
            1 => LevelFilter::ERROR,
            2 => LevelFilter::WARN,
            3 => LevelFilter::INFO,
            4 => LevelFilter::DEBUG,
            _ => {
                return fail(
                    ks_result::KS_INVALID_ARGUMENT,
                    format!("log level {max_level} is not a ks_log_level (1 to 4)"),
                );
            }
        };
        let logger = Logger { callback, user };
        let subscriber = tracing_subscriber::registry().with(logger.with_filter(filter));
        match tracing::subscriber::set_global_default(subscriber) {
            Ok(()) => ks_result::KS_OK,
            Err(_) => fail(
                ks_result::KS_INVALID_ARGUMENT,
                "a logger is already installed in this process",
            ),
        }
    })
}
