//! `ks_options`: what a client is built from. Setters check the C arguments (NULL, UTF-8,
//! ranges); the rules of the values themselves (endpoint syntax, names, labels, keys) are
//! the SDK's, checked by `ks_client_start`, whose message names the first problem.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use crate::client::{Callback, ks_hook};
use crate::error::{fail, guard, ks_result, text};

/// TLS material: files read at start, or PEM bytes given now.
#[derive(Clone)]
pub(crate) enum Tls {
    /// Paths of the CA certificate, the collector's certificate and its key.
    Files(String, String, String),
    /// The same, as PEM bytes.
    Pem(Vec<u8>, Vec<u8>, Vec<u8>),
}

/// What a client is built from. Create with [`ks_options_new`], free with
/// [`ks_options_free`] (clients started from it do not need it any more).
///
/// Ownership: setters copy what they are given; strings and buffers are borrowed only
/// during the call. Thread-safety: none; set it up on one thread (or lock around it),
/// then start any number of clients from it.
#[allow(non_camel_case_types)]
#[derive(Default)]
pub struct ks_options {
    pub(crate) endpoints: Vec<String>,
    pub(crate) collector_id: Option<String>,
    pub(crate) programs: Vec<String>,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) state_file: Option<String>,
    pub(crate) tls: Option<Tls>,
    pub(crate) trusted_keys: Vec<Vec<u8>>,
    pub(crate) required_signatures: usize,
    pub(crate) max_statement_lifetime: Option<Duration>,
    pub(crate) hook_timeout: Option<Duration>,
    pub(crate) on_pause: Option<Callback>,
    pub(crate) on_resume: Option<Callback>,
}

/// Runs `set` on the options behind `options`, after the NULL check.
///
/// # Safety
///
/// `options`, when not NULL, must come from [`ks_options_new`] and not be freed or used
/// by another thread meanwhile.
unsafe fn with_options(
    options: *mut ks_options,
    set: impl FnOnce(&mut ks_options) -> Result<(), ks_result>,
) -> ks_result {
    guard(|| {
        if options.is_null() {
            return fail(ks_result::KS_NULL_ARGUMENT, "options is NULL");
        }
        // SAFETY: not NULL, from ks_options_new and exclusively ours by the contract.
        let options = unsafe { &mut *options };
        match set(options) {
            Ok(()) => ks_result::KS_OK,
            Err(result) => result,
        }
    })
}

/// New, empty options. Returns NULL only if the library panicked (a bug).
///
/// Ownership: the caller owns the result and frees it with [`ks_options_free`].
#[unsafe(no_mangle)]
pub extern "C" fn ks_options_new() -> *mut ks_options {
    std::panic::catch_unwind(|| Box::into_raw(Box::<ks_options>::default()))
        .unwrap_or(std::ptr::null_mut())
}

/// Frees options from [`ks_options_new`]; NULL is ignored. Clients started from them are
/// not affected.
///
/// # Safety
///
/// `options` must come from [`ks_options_new`] and not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_options_free(options: *mut ks_options) {
    if options.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: from ks_options_new (Box::into_raw), freed once by the contract.
        drop(unsafe { Box::from_raw(options) });
    });
}

/// Adds the address of a control replica, `https://HOST:PORT` (with TLS) or
/// `http://HOST:PORT`; call once per replica.
///
/// # Safety
///
/// `options` as for [`ks_options_free`] (not freed yet); `endpoint` a NUL-terminated
/// string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_options_add_endpoint(
    options: *mut ks_options,
    endpoint: *const c_char,
) -> ks_result {
    // SAFETY: `endpoint` is NUL-terminated (or NULL) by the caller's contract.
    let endpoint = unsafe { text(endpoint, "endpoint") };
    let set = |o: &mut ks_options| {
        o.endpoints.push(endpoint?.to_owned());
        Ok(())
    };
    // SAFETY: `options` is valid or NULL by the caller's contract.
    unsafe { with_options(options, set) }
}

/// Sets this collector's id (its certificate must name the same).
///
/// # Safety
///
/// As for [`ks_options_add_endpoint`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_options_set_collector_id(
    options: *mut ks_options,
    id: *const c_char,
) -> ks_result {
    // SAFETY: `id` is NUL-terminated (or NULL) by the caller's contract.
    let id = unsafe { text(id, "collector id") };
    let set = |o: &mut ks_options| {
        o.collector_id = Some(id?.to_owned());
        Ok(())
    };
    // SAFETY: `options` is valid or NULL by the caller's contract.
    unsafe { with_options(options, set) }
}

