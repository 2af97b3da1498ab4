//! `killswitch._killswitch`: the Python binding of `killswitch-sdk`.
//!
//! A thin layer in the style of pydantic-core and polars: it converts Python arguments
//! into a [`killswitch_sdk::ClientBuilder`], forwards, and converts back. Every rule (gates,
//! fail-closed, signatures, state file, hook timeouts) is the Rust SDK's; nothing here
//! decides anything. The Python package `killswitch` (`python/killswitch/`) re-exports
//! these classes and adds `Client.wait_ready`, an awaitable that polls
//! [`Client::is_ready`].
//!
//! Threads and the GIL: each [`Client`] owns a tokio runtime whose threads run the
//! session. Hooks run on its blocking pool and take the GIL only to call the Python
//! callable; every wait done here for Python ([`Client::wait_ready_blocking`],
//! [`Client::stop`]) releases the GIL first, so hooks can run meanwhile.
//! [`Gate::is_active`] is one atomic load on a frozen object: no lock, no allocation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use killswitch_sdk::{ClientBuilder, HookResult, StateEvent as SdkEvent};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple, PyType};

create_exception!(
    _killswitch,
    KillswitchError,
    PyException,
    "The base class of the errors this package raises."
);
create_exception!(
    _killswitch,
    BuildError,
    KillswitchError,
    "The client configuration cannot work (the SDK's BuildError): the message says what \
     to change."
);

/// How long [`Client::stop`] waits for the session task, then for the runtime's threads.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often [`Client::wait_ready_blocking`] looks at the applied generations.
const READY_POLL: Duration = Duration::from_millis(5);

/// A started SDK client and the runtime its session task runs on.
struct Running {
    runtime: tokio::runtime::Runtime,
    client: killswitch_sdk::Client,
}

/// A connection to the Killswitch control plane (the SDK's `Client`).
///
/// Built from keyword arguments; starts at once. Use it as a context manager, or call
/// `stop()`.
#[pyclass(module = "killswitch._killswitch", subclass, frozen)]
pub struct Client {
    /// `None` once stopped.
    running: Mutex<Option<Running>>,
    /// The registered programs, in the order given.
    programs: Vec<String>,
    /// This collector's id.
    collector_id: String,
}

/// Bytes of PEM given as `bytes`, PEM text, or the path of a PEM file.
fn pem(role: &str, value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(bytes.as_bytes().to_vec());
    }
    if value.is_instance_of::<PyString>() {
        let text: String = value.extract()?;
        if text.trim_start().starts_with("-----BEGIN") {
            return Ok(text.into_bytes());
        }
    }
    let path: PathBuf = value.extract().map_err(|_| {
        PyValueError::new_err(format!(
            "tls {role}: give PEM bytes, PEM text or the path of a PEM file"
        ))
    })?;
    std::fs::read(&path).map_err(|error| {
        BuildError::new_err(format!(
            "invalid TLS configuration: cannot read the {role} file {}: {error}",
            path.display()
        ))
    })
}

/// A trusted key as the SDK takes it: 32 raw bytes, or 64 hex digits as text.
fn trusted_key(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(bytes.as_bytes().to_vec());
    }
    if value.is_instance_of::<PyString>() {
        let text: String = value.extract()?;
        return Ok(text.trim().as_bytes().to_vec());
    }
    Err(PyValueError::new_err(
        "trusted_keys: give each key as 32 bytes or a string of 64 hex digits",
    ))
}

/// The text an errored Ack carries for the exception `error`: its message, or its type's
/// name when the message is empty.
fn exception_message(py: Python<'_>, error: &PyErr) -> String {
    let message = error
        .value(py)
        .str()
        .map(|text| text.to_string())
        .unwrap_or_default();
    if !message.is_empty() {
        return message;
    }
    error
        .get_type(py)
        .name()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "exception".to_owned())
}

/// A sync SDK hook that calls `callable(StateEvent)` under the GIL; an exception becomes
/// the hook's error, so the Ack carries its message, and so does returning an awaitable.
fn hook(callable: Py<PyAny>) -> impl Fn(&SdkEvent) -> HookResult + Send + Sync + 'static {
    move |event: &SdkEvent| {
        Python::attach(|py| {
            let event = StateEvent {
                inner: event.clone(),
            };
            let returned = callable
                .call1(py, (event,))
                .map_err(|error| exception_message(py, &error))?;
            // An `async def` hook would return a coroutine that nothing awaits: refuse it
            // rather than report a cleanup that never ran.
            if returned.bind(py).hasattr("__await__").unwrap_or(false) {
                return Err(
                    "the hook returned an awaitable: hooks must be plain functions \
                            (async hooks are not supported)"
                        .into(),
                );
            }
            Ok(())
        })
    }
}

/// Whether every registered program has an applied state.
fn all_applied(client: &killswitch_sdk::Client, programs: &[String]) -> bool {
    programs
        .iter()
        .all(|program| client.applied_generation(program).is_some())
}

