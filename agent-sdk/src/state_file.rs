//! The optional state file: the last applied generation, state and policy of each program,
//! so a restarted collector never applies an older generation than it had.
//!
//! # Format
//!
//! UTF-8 text, one line per program, five fields separated by single spaces:
//!
//! ```text
//! # killswitch-sdk state file: PROGRAM GENERATION RUNNING|PAUSED pause|keep GRACE_MS
//! demo 42 RUNNING keep 30000
//! keystrokes 17 PAUSED pause 5000
//! ```
//!
//! - `PROGRAM`: a program name (`^[a-z][a-z0-9-]{0,62}$`);
//! - `GENERATION`: the generation last applied, decimal digits;
//! - `RUNNING` or `PAUSED`: the state the control plane sent at that generation (whether
//!   the gate was open is not kept: after a restart it is decided again);
//! - `pause` (fail-closed) or `keep` (fail-open): the program's policy on lost contact;
//! - `GRACE_MS`: its grace period in milliseconds, 0 meaning the default (30 s).
//!
//! Empty lines and lines starting with `#` are ignored. Reading is strict and never
//! fails as a whole: a line that does not follow the format exactly (or repeats a
//! program) is logged and skipped, the others still count. The client replaces the whole
//! file atomically (a temporary file next to it, then a rename), so a crash leaves either
//! the old or the new contents.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use tracing::{debug, warn};

use crate::apply::Desired;
use crate::names::is_valid_program_name;
use crate::policy::{OnLostContact, Policy};

/// Largest state file read, in bytes: a few lines per program. A larger file is not one
/// this client wrote, and is ignored rather than read into memory.
const MAX_LEN: u64 = 1 << 20;

/// What the state file keeps for one program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Saved {
    /// The generation last applied.
    pub(crate) generation: u64,
    /// What the control plane said at that generation.
    pub(crate) desired: Desired,
    /// The program's failure policy.
    pub(crate) policy: Policy,
}

/// The contents of a state file, as read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// The valid lines, by program.
    pub(crate) saved: BTreeMap<String, Saved>,
    /// One message per line that was skipped, e.g. `line 3: ...`.
    pub(crate) warnings: Vec<String>,
}

/// Reads state file contents, skipping (and describing) every line that is not valid.
pub(crate) fn parse(contents: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    for (index, line) in contents.split(|&byte| byte == b'\n').enumerate() {
        let number = index + 1;
        let line = match std::str::from_utf8(line) {
            Ok(line) => line,
            Err(_) => {
                parsed.warnings.push(format!("line {number}: not UTF-8"));
                continue;
            }
        };
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok((name, _)) if parsed.saved.contains_key(name) => parsed
                .warnings
                .push(format!("line {number}: program {name:?} appears again")),
            Ok((name, saved)) => {
                parsed.saved.insert(name.to_owned(), saved);
            }
            Err(problem) => parsed.warnings.push(format!("line {number}: {problem}")),
        }
    }
    parsed
}

/// The state file parser as a starting client runs it, for the fuzz targets in `fuzz/`
/// (feature `fuzzing`, which no collector enables). Parses `contents`, checks that what it
/// kept is written and read back unchanged, and asks each kept policy for its deadline.
///
/// # Errors
///
/// A description of the first difference if the kept states do not survive the round trip.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_state_file(contents: &[u8]) -> Result<usize, String> {
    let parsed = parse(contents);
    let again = parse(render(&parsed.saved).as_bytes());
    if !again.warnings.is_empty() {
        return Err(format!("rendered file has warnings: {:?}", again.warnings));
    }
    if again.saved != parsed.saved {
        return Err(format!("{:?} read back as {:?}", parsed.saved, again.saved));
    }
    let now = tokio::time::Instant::now();
    for saved in parsed.saved.values() {
        let deadline = saved.policy.deadline(now);
        let lost = saved.policy.lost_contact(now, now);
        if deadline.is_some_and(|at| at <= now) != lost {
            return Err(format!("{saved:?}: deadline and lost contact disagree"));
        }
    }
    Ok(parsed.saved.len())
}

