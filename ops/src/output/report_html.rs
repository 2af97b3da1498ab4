//! `report --format html`: one self-contained page (inline CSS, inline SVG plots, no
//! script to run, nothing fetched) that shows the report and embeds it, evidence and all,
//! in `<script type="application/json" id="evidence">` for `report verify`.
//!
//! Every number and time shown from the report carries `data-json="POINTER"`, the JSON
//! pointer of its value in the report JSON, and every list's length `data-count="POINTER"`,
//! so that a test (or an auditor) can read the page back and compare.

use std::fmt::Write as _;

use serde::Serialize;

use super::report::describe_query;
use super::{Error, Exit};
use crate::report::verify::EVIDENCE_SCRIPT;
use crate::report::{ChangeReport, Percentiles, Report};

const STYLE: &str = "\
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.key{font-size:1.1em}.key b{font-size:1.3em}.note{color:#555;font-style:italic}
.bad{color:#a40000}svg{background:#fafafa;border:1px solid #ddd}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}dd{margin:0}";

/// The HTML page of `report`.
pub fn report_html(report: &Report) -> Result<String, Error> {
    let mut page = String::new();
    let title = format!("Killswitch report: {}", describe_query(report));
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    summary(&mut page, report);
    timeline(&mut page, report);
    for (i, change) in report.changes.iter().enumerate() {
        change_section(&mut page, i, change);
    }
    let _ = write!(
        page,
        "<p class=\"note\">{}</p>\n<p class=\"note\">Check this file offline with \
         <code>killswitch report verify FILE --ca CA.pem</code>: it embeds the audit chain \
         segment and every receipt as signed.</p>\n",
        esc(crate::report::CLOCK_NOTE)
    );
    let evidence = serde_json::to_string(report).map_err(|err| {
        Error::new(
            Exit::Error,
            format!("cannot encode the report as JSON: {err}"),
        )
    })?;
    // Inside JSON, `<`, `>` and `&` occur only in strings, where their \u escapes mean the
    // same: the block cannot end early, whatever a reason says.
    let evidence = evidence
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    let _ = write!(
        page,
        "{EVIDENCE_SCRIPT}{evidence}</script>\n</body></html>\n"
    );
    Ok(page)
}

/// The counts over the whole report.
fn summary(page: &mut String, report: &Report) {
    let t = "/totals";
    let _ = write!(
        page,
        "<dl id=\"summary\">\
         <dt>Programs</dt><dd>{}</dd>\
         <dt>Generated</dt><dd>{}</dd>\
         <dt>Audit</dt><dd>{} entries in the timeline; chain segment {} to {} ({} entries) embedded</dd>\
         <dt>Receipts</dt><dd>{} ({} signed, {} unsigned)</dd>\
         <dt>Changes</dt><dd>{}</dd>",
        esc(&report.programs.join(", ")),
        value("/generated_at", &report.generated_at),
        value(
            &format!("{t}/timeline_entries"),
            &report.totals.timeline_entries
        ),
        value(&format!("{t}/first_seq"), &report.totals.first_seq),
        value(&format!("{t}/last_seq"), &report.totals.last_seq),
        value(&format!("{t}/audit_entries"), &report.totals.audit_entries),
        value(&format!("{t}/receipts"), &report.totals.receipts),
        value(&format!("{t}/signed"), &report.totals.signed),
        value(&format!("{t}/unsigned"), &report.totals.unsigned),
        value(&format!("{t}/changes"), &report.totals.changes),
    );
    if !report.notes.is_empty() {
        page.push_str("<dt>Notes</dt><dd><ul>");
        for note in &report.notes {
            let _ = write!(page, "<li>{}</li>", esc(note));
        }
        page.push_str("</ul></dd>");
    }
    page.push_str("</dl>\n");
}

/// The audit entries, oldest first.
fn timeline(page: &mut String, report: &Report) {
    let _ = write!(
        page,
        "<h2 id=\"timeline\">Timeline ({} entries)</h2>\n<table><tr><th>Seq</th><th>Time</th>\
         <th>Actor</th><th>Action</th><th>Program</th><th>Generation</th><th>State</th>\
         <th>Incident</th><th>Reason</th><th>Detail</th></tr>\n",
        count("/timeline", report.timeline.len())
    );
    for (i, e) in report.timeline.iter().enumerate() {
        let p = format!("/timeline/{i}");
        let _ = writeln!(
            page,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"n\">{}</td><td>{} → {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            value(&format!("{p}/seq"), &e.seq),
            e.at.as_ref()
                .map_or_else(|| "-".to_owned(), |at| value(&format!("{p}/at"), at)),
            esc(&e.actor),
            esc(&e.action),
            esc(&e.program),
            value(&format!("{p}/generation"), &e.generation),
            e.from,
            e.to,
            esc(&e.incident_id),
            esc(&e.reason),
            esc(&e.detail),
        );
    }
    page.push_str("</table>\n");
}

/// One change: its key numbers, percentiles, plot, stragglers and receipts.
fn change_section(page: &mut String, i: usize, c: &ChangeReport) {
    let p = format!("/changes/{i}");
    let scope = c.scope.as_ref().map_or_else(
        || "whole program".to_owned(),
        |s| format!("scope {}", esc(s)),
    );
    let _ = write!(
        page,
        "<section id=\"change-{i}\"><h2>{}: {} at generation {} ({scope}; program state \
         {})</h2>\n\
         <p>Entry {} by {}, committed {}.</p>\n\
         <p class=\"key\">Confirmed <b>{}</b> of <b>{}</b> collectors; <b class=\"bad\">{}</b> \
         errored; purge confirmed by <b>{}</b>; <b>{}</b> stragglers.</p>\n",
        esc(&c.program),
        esc(&c.action),
        value(&format!("{p}/generation"), &c.generation),
        c.state,
        value(&format!("{p}/seq"), &c.seq),
        esc(&c.actor),
        c.committed_at.as_ref().map_or_else(
            || "at an unknown time".to_owned(),
            |at| value(&format!("{p}/committed_at"), at)
        ),
        value(&format!("{p}/confirmed"), &c.confirmed),
        value(&format!("{p}/collectors"), &c.collectors),
        value(&format!("{p}/errored"), &c.errored),
        value(&format!("{p}/purged"), &c.purged),
        count(&format!("{p}/stragglers"), c.stragglers.len()),
    );
    if let (Some(first), Some(last)) = (&c.first_confirmed_at, &c.last_confirmed_at) {
        let _ = writeln!(
            page,
            "<p>First confirmation {}, last {} (collectors' clocks).</p>",
            value(&format!("{p}/first_confirmed_at"), first),
            value(&format!("{p}/last_confirmed_at"), last)
        );
    }
    page.push_str(
        "<table><tr><th>Since the commit (ms)</th><th>Receipts</th><th>p50</th><th>p90</th>\
         <th>p99</th><th>max</th></tr>\n",
    );
    percentile_row(
        page,
        "gate closed or opened",
        &format!("{p}/commit_to_gate_changed_ms"),
        c.commit_to_gate_changed_ms.as_ref(),
    );
    percentile_row(
        page,
        "hook returned (ack)",
        &format!("{p}/commit_to_ack_ms"),
        c.commit_to_ack_ms.as_ref(),
    );
    page.push_str("</table>\n");
    plot(page, c);
    if !c.stragglers.is_empty() {
        page.push_str(
            "<h3>Stragglers</h3>\n<table><tr><th>Collector</th><th>Last contact</th>\
             <th>From</th></tr>\n",
        );
        for (j, s) in c.stragglers.iter().enumerate() {
            let sp = format!("{p}/stragglers/{j}");
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                value(&format!("{sp}/collector_id"), &s.collector_id),
                s.last_contact.as_ref().map_or_else(
                    || "unknown".to_owned(),
                    |at| value(&format!("{sp}/last_contact"), at)
                ),
                s.last_contact_from.unwrap_or("-"),
            );
        }
        page.push_str("</table>\n");
    }
    if !c.receipts.is_empty() {
        page.push_str(
            "<details><summary>Receipts</summary>\n<table><tr><th>Collector</th><th>Gate</th>\
             <th>Cause</th><th>Gate moved (ms)</th><th>Ack (ms)</th><th>Purged</th>\
             <th>Signed</th><th>Error</th></tr>\n",
        );
        for (j, r) in c.receipts.iter().enumerate() {
            let rp = format!("{p}/receipts/{j}");
            let ms = |field: &str, v: Option<f64>| {
                v.map_or_else(|| "-".to_owned(), |v| value(&format!("{rp}/{field}"), &v))
            };
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td>{}</td><td>{}</td><td class=\"bad\">{}</td></tr>",
                esc(&r.collector_id),
                r.effective,
                esc(&r.cause),
                ms("commit_to_gate_changed_ms", r.commit_to_gate_changed_ms),
                ms("commit_to_ack_ms", r.commit_to_ack_ms),
                if r.purged { "yes" } else { "no" },
                if r.signed { "yes" } else { "no" },
                esc(&r.error),
            );
        }
        page.push_str("</table></details>\n");
    }
    page.push_str("</section>\n");
}