impl Client {
    /// Runs `f` on the running SDK client, or raises if the client was stopped.
    fn with_running<T>(&self, f: impl FnOnce(&Running) -> T) -> PyResult<T> {
        let running = self
            .running
            .lock()
            .map_err(|_| PyRuntimeError::new_err("killswitch client state poisoned"))?;
        match running.as_ref() {
            Some(running) => Ok(f(running)),
            None => Err(KillswitchError::new_err("the client is stopped")),
        }
    }
}

#[pymethods]
impl Client {
    /// Validates the configuration, starts a tokio runtime and the SDK's session task.
    #[new]
    #[pyo3(signature = (
        *,
        endpoints,
        collector_id,
        programs,
        labels = None,
        tls = None,
        state_file = None,
        trusted_keys = None,
        required_signatures = 0,
        max_statement_lifetime = 3600.0,
        on_pause = None,
        on_resume = None,
        hook_timeout = 10.0,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        endpoints: Vec<String>,
        collector_id: String,
        programs: Vec<String>,
        labels: Option<BTreeMap<String, String>>,
        tls: Option<Bound<'_, PyTuple>>,
        state_file: Option<PathBuf>,
        trusted_keys: Option<Vec<Bound<'_, PyAny>>>,
        required_signatures: usize,
        max_statement_lifetime: f64,
        on_pause: Option<Py<PyAny>>,
        on_resume: Option<Py<PyAny>>,
        hook_timeout: f64,
    ) -> PyResult<Self> {
        let hook_timeout = Duration::try_from_secs_f64(hook_timeout).map_err(|_| {
            PyValueError::new_err("hook_timeout: give a finite, non-negative number of seconds")
        })?;
        let max_statement_lifetime =
            Duration::try_from_secs_f64(max_statement_lifetime).map_err(|_| {
                PyValueError::new_err(
                    "max_statement_lifetime: give a finite, non-negative number of seconds",
                )
            })?;
        let mut builder: ClientBuilder = killswitch_sdk::Client::builder()
            .endpoints(endpoints)
            .collector_id(collector_id.clone())
            .hook_timeout(hook_timeout)
            .required_signatures(required_signatures)
            .max_statement_lifetime(max_statement_lifetime);
        for program in &programs {
            builder = builder.program(program.clone());
        }
        for (key, value) in labels.unwrap_or_default() {
            builder = builder.label(key, value);
        }
        if let Some(tls) = tls {
            if tls.len() != 3 {
                return Err(PyValueError::new_err(
                    "tls: give a tuple (ca, cert, key) of PEM bytes, PEM text or file paths",
                ));
            }
            builder = builder.tls(
                pem("ca", &tls.get_item(0)?)?,
                pem("cert", &tls.get_item(1)?)?,
                pem("key", &tls.get_item(2)?)?,
            );
        }
        if let Some(path) = state_file {
            builder = builder.state_file(path);
        }
        if let Some(keys) = trusted_keys {
            let keys = keys.iter().map(trusted_key).collect::<PyResult<Vec<_>>>()?;
            builder = builder.trusted_keys(keys);
        }
        for callable in on_pause.iter().chain(on_resume.iter()) {
            Python::attach(|py| {
                if callable.bind(py).is_callable() {
                    Ok(())
                } else {
                    Err(PyValueError::new_err(
                        "on_pause and on_resume must be callables",
                    ))
                }
            })?;
        }
        if let Some(callable) = on_pause {
            builder = builder.on_pause(hook(callable));
        }
        if let Some(callable) = on_resume {
            builder = builder.on_resume(hook(callable));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("killswitch")
            .enable_all()
            .build()
            .map_err(|error| {
                KillswitchError::new_err(format!("cannot start a tokio runtime: {error}"))
            })?;
        let client = {
            let _entered = runtime.enter();
            builder
                .start()
                .map_err(|error| BuildError::new_err(error.to_string()))?
        };
        Ok(Self {
            running: Mutex::new(Some(Running { runtime, client })),
            programs,
            collector_id,
        })
    }

    /// The gate of `program`; raises `KeyError` if it was not registered.
    fn gate(&self, program: &str) -> PyResult<Gate> {
        self.with_running(|running| running.client.gate(program))?
            .map(|inner| Gate {
                inner,
                program: program.to_owned(),
            })
            .ok_or_else(|| PyKeyError::new_err(format!("program {program:?} is not registered")))
    }

    /// The generation last applied for `program`, or `None`.
    fn applied_generation(&self, program: &str) -> PyResult<Option<u64>> {
        self.with_running(|running| running.client.applied_generation(program))
    }

    /// Whether every registered program has an applied state (from the control plane, or
    /// from the state file).
    fn is_ready(&self) -> PyResult<bool> {
        self.with_running(|running| all_applied(&running.client, &self.programs))
    }

    /// Blocks (without the GIL) until [`is_ready`](Client::is_ready) or `timeout` seconds
    /// passed (`None`: forever); returns whether it is ready.
    #[pyo3(signature = (timeout = None))]
    fn wait_ready_blocking(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = match timeout {
            None => None,
            Some(seconds) => Some(
                Instant::now()
                    + Duration::try_from_secs_f64(seconds).map_err(|_| {
                        PyValueError::new_err("timeout: give a non-negative number of seconds")
                    })?,
            ),
        };
        loop {
            if self.is_ready()? {
                return Ok(true);
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Ok(false);
            }
            py.detach(|| std::thread::sleep(READY_POLL));
            py.check_signals()?;
        }
    }

    /// Stops the session, closes every gate and the runtime; a second call does nothing.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(KillswitchError::new_err(
                "stop() cannot be called from a hook: hooks run on the client's runtime",
            ));
        }
        let running = self
            .running
            .lock()
            .map_err(|_| PyRuntimeError::new_err("killswitch client state poisoned"))?
            .take();
        if let Some(Running { runtime, client }) = running {
            // Without the GIL: a hook may be waiting for it to finish.
            py.detach(move || {
                // The session task ends at its next await; a timeout only skips the
                // gate closing, which shutting the runtime down does too.
                let _ = runtime.block_on(async move {
                    tokio::time::timeout(STOP_TIMEOUT, client.shutdown()).await
                });
                runtime.shutdown_timeout(STOP_TIMEOUT);
            });
        }
        Ok(())
    }

    /// Whether the client was stopped.
    #[getter]
    fn stopped(&self) -> PyResult<bool> {
        Ok(self
            .running
            .lock()
            .map_err(|_| PyRuntimeError::new_err("killswitch client state poisoned"))?
            .is_none())
    }

    /// The registered programs.
    #[getter]
    fn programs(&self) -> Vec<String> {
        self.programs.clone()
    }

    /// This collector's id.
    #[getter]
    fn collector_id(&self) -> String {
        self.collector_id.clone()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (_exc_type = None, _exc_value = None, _traceback = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<Bound<'_, PyType>>,
        _exc_value: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> PyResult<String> {
        Ok(format!(
            "Client(collector_id={:?}, programs={:?}, stopped={})",
            self.collector_id,
            self.programs,
            if self.stopped()? { "True" } else { "False" }
        ))
    }
}

impl Drop for Client {
    /// A client garbage-collected without `stop()`: stop without waiting (this may run
    /// with the GIL held, and a hook may be waiting for it).
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock()
            && let Some(Running { runtime, client }) = running.take()
        {
            drop(client);
            runtime.shutdown_background();
        }
    }
}

