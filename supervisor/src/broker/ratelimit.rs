//! A token bucket, for the rate of host calls a plugin may make (log lines now).

use std::time::Instant;

use serde::Deserialize;

/// Settings of a bucket (config section `[logs]` for log lines).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rate {
    /// Sustained events per second.
    pub per_second: f64,
    /// Events allowed at once after a quiet spell.
    pub burst: f64,
}

impl Default for Rate {
    fn default() -> Self {
        Self {
            per_second: 100.0,
            burst: 200.0,
        }
    }
}

/// `rate.per_second` tokens a second, at most `rate.burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate.burst,
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate_table() {
        let rate = Rate {
            per_second: 10.0,
            burst: 3.0,
        };
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut b = TokenBucket::new(rate, t0);
        // (time, allowed)
        let steps = [
            (0, true),
            (0, true),
            (0, true),
            (0, false),  // burst spent
            (50, false), // half a token
            (100, true), // one token per 100 ms
            (100, false),
            (10_000, true), // refilled, but only up to the burst
            (10_000, true),
            (10_000, true),
            (10_000, false),
        ];
        for (i, (at, allowed)) in steps.into_iter().enumerate() {
            assert_eq!(b.take(ms(at)), allowed, "step {i} at {at} ms");
        }
    }

    #[test]
    fn time_going_backwards_gives_nothing_extra() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(
            Rate {
                per_second: 1.0,
                burst: 1.0,
            },
            t0,
        );
        assert!(b.take(t0));
        assert!(!b.take(t0 - Duration::from_secs(5)));
    }
}
