//! Test plugins written as WAT core modules and turned into components against
//! `wit/tark.wit` with wit-component, the same way wit-bindgen guests are.
//!
//! Each tool fixture `P` offers two tools: `P-ok`, which answers "ok", and
//! `P-run`, which runs the fixture's hostile body.

use std::path::{Path, PathBuf};

/// The repository root (for `wit/` and `examples/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Encodes a core module (WAT) as a component of `world` in `wit/tark.wit`.
pub fn component(world: &str, wat: &str) -> anyhow::Result<Vec<u8>> {
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve.push_path(repo_root().join("wit"))?;
    let world = resolve.select_world(&[pkg], Some(world))?;
    encode(&resolve, world, wat)
}

/// Encodes a core module as a component of a world given as WIT text.
pub fn component_of(wit: &str, world: &str, wat: &str) -> anyhow::Result<Vec<u8>> {
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve.push_str("fixture.wit", wit)?;
    let world = resolve.select_world(&[pkg], Some(world))?;
    encode(&resolve, world, wat)
}

fn encode(
    resolve: &wit_parser::Resolve,
    world: wit_parser::WorldId,
    wat: &str,
) -> anyhow::Result<Vec<u8>> {
    let mut module = wat::parse_str(wat)?;
    wit_component::embed_component_metadata(
        &mut module,
        resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )?;
    wit_component::ComponentEncoder::default()
        .module(&module)?
        .validate(true)
        .encode()
}

const TOOL: &str = "tark:plugin/tool-plugin@0.1.0";

/// A tool-world fixture named `prefix` whose `prefix-run` tool executes `run_body`
/// (WAT instructions leaving nothing on the stack; the tool then answers "ran").
/// `extra` is spliced into the module (imports first, then other items).
pub fn tool_wat(prefix: &str, imports: &str, run_body: &str) -> String {
    let ok = format!("{prefix}-ok");
    let run = format!("{prefix}-run");
    let (ok_len, run_len) = (ok.len(), run.len());
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "{ok}")
  (data (i32.const 48) "{run}")
  (data (i32.const 80) "fixture tool")
  (data (i32.const 96) "{{}}")
  (data (i32.const 100) "okran")
  ;; list<tool-def> of two records (name, description, schema) at 128
  (data (i32.const 128) "\10\00\00\00\{ok_len:02x}\00\00\00\50\00\00\00\0c\00\00\00\60\00\00\00\02\00\00\00")
  (data (i32.const 152) "\30\00\00\00\{run_len:02x}\00\00\00\50\00\00\00\0c\00\00\00\60\00\00\00\02\00\00\00")
  ;; the list itself: (ptr 128, len 2)
  (data (i32.const 176) "\80\00\00\00\02\00\00\00")
  ;; A bump allocator for the arguments the host passes in; each export frees
  ;; everything when it returns (nothing it returns lives on the heap).
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
      (then (drop (memory.grow (i32.add (i32.shr_u (local.get 3) (i32.const 16)) (i32.const 1))))))
    (local.get $p))
  (func (export "{TOOL}#get-tools") (result i32) (i32.const 176))
  (func (export "{TOOL}#get-risk-level") (param i32 i32) (result i32)
    (global.set $heap (i32.const 4096))
    (i32.const 0))
  ;; tool-result at 192: success(string)
  (func (export "{TOOL}#execute") (param $name i32) (param $name_len i32) (param $args i32) (param $args_len i32) (result i32)
    (if (i32.eq (local.get $name_len) (i32.const {run_len}))
      (then
        {run_body}
        (i32.store (i32.const 196) (i32.const 102))
        (i32.store (i32.const 200) (i32.const 3)))
      (else
        (i32.store (i32.const 196) (i32.const 100))
        (i32.store (i32.const 200) (i32.const 2))))
    (i32.store8 (i32.const 192) (i32.const 0))
    (global.set $heap (i32.const 4096))
    (i32.const 192))
)"#
    )
}

/// A tool fixture as component bytes.
pub fn tool(prefix: &str, imports: &str, run_body: &str) -> anyhow::Result<Vec<u8>> {
    component("tool-world", &tool_wat(prefix, imports, run_body))
}

/// A tool fixture that also imports `function` (no parameters, no result) of
/// `interface` (`wasi:http/outgoing-handler@0.2.0`, say), declared in a
/// package of its own beside `wit/tark.wit`.
pub fn tool_importing(prefix: &str, interface: &str, function: &str) -> anyhow::Result<Vec<u8>> {
    let (pkg_iface, version) = interface.split_once('@').unwrap_or((interface, ""));
    let (pkg, iface) = pkg_iface.split_once('/').unwrap_or((pkg_iface, "i"));
    let at = if version.is_empty() {
        String::new()
    } else {
        format!("@{version}")
    };
    let mut resolve = wit_parser::Resolve::default();
    let (tark, _) = resolve.push_path(repo_root().join("wit"))?;
    let name = &resolve.packages[tark].name;
    let tool_world = match &name.version {
        Some(v) => format!("{}:{}/tool-world@{v}", name.namespace, name.name),
        None => format!("{}:{}/tool-world", name.namespace, name.name),
    };
    let extra = resolve.push_str(
        "extra.wit",
        &format!(
            "package {pkg}{at};\ninterface {iface} {{ {function}: func(); }}\nworld w {{ include {tool_world}; import {iface}; }}\n"
        ),
    )?;
    let world = resolve.select_world(&[extra], Some("w"))?;
    let import = format!(r#"(import "{interface}" "{function}" (func))"#);
    encode(&resolve, world, &tool_wat(prefix, &import, ""))
}

/// A tool plugin whose `get-tools` never returns: it cannot say what tools
/// it has.
pub fn describe_hang(prefix: &str) -> anyhow::Result<Vec<u8>> {
    let wat = tool_wat(prefix, "", "").replace(
        "#get-tools\") (result i32) (i32.const 176))",
        "#get-tools\") (result i32) (loop $l (br $l)) (i32.const 176))",
    );
    anyhow::ensure!(wat.contains("(loop $l (br $l)) (i32.const 176)"));
    component("tool-world", &wat)
}

/// Loops forever.
pub fn spinner(prefix: &str) -> anyhow::Result<Vec<u8>> {
    tool(prefix, "", "(loop $l (br $l))")
}

/// Grows memory by 1 MiB at a time until refused.
pub fn memory_hog(prefix: &str) -> anyhow::Result<Vec<u8>> {
    tool(
        prefix,
        "",
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))",
    )
}

