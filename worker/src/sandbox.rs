//! The worker's lockdown: the one place where the process gives up what it does not
//! need, after the engine and module are set up and before the first guest
//! instruction runs.
//!
//! tarkd already started the worker with a cleared environment, only its channel
//! fds, a death signal tied to tarkd and its own process group. The layers here are
//! the ones the worker applies to itself; each reports whether the kernel accepted
//! it, so tarkd can show the operator what a worker actually runs under.

use nix::sys::prctl;

/// One sandbox layer and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub name: &'static str,
    pub applied: bool,
    pub detail: String,
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.applied {
            "applied"
        } else {
            "not applied"
        };
        if self.detail.is_empty() {
            write!(f, "{}: {state}", self.name)
        } else {
            write!(f, "{}: {state} ({})", self.name, self.detail)
        }
    }
}

fn layer(name: &'static str, r: nix::Result<()>) -> Layer {
    match r {
        Ok(()) => Layer {
            name,
            applied: true,
            detail: String::new(),
        },
        Err(e) => Layer {
            name,
            applied: false,
            detail: e.desc().to_owned(),
        },
    }
}

/// Applies the lockdown layers in order and reports each.
pub fn lockdown() -> Vec<Layer> {
    vec![
        // No setuid/file-capability gains from here on (and a precondition for
        // unprivileged seccomp).
        layer("no_new_privs", prctl::set_no_new_privs()),
        // No core dumps and no ptrace attach by same-uid processes.
        layer("not_dumpable", prctl::set_dumpable(false)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_display_names_state_and_reason() {
        assert_eq!(layer("x", Ok(())).to_string(), "x: applied");
        let refused = layer("y", Err(nix::Error::EPERM));
        assert!(!refused.applied);
        assert!(
            refused.to_string().starts_with("y: not applied ("),
            "{refused}"
        );
    }
}
