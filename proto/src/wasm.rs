//! Which kind of core module a plugin is, decided the same way by tarkd (to
//! say so in `plugin info`) and by the worker (to adapt it).
//!
//! Two kinds of core module reach tarkd. tark's own ABI: plain modules that
//! exchange `(ptr, len)` strings and JSON with their host (`alloc`, `status`,
//! `provider_chat`, ...). And what tark's plugin SDK guide builds:
//! `cargo build --target wasm32-wasip1` of a `wit-bindgen` crate, a module
//! exporting the canonical-ABI names of a WIT world (`tark:plugin/auth-plugin#status`)
//! and carrying the world's type in a `component-type*` custom section. The
//! second is made into a component (`wit-component` and the preview-1 adapter)
//! and hosted as one.

/// What a core module is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreShape {
    /// tark's pointer/length ABI.
    TarkAbi,
    /// Built by wit-bindgen: adapted to a component.
    WitBindgen,
}

/// How `plugin info` says a plugin was adapted.
pub const ADAPTED: &str = "core module built by wit-bindgen, adapted to a component";

/// The decision, on a module's custom section names and export names: a
/// `component-type` section (wit-bindgen's, naming the world) together with
/// at least one canonical-ABI export (`interface#function`) is wit-bindgen's
/// output. Either alone is not: tark's ABI has neither, and a stray section or
/// a `#` in a name does not make a module a component.
pub fn decide<'a>(
    custom_sections: impl IntoIterator<Item = &'a str>,
    exports: impl IntoIterator<Item = &'a str>,
) -> CoreShape {
    let typed = custom_sections
        .into_iter()
        .any(|s| s.starts_with("component-type"));
    let canonical = exports.into_iter().any(|e| {
        e.split_once('#')
            .is_some_and(|(iface, func)| iface.contains(':') && !func.is_empty())
    });
    if typed && canonical {
        CoreShape::WitBindgen
    } else {
        CoreShape::TarkAbi
    }
}

/// The shape of a core module's bytes; `None` if they are not a core module
/// (a component, or not wasm). Malformed sections count as tark's ABI, whose
/// loader names what is wrong.
pub fn core_shape(wasm: &[u8]) -> Option<CoreShape> {
    if !wasm.starts_with(b"\0asm\x01\0\0\0") {
        return None;
    }
    let mut customs = Vec::new();
    let mut exports = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(wasmparser::Payload::CustomSection(c)) => customs.push(c.name().to_owned()),
            Ok(wasmparser::Payload::ExportSection(reader)) => {
                for e in reader.into_iter().flatten() {
                    exports.push(e.name.to_owned());
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Some(decide(
        customs.iter().map(String::as_str),
        exports.iter().map(String::as_str),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision() {
        use CoreShape::*;
        let auth = ["tark:plugin/auth-plugin#status", "cabi_realloc", "memory"];
        let tark = ["alloc", "status", "memory"];
        for (customs, exports, want) in [
            // What tark's SDK guide builds.
            (
                &["component-type:wit-bindgen:0.36.0:tark:plugin:auth-world:encoded world"][..],
                &auth[..],
                WitBindgen,
            ),
            (
                &["producers", "component-type:auth-world"][..],
                &auth[..],
                WitBindgen,
            ),
            // tark's pointer/length ABI, with or without debug sections.
            (&[][..], &tark[..], TarkAbi),
            (&["name", "producers"][..], &tark[..], TarkAbi),
            // One sign without the other.
            (&["component-type:x"][..], &tark[..], TarkAbi),
            (&[][..], &auth[..], TarkAbi),
            // A `#` that is no canonical-ABI name.
            (
                &["component-type:x"][..],
                &["#status", "status#"][..],
                TarkAbi,
            ),
        ] {
            assert_eq!(
                decide(customs.iter().copied(), exports.iter().copied()),
                want,
                "{customs:?} {exports:?}"
            );
        }
    }

    #[test]
    fn only_core_modules_have_a_shape() {
        assert_eq!(core_shape(b"\0asm\x0d\0\x01\0"), None);
        assert_eq!(core_shape(b""), None);
        assert_eq!(core_shape(b"\0asm\x01\0\0\0"), Some(CoreShape::TarkAbi));
    }
}
