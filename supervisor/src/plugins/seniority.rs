//! When each plugin was first installed (or first found in a root), so that
//! of two plugins claiming one tool name, provider id or channel id, the
//! one that was there first keeps it (`sources.conflicts = "keep-first"`,
//! the default) and the newcomer's claim is the one refused. An update or a
//! rollback keeps a plugin's place; a removal gives it up.
//!
//! One file per plugin in `state_dir/seniority/` holding the Unix
//! milliseconds it was first seen, written whole (see `durable`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The places, on disk and in memory.
#[derive(Debug)]
pub struct Seniority {
    dir: PathBuf,
    known: Mutex<HashMap<String, u64>>,
}

impl Seniority {
    /// Reads the places recorded under `state_dir`.
    pub fn open(state_dir: &Path) -> Self {
        let dir = state_dir.join("seniority");
        let mut known = HashMap::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let at = std::fs::read_to_string(e.path())
                .ok()
                .and_then(|t| t.trim().parse().ok());
            if let Some(at) = at {
                known.insert(id, at);
            }
        }
        Self {
            dir,
            known: Mutex::new(known),
        }
    }

    /// A plugin's place: when it was first seen, recorded now if it is new.
    /// A record that cannot be written is kept in memory (and logged): the
    /// plugin keeps its place until tarkd restarts.
    pub fn of(&self, id: &str) -> u64 {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&at) = known.get(id) {
            return at;
        }
        let now = crate::broker::audit::now_ms();
        if let Err(e) = crate::durable::write_private(&self.dir, id, now.to_string().as_bytes()) {
            tracing::warn!(plugin = id, "recording when it was installed: {e}");
        }
        known.insert(id.to_owned(), now);
        now
    }

    /// Forgets a removed plugin: installed again, it comes last.
    pub fn forget(&self, id: &str) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Err(e) = crate::durable::remove(&self.dir.join(id)) {
            tracing::warn!(plugin = id, "forgetting when it was installed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_is_kept_across_restarts_and_given_up_on_removal() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let s = Seniority::open(dir.path());
        let a = s.of("a");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = s.of("b");
        assert!(a < b);
        assert_eq!(s.of("a"), a, "asked again: the same place");
        let again = Seniority::open(dir.path());
        assert_eq!((again.of("a"), again.of("b")), (a, b));
        again.forget("a");
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(again.of("a") > b, "reinstalled: last");
        assert!(Seniority::open(dir.path()).of("a") > b);
        Ok(())
    }
}
