//! An example tark tool plugin written with Rust's std, as a plugin author
//! writes one: `println!` and `eprintln!` land in the plugin's log,
//! `std::env::var` sees only the variables the plugin was granted, files and
//! sockets are refused, clocks and randomness work, and `exit` ends the call.
//!
//! Built for `wasm32-wasip1` and turned into a component with the preview-1
//! adapter (what `cargo component build` does), so it imports WASI 0.2.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

wit_bindgen::generate!({
    world: "tool-world",
    path: "../../../wit",
});

use exports::tark::plugin::tool_plugin::{Guest, RiskLevel, ToolDef, ToolResult};

struct WasiStd;

/// One std operation, named by `op`; the answer is JSON.
fn run(args: &Value) -> Result<Value, String> {
    let text = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    Ok(match text("op").as_str() {
        "print" => {
            println!("{}", text("out"));
            eprintln!("{}", text("err"));
            json!({ "printed": true })
        }
        "env" => json!({ "value": std::env::var(text("name")).ok() }),
        "vars" => json!({ "names": std::env::vars().map(|(k, _)| k).collect::<Vec<_>>() }),
        "args" => json!({ "args": std::env::args().collect::<Vec<_>>() }),
        "read" => match std::fs::read_to_string(text("path")) {
            Ok(s) => json!({ "read": s.len() }),
            Err(e) => json!({ "error": e.to_string() }),
        },
        "list" => match std::fs::read_dir(text("path")) {
            Ok(d) => json!({ "entries": d.count() }),
            Err(e) => json!({ "error": e.to_string() }),
        },
        "write" => match std::fs::write(text("path"), b"x") {
            Ok(()) => json!({ "wrote": true }),
            Err(e) => json!({ "error": e.to_string() }),
        },
        "stdin" => {
            let mut s = String::new();
            match std::io::stdin().read_to_string(&mut s) {
                Ok(n) => json!({ "read": n }),
                Err(e) => json!({ "error": e.to_string() }),
            }
        }
        "time" => {
            let since = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
            let start = std::time::Instant::now();
            json!({ "unix": since.as_secs(), "monotonic": start.elapsed().as_nanos() < 1_000_000_000 })
        }
        "random" => {
            // std seeds its hasher from WASI's randomness.
            let a = RandomState::new().hash_one(1u8);
            let b = RandomState::new().hash_one(1u8);
            json!({ "differs": a != b })
        }
        "tcp" => {
            use wasi::sockets::network::IpAddressFamily;
            match wasi::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4) {
                Ok(_) => json!({ "socket": true }),
                Err(e) => json!({ "error": format!("{e:?}") }),
            }
        }
        "resolve" => {
            let net = wasi::sockets::instance_network::instance_network();
            match wasi::sockets::ip_name_lookup::resolve_addresses(&net, &text("name")) {
                Ok(_) => json!({ "resolved": true }),
                Err(e) => json!({ "error": format!("{e:?}") }),
            }
        }
        "exit" => std::process::exit(3),
        "panic" => panic!("asked to panic"),
        other => return Err(format!("unknown op {other:?}")),
    })
}

impl Guest for WasiStd {
    fn get_tools() -> Vec<ToolDef> {
        vec![ToolDef {
            name: "std".into(),
            description: "Runs one std operation through WASI and says what happened.".into(),
            parameters_schema: r#"{"type":"object","properties":{"op":{"type":"string"}},"required":["op"]}"#.into(),
        }]
    }

    fn get_risk_level(_tool: String) -> RiskLevel {
        RiskLevel::ReadOnly
    }

    fn execute(_tool: String, arguments_json: String) -> ToolResult {
        let args: Value = match serde_json::from_str(&arguments_json) {
            Ok(v) => v,
            Err(e) => return ToolResult::Error(format!("bad arguments: {e}")),
        };
        match run(&args) {
            Ok(v) => ToolResult::Success(v.to_string()),
            Err(e) => ToolResult::Error(e),
        }
    }
}

export!(WasiStd);
