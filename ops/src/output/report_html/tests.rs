//! The page as a browser shows it: headless Chromium renders it, and every marked number
//! read back from its DOM must be the report JSON's. The page has no script to run (its
//! only `<script>` is the JSON evidence), so what Chromium shows needs no JavaScript.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::*;
use crate::report::fixtures::Incident;
use crate::report::verify::read_evidence;

/// `chromium` or `chromium-browser` on PATH; the test fails (it is not skipped) without.
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "this test renders the HTML report in headless Chromium, and neither `chromium` nor \
         `chromium-browser` is on PATH: run ops/scripts/setup.sh (it installs Debian's \
         chromium package)"
    );
}

/// The DOM Chromium builds from `file`.
fn rendered_dom(file: &std::path::Path, profile: &std::path::Path) -> String {
    let output = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", file.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dom = String::from_utf8(output.stdout).unwrap();
    assert!(
        dom.contains("data-json"),
        "chromium rendered nothing: {dom}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    dom
}

/// Every `ATTR="POINTER">TEXT<` in the DOM.
fn marked<'a>(dom: &'a str, attribute: &str) -> Vec<(&'a str, String)> {
    let needle = format!("{attribute}=\"");
    let mut found = Vec::new();
    let mut rest = dom;
    while let Some(start) = rest.find(&needle) {
        rest = &rest[start + needle.len()..];
        let (pointer, after) = rest.split_once('"').unwrap();
        let text = after.split_once('>').unwrap().1.split_once('<').unwrap().0;
        let text = text
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&amp;", "&");
        found.push((pointer, text));
    }
    found
}

#[test]
fn chromium_shows_the_numbers_of_the_json() {
    let report = Incident::new().report();
    let json: Value = serde_json::to_value(&report).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.html");
    std::fs::write(&file, report_html(&report).unwrap()).unwrap();
    let dom = rendered_dom(&file, &dir.path().join("profile"));

    let values = marked(&dom, "data-json");
    for (pointer, text) in &values {
        let expected = json
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{pointer} is not in the JSON"));
        match expected {
            Value::String(s) => assert_eq!(text, s, "{pointer}"),
            other => {
                let shown: Value = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("{pointer}: {text:?} is not a number: {e}"));
                assert_eq!(&shown, other, "{pointer}");
            }
        }
    }
    for (pointer, text) in marked(&dom, "data-count") {
        let list = json
            .pointer(pointer)
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("{pointer} is not a list in the JSON"));
        assert_eq!(text, list.len().to_string(), "{pointer}");
    }
    // The key numbers are all there, for every change.
    let pointers: Vec<&str> = values.iter().map(|(p, _)| *p).collect();
    let mut key = vec![
        "/totals/receipts".to_owned(),
        "/totals/signed".to_owned(),
        "/totals/unsigned".to_owned(),
        "/totals/audit_entries".to_owned(),
    ];
    for i in 0..report.changes.len() {
        for field in ["generation", "confirmed", "collectors", "errored", "purged"] {
            key.push(format!("/changes/{i}/{field}"));
        }
    }
    key.extend(
        ["p50", "p90", "p99", "max", "count"].map(|p| format!("/changes/0/commit_to_ack_ms/{p}")),
    );
    key.push("/changes/0/commit_to_gate_changed_ms/p99".to_owned());
    key.push("/changes/0/stragglers/0/last_contact".to_owned());
    for pointer in &key {
        assert!(
            pointers.contains(&pointer.as_str()),
            "{pointer} is not shown"
        );
    }
    assert_eq!(json["changes"][0]["confirmed"], 4, "the fixture's pause");
    assert!(
        dom.contains("<svg") && dom.contains("<polyline"),
        "the plot is inline SVG"
    );
    let html = report_html(&report).unwrap();
    assert!(
        !html.contains("src=") && !html.contains("href="),
        "no external asset"
    );
    assert_eq!(
        html.matches("<script").count(),
        1,
        "no script but the JSON evidence"
    );

    // The evidence survives the browser: `report verify` reads the same from the DOM.
    assert_eq!(read_evidence(dom.as_bytes()).unwrap(), report.evidence);
}

#[test]
fn text_from_operators_cannot_break_out_of_the_page_or_the_evidence() {
    let mut report = Incident::new().report();
    report.timeline[0].reason = "</script><script>alert(1)</script> & <b>".to_owned();
    let html = report_html(&report).unwrap();
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("&lt;/script&gt;&lt;script&gt;alert(1)"));
    assert_eq!(html.matches("</script>").count(), 1);
    let embedded = read_evidence(html.as_bytes()).unwrap();
    assert_eq!(embedded, report.evidence);
}
