//! `tark-bench render REPORT.json OUT.svg`: a run's JSON ([`super::report`])
//! drawn for people. Latency CDFs on a log scale in three charts (calls,
//! outbound HTTP, starts and restarts), each with the two-hop echo, the floor
//! of agent -> tarkd -> worker, drawn in; and CPU per call under load as bars
//! against the two-hop echo's. Every picture is from one run, so the baselines
//! saw the same machine.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// One row's percentiles 0..=100, in µs.
struct Cdf {
    name: String,
    q: Vec<f64>,
}

/// The row every chart draws as its floor.
const FLOOR: &str = "echo, two hops";

/// Which chart a row goes in, by its name.
fn chart_of(name: &str) -> usize {
    if name.contains("GET") {
        1
    } else if ["cold start", "SIGKILL", "/bin/true", "command tool"]
        .iter()
        .any(|k| name.contains(k))
    {
        2
    } else {
        0
    }
}

pub fn svg(json: &Path, out: &Path) -> anyhow::Result<()> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(json)?)?;
    let rows = doc["rows"].as_array().cloned().unwrap_or_default();
    let mut charts: [Vec<Cdf>; 3] = Default::default();
    for r in &rows {
        let q: Vec<f64> = r["quantiles_us"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        if q.len() != 101 {
            continue;
        }
        let name = r["name"].as_str().unwrap_or("?").to_owned();
        if name.starts_with(FLOOR) {
            for chart in &mut charts[1..] {
                chart.push(Cdf {
                    name: name.clone(),
                    q: q.clone(),
                });
            }
        }
        charts[chart_of(&name)].push(Cdf { name, q });
    }
    let load: Vec<(String, f64)> = doc["load"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| {
                    Some((
                        l["name"].as_str()?.to_owned(),
                        l["cpu_us_per_call"].as_f64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(
        !charts[0].is_empty(),
        "{}: no rows with percentiles",
        json.display()
    );

    let root = SVGBackend::new(out, (1280, 2300)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_by_breakpoints([] as [u32; 0], [760, 1320, 1900]);
    let titles = [
        "Latency of calls, sampled round-robin (µs, log scale)",
        "Outbound HTTP through plugin and broker, and by tarkd's own client (µs, log scale)",
        "Cold starts, restarts and command tools (µs, log scale)",
    ];
    for ((area, title), rows) in areas.iter().zip(titles).zip(&charts) {
        cdfs(area, title, rows)?;
    }
    if let Some(area) = areas.get(3) {
        bars(
            area,
            "CPU time per call, 64 callers (µs): tarkd + workers against the two-hop echo",
            &load,
        )?;
    }
    root.present()?;
    Ok(())
}

fn cdfs(area: &Area, title: &str, rows: &[Cdf]) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let lo = rows
        .iter()
        .map(|c| c.q[0])
        .fold(f64::MAX, f64::min)
        .max(0.1);
    let hi = rows
        .iter()
        .map(|c| c.q[100])
        .fold(0.0, f64::max)
        .max(lo * 10.0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("µs")
        .y_desc("fraction of calls at or under")
        .draw()?;
    for (i, c) in rows.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points =
            c.q.iter()
                .enumerate()
                .map(|(p, v)| (v.max(lo), p as f64 / 100.0));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(c.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

fn bars(area: &Area, title: &str, rows: &[(String, f64)]) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let max = rows.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1.0);
    let n = rows.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(10)
        .build_cartesian_2d(0f64..max * 1.1, 0f64..n)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("µs of CPU per call")
        .draw()?;
    let baseline = rows.first().map_or(1.0, |(_, v)| *v).max(f64::MIN_POSITIVE);
    for (i, (name, v)) in rows.iter().enumerate() {
        let y = n - 1.0 - i as f64;
        let color = Palette99::pick(i).to_rgba();
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y + 0.2), (*v, y + 0.8)],
            color.mix(0.6).filled(),
        )))?;
        let text = format!("{name}: {v:.1} µs ({:.2}×)", v / baseline);
        chart.draw_series(std::iter::once(Text::new(
            text,
            (max * 0.01, y + 0.5),
            ("sans-serif", 15).into_font(),
        )))?;
    }
    Ok(())
}