/// Adds a program this collector obeys; call once per program.
///
/// # Safety
///
/// As for [`ks_options_add_endpoint`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_options_add_program(
    options: *mut ks_options,
    program: *const c_char,
) -> ks_result {
    // SAFETY: `program` is NUL-terminated (or NULL) by the caller's contract.
    let program = unsafe { text(program, "program") };
    let set = |o: &mut ks_options| {
        o.programs.push(program?.to_owned());
        Ok(())
    };
    // SAFETY: `options` is valid or NULL by the caller's contract.
    unsafe { with_options(options, set) }
}

/// Adds a descriptive label (scoped pauses select on them).
///
/// # Safety
///
/// As for [`ks_options_add_endpoint`], for `key` and `value`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_options_add_label(
    options: *mut ks_options,
    key: *const c_char,
    value: *const c_char,
) -> ks_result {
    // SAFETY: `key` is NUL-terminated (or NULL) by the caller's contract.
    let key = unsafe { text(key, "label key") };
    // SAFETY: `value` is NUL-terminated (or NULL) by the caller's contract.
    let value = unsafe { text(value, "label value") };
    let set = |o: &mut ks_options| {
        let key = key?.to_owned();
        let value = value?.to_owned();
        o.labels.push((key, value));
        Ok(())
    };
    // SAFETY: `options` is valid or NULL by the caller's contract.
    unsafe { with_options(options, set) }
}

/// Keeps the last applied states in this file, so a restart never goes back in time.
///
/// # Safety
///
/// As for [`ks_options_add_endpoint`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_options_set_state_file(
    options: *mut ks_options,
    path: *const c_char,
) -> ks_result {
    // SAFETY: `path` is NUL-terminated (or NULL) by the caller's contract.
    let path = unsafe { text(path, "state file") };
    let set = |o: &mut ks_options| {
        o.state_file = Some(path?.to_owned());
        Ok(())
    };
    // SAFETY: `options` is valid or NULL by the caller's contract.
    unsafe { with_options(options, set) }
}

/// Mutual TLS from files: the CA certificate that signed the control plane's, and this
/// collector's certificate and key (PEM). Read by [`crate::ks_client_start`].
///
/// # Safety
///
/// As for [`ks_options_add_endpoint`], for the three paths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_options_set_tls_files(
    options: *mut ks_options,
    ca: *const c_char,
    cert: *const c_char,
    key: *const c_char,
) -> ks_result {
    // SAFETY: `ca` is NUL-terminated (or NULL) by the caller's contract.
    let ca = unsafe { text(ca, "CA file") };
    // SAFETY: `cert` is NUL-terminated (or NULL) by the caller's contract.
    let cert = unsafe { text(cert, "certificate file") };
    // SAFETY: `key` is NUL-terminated (or NULL) by the caller's contract.
    let key = unsafe { text(key, "key file") };
    let set = |o: &mut ks_options| {
        o.tls = Some(Tls::Files(
            ca?.to_owned(),
            cert?.to_owned(),
            key?.to_owned(),
        ));
        Ok(())
    };
    // SAFETY: `options` is valid or NULL by the caller's contract.
    unsafe { with_options(options, set) }
}

/// Mutual TLS from PEM bytes (copied): the CA certificate, this collector's certificate
/// and its key.
///
/// # Safety
///
/// `options` as for [`ks_options_add_endpoint`]; each buffer, when its length is not 0,
/// must point to that many readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_options_set_tls_pem(
    options: *mut ks_options,
    ca: *const u8,
    ca_len: usize,
    cert: *const u8,
    cert_len: usize,
    key: *const u8,
    key_len: usize,
) -> ks_result {
    let bytes = |data: *const u8, len: usize, what: &str| -> Result<Vec<u8>, ks_result> {
        if data.is_null() || len == 0 {
            return Err(fail(
                ks_result::KS_NULL_ARGUMENT,
                format!("{what} is NULL or empty"),
            ));
        }
        // SAFETY: not NULL, `len` readable bytes by the caller's contract.
        Ok(unsafe { std::slice::from_raw_parts(data, len) }.to_vec())
    };
    let set = |o: &mut ks_options| {
        o.tls = Some(Tls::Pem(
            bytes(ca, ca_len, "CA PEM")?,
            bytes(cert, cert_len, "certificate PEM")?,
            bytes(key, key_len, "key PEM")?,
        ));
        Ok(())
    };
    // SAFETY: `options` is valid or NULL by the caller's contract.
    unsafe { with_options(options, set) }
}