fn percentile_row(page: &mut String, what: &str, pointer: &str, p: Option<&Percentiles>) {
    match p {
        None => {
            let _ = writeln!(
                page,
                "<tr><td>{what}</td><td class=\"n\">0</td><td>-</td><td>-</td><td>-</td>\
                 <td>-</td></tr>"
            );
        }
        Some(p) => {
            let _ = writeln!(
                page,
                "<tr><td>{what}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                value(&format!("{pointer}/count"), &p.count),
                value(&format!("{pointer}/p50"), &p.p50),
                value(&format!("{pointer}/p90"), &p.p90),
                value(&format!("{pointer}/p99"), &p.p99),
                value(&format!("{pointer}/max"), &p.max),
            );
        }
    }
}

/// The cumulative confirmations against milliseconds since the commit, as a step line,
/// with the number of collectors in scope as a dashed line.
fn plot(page: &mut String, c: &ChangeReport) {
    const W: f64 = 560.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 48.0;
    const BOTTOM: f64 = 28.0;
    const TOP: f64 = 12.0;
    const RIGHT: f64 = 16.0;
    if c.plot.is_empty() {
        page.push_str("<p>No confirmation to plot.</p>\n");
        return;
    }
    let low = c.plot.iter().map(|p| p.ms).fold(0.0_f64, f64::min);
    let high = c.plot.iter().map(|p| p.ms).fold(0.0_f64, f64::max);
    let span = if high > low { high - low } else { 1.0 };
    let total = c.collectors.max(1) as f64;
    let x = |ms: f64| LEFT + (ms - low) / span * (W - LEFT - RIGHT);
    let y = |n: f64| H - BOTTOM - n / total * (H - BOTTOM - TOP);
    let mut points = format!("{:.1},{:.1}", x(low), y(0.0));
    let mut previous = 0.0;
    for point in &c.plot {
        let n = point.confirmed as f64;
        let _ = write!(
            points,
            " {:.1},{:.1} {:.1},{:.1}",
            x(point.ms),
            y(previous),
            x(point.ms),
            y(n)
        );
        previous = n;
    }
    let _ = write!(points, " {:.1},{:.1}", x(high), y(previous));
    let _ = writeln!(
        page,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"confirmations against time since \
         the commit\">\
         <line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#888\"/>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{b}\" stroke=\"#888\"/>\
         <line x1=\"{LEFT}\" y1=\"{t:.1}\" x2=\"{r}\" y2=\"{t:.1}\" stroke=\"#c60\" \
         stroke-dasharray=\"4 3\"/>\
         <polyline fill=\"none\" stroke=\"#0a5\" stroke-width=\"2\" points=\"{points}\"/>\
         <text x=\"{LEFT}\" y=\"{ty}\" font-size=\"11\">{low} ms</text>\
         <text x=\"{r}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"end\">{high} ms since the \
         commit</text>\
         <text x=\"{lx}\" y=\"{t:.1}\" font-size=\"11\" text-anchor=\"end\">{total}</text>\
         <text x=\"{lx}\" y=\"{b}\" font-size=\"11\" text-anchor=\"end\">0</text></svg>",
        b = H - BOTTOM,
        r = W - RIGHT,
        t = y(total),
        ty = H - 8.0,
        lx = LEFT - 4.0,
    );
}

/// A value of the report, marked with its JSON pointer: numbers as JSON writes them,
/// strings as text.
fn value<T: Serialize + ?Sized>(pointer: &str, v: &T) -> String {
    let text = match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    };
    format!("<span data-json=\"{}\">{}</span>", esc(pointer), esc(&text))
}

/// The length of a list of the report, marked with its JSON pointer.
fn count(pointer: &str, n: usize) -> String {
    format!("<span data-count=\"{}\">{n}</span>", esc(pointer))
}

/// Text escaped for HTML content and attribute values (also the console's pages).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
