//! Where results go: stdout, written as soon as each is ready so `status --watch` streams,
//! with a reader that went away (`| head`) ending the output quietly rather than as an
//! error.

use std::io::{self, Write};

use crate::exit::{Error, Exit};

/// The destination of a command's results.
pub struct Sink<'a> {
    writer: &'a mut (dyn Write + Send),
    closed: bool,
}

impl<'a> Sink<'a> {
    /// Results go to `writer`, usually stdout.
    pub fn new(writer: &'a mut (dyn Write + Send)) -> Self {
        Self {
            writer,
            closed: false,
        }
    }

    /// Writes `text` and flushes it. Once the reader has gone this writes nothing and
    /// succeeds: nobody is left to tell, and the exit code should still say what
    /// happened to the command.
    pub fn write(&mut self, text: &str) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        match self
            .writer
            .write_all(text.as_bytes())
            .and_then(|()| self.writer.flush())
        {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(err) => Err(Error::new(
                Exit::Error,
                format!("cannot write the result: {err}"),
            )),
        }
    }

    /// Whether the reader has gone; a command that streams stops then.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

impl std::fmt::Debug for Sink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Fails every write with `kind`.
    struct Failing(io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(self.0, "nope"))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_through() {
        let mut buffer = Vec::new();
        let mut sink = Sink::new(&mut buffer);
        sink.write("a\n").unwrap();
        sink.write("b\n").unwrap();
        assert!(!sink.is_closed());
        assert_eq!(buffer, b"a\nb\n");
    }

    #[test]
    fn a_closed_pipe_ends_output_quietly() {
        let mut writer = Failing(io::ErrorKind::BrokenPipe);
        let mut sink = Sink::new(&mut writer);
        sink.write("a\n").unwrap();
        assert!(sink.is_closed());
        sink.write("b\n").unwrap();
    }

    #[test]
    fn other_write_errors_fail() {
        let mut writer = Failing(io::ErrorKind::StorageFull);
        let err = Sink::new(&mut writer).write("a\n").unwrap_err();
        assert_eq!(err.exit(), Exit::Error);
        assert!(err.message().starts_with("cannot write the result: "));
    }
}
