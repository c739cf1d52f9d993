//! The author docs' whole plugins are the examples CI builds: a fenced block
//! under `<!-- compiled: PATH -->` must be PATH's text exactly (and
//! scripts/build-plugins --check compiles PATH), and a Rust block that is a
//! whole plugin (`generate!` ... `export!`) must carry such a marker. Sketches
//! with `/* ... */` bodies are not whole plugins.

use tark_tests::fixtures::repo_root;

/// `(marker path or None, block text)` for each fenced block of `md`.
fn blocks(md: &str) -> Vec<(Option<String>, String, String)> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    let mut lines = md.lines();
    while let Some(line) = lines.next() {
        if let Some(path) = line
            .strip_prefix("<!-- compiled: ")
            .and_then(|r| r.strip_suffix(" -->"))
        {
            marker = Some(path.to_owned());
            continue;
        }
        if let Some(lang) = line.strip_prefix("```") {
            let mut text = String::new();
            for l in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                text.push_str(l);
                text.push('\n');
            }
            out.push((marker.take(), lang.to_owned(), text));
        } else if !line.trim().is_empty() {
            marker = None;
        }
    }
    out
}

#[test]
fn whole_plugins_in_the_docs_are_the_compiled_examples() -> anyhow::Result<()> {
    let root = repo_root();
    let mut checked = 0;
    for doc in ["docs/plugins.md", "README.md"] {
        let md = std::fs::read_to_string(root.join(doc))?;
        for (marker, lang, text) in blocks(&md) {
            match marker {
                Some(path) => {
                    let file = std::fs::read_to_string(root.join(&path))?;
                    assert_eq!(text, file, "{doc}: the block marked {path} differs from it");
                    checked += 1;
                }
                None => {
                    let whole = lang == "rust"
                        && text.contains("generate!")
                        && text.contains("export!(")
                        && !text.contains("/*");
                    assert!(
                        !whole,
                        "{doc}: a whole plugin not marked as compiled:\n{text}"
                    );
                }
            }
        }
    }
    assert!(checked >= 2, "no compiled blocks found");
    Ok(())
}

#[test]
fn markers_are_found() {
    let md = "<!-- compiled: a.rs -->\n```rust\nfn x() {}\n```\n\n```rust\ny\n```\n";
    let b = blocks(md);
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].0.as_deref(), Some("a.rs"));
    assert_eq!(b[0].2, "fn x() {}\n");
    assert_eq!(b[1].0, None);
}
