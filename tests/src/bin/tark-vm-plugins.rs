//! tark-vm-plugins DIR: writes the plugins scripts/vm-test installs in its
//! guest to prove the cgroup limits: `spin` (a tool that loops: cpu.max),
//! `hog` (a tool that fills memory page by page: memory.max) and `forkbomb` (a
//! command tool that starts processes until refused: pids.max, and one that
//! only answers, to show command tools run on the guest's landlock ABI).

use anyhow::Context;
use tark_tests::fixtures;

/// Grows memory a page at a time and writes every byte of it, so the kernel
/// charges it to the worker's cgroup (growing alone commits nothing).
const FILL: &str = r#"
        (block $done
          (loop $grow
            (local.set $name (memory.grow (i32.const 1)))
            (br_if $done (i32.eq (local.get $name) (i32.const -1)))
            (memory.fill (i32.shl (local.get $name) (i32.const 16)) (i32.const 1) (i32.const 65536))
            (br $grow)))"#;

const FORK_BOMB: &str = r#"[plugin]
name = "forkbomb"
version = "1.0.0"
type = "tool"
description = "starts sleeping processes until the kernel refuses"

[capabilities]
shell = true

[[tools]]
name = "greet"
command = "echo"
args = ["hello from the jail"]

[[tools]]
name = "forkbomb"
command = "sh"
args = ["-c", "i=0; while [ $i -lt 100 ]; do sleep 60 & i=$((i+1)); done; echo all started"]
"#;

fn write(
    dir: &std::path::Path,
    name: &str,
    manifest: &str,
    wasm: Option<Vec<u8>>,
) -> anyhow::Result<()> {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder)?;
    std::fs::write(folder.join("plugin.toml"), manifest)?;
    if let Some(wasm) = wasm {
        std::fs::write(folder.join("plugin.wasm"), wasm)?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .context("usage: tark-vm-plugins DIR")?;
    let dir = std::path::Path::new(&dir);
    write(
        dir,
        "spin",
        &fixtures::manifest("spin", "tool", ""),
        Some(fixtures::spinner("spin")?),
    )?;
    write(
        dir,
        "hog",
        &fixtures::manifest("hog", "tool", ""),
        Some(fixtures::tool("hog", "", FILL)?),
    )?;
    write(dir, "forkbomb", FORK_BOMB, None)?;
    Ok(())
}