/// Reads one line: `PROGRAM GENERATION RUNNING|PAUSED pause|keep GRACE_MS`.
fn parse_line(line: &str) -> Result<(&str, Saved), String> {
    let fields: Vec<&str> = line.split(' ').collect();
    let [name, generation, state, on_lost_contact, grace_ms] = fields[..] else {
        return Err(format!(
            "expected 5 fields separated by single spaces, found {}",
            fields.len()
        ));
    };
    if !is_valid_program_name(name) {
        return Err(format!("invalid program name {name:?}"));
    }
    let generation = parse_number(generation)
        .ok_or_else(|| format!("invalid generation {generation:?}: expected decimal digits"))?;
    // A forged file must not pin a program at a generation no real state can pass.
    if generation > killswitch_proto::MAX_GENERATION {
        return Err(format!(
            "invalid generation {generation}: beyond the largest etcd revision ({})",
            killswitch_proto::MAX_GENERATION
        ));
    }
    let desired = match state {
        "RUNNING" => Desired::Running,
        "PAUSED" => Desired::Paused,
        _ => {
            return Err(format!(
                "invalid state {state:?}: expected RUNNING or PAUSED"
            ));
        }
    };
    let on_lost_contact = match on_lost_contact {
        "pause" => OnLostContact::Pause,
        "keep" => OnLostContact::Keep,
        _ => {
            return Err(format!(
                "invalid policy {on_lost_contact:?}: expected pause or keep"
            ));
        }
    };
    let grace_ms = parse_number(grace_ms).ok_or_else(|| {
        format!("invalid grace {grace_ms:?}: expected milliseconds as decimal digits")
    })?;
    let saved = Saved {
        generation,
        desired,
        policy: Policy::new(on_lost_contact, grace_ms),
    };
    Ok((name, saved))
}

/// Reads a `u64` written as decimal digits only (no sign, no spaces), `None` otherwise
/// or if it overflows.
fn parse_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Writes `saved` in the state file format, with a header line, in program order.
pub(crate) fn render(saved: &BTreeMap<String, Saved>) -> String {
    let mut text = String::from(
        "# killswitch-sdk state file: PROGRAM GENERATION RUNNING|PAUSED pause|keep GRACE_MS\n",
    );
    for (name, saved) in saved {
        let state = match saved.desired {
            Desired::Running => "RUNNING",
            Desired::Paused => "PAUSED",
        };
        let on_lost_contact = match saved.policy.on_lost_contact {
            OnLostContact::Pause => "pause",
            OnLostContact::Keep => "keep",
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "{name} {} {state} {on_lost_contact} {}",
            saved.generation,
            saved.policy.grace_ms(),
        );
    }
    text
}

/// Why a path cannot be a state file, or `None` if it can: it must name a file, so that a
/// temporary file can be created next to it.
pub(crate) fn path_problem(path: &Path) -> Option<&'static str> {
    path.file_name()
        .is_none()
        .then_some("the path does not name a file")
}

/// Reads the state file at `path` when the client starts. A missing file is normal (the
/// first start); an unreadable one, or each invalid line, is logged and ignored.
pub(crate) fn load(path: &Path) -> BTreeMap<String, Saved> {
    let contents = match read(path) {
        Ok(contents) => contents,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            debug!(path = %path.display(), "no killswitch state file yet");
            return BTreeMap::new();
        }
        Err(error) => {
            warn!(
                path = %path.display(),
                %error,
                "cannot read the killswitch state file: ignoring it; every program starts paused",
            );
            return BTreeMap::new();
        }
    };
    let Parsed { saved, warnings } = parse(&contents);
    for problem in warnings {
        warn!(path = %path.display(), %problem, "ignoring a line of the killswitch state file");
    }
    saved
}

/// Reads at most [`MAX_LEN`] bytes of `path`.
fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut contents = Vec::new();
    File::open(path)?
        .take(MAX_LEN + 1)
        .read_to_end(&mut contents)?;
    if contents.len() as u64 > MAX_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_LEN} bytes"),
        ));
    }
    Ok(contents)
}

/// Replaces the file at `path` with `contents` atomically: writes and syncs a temporary
/// file next to it, then renames it over `path`.
fn write_atomically(path: &Path, contents: &str) -> io::Result<()> {
    let mut temp_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?
        .to_os_string();
    temp_name.push(".tmp");
    let temp = path.with_file_name(temp_name);
    let written = File::create(&temp).and_then(|mut file| {
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&temp, path));
    if renamed.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = std::fs::remove_file(&temp);
    }
    renamed
}

