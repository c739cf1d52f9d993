//! Path checks: expansion never yields a relative path or one with `.`/`..`
//! left in it, "under" agrees with component prefixes, and entries that pass
//! validation cover themselves.
#![no_main]

use std::path::{Component, Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use tarkd::broker::files::{Roots, expand, under};
use tarkd::broker::policy::{path_covers, valid_fs_entry};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (entry, request) = text.split_once('\n').unwrap_or((text, ""));
    let roots = Roots {
        home: Some(PathBuf::from("/home/u")),
        plugin_dir: PathBuf::from("/plugins/p"),
        own_pid: Default::default(),
    };
    for p in [entry, request] {
        if let Some(x) = expand(p, &roots) {
            assert!(x.is_absolute(), "{p:?} -> {x:?}");
            assert!(
                x.components()
                    .all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
                "{p:?} -> {x:?}"
            );
        }
    }
    if valid_fs_entry(entry) {
        assert!(path_covers(entry, entry), "{entry:?}");
        if let (Some(e), Some(r)) = (expand(entry, &roots), expand(request, &roots)) {
            let entries = [e.clone()];
            assert_eq!(under(&r, &entries), r.starts_with(&e));
            if under(&r, &entries) {
                // Being under an entry is never a matter of string prefixes.
                let rest = r.strip_prefix(&e).unwrap_or(Path::new(""));
                assert!(rest.components().all(|c| matches!(c, Component::Normal(_))));
            }
        }
    }
    let _ = path_covers(entry, request);
});
