//! `killswitch-fleet plot`: latency against N from the JSON reports of several runs, as
//! an SVG: our commit-to-last-ack and p50 (plain text and TLS), and the peers'
//! put-to-last-notify and p50. Reports from several directories (`results/COMMIT/`) are
//! drawn as one line each, named after the directory, so rounds of work compare; the
//! peers, the same etcd whatever our commit, as one line (the report listed first at each
//! N).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::report::RunReport;

/// Lines of (N, milliseconds), by legend.
type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// The lines the reports hold: medians over each run's rounds. Each report comes with the
/// name of what it measured (its directory), which names our lines when the reports have
/// more than one.
#[must_use]
pub fn series(reports: &[(String, RunReport)]) -> Series {
    let first = reports.first().map(|(tag, _)| tag.as_str());
    let tagged = reports.iter().any(|(tag, _)| Some(tag.as_str()) != first);
    let mut series = Series::new();
    let mut add = |name: String, n: usize, ms: Option<f64>| {
        if let Some(ms) = ms {
            series.entry(name).or_default().push((n as f64, ms));
        }
    };
    for (tag, report) in reports {
        let n = report.config.collectors;
        let tls = if report.config.tls { "TLS" } else { "plain" };
        let mode = if tagged {
            format!("{tls}, {tag}")
        } else {
            tls.to_owned()
        };
        if let Some(pause) = &report.pause {
            add(format!("killswitch last ack ({mode})"), n, pause.ack_max_ms);
            add(format!("killswitch ack p50 ({mode})"), n, pause.ack_p50_ms);
        }
        for peer in &report.peers {
            add(
                format!("{} last notify", peer.name),
                peer.watchers,
                peer.median_last_ms,
            );
            add(
                format!("{} notify p50", peer.name),
                peer.watchers,
                peer.median_p50_ms,
            );
        }
    }
    for points in series.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Two runs at the same N (a run with peers and one without): keep the first.
        points.dedup_by(|a, b| a.0 == b.0);
    }
    series
}

/// Reads the reports in `inputs` and draws them to `output` (SVG).
pub fn plot(inputs: &[impl AsRef<Path>], output: &Path) -> anyhow::Result<()> {
    let mut reports = Vec::with_capacity(inputs.len());
    for input in inputs {
        let input = input.as_ref();
        let text = std::fs::read_to_string(input)
            .with_context(|| format!("cannot read {}", input.display()))?;
        let report: RunReport = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a killswitch-fleet report", input.display()))?;
        let tag = input
            .parent()
            .and_then(Path::file_name)
            .map_or_else(String::new, |dir| dir.to_string_lossy().into_owned());
        reports.push((tag, report));
    }
    draw(&series(&reports), output)
}

fn draw(series: &Series, output: &Path) -> anyhow::Result<()> {
    let points = series.values().flatten();
    let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let y_max = points.map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(output, (960, 600)).into_drawing_area();
    let failed = |error| anyhow::anyhow!("cannot draw {}: {error:?}", output.display());
    root.fill(&WHITE).map_err(failed)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Commit to last acknowledgement vs. etcd watch fan-out (median of rounds)",
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(failed)?;
    chart
        .configure_mesh()
        .x_desc("collectors (watchers for the peers); past 19k: several replicas and proxies")
        .y_desc("milliseconds from commit (put)")
        .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(failed)?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        // p50 lines dashed-looking (thin), last-ack lines thick.
        let width = if name.contains("p50") { 1 } else { 3 };
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(width),
            ))
            .map_err(failed)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(failed)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(failed)?;
    root.present().map_err(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{PeerReport, RunSettings, Summary};

    #[test]
    fn draws_an_svg() {
        let report = |n: usize, ms: f64| RunReport {
            config: RunSettings {
                collectors: n,
                ..RunSettings::default()
            },
            pause: Some(Summary {
                ack_max_ms: Some(ms),
                ack_p50_ms: Some(ms / 2.0),
                ..Summary::default()
            }),
            peers: vec![PeerReport {
                name: "etcd-direct".into(),
                watchers: n,
                median_last_ms: Some(ms * 2.0),
                ..PeerReport::default()
            }],
            ..RunReport::default()
        };
        let round = |tag: &str, n, ms| (tag.to_owned(), report(n, ms));
        let lines = series(&[round("a", 5000, 60.0), round("a", 1000, 20.0)]);
        assert_eq!(
            lines.get("killswitch last ack (plain)"),
            Some(&vec![(1000.0, 20.0), (5000.0, 60.0)])
        );
        let rounds = series(&[round("b", 5000, 40.0), round("a", 5000, 60.0)]);
        assert_eq!(
            rounds.get("killswitch last ack (plain, a)"),
            Some(&vec![(5000.0, 60.0)])
        );
        assert_eq!(
            rounds.get("killswitch last ack (plain, b)"),
            Some(&vec![(5000.0, 40.0)])
        );
        assert_eq!(
            rounds.get("etcd-direct last notify"),
            Some(&vec![(5000.0, 80.0)]),
            "the peers: the report listed first"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("plot.svg");
        draw(&lines, &out).expect("draws");
        let svg = std::fs::read_to_string(&out).expect("svg");
        assert!(svg.contains("<svg") && svg.contains("etcd-direct last notify"));
    }
}