/// Whether a collector may capture data for one program right now (the SDK's `Gate`).
#[pyclass(module = "killswitch._killswitch", frozen)]
pub struct Gate {
    inner: killswitch_sdk::Gate,
    program: String,
}

#[pymethods]
impl Gate {
    /// Whether the collector may capture now: one atomic load.
    #[getter]
    fn active(&self) -> bool {
        self.inner.is_active()
    }

    /// Whether the collector may capture now: one atomic load.
    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    /// The program this gate is for.
    #[getter]
    fn program(&self) -> String {
        self.program.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "Gate(program={:?}, active={})",
            self.program,
            if self.inner.is_active() {
                "True"
            } else {
                "False"
            }
        )
    }
}

/// A state change for one program, as given to a hook (the SDK's `StateEvent`).
#[pyclass(module = "killswitch._killswitch", frozen)]
pub struct StateEvent {
    inner: SdkEvent,
}

#[pymethods]
impl StateEvent {
    /// The program the change is for.
    #[getter]
    fn program(&self) -> &str {
        &self.inner.program
    }

    /// The generation of the state applied.
    #[getter]
    fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// Why the hook runs: "update", "lost contact", "contact restored" or "state file".
    #[getter]
    fn cause(&self) -> String {
        self.inner.cause.to_string()
    }

    /// Why the operator made the change.
    #[getter]
    fn reason(&self) -> &str {
        &self.inner.reason
    }

    /// The incident the change belongs to, empty when none was given.
    #[getter]
    fn incident_id(&self) -> &str {
        &self.inner.incident_id
    }

    /// Who made the change.
    #[getter]
    fn actor(&self) -> &str {
        &self.inner.actor
    }

    /// For a pause: delete unsent buffered data, then call `confirm_purge()`.
    #[getter]
    fn purge(&self) -> bool {
        self.inner.purge
    }

    /// Confirms that the pause hook deleted the buffered data `purge` asked for.
    fn confirm_purge(&self) {
        self.inner.confirm_purge();
    }

    fn __repr__(&self) -> String {
        format!(
            "StateEvent(program={:?}, generation={}, cause={:?}, reason={:?}, actor={:?}, \
             purge={})",
            self.inner.program,
            self.inner.generation,
            self.inner.cause.to_string(),
            self.inner.reason,
            self.inner.actor,
            if self.inner.purge { "True" } else { "False" }
        )
    }
}

/// The extension module `killswitch._killswitch`.
#[pymodule]
fn _killswitch(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Client>()?;
    m.add_class::<Gate>()?;
    m.add_class::<StateEvent>()?;
    m.add("KillswitchError", py.get_type::<KillswitchError>())?;
    m.add("BuildError", py.get_type::<BuildError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
