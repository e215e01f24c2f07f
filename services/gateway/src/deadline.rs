//! Deadlines: every unary call leaves the gateway with one. A call without a
//! `grpc-timeout` gets the default (`CRM_REQUEST_TIMEOUT`); a longer one is
//! cut to the maximum (`CRM_MAX_REQUEST_TIMEOUT`). The header is passed on,
//! so the role enforces the same deadline. Streams keep the deadline their
//! client chose, if any: a feed has none.

use std::time::Duration;

use crm_platform::Error;

const HEADER: &str = "grpc-timeout";

/// The deadlines the gateway applies.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    pub default: Duration,
    pub max: Duration,
}

impl Deadlines {
    /// Rewrites `grpc-timeout` in `headers` for a call that does (or does not) stream.
    pub fn apply(&self, headers: &mut http::HeaderMap, streaming: bool) -> Result<(), Error> {
        let asked = match headers.get(HEADER) {
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(parse)
                    .ok_or_else(|| Error::invalid("grpc-timeout", "is not a gRPC timeout such as 500m or 30S"))?,
            ),
            None => None,
        };
        let deadline = match (asked, streaming) {
            (None, true) => return Ok(()),
            (None, false) => self.default,
            (Some(asked), _) => asked.min(self.max),
        };
        if let Ok(value) = http::HeaderValue::from_str(&format(deadline)) {
            headers.insert(HEADER, value);
        }
        Ok(())
    }
}

/// The deadline a call's headers carry, if any.
pub fn of(headers: &http::HeaderMap) -> Option<Duration> {
    headers.get(HEADER).and_then(|value| value.to_str().ok()).and_then(parse)
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Milliseconds when they fit in 8 digits, else seconds.
fn format(deadline: Duration) -> String {
    let millis = deadline.as_millis().max(1);
    if millis <= 99_999_999 { format!("{millis}m") } else { format!("{}S", deadline.as_secs().min(99_999_999)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadlines() -> Deadlines {
        Deadlines { default: Duration::from_secs(30), max: Duration::from_secs(300) }
    }

    fn applied(value: Option<&str>, streaming: bool) -> Option<String> {
        let mut headers = http::HeaderMap::new();
        if let Some(value) = value {
            headers.insert(HEADER, value.parse().unwrap());
        }
        deadlines().apply(&mut headers, streaming).unwrap();
        headers.get(HEADER).map(|value| value.to_str().unwrap().to_string())
    }

    #[test]
    fn unary_calls_get_the_default_and_are_capped_at_the_maximum() {
        assert_eq!(applied(None, false).as_deref(), Some("30000m"));
        assert_eq!(applied(Some("2S"), false).as_deref(), Some("2000m"));
        assert_eq!(applied(Some("1H"), false).as_deref(), Some("300000m"));
    }

    #[test]
    fn streams_keep_their_own_deadline_or_none() {
        assert_eq!(applied(None, true), None);
        assert_eq!(applied(Some("10S"), true).as_deref(), Some("10000m"));
        assert_eq!(applied(Some("10H"), true).as_deref(), Some("300000m"));
    }

    #[test]
    fn malformed_timeouts_are_refused() {
        for bad in ["", "S", "10", "10x", "123456789S", "-1S"] {
            let mut headers = http::HeaderMap::new();
            headers.insert(HEADER, bad.parse().unwrap());
            assert!(deadlines().apply(&mut headers, false).is_err(), "{bad:?}");
        }
        assert_eq!(parse("500u"), Some(Duration::from_micros(500)));
    }
}
