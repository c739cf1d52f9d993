//! What a landlock ruleset is worth on the running kernel.
//!
//! tarkd asks for every right of landlock ABI 6 (Linux 6.12). Older kernels
//! enforce what they know and silently drop the rest: Debian 12's 6.1 has
//! ABI 2, Ubuntu 22.04's 5.15 and RHEL 9's 5.14 ABI 1. A worker or a jail
//! runs there with what the kernel gave (best effort), reports the ABI it got
//! and names each right that is missing, and is refused only below the level
//! the operator requires (`sandbox.landlock.min_abi`). The other layers cover
//! what each missing right would have: command tools' roots are bind-mounted
//! read-only (truncate), live in an empty network namespace (TCP, abstract
//! sockets) and a PID namespace of their own under their own uid (signals);
//! wasm workers have no files at all, and seccomp.

use landlock::{ABI, LandlockStatus, RestrictionStatus, RulesetStatus};

/// The ABI whose rights tarkd asks for.
pub const TARGET: ABI = ABI::V6;

/// The rights tarkd asks for that a kernel at `got` does not enforce.
pub fn missing(got: ABI) -> Vec<&'static str> {
    tark_proto::landlock::missing(number(got))
}

/// The kernel's landlock ABI as a number (0: none).
fn number(abi: ABI) -> u32 {
    abi as i32 as u32
}

/// The outcome of `restrict_self` against the required ABI: `Ok` with what
/// was enforced (for the layer's detail), or `Err` with why it does not count.
pub fn judge(status: &RestrictionStatus, min_abi: u32) -> Result<String, String> {
    judge_parts(status.landlock, &status.ruleset, min_abi)
}

fn judge_parts(
    landlock: LandlockStatus,
    ruleset: &RulesetStatus,
    min_abi: u32,
) -> Result<String, String> {
    let got = match landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi,
        LandlockStatus::NotEnabled => {
            return below(
                0,
                min_abi,
                "landlock is built in but not enabled at boot (lsm=)",
            );
        }
        LandlockStatus::NotImplemented => {
            return below(0, min_abi, "the kernel has no landlock");
        }
    };
    match ruleset {
        RulesetStatus::NotEnforced => below(0, min_abi, "the ruleset was not enforced"),
        _ if number(got) < min_abi => below(
            number(got),
            min_abi,
            &format!("ABI {} enforced", number(got)),
        ),
        RulesetStatus::FullyEnforced => Ok(format!("ABI {}", number(got.min(TARGET)))),
        RulesetStatus::PartiallyEnforced => Ok(format!(
            "ABI {} of {}; not enforced by this kernel: {}",
            number(got),
            number(TARGET),
            missing(got).join("; ")
        )),
    }
}

fn below(got: u32, min_abi: u32, why: &str) -> Result<String, String> {
    if got >= min_abi {
        // min_abi 0: nothing is required, and nothing is in force.
        return Ok(format!(
            "not in force ({why}); sandbox.landlock.min_abi is 0"
        ));
    }
    Err(format!(
        "{why}; sandbox.landlock.min_abi requires ABI {min_abi} (a newer kernel, or a lower min_abi)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(abi: ABI) -> LandlockStatus {
        LandlockStatus::Available {
            effective_abi: abi,
            kernel_abi: None,
        }
    }

    /// Every kernel state against every required level.
    #[test]
    fn a_layer_counts_exactly_when_the_kernel_gave_the_required_abi() {
        let kernels = [
            (at(ABI::V1), RulesetStatus::PartiallyEnforced, 1),
            (at(ABI::V2), RulesetStatus::PartiallyEnforced, 2),
            (at(ABI::V3), RulesetStatus::PartiallyEnforced, 3),
            (at(ABI::V4), RulesetStatus::PartiallyEnforced, 4),
            (at(ABI::V5), RulesetStatus::PartiallyEnforced, 5),
            (at(ABI::V6), RulesetStatus::FullyEnforced, 6),
            (at(ABI::V7), RulesetStatus::FullyEnforced, 7),
            (LandlockStatus::NotEnabled, RulesetStatus::NotEnforced, 0),
            (
                LandlockStatus::NotImplemented,
                RulesetStatus::NotEnforced,
                0,
            ),
        ];
        for (landlock, ruleset, abi) in kernels {
            for min_abi in 0..=6 {
                let got = judge_parts(landlock, &ruleset, min_abi);
                assert_eq!(
                    got.is_ok(),
                    abi >= min_abi,
                    "{landlock:?} {min_abi}: {got:?}"
                );
                match got {
                    Ok(detail) if abi == 0 => assert!(detail.starts_with("not in force")),
                    Ok(detail) if abi >= 6 => assert_eq!(detail, "ABI 6"),
                    Ok(detail) => {
                        assert!(detail.starts_with(&format!("ABI {abi} of 6; ")), "{detail}");
                        assert_eq!(detail.matches("(ABI ").count(), 6 - abi as usize);
                    }
                    Err(why) => assert!(why.contains(&format!("requires ABI {min_abi}")), "{why}"),
                }
            }
        }
    }
}
