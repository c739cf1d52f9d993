//! The README's benchmark tables, written from the committed report
//! (`docs/bench/report.json`, what `tark-bench --json` wrote) rather than by
//! hand, so the numbers the README states are the report's: `scripts/bench
//! --report` rewrites the part of the README between [`BEGIN`] and [`END`], and
//! a test checks that part against the committed report.

use serde_json::Value;

/// Marks where the generated tables start in the README.
pub const BEGIN: &str = "<!-- bench report tables: written by scripts/bench --report -->";
/// Marks where they end.
pub const END: &str = "<!-- end of bench report tables -->";

/// Why a report could not be turned into tables, or spliced in.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("the report has no {0}")]
    Missing(&'static str),
    #[error("row {0} of the report lacks {1}")]
    Row(usize, &'static str),
    #[error("the README has no section between {BEGIN:?} and {END:?}, in that order, once")]
    Markers,
}

/// The report's latency rows, load rows and headline ratios as Markdown.
pub fn tables(report: &Value) -> Result<String, Error> {
    let rows = report["rows"].as_array().ok_or(Error::Missing("rows"))?;
    let load = report["load"].as_array().ok_or(Error::Missing("load"))?;
    let ratios = report["ratios"]
        .as_object()
        .ok_or(Error::Missing("ratios"))?;
    let cores = report["cores"].as_u64().ok_or(Error::Missing("cores"))?;
    let mut out = format!(
        "From `docs/bench/report.json` ({cores} cores; one run of `scripts/bench --report`):\n\n\
         | measurement | n | p50 µs | p99 µs |\n| --- | --- | --- | --- |\n"
    );
    for (i, r) in rows.iter().enumerate() {
        let name = r["name"].as_str().ok_or(Error::Row(i, "a name"))?;
        let n = r["n"].as_u64().ok_or(Error::Row(i, "n"))?;
        let p50 = r["p50_us"].as_f64().ok_or(Error::Row(i, "p50_us"))?;
        let p99 = r["p99_us"].as_f64().ok_or(Error::Row(i, "p99_us"))?;
        out += &format!("| {name} | {n} | {} | {} |\n", us(p50), us(p99));
    }
    out += "\n| load: 64 callers | calls/s | CPU µs per call |\n| --- | --- | --- |\n";
    for (i, r) in load.iter().enumerate() {
        let name = r["name"].as_str().ok_or(Error::Row(i, "a name"))?;
        let rate = r["calls_per_s"]
            .as_f64()
            .ok_or(Error::Row(i, "calls_per_s"))?;
        let cpu = r["cpu_us_per_call"]
            .as_f64()
            .ok_or(Error::Row(i, "cpu_us_per_call"))?;
        out += &format!("| {name} | {} | {} |\n", us(rate), us(cpu));
    }
    out += "\n| ratio | value |\n| --- | --- |\n";
    for (name, v) in ratios {
        let v = v.as_f64().ok_or(Error::Missing("a number for a ratio"))?;
        out += &format!("| `{name}` | {v:.2} |\n");
    }
    Ok(out)
}

/// `readme` with its generated section replaced by `tables`.
pub fn splice(readme: &str, tables: &str) -> Result<String, Error> {
    let (head, rest) = section(readme)?;
    let (_, tail) = rest.split_once(END).ok_or(Error::Markers)?;
    Ok(format!("{head}{BEGIN}\n\n{tables}\n{END}{tail}"))
}

/// The generated section now in `readme`, between the markers.
pub fn current(readme: &str) -> Result<&str, Error> {
    let (_, rest) = section(readme)?;
    let (body, _) = rest.split_once(END).ok_or(Error::Markers)?;
    Ok(body)
}

fn section(readme: &str) -> Result<(&str, &str), Error> {
    if readme.matches(BEGIN).count() != 1 || readme.matches(END).count() != 1 {
        return Err(Error::Markers);
    }
    readme.split_once(BEGIN).ok_or(Error::Markers)
}

/// A number of µs (or calls) as the README writes them: whole above 100,
/// thousands apart by a space; one decimal below.
fn us(v: f64) -> String {
    if v < 100.0 {
        return format!("{v:.1}");
    }
    let whole = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_are_written_as_the_readme_writes_them() {
        for (v, s) in [
            (0.04, "0.0"),
            (33.46, "33.5"),
            (99.9, "99.9"),
            (100.0, "100"),
            (999.4, "999"),
            (1_000.0, "1 000"),
            (3_175.2, "3 175"),
            (44_307.0, "44 307"),
            (1_234_567.0, "1 234 567"),
        ] {
            assert_eq!(us(v), s, "{v}");
        }
    }

    #[test]
    fn a_report_becomes_three_tables() {
        let report = json!({
            "cores": 2,
            "rows": [{ "name": "echo", "n": 10, "p50_us": 82.04, "p99_us": 1500.0 }],
            "load": [{ "name": "two hops", "calls_per_s": 44307.2, "cpu_us_per_call": 25.94 }],
            "ratios": { "cpu_per_call_8_workers_vs_two_hop_echo": 1.714 },
        });
        let t = tables(&report).unwrap_or_default();
        assert!(t.contains("| echo | 10 | 82.0 | 1 500 |\n"), "{t}");
        assert!(t.contains("| two hops | 44 307 | 25.9 |\n"), "{t}");
        assert!(
            t.contains("| `cpu_per_call_8_workers_vs_two_hop_echo` | 1.71 |\n"),
            "{t}"
        );
        assert!(t.starts_with("From `docs/bench/report.json` (2 cores;"));
    }

    #[test]
    fn incomplete_reports_are_refused_by_what_they_lack() {
        let full = json!({ "cores": 2, "rows": [], "load": [], "ratios": {} });
        assert!(tables(&full).is_ok());
        for (field, want) in [
            ("rows", Error::Missing("rows")),
            ("load", Error::Missing("load")),
            ("ratios", Error::Missing("ratios")),
            ("cores", Error::Missing("cores")),
        ] {
            let mut r = full.clone();
            r[field] = Value::Null;
            assert_eq!(tables(&r).err(), Some(want), "{field}");
        }
        let mut r = full.clone();
        r["rows"] = json!([{ "name": "x", "n": 1, "p50_us": 1.0 }]);
        assert_eq!(tables(&r).err(), Some(Error::Row(0, "p99_us")));
        r["load"] = json!([{ "calls_per_s": 1.0 }]);
        r["rows"] = json!([]);
        assert_eq!(tables(&r).err(), Some(Error::Row(0, "a name")));
    }

    #[test]
    fn only_the_marked_section_is_replaced() {
        let readme = format!("# t\n\nbefore\n{BEGIN}\nold\n{END}\nafter\n");
        let new = splice(&readme, "new\n").unwrap_or_default();
        assert_eq!(
            new,
            format!("# t\n\nbefore\n{BEGIN}\n\nnew\n\n{END}\nafter\n")
        );
        assert_eq!(current(&new), Ok("\n\nnew\n\n"));
        assert_eq!(splice(&new, "new\n").as_deref(), Ok(new.as_str()));
        for broken in [
            "no markers".to_owned(),
            format!("{END}\n{BEGIN}\n"),
            format!("{BEGIN}\n{BEGIN}\n{END}\n"),
            format!("{BEGIN}\nno end\n"),
        ] {
            assert_eq!(splice(&broken, "x").err(), Some(Error::Markers), "{broken}");
        }
    }
}
