//! The caller's deadline, from gRPC's `grpc-timeout` header. tonic bounds a
//! unary call by it; a server stream must watch it itself, chunk after chunk.

use std::time::Duration;

/// The timeout the caller set on `req`, if any (and if well-formed).
pub fn of<T>(req: &tonic::Request<T>) -> Option<Duration> {
    let value = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    parse(value)
}

/// The timeout a `grpc-timeout` value states ("100m", "5S", ...): up to eight
/// digits and a unit (H, M, S, m, u, n). `None` for anything else.
pub fn parse(value: &str) -> Option<Duration> {
    let unit_at = value.len().checked_sub(1)?;
    if !value.is_char_boundary(unit_at) {
        return None;
    }
    let (digits, unit) = value.split_at(unit_at);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        let ms = Duration::from_millis;
        let cases = [
            ("100m", Some(ms(100))),
            ("5S", Some(ms(5000))),
            ("2M", Some(ms(120_000))),
            ("1H", Some(ms(3_600_000))),
            ("250u", Some(Duration::from_micros(250))),
            ("7n", Some(Duration::from_nanos(7))),
            ("99999999S", Some(Duration::from_secs(99_999_999))),
            ("123456789S", None),
            ("", None),
            ("S", None),
            ("10", None),
            ("10s", None),
            ("-1S", None),
            ("1.5S", None),
            (" 1S", None),
            ("1é", None),
        ];
        for (value, want) in cases {
            assert_eq!(parse(value), want, "{value:?}");
        }
    }
}