/// Trusts an operator's ed25519 public key to sign resumes: `len` bytes at `key`, either
/// the 32 raw bytes or the 64 hex digits `killswitch keys new` prints (copied). Call once
/// per key. A length other than 32 or 64 is `KS_INVALID_ARGUMENT`; the key itself is
/// checked by `ks_client_start`.
///
/// # Safety
///
/// `options` as for [`ks_options_add_endpoint`]; `key`, when not NULL, must point to `len`
/// readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_options_add_trusted_key(
    options: *mut ks_options,
    key: *const u8,
    len: usize,
) -> ks_result {
    let set = |o: &mut ks_options| {
        if key.is_null() {
            return Err(fail(ks_result::KS_NULL_ARGUMENT, "trusted key is NULL"));
        }
        if len != 32 && len != 64 {
            return Err(fail(
                ks_result::KS_INVALID_ARGUMENT,
                format!("a trusted key is 32 bytes or 64 hex digits, not {len} bytes"),
            ));
        }
        // SAFETY: not NULL, `len` readable bytes by the caller's contract.
        let key = unsafe { std::slice::from_raw_parts(key, len) };
        o.trusted_keys.push(key.to_vec());
        Ok(())
    };
    // SAFETY: `options` is valid or NULL by the caller's contract.
    unsafe { with_options(options, set) }
}

/// How many distinct trusted operators must have signed a resume for a gate to open
/// (default 0: resumes are not checked).
///
/// # Safety
///
/// `options` as for [`ks_options_add_endpoint`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_options_set_required_signatures(
    options: *mut ks_options,
    n: usize,
) -> ks_result {
    let set = |o: &mut ks_options| {
        o.required_signatures = n;
        Ok(())
    };
    // SAFETY: `options` is valid or NULL by the caller's contract.
    unsafe { with_options(options, set) }
}

/// The longest a signed statement may still be valid when it arrives (default 3600 s).
///
/// # Safety
///
/// `options` as for [`ks_options_add_endpoint`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_options_set_max_statement_lifetime_s(
    options: *mut ks_options,
    seconds: u64,
) -> ks_result {
    let set = |o: &mut ks_options| {
        o.max_statement_lifetime = Some(Duration::from_secs(seconds));
        Ok(())
    };
    // SAFETY: `options` is valid or NULL by the caller's contract.
    unsafe { with_options(options, set) }
}

/// How long a hook may run before it counts as failed (default 10,000 ms; 0 is refused
/// by `ks_client_start`).
///
/// # Safety
///
/// `options` as for [`ks_options_add_endpoint`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_options_set_hook_timeout_ms(
    options: *mut ks_options,
    ms: u64,
) -> ks_result {
    let set = |o: &mut ks_options| {
        o.hook_timeout = Some(Duration::from_millis(ms));
        Ok(())
    };
    // SAFETY: `options` is valid or NULL by the caller's contract.
    unsafe { with_options(options, set) }
}

/// Sets the hook run when a program is paused, after its gate closed (see [`ks_hook`]).
/// `user` is passed back to every call.
///
/// Thread-safety: the hook runs on a library thread, one hook at a time per client;
/// `user` must be usable from that thread.
///
/// # Safety
///
/// `options` as for [`ks_options_add_endpoint`]; `hook` must stay callable, and `user`
/// valid, until every client started from these options is stopped.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_options_set_on_pause(
    options: *mut ks_options,
    hook: ks_hook,
    user: *mut c_void,
) -> ks_result {
    let set = |o: &mut ks_options| {
        o.on_pause = Some(Callback::new(hook, user)?);
        Ok(())
    };
    // SAFETY: `options` is valid or NULL by the caller's contract.
    unsafe { with_options(options, set) }
}

/// Sets the hook run when a program is resumed, before its gate opens (see [`ks_hook`]):
/// the gate opens only if it returns 0 in time.
///
/// # Safety
///
/// As for [`ks_options_set_on_pause`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_options_set_on_resume(
    options: *mut ks_options,
    hook: ks_hook,
    user: *mut c_void,
) -> ks_result {
    let set = |o: &mut ks_options| {
        o.on_resume = Some(Callback::new(hook, user)?);
        Ok(())
    };
    // SAFETY: `options` is valid or NULL by the caller's contract.
    unsafe { with_options(options, set) }
}
