//! `tark-bench --json FILE`: every latency row, load row and headline ratio the
//! run printed, as one JSON document, so runs can be kept and compared by a
//! program instead of by reading the text.
//!
//! ```json
//! { "cores": 2,
//!   "rows": [{ "name": "...", "n": 1000, "p50_us": 1.0, "p99_us": 2.0,
//!              "quantiles_us": [0.9, 1.0, ...] }],
//!   "load": [{ "name": "...", "calls_per_s": 1.0, "cpu_us_per_call": 1.0, "calls": 1 }],
//!   "ratios": { "cpu_per_call_1_worker_vs_two_hop_echo": 5.0 } }
//! ```

use std::path::Path;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

static ROWS: Mutex<Vec<Value>> = Mutex::new(Vec::new());
static LOAD: Mutex<Vec<Value>> = Mutex::new(Vec::new());
static RATIOS: Mutex<Vec<(String, f64)>> = Mutex::new(Vec::new());
/// Each sample's 101 percentiles (0 to 100), by its (p50, p99): the bench
/// computes a sample's percentiles before it names the row, and a row is
/// printed from exactly those two numbers.
type Percentiles = ((u64, u64), Vec<f64>);
static QUANTILES: Mutex<Vec<Percentiles>> = Mutex::new(Vec::new());

fn bits((p50, p99): (f64, f64)) -> (u64, u64) {
    (p50.to_bits(), p99.to_bits())
}

/// Remembers a sample's percentiles for the row that will print `p50_p99`.
pub fn quantiles(p50_p99: (f64, f64), q: Vec<f64>) {
    push(&QUANTILES, (bits(p50_p99), q));
}

fn push<T>(list: &Mutex<Vec<T>>, item: T) {
    list.lock().unwrap_or_else(|p| p.into_inner()).push(item);
}

/// A latency row: sample size, p50 and p99 in µs.
pub fn row(name: &str, n: usize, p50: f64, p99: f64) {
    let key = bits((p50, p99));
    let q = QUANTILES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .rev()
        .find(|(k, _)| *k == key)
        .map(|(_, q)| q.clone())
        .unwrap_or_default();
    push(
        &ROWS,
        json!({ "name": name, "n": n, "p50_us": p50, "p99_us": p99, "quantiles_us": q }),
    );
}

/// A load row: throughput and CPU time per call.
pub fn load(name: &str, calls_per_s: f64, cpu_us_per_call: f64, calls: u64) {
    push(
        &LOAD,
        json!({
            "name": name,
            "calls_per_s": calls_per_s,
            "cpu_us_per_call": cpu_us_per_call,
            "calls": calls,
        }),
    );
}

/// A headline ratio, named in snake case.
pub fn ratio(name: &str, value: f64) {
    push(&RATIOS, (name.to_owned(), value));
}

/// Writes what was recorded to `path`.
pub fn write(path: &Path) -> anyhow::Result<()> {
    let take = |list: &Mutex<Vec<Value>>| list.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let ratios: Map<String, Value> = RATIOS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let doc = json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "rows": take(&ROWS),
        "load": take(&LOAD),
        "ratios": ratios,
    });
    std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")?;
    Ok(())
}

/// `tark-bench readme REPORT.json README.md`: rewrites the README's generated
/// tables from the report (tark_tests::report_tables).
pub fn readme(report: &Path, readme: &Path) -> anyhow::Result<()> {
    use tark_tests::report_tables::{splice, tables};
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(report)?)?;
    let text = std::fs::read_to_string(readme)?;
    let new =
        splice(&text, &tables(&doc)?).map_err(|e| anyhow::anyhow!("{}: {e}", readme.display()))?;
    std::fs::write(readme, new)?;
    Ok(())
}

/// The ratios CI's gate watches (`tark-bench gate`).
pub const GATED: [&str; 2] = [
    "cpu_per_call_1_worker_vs_two_hop_echo",
    "cpu_per_call_8_workers_vs_two_hop_echo",
];

/// How much worse than the recorded ratio the gate lets a run be: wide on
/// purpose, so a loaded CI machine does not fail it; the report shows smaller
/// moves.
const GATE_SLACK: f64 = 1.5;

/// `tark-bench gate RECORDED.json RUN.json`: fails when a gated ratio of the
/// run is more than GATE_SLACK times the recorded one.
pub fn gate(recorded: &std::path::Path, run: &std::path::Path) -> anyhow::Result<()> {
    let read = |p: &std::path::Path| -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&std::fs::read_to_string(p)?)?)
    };
    let (recorded_doc, run_doc) = (read(recorded)?, read(run)?);
    let mut failed = Vec::new();
    for name in GATED {
        let ratio = |doc: &serde_json::Value, from: &std::path::Path| {
            doc["ratios"][name]
                .as_f64()
                .ok_or_else(|| anyhow::anyhow!("{}: no ratio {name}", from.display()))
        };
        let (was, now) = (ratio(&recorded_doc, recorded)?, ratio(&run_doc, run)?);
        let verdict = if now > was * GATE_SLACK { "FAIL" } else { "ok" };
        println!(
            "gate {verdict}: {name} {now:.2} (recorded {was:.2}, limit {:.2})",
            was * GATE_SLACK
        );
        if now > was * GATE_SLACK {
            failed.push(name);
        }
    }
    anyhow::ensure!(
        failed.is_empty(),
        "CPU per call regressed past the gate: {failed:?}"
    );
    Ok(())
}