/// The state file of a running client.
#[derive(Debug)]
pub(crate) struct StateFile {
    path: PathBuf,
    /// The contents last written, so that unchanged contents are not written again.
    written: Mutex<Option<String>>,
}

impl StateFile {
    /// The state file at `path`, not written yet by this client.
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            written: Mutex::new(None),
        }
    }

    /// Writes `saved` on the blocking pool, unless it is what this client wrote last. A
    /// failure is logged: the gates do not depend on the file, only the next start does.
    pub(crate) async fn save(&self, saved: &BTreeMap<String, Saved>) {
        let contents = render(saved);
        if self.written().as_deref() == Some(contents.as_str()) {
            return;
        }
        let path = self.path.clone();
        let text = contents.clone();
        match tokio::task::spawn_blocking(move || write_atomically(&path, &text)).await {
            Ok(Ok(())) => self.set_written(contents),
            Ok(Err(error)) => warn!(
                path = %self.path.display(),
                %error,
                "cannot write the killswitch state file; a restart may start from older states",
            ),
            Err(error) => warn!(
                path = %self.path.display(),
                %error,
                "writing the killswitch state file failed",
            ),
        }
    }

    fn written(&self) -> Option<String> {
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_written(&self, contents: String) {
        *self.written.lock().unwrap_or_else(PoisonError::into_inner) = Some(contents);
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_LEN, Parsed, Saved, StateFile, load, parse, path_problem, render};
    use crate::apply::Desired;
    use crate::policy::{OnLostContact, Policy};
    use std::collections::BTreeMap;
    use std::path::Path;

    fn saved(
        generation: u64,
        desired: Desired,
        on_lost_contact: OnLostContact,
        grace_ms: u64,
    ) -> Saved {
        Saved {
            generation,
            desired,
            policy: Policy::new(on_lost_contact, grace_ms),
        }
    }

    fn example() -> BTreeMap<String, Saved> {
        [
            (
                "demo".to_owned(),
                saved(42, Desired::Running, OnLostContact::Keep, 30_000),
            ),
            (
                "keystrokes".to_owned(),
                saved(17, Desired::Paused, OnLostContact::Pause, 5_000),
            ),
            (
                "z".to_owned(),
                saved(
                    killswitch_proto::MAX_GENERATION,
                    Desired::Running,
                    OnLostContact::Pause,
                    u64::MAX,
                ),
            ),
        ]
        .into()
    }

    #[test]
    fn renders_the_documented_format() {
        assert_eq!(
            render(&example()),
            "# killswitch-sdk state file: PROGRAM GENERATION RUNNING|PAUSED pause|keep GRACE_MS\n\
             demo 42 RUNNING keep 30000\n\
             keystrokes 17 PAUSED pause 5000\n\
             z 9223372036854775807 RUNNING pause 18446744073709551615\n"
        );
    }

    #[test]
    fn round_trips() {
        let parsed = parse(render(&example()).as_bytes());
        assert_eq!(
            parsed,
            Parsed {
                saved: example(),
                warnings: vec![],
            }
        );
        assert_eq!(
            parse(render(&BTreeMap::new()).as_bytes()),
            Parsed::default()
        );
    }

    #[test]
    fn zero_grace_means_the_default() {
        let parsed = parse(b"demo 1 RUNNING pause 0\n");
        let demo = parsed.saved.get("demo").map(|saved| saved.policy);
        assert_eq!(demo, Some(Policy::default()));
    }

    /// Parses a file made of one valid line, `line`, and another valid line, and checks
    /// that `line` alone is skipped with a warning starting with `expected`.
    fn check_bad_line(line: &[u8], expected: &str) {
        let mut contents = b"demo 3 RUNNING keep 1000\n".to_vec();
        contents.extend_from_slice(line);
        contents.extend_from_slice(b"\nmouse 5 PAUSED pause 2000");
        let parsed = parse(&contents);
        let names: Vec<&str> = parsed.saved.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["demo", "mouse"],
            "{:?}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
        assert!(
            parsed.warnings[0].starts_with(expected),
            "{:?} should start with {expected:?}",
            parsed.warnings[0]
        );
    }

    #[test]
    fn bad_lines_are_skipped_one_by_one() {
        check_bad_line(b"keys 3 RUNNING keep", "line 2: expected 5 fields");
        check_bad_line(b"keys 3 RUNNING keep 1000 x", "line 2: expected 5 fields");
        check_bad_line(b"keys  3 RUNNING keep 1000", "line 2: expected 5 fields");
        check_bad_line(b"keys\t3 RUNNING keep 1000", "line 2: expected 5 fields");
        check_bad_line(b"keys 3 RUNNING keep 1000 ", "line 2: expected 5 fields");
        check_bad_line(b" keys 3 RUNNING keep 1000", "line 2: expected 5 fields");
        check_bad_line(b"keys 3 RUNNING keep 1000\r", "line 2: invalid grace");
        check_bad_line(b" ", "line 2: expected 5 fields");
        check_bad_line(b"- 3 RUNNING keep 1000", "line 2: invalid program name");
        check_bad_line(b"Keys 3 RUNNING keep 1000", "line 2: invalid program name");
        check_bad_line(b"keys -3 RUNNING keep 1000", "line 2: invalid generation");
        check_bad_line(
            b"keys 18446744073709551615 RUNNING keep 1000",
            "line 2: invalid generation 18446744073709551615: beyond the largest etcd revision",
        );
        check_bad_line(b"keys +3 RUNNING keep 1000", "line 2: invalid generation");
        check_bad_line(b"keys 3.0 RUNNING keep 1000", "line 2: invalid generation");
        check_bad_line(
            b"keys 18446744073709551616 RUNNING keep 1000",
            "line 2: invalid generation",
        );
        check_bad_line(b"keys 3 running keep 1000", "line 2: invalid state");
        check_bad_line(b"keys 3 UNSPECIFIED keep 1000", "line 2: invalid state");
        check_bad_line(b"keys 3 RUNNING KEEP 1000", "line 2: invalid policy");
        check_bad_line(b"keys 3 RUNNING open 1000", "line 2: invalid policy");
        check_bad_line(b"keys 3 RUNNING keep 1s", "line 2: invalid grace");
        check_bad_line(b"keys 3 RUNNING keep \xff", "line 2: not UTF-8");
        check_bad_line(
            b"demo 9 PAUSED pause 1000",
            "line 2: program \"demo\" appears again",
        );
    }

    #[test]
    fn comments_and_empty_lines_are_ignored() {
        let parsed = parse(b"# header\n\n#demo 1 RUNNING keep 1\nmouse 5 PAUSED pause 2000\n\n");
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        assert_eq!(parsed.saved.len(), 1);
    }

    #[test]
    fn garbage_never_panics() {
        let parsed = parse(&[0, 159, 146, 150, b'\n', b' ', b'\n', 255]);
        assert!(parsed.saved.is_empty());
        assert_eq!(parsed.warnings.len(), 3);
    }

    #[test]
    fn paths() {
        assert_eq!(
            path_problem(Path::new("/var/lib/collector/killswitch.state")),
            None
        );
        assert_eq!(path_problem(Path::new("state")), None);
        assert!(path_problem(Path::new("/")).is_some());
        assert!(path_problem(Path::new("")).is_some());
        assert!(path_problem(Path::new("a/..")).is_some());
    }

    #[tokio::test]
    async fn saves_and_loads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("killswitch.state");
        assert!(load(&path).is_empty(), "a missing file is empty");
        let file = StateFile::new(path.clone());
        file.save(&example()).await;
        assert_eq!(load(&path), example());
        // Only the file itself is left: the temporary one was renamed.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect::<Result<_, _>>()
            .expect("entries");
        assert_eq!(names, ["killswitch.state"]);
        // Unchanged contents are not written again; changed ones are.
        std::fs::write(&path, "edited\n").expect("write");
        file.save(&example()).await;
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("edited\n")
        );
        let mut changed = example();
        changed.remove("z");
        file.save(&changed).await;
        assert_eq!(load(&path), changed);
    }

    #[tokio::test]
    async fn unreadable_or_unwritable_files_are_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A directory cannot be read as a file, nor replaced by one.
        assert!(load(dir.path()).is_empty());
        let file = StateFile::new(dir.path().join("missing-dir").join("state"));
        file.save(&example()).await;
        // Too large to be a state file.
        let big = dir.path().join("big");
        let line = "demo 1 RUNNING keep 1\n";
        let copies = usize::try_from(MAX_LEN).expect("fits") / line.len() + 1;
        std::fs::write(&big, line.repeat(copies)).expect("write");
        assert!(load(&big).is_empty());
    }
}
