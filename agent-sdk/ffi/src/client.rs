//! Starting and stopping a client, its per-program gates, and the hooks' C callbacks.
//!
//! A `ks_client` owns a small tokio runtime (one worker thread) on which the SDK's session
//! task runs; hooks run on that runtime's blocking threads.

use std::collections::HashMap;
use std::ffi::{c_char, c_void};

use killswitch_sdk::{Cause, Client, Gate, HookResult, StateEvent};

use crate::error::{fail, guard, ks_result, text};
use crate::options::{Tls, ks_options};

/// A borrowed string: `len` bytes of UTF-8 at `data`, not NUL-terminated (print it with
/// `printf("%.*s", (int)s.len, s.data)`). Valid only during the callback that received it.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct ks_str {
    /// The first byte.
    pub data: *const c_char,
    /// How many bytes.
    pub len: usize,
}

impl ks_str {
    fn of(text: &str) -> Self {
        Self {
            data: text.as_ptr().cast(),
            len: text.len(),
        }
    }
}

/// Why a hook runs.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ks_cause {
    /// An operator paused or resumed the program (or this is the first state heard).
    KS_CAUSE_UPDATE = 0,
    /// Pause only: nothing came from the control plane within the program's grace.
    KS_CAUSE_LOST_CONTACT = 1,
    /// Resume only: contact is back and the control plane says RUNNING.
    KS_CAUSE_CONTACT_RESTORED = 2,
    /// Resume only: a fail-open program's state file said RUNNING at start.
    KS_CAUSE_STATE_FILE = 3,
    /// A cause this header does not know yet.
    KS_CAUSE_OTHER = 255,
}

impl From<Cause> for ks_cause {
    fn from(cause: Cause) -> Self {
        match cause {
            Cause::Update => Self::KS_CAUSE_UPDATE,
            Cause::LostContact => Self::KS_CAUSE_LOST_CONTACT,
            Cause::ContactRestored => Self::KS_CAUSE_CONTACT_RESTORED,
            Cause::StateFile => Self::KS_CAUSE_STATE_FILE,
            _ => Self::KS_CAUSE_OTHER,
        }
    }
}

/// What a hook is called for. Every string is borrowed for the duration of the call.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct ks_event {
    /// The program.
    pub program: ks_str,
    /// The generation of the state applied (only ever grows for a program).
    pub generation: u64,
    /// Why the hook runs.
    pub cause: ks_cause,
    /// The operator's reason (empty for lost contact).
    pub reason: ks_str,
    /// Who made the change (empty for lost contact).
    pub actor: ks_str,
    /// The incident id given with the change, empty when none.
    pub incident_id: ks_str,
    /// The pause asks to delete buffered, not yet uploaded data: do it, then call
    /// [`ks_hook_result_confirm_purge`].
    pub purge: bool,
}

/// Where a hook reports how it went: an error message, a purge confirmation. Owned by the
/// library, valid only during the hook call.
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct ks_hook_result {
    error: Option<String>,
    purged: bool,
}

/// A pause or resume hook: `user` is the pointer given with it, `event` what happened,
/// `result` where to report an error message or a purge. Return 0 when the hook succeeded;
/// anything else is a failure, reported in the acknowledgement with the message set by
/// [`ks_hook_result_set_error`] (or "hook returned N"). The gate stays closed whatever a
/// pause hook does; a resume hook that fails keeps it closed.
///
/// Called on a library thread, never concurrently with another hook of the same client,
/// within the hook timeout. It must not call [`ks_client_stop`].
#[allow(non_camel_case_types)]
pub type ks_hook = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        event: *const ks_event,
        result: *mut ks_hook_result,
    ) -> i32,
>;

/// A C hook and its user pointer.
#[derive(Clone, Copy)]
pub(crate) struct Callback {
    hook: unsafe extern "C" fn(*mut c_void, *const ks_event, *mut ks_hook_result) -> i32,
    user: *mut c_void,
}

// SAFETY: the caller of ks_options_set_on_pause/resume promises that the hook and `user`
// may be used from the library's threads (documented there).
unsafe impl Send for Callback {}
// SAFETY: as above; hooks of one client never run concurrently.
unsafe impl Sync for Callback {}

impl Callback {
    pub(crate) fn new(hook: ks_hook, user: *mut c_void) -> Result<Self, ks_result> {
        let hook = hook.ok_or_else(|| fail(ks_result::KS_NULL_ARGUMENT, "hook is NULL"))?;
        Ok(Self { hook, user })
    }

