//! The README's benchmark tables are the committed report's numbers: the
//! section `scripts/bench --report` writes must be what the committed
//! `docs/bench/report.json` gives, so neither is edited without the other.

use tark_tests::fixtures::repo_root;
use tark_tests::report_tables::{current, tables};

#[test]
fn the_readmes_tables_are_the_committed_reports() -> anyhow::Result<()> {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        root.join("docs/bench/report.json"),
    )?)?;
    let want = format!("\n\n{}\n", tables(&report)?);
    assert!(
        current(&readme)? == want,
        "README.md's benchmark tables differ from docs/bench/report.json: \
         run `target/release/tark-bench readme docs/bench/report.json README.md` \
         (scripts/bench --report does)"
    );
    Ok(())
}
