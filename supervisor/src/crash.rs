//! Test hook: with the `test-hooks` feature, `TARKD_TEST_CRASH_AT=<point>`
//! kills tarkd with SIGKILL when it reaches that point of an install, rollback
//! or removal, so a test can show that a kill anywhere leaves the old or the
//! new version serving after restart. Without the feature it is nothing.

/// A point a crash may be injected at, named `operation:step`.
#[inline]
pub fn point(name: &str) {
    #[cfg(feature = "test-hooks")]
    if std::env::var("TARKD_TEST_CRASH_AT").as_deref() == Ok(name) {
        tracing::warn!("test hook: killed at {name}");
        // SAFETY: kill(2) of this process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    let _ = name;
}
