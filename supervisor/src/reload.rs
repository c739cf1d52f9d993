//! What SIGHUP does (systemd's `ExecReload`, logrotate's postrotate).
//!
//! What is safe to take up while serving is taken up: the audit log is opened
//! again and the plugins dir rescanned (atomically, see `plugins::reload`). The
//! config file is read and checked, not applied: its settings are held by every
//! subsystem from the start (sockets, limits, the sandbox, principals), so a
//! changed config says so and waits for a restart, and a broken one says what
//! is wrong before that restart would fail.

use std::sync::Arc;

use crate::config::Config;
use crate::daemon::Daemon;

/// Runs one SIGHUP's work, logging the outcome of each part.
pub async fn on_hangup(daemon: &Arc<Daemon>) {
    tracing::info!("SIGHUP: reopening the audit log, rescanning plugins, checking the config");
    daemon.workers.authority.audit.reopen();
    match daemon.reload_plugins().await {
        Ok(_) => daemon.describe_all(),
        Err(e) => tracing::error!("{}", e.message),
    }
    if let Some(outcome) = check_config(&daemon.config) {
        match outcome {
            Ok(line) => tracing::warn!("{line}"),
            Err(line) => tracing::error!("{line}"),
        }
    }
}

/// Whether the config file differs from the one tarkd runs on: `None` when it
/// does not (or tarkd runs on built-in defaults), else a line saying what the
/// operator must do, as `Err` when the file would not load.
pub fn check_config(running: &Config) -> Option<Result<String, String>> {
    let (path, text) = running.source.as_ref()?;
    let now = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Some(Err(format!(
                "config {}: {e}; tarkd keeps running on the config it started with",
                path.display()
            )));
        }
    };
    if now == *text {
        return None;
    }
    Some(match Config::parse(&now, path) {
        Ok(_) => Ok(format!(
            "config {} changed: it is valid and takes effect when tarkd restarts (plugins are rescanned now)",
            path.display()
        )),
        Err(e) => Err(format!(
            "config {} changed and is invalid ({e}); tarkd keeps running on the config it started with, and would not start on this one",
            path.display()
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_config_is_checked_not_applied() -> Result<(), Box<dyn std::error::Error>> {
        let d = tempfile::tempdir()?;
        let path = d.path().join("tarkd.toml");
        let first = "[limits]\ndeadline_ms = 1000\n";
        std::fs::write(&path, first)?;
        let running = Config::load(&path)?;
        // (file now, outcome: None / Ok / Err, text the line holds)
        let cases: [(Option<&str>, Option<bool>, &str); 4] = [
            (Some(first), None, ""),
            (
                Some("[limits]\ndeadline_ms = 2000\n"),
                Some(true),
                "takes effect when tarkd restarts",
            ),
            (
                Some("[limits]\ndeadline_ms = \"x\"\n"),
                Some(false),
                "is invalid",
            ),
            (
                None,
                Some(false),
                "keeps running on the config it started with",
            ),
        ];
        for (text, ok, says) in cases {
            match text {
                Some(t) => std::fs::write(&path, t)?,
                None => std::fs::remove_file(&path)?,
            }
            let outcome = check_config(&running);
            assert_eq!(
                outcome.as_ref().map(Result::is_ok),
                ok,
                "{text:?}: {outcome:?}"
            );
            if let Some(line) = outcome {
                let line = line.unwrap_or_else(|e| e);
                assert!(line.contains(says), "{line}");
                assert!(line.contains(&*path.to_string_lossy()), "{line}");
            }
        }
        assert!(check_config(&Config::default()).is_none());
        Ok(())
    }
}
