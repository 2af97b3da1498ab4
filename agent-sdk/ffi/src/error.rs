//! `ks_result`, the last error message of the calling thread, and the panic boundary every
//! entry point goes through.

use std::cell::RefCell;
use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What a fallible `ks_` function did. `KS_OK` is 0; for anything else
/// [`ks_last_error`] says what went wrong, in words.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ks_result {
    /// It worked.
    KS_OK = 0,
    /// A required pointer argument was NULL.
    KS_NULL_ARGUMENT = 1,
    /// A string argument is not UTF-8.
    KS_INVALID_UTF8 = 2,
    /// An argument is out of range or malformed (a trusted key neither 32 nor 64 bytes
    /// long, a log level that is not a `ks_log_level`, a second logger, ...).
    KS_INVALID_ARGUMENT = 3,
    /// `ks_client_start` refused the options: the message names the first problem.
    KS_BUILD_ERROR = 4,
    /// The program is not one the client was started with.
    KS_NOT_REGISTERED = 5,
    /// The library's runtime could not be started (threads, file descriptors).
    KS_RUNTIME_ERROR = 6,
    /// A bug inside the library panicked; it was caught at the boundary. The object the
    /// call was about should not be used further.
    KS_PANIC = 7,
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `message` as this thread's last error and returns `result`.
pub(crate) fn fail(result: ks_result, message: impl Into<String>) -> ks_result {
    let message = message.into();
    LAST_ERROR.with(|last| *last.borrow_mut() = message);
    result
}

/// Runs `body` behind the panic boundary: a panic becomes [`ks_result::KS_PANIC`] with its
/// message as the last error.
pub(crate) fn guard(body: impl FnOnce() -> ks_result) -> ks_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            fail(
                ks_result::KS_PANIC,
                format!("killswitch panicked (a bug): {what}"),
            )
        }
    }
}

/// A borrowed C string as `&str`, or the error to return.
///
/// # Safety
///
/// `text`, when not NULL, must point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn text<'a>(text: *const c_char, what: &str) -> Result<&'a str, ks_result> {
    if text.is_null() {
        return Err(fail(ks_result::KS_NULL_ARGUMENT, format!("{what} is NULL")));
    }
    // SAFETY: not NULL, and NUL-terminated and alive for 'a by the caller's contract.
    let text = unsafe { CStr::from_ptr(text) };
    text.to_str()
        .map_err(|_| fail(ks_result::KS_INVALID_UTF8, format!("{what} is not UTF-8")))
}

/// Copies this thread's last error message into `buf` (at most `len` bytes, NUL included,
/// cut at a character boundary) and returns the full message's length in bytes, without
/// the NUL: a return value of `len` or more means it was cut. With `buf` NULL or `len` 0
/// nothing is written, which tells the length to allocate. The message stays until the
/// next failing call on this thread.
///
/// Thread-safe: each thread has its own last error.
///
/// # Safety
///
/// `buf`, when not NULL, must point to at least `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ks_last_error(buf: *mut c_char, len: usize) -> usize {
    let copy = catch_unwind(AssertUnwindSafe(|| {
        LAST_ERROR.with(|last| {
            let message = last.borrow();
            if !buf.is_null() && len > 0 {
                let mut end = message.len().min(len - 1);
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                // SAFETY: `buf` has `len` writable bytes and `end + 1 <= len`.
                unsafe {
                    std::ptr::copy_nonoverlapping(message.as_ptr(), buf.cast::<u8>(), end);
                    *buf.add(end) = 0;
                }
            }
            message.len()
        })
    }));
    copy.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_a_result_and_a_message() {
        let result = guard(|| panic!("boom"));
        assert_eq!(result, ks_result::KS_PANIC);
        let mut buf = [0 as c_char; 64];
        // SAFETY: a valid buffer of 64 bytes.
        let len = unsafe { ks_last_error(buf.as_mut_ptr(), buf.len()) };
        // SAFETY: ks_last_error wrote a NUL-terminated string.
        let message = unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_str()
            .expect("utf-8");
        assert_eq!(message, "killswitch panicked (a bug): boom");
        assert_eq!(len, message.len());
        // SAFETY: NULL is allowed and writes nothing.
        assert_eq!(unsafe { ks_last_error(std::ptr::null_mut(), 0) }, len);
        let mut small = [0 as c_char; 4];
        // SAFETY: a valid buffer of 4 bytes.
        let full = unsafe { ks_last_error(small.as_mut_ptr(), small.len()) };
        assert_eq!(full, len, "the full length, although cut");
        // SAFETY: NUL-terminated within the 4 bytes.
        assert_eq!(unsafe { CStr::from_ptr(small.as_ptr()) }.to_bytes(), b"kil");
    }
}