    /// Calls the C hook for `event` and turns its answer into the SDK's.
    fn call(self, event: &StateEvent) -> HookResult {
        let c_event = ks_event {
            program: ks_str::of(&event.program),
            generation: event.generation,
            cause: event.cause.into(),
            reason: ks_str::of(&event.reason),
            actor: ks_str::of(&event.actor),
            incident_id: ks_str::of(&event.incident_id),
            purge: event.purge,
        };
        let mut result = ks_hook_result::default();
        // SAFETY: the hook is callable and `user` valid by the setter's contract; the
        // event and result outlive the call.
        let code = unsafe { (self.hook)(self.user, &raw const c_event, &raw mut result) };
        if result.purged {
            event.confirm_purge();
        }
        if code == 0 {
            return Ok(());
        }
        Err(result
            .error
            .unwrap_or_else(|| format!("hook returned {code}"))
            .into())
    }
}

/// Sets the error message a failing hook reports (copied; at most 1,024 bytes reach the
/// control plane). Call it before returning non-zero.
///
/// # Safety
///
/// `result` must be the pointer the hook received, during the hook call; `message` a
/// NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_hook_result_set_error(
    result: *mut ks_hook_result,
    message: *const c_char,
) -> ks_result {
    guard(|| {
        if result.is_null() {
            return fail(ks_result::KS_NULL_ARGUMENT, "result is NULL");
        }
        // SAFETY: forwarded caller contract.
        let message = match unsafe { text(message, "message") } {
            Ok(message) => message.to_owned(),
            Err(error) => return error,
        };
        // SAFETY: the hook's result, alive and exclusively the hook's during the call.
        unsafe { (*result).error = Some(message) };
        ks_result::KS_OK
    })
}

/// Confirms that the pause hook deleted the buffered data a purge asked for.
///
/// # Safety
///
/// `result` must be the pointer the hook received, during the hook call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_hook_result_confirm_purge(result: *mut ks_hook_result) -> ks_result {
    guard(|| {
        if result.is_null() {
            return fail(ks_result::KS_NULL_ARGUMENT, "result is NULL");
        }
        // SAFETY: as for ks_hook_result_set_error.
        unsafe { (*result).purged = true };
        ks_result::KS_OK
    })
}

/// A program's gate: open while the program may collect.
///
/// Ownership: owned by its client, from [`ks_client_gate`]; never freed by the caller,
/// valid until [`ks_client_stop`]. Thread-safety: [`ks_gate_is_active`] may be called
/// from any thread, concurrently.
#[allow(non_camel_case_types)]
pub struct ks_gate {
    gate: Gate,
}

/// A running client. Start with [`ks_client_start`], stop (and free) with
/// [`ks_client_stop`]. Thread-safety: [`ks_client_gate`] may be called from any thread,
/// concurrently; [`ks_client_stop`] only once no other thread uses the client or its
/// gates.
#[allow(non_camel_case_types)]
pub struct ks_client {
    client: Option<Client>,
    gates: HashMap<String, Box<ks_gate>>,
    runtime: tokio::runtime::Runtime,
}

/// Starts a client from `options` (read during the call only; they stay the caller's)
/// and writes it to `out`. Every gate starts closed; the client connects in the
/// background, on its own runtime thread. On failure `*out` is left untouched and
/// [`crate::ks_last_error`] names the first problem (`KS_BUILD_ERROR`: the SDK's check of
/// the options, or a TLS file that cannot be read).
///
/// Ownership: the caller owns `*out` and must pass it to [`ks_client_stop`].
///
/// # Safety
///
/// `options` must come from `ks_options_new` and not be used by another thread during the
/// call; `out` must point to writable storage for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_client_start(
    options: *const ks_options,
    out: *mut *mut ks_client,
) -> ks_result {
    guard(|| {
        if options.is_null() || out.is_null() {
            return fail(ks_result::KS_NULL_ARGUMENT, "options or out is NULL");
        }
        // SAFETY: not NULL; valid and not shared during the call by the contract.
        let options = unsafe { &*options };
        match start(options) {
            Ok(client) => {
                // SAFETY: `out` is writable by the contract.
                unsafe { *out = Box::into_raw(Box::new(client)) };
                ks_result::KS_OK
            }
            Err(result) => result,
        }
    })
}

