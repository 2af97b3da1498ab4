//! What the renderers draw with: key/value blocks ([`Row`], [`block`]), column tables
//! ([`columns`]), "and N more" for lists the control plane cut short, and the STOP-ALL
//! banner that every view of a stopped fleet starts with.

use std::fmt::Write as _;

use super::{clean, or_dash, time};
use crate::view::StopAllView;

/// One key of a key/value block; a value may span several lines.
pub(super) struct Row {
    key: &'static str,
    lines: Vec<String>,
}

impl Row {
    /// A one-line value, escaped; empty shows as `-`.
    pub(super) fn new(key: &'static str, value: &str) -> Self {
        let value = if value.is_empty() {
            "-".to_owned()
        } else {
            clean(value)
        };
        Self {
            key,
            lines: vec![value],
        }
    }

    /// The key and the lines, for another rendering (the console's pages).
    pub(super) fn into_parts(self) -> (&'static str, Vec<String>) {
        (self.key, self.lines)
    }

    /// Already escaped lines.
    pub(super) fn lines(key: &'static str, lines: impl IntoIterator<Item = String>) -> Self {
        Self {
            key,
            lines: lines.into_iter().collect(),
        }
    }
}

/// `key:  value` lines with the values aligned; continuation lines are indented to the
/// value column.
pub(super) fn block(rows: &[Row]) -> String {
    let width = rows.iter().map(|r| r.key.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for row in rows {
        let key = format!("{}:", row.key);
        let mut lines = row.lines.iter();
        let first = lines.next().map_or("-", String::as_str);
        let _ = writeln!(out, "{key:<width$}  {first}");
        for line in lines {
            let _ = writeln!(out, "{:width$}  {line}", "");
        }
    }
    out
}

/// Columns separated by two spaces, each as wide as its widest cell; the last column is
/// not padded, so lines carry no trailing spaces.
pub(super) fn columns<const N: usize>(header: [String; N], rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in std::iter::once(&header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let pad = width.saturating_sub(cell.chars().count());
                let _ = write!(line, "{cell}{:pad$}  ", "");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// How many of `total` are not among the `listed`, if any.
pub(super) fn more(total: u64, listed: usize) -> Option<u64> {
    let listed = u64::try_from(listed).unwrap_or(u64::MAX);
    (total > listed).then(|| total - listed)
}

/// `lines`, then `and N more` when the control plane listed only some of `total`.
pub(super) fn with_more(
    lines: impl Iterator<Item = String>,
    total: u64,
    listed: usize,
) -> Vec<String> {
    let mut lines: Vec<String> = lines.collect();
    if let Some(more) = more(total, listed) {
        lines.push(format!("and {more} more"));
    }
    lines
}

/// `text` under the STOP-ALL banner when `flag` is set.
pub(super) fn with_banner(flag: Option<&StopAllView>, text: String) -> String {
    match flag {
        Some(flag) if flag.active => format!("{}\n{text}", stop_all_banner(flag)),
        _ => text,
    }
}

/// Lines that cannot be missed: a stop-all is active, by whom, why, and how it ends.
pub(super) fn stop_all_banner(flag: &StopAllView) -> String {
    let mut out = String::from(
        "!! STOP-ALL ACTIVE: every program is PAUSED for every collector, whatever its \
         own state\n",
    );
    let _ = write!(
        out,
        "!! set by {} at {}: {}",
        or_dash(clean(&flag.actor)),
        time(flag.at.as_ref()),
        or_dash(clean(&flag.reason))
    );
    if !flag.incident_id.is_empty() {
        let _ = write!(out, " (incident {})", clean(&flag.incident_id));
    }
    out.push('\n');
    match &flag.clear_request {
        Some(request) => {
            let _ = writeln!(
                out,
                "!! clearing requested by {} as {}, waiting for a second admin (expires {}): \
                 killswitch stop-all --clear --approve {} --reason TEXT",
                clean(&request.requested_by),
                clean(&request.id),
                time(request.expires_at.as_ref()),
                clean(&request.id)
            );
        }
        None => out.push_str("!! clear it with: killswitch stop-all --clear --reason TEXT\n"),
    }
    out
}
