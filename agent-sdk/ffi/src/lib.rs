//! The C ABI of `killswitch-sdk`: collectors written in C, C++, Objective-C, Swift, C# or Go
//! embed the one Rust implementation (fail-closed watchdog, generation fencing, state file,
//! signatures, backoff, hooks with timeouts) through `include/killswitch.h`.
//!
//! Conventions, in the style of rustls-ffi:
//! - Opaque types (`ks_options`, `ks_client`, `ks_gate`, `ks_hook_result`), created and
//!   freed by the library; every fallible function returns a [`ks_result`] and writes its
//!   outputs through pointers; the message of the last error is read with
//!   [`ks_last_error`] (per thread).
//! - Every entry point catches Rust panics and returns [`ks_result::KS_PANIC`]: no unwind
//!   crosses the boundary.
//! - Strings passed in are NUL-terminated UTF-8, borrowed for the call only; strings passed
//!   out to callbacks are pointer + length, valid only during the callback.
//!
//! # Layout
//! - [`options`]: `ks_options`, what a client is built from.
//! - [`client`]: starting and stopping a client, its gates, and the hooks' C callbacks.
//! - [`error`]: `ks_result`, the last error message and the panic boundary.
//! - [`log`]: forwarding the SDK's log lines to a C callback.

pub mod client;
pub mod error;
pub mod log;
pub mod options;

pub use client::{
    ks_cause, ks_client, ks_client_gate, ks_client_start, ks_client_stop, ks_event, ks_gate,
    ks_gate_is_active, ks_hook, ks_hook_result, ks_hook_result_confirm_purge,
    ks_hook_result_set_error, ks_str,
};
pub use error::{ks_last_error, ks_result};
pub use log::{ks_log_level, ks_logger, ks_set_logger};
pub use options::{
    ks_options, ks_options_add_endpoint, ks_options_add_label, ks_options_add_program,
    ks_options_add_trusted_key, ks_options_free, ks_options_new, ks_options_set_collector_id,
    ks_options_set_hook_timeout_ms, ks_options_set_max_statement_lifetime_s,
    ks_options_set_on_pause, ks_options_set_on_resume, ks_options_set_required_signatures,
    ks_options_set_state_file, ks_options_set_tls_files, ks_options_set_tls_pem,
};