fn start(options: &ks_options) -> Result<ks_client, ks_result> {
    let mut builder = Client::builder()
        .endpoints(options.endpoints.iter().cloned())
        .collector_id(options.collector_id.clone().unwrap_or_default())
        .trusted_keys(&options.trusted_keys)
        .required_signatures(options.required_signatures);
    for program in &options.programs {
        builder = builder.program(program.as_str());
    }
    for (key, value) in &options.labels {
        builder = builder.label(key.as_str(), value.as_str());
    }
    if let Some(path) = &options.state_file {
        builder = builder.state_file(path.as_str());
    }
    if let Some(lifetime) = options.max_statement_lifetime {
        builder = builder.max_statement_lifetime(lifetime);
    }
    if let Some(timeout) = options.hook_timeout {
        builder = builder.hook_timeout(timeout);
    }
    if let Some(callback) = options.on_pause {
        builder = builder.on_pause(move |event| callback.call(event));
    }
    if let Some(callback) = options.on_resume {
        builder = builder.on_resume(move |event| callback.call(event));
    }
    builder = match &options.tls {
        None => builder,
        Some(Tls::Pem(ca, cert, key)) => builder.tls(ca.clone(), cert.clone(), key.clone()),
        Some(Tls::Files(ca, cert, key)) => {
            let read = |path: &str| {
                std::fs::read(path).map_err(|error| {
                    fail(
                        ks_result::KS_BUILD_ERROR,
                        format!("cannot read {path}: {error}"),
                    )
                })
            };
            builder.tls(read(ca)?, read(cert)?, read(key)?)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("killswitch")
        .enable_all()
        .build()
        .map_err(|error| {
            fail(
                ks_result::KS_RUNTIME_ERROR,
                format!("cannot start the client's runtime: {error}"),
            )
        })?;
    let client = {
        let _entered = runtime.enter();
        builder
            .start()
            .map_err(|error| fail(ks_result::KS_BUILD_ERROR, error.to_string()))?
    };
    let gates = options
        .programs
        .iter()
        .filter_map(|program| {
            let gate = client.gate(program)?;
            Some((program.clone(), Box::new(ks_gate { gate })))
        })
        .collect();
    Ok(ks_client {
        client: Some(client),
        gates,
        runtime,
    })
}

/// Stops a client: ends its session, closes every gate, waits for its threads (and for a
/// hook still running, even past its timeout: no hook runs after this returns), and frees
/// it and its gates. NULL is ignored.
///
/// # Safety
///
/// `client` must come from [`ks_client_start`], not be stopped twice, and no other thread
/// may use it or its gates from now on. Never call it from a hook (it would wait for
/// itself).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_client_stop(client: *mut ks_client) {
    if client.is_null() {
        return;
    }
    let _ = guard(|| {
        // SAFETY: from ks_client_start (Box::into_raw), stopped once by the contract.
        let client = unsafe { Box::from_raw(client) };
        let stop = move || {
            let mut client = client;
            if let Some(sdk) = client.client.take() {
                client.runtime.block_on(sdk.shutdown());
            }
        };
        if tokio::runtime::Handle::try_current().is_err() {
            stop();
            return ks_result::KS_OK;
        }
        // A Rust caller inside a tokio runtime: blocking on (and dropping) the client's
        // runtime is not allowed on this thread, so it happens on another.
        match std::thread::Builder::new()
            .name("killswitch-stop".into())
            .spawn(stop)
        {
            Ok(thread) => {
                let _ = thread.join();
                ks_result::KS_OK
            }
            Err(error) => fail(
                ks_result::KS_RUNTIME_ERROR,
                format!("cannot start a thread to stop the client: {error}"),
            ),
        }
    });
}

/// Writes the gate of `program` to `out`. The gate belongs to the client: valid until
/// [`ks_client_stop`], never freed by the caller, usable from any thread.
///
/// # Safety
///
/// `client` must come from [`ks_client_start`] and not be stopped; `program` a
/// NUL-terminated string; `out` writable storage for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_client_gate(
    client: *const ks_client,
    program: *const c_char,
    out: *mut *const ks_gate,
) -> ks_result {
    guard(|| {
        if client.is_null() || out.is_null() {
            return fail(ks_result::KS_NULL_ARGUMENT, "client or out is NULL");
        }
        // SAFETY: forwarded caller contract.
        let program = match unsafe { text(program, "program") } {
            Ok(program) => program,
            Err(error) => return error,
        };
        // SAFETY: a live client by the contract.
        let client = unsafe { &*client };
        match client.gates.get(program) {
            Some(gate) => {
                // SAFETY: `out` is writable by the contract.
                unsafe { *out = &raw const **gate };
                ks_result::KS_OK
            }
            None => fail(
                ks_result::KS_NOT_REGISTERED,
                format!("{program:?} is not a program this client was started with"),
            ),
        }
    })
}

/// Whether the program may collect now: one atomic load, no lock, no allocation, any
/// thread. Check it before capturing each event. NULL reads as closed (false).
///
/// # Safety
///
/// `gate`, when not NULL, must come from [`ks_client_gate`] of a client not yet stopped.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_gate_is_active(gate: *const ks_gate) -> bool {
    // No panic boundary needed: nothing here can panic.
    if gate.is_null() {
        return false;
    }
    // SAFETY: a live gate by the contract.
    unsafe { (*gate).gate.is_active() }
}