/// Answers `prefix-run` with `bytes` NUL characters (valid UTF-8), to test the
/// response cap.
pub fn big_answer(prefix: &str, bytes: u32) -> anyhow::Result<Vec<u8>> {
    let pages = bytes / 65536 + 1;
    tool(
        prefix,
        "",
        &format!(
            "(drop (memory.grow (i32.const {pages})))
        (i32.store8 (i32.const 192) (i32.const 0))
        (i32.store (i32.const 196) (i32.const 65536))
        (i32.store (i32.const 200) (i32.const {bytes}))
        (global.set $heap (i32.const 4096))
        (return (i32.const 192))"
        ),
    )
}

/// Traps with `unreachable`.
pub fn unreachable(prefix: &str) -> anyhow::Result<Vec<u8>> {
    tool(prefix, "", "(unreachable)")
}

/// Recurses without bound (stack overflow).
pub fn recursion(prefix: &str) -> anyhow::Result<Vec<u8>> {
    let wat = tool_wat(prefix, "", "(call $deep (i32.const 0))").replace(
        "  (func (export \"cabi_realloc\")",
        "  (func $deep (param i32) (call $deep (i32.add (local.get 0) (i32.const 1))))\n  (func (export \"cabi_realloc\")",
    );
    component("tool-world", &wat)
}

/// Grows a table by 1000 elements at a time until refused.
pub fn table_bomb(prefix: &str) -> anyhow::Result<Vec<u8>> {
    let body = "(loop $l (br_if $l (i32.ne (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1))))";
    tool(prefix, "(table $t 1 funcref)", body)
}

/// Traps in its start function, so no instance can ever be made.
pub fn start_trap(prefix: &str) -> anyhow::Result<Vec<u8>> {
    tool(prefix, "(func $boom unreachable) (start $boom)", "")
}

/// Calls a host function (env.get of an allowed, unset variable) forever, the way
/// a plugin stuck in a retry loop would. Declare `env = ["FIXTURE_*"]`.
pub fn host_call_loop(prefix: &str) -> anyhow::Result<Vec<u8>> {
    let imports = r#"(import "tark:plugin/env@0.1.0" "get" (func $get (param i32 i32 i32)))
  (data (i32.const 3000) "FIXTURE_RETRY")"#;
    tool(
        prefix,
        imports,
        "(loop $l (call $get (i32.const 3000) (i32.const 13) (i32.const 3072)) (br $l))",
    )
}

/// Writes log lines as fast as it can until stopped.
pub fn log_flood(prefix: &str) -> anyhow::Result<Vec<u8>> {
    let imports = r#"(import "tark:plugin/log@0.1.0" "info" (func $info (param i32 i32)))
  (data (i32.const 3000) "flooding")"#;
    tool(
        prefix,
        imports,
        "(loop $l (call $info (i32.const 3000) (i32.const 8)) (br $l))",
    )
}

/// A component of a world that is not one of tark's.
pub fn wrong_world() -> anyhow::Result<Vec<u8>> {
    let wit = "package fixture:other;\nworld other { export run: func() -> u32; }";
    component_of(
        wit,
        "other",
        r#"(module (func (export "run") (result i32) (i32.const 7)))"#,
    )
}

/// A `plugin.toml` for a fixture.
pub fn manifest(name: &str, plugin_type: &str, capabilities: &str) -> String {
    format!(
        "[plugin]\nname = \"{name}\"\nversion = \"1.0.0\"\ntype = \"{plugin_type}\"\ndescription = \"test fixture\"\n\n[capabilities]\n{capabilities}\n"
    )
}

/// Writes tool plugin `gadget` at `version` into `dir` (tools `<prefix>-ok`
/// and `<prefix>-run`), declaring `capabilities`; returns the folder as a
/// tarkctl argument. Versions of one plugin for the lifecycle tests.
pub fn gadget(
    dir: &std::path::Path,
    version: &str,
    prefix: &str,
    capabilities: &str,
) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    let manifest = manifest("gadget", "tool", capabilities)
        .replace("version = \"1.0.0\"", &format!("version = \"{version}\""));
    std::fs::write(dir.join("plugin.toml"), manifest)?;
    std::fs::write(dir.join("plugin.wasm"), tool(prefix, "", "")?)?;
    Ok(dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_encode_as_valid_components() -> anyhow::Result<()> {
        for bytes in [
            spinner("s")?,
            memory_hog("h")?,
            wrong_world()?,
            table_bomb("t")?,
            start_trap("x")?,
            host_call_loop("l")?,
            unreachable("u")?,
            recursion("r")?,
            big_answer("b", 10)?,
        ] {
            assert_eq!(&bytes[..8], b"\0asm\x0d\0\x01\0", "component header");
        }
        Ok(())
    }
}
