//! Helpers for provider implementations: what every provider needs the same way.

use chrono::{DateTime, Utc};

/// Now, to the millisecond: the timestamp a provider stores with new events (MongoDB dates hold
/// milliseconds, so every provider keeps the same precision).
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// Checks that `name` is a plain SQL identifier (an ASCII letter or `_`, then letters, digits or
/// `_`, at most 63 in all), so that it can go into a statement as it is.
pub fn check_identifier(name: &str) -> Result<&str, crate::Error> {
    let mut chars = name.chars();
    let valid = name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(name)
    } else {
        Err(crate::Error::provider(
            format!("use `{name}` as a table name"),
            "a table name has at most 63 ASCII letters, digits and `_`, and starts with a letter or `_`",
        ))
    }
}

/// A connection URL without its password, for messages: `scheme://user:***@host/...`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The `type` of a stored event document (`""` when it has none), read without decoding the rest:
/// what a provider puts in [`StoredEvent::event_type`](crate::StoredEvent::event_type).
pub fn event_type(json: &serde_json::value::RawValue) -> String {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(borrow, rename = "type")]
        event_type: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_str::<Typed>(json.get())
        .ok()
        .and_then(|typed| typed.event_type)
        .map(std::borrow::Cow::into_owned)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_plain() {
        for good in ["events", "_events", "Evt_2", &"a".repeat(63)] {
            assert!(check_identifier(good).is_ok(), "{good}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "2events",
            "events;drop table x",
            "a.b",
            "é",
            "e-v",
            &long,
        ] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://user:secret@host:5432/db"),
            "postgres://user:***@host:5432/db"
        );
        assert_eq!(redact_url("mongodb://host:27017"), "mongodb://host:27017");
        assert_eq!(redact_url("mongodb://user@host"), "mongodb://user@host");
    }

    #[test]
    fn now_has_milliseconds() {
        assert_eq!(now().timestamp_subsec_nanos() % 1_000_000, 0);
    }
}
