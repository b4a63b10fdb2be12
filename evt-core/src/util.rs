//! Helpers for provider implementations: what every provider needs the same way.

use chrono::{DateTime, Utc};

/// Now, to the millisecond: the timestamp a provider stores with new events (MongoDB dates hold
/// milliseconds, so every provider keeps the same precision).
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// An aggregate id, stream or bookmark name for a message: as it is up to 100 characters, cut
/// after 100 characters (never inside one) with its full length in bytes beyond that, so that a
/// huge id cannot make a huge error.
///
/// ```
/// # use evt_core::__private::util::display_id;
/// assert_eq!(display_id("d-1").to_string(), "d-1");
/// assert_eq!(display_id(&"x".repeat(1000)).to_string(), format!("{}… (1000 bytes)", "x".repeat(100)));
/// ```
pub fn display_id(id: &str) -> impl std::fmt::Display + '_ {
    crate::error::cut(id)
}

/// A fresh random id for one append, for a provider to store with its events, so that a try
/// whose answer was lost can tell its own stored events from another writer's.
pub fn append_id() -> i64 {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let hash = RandomState::new().hash_one((
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::process::id(),
        std::time::SystemTime::now(),
    ));
    i64::from_ne_bytes(hash.to_ne_bytes())
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

/// A connection URL without its secrets, for messages: the password of `user:password@` and the
/// value of every query parameter that may hold one (`password=`, `sslpassword=`,
/// `tlsCertificateKeyFilePassword=`, `authMechanismProperties=`, any key with `pass`, `secret`
/// or `token` in it) become `***`.
///
/// ```
/// # use evt_core::__private::util::redact_url;
/// assert_eq!(
///     redact_url("postgres://u:pw@db:5432/app?password=pw2&sslmode=require"),
///     "postgres://u:***@db:5432/app?password=***&sslmode=require",
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut redacted = match base.find("://") {
        Some(scheme) => {
            let rest = &base[scheme + 3..];
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let authority = &rest[..authority_end];
            match authority.rfind('@') {
                Some(at) => {
                    let user = authority[..at].split(':').next().unwrap_or_default();
                    let password = if authority[..at].contains(':') {
                        ":***"
                    } else {
                        ""
                    };
                    format!(
                        "{}{user}{password}{}",
                        &base[..scheme + 3],
                        &base[scheme + 3 + at..]
                    )
                }
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let parameters: Vec<String> = query
            .split('&')
            .map(|parameter| match parameter.split_once('=') {
                Some((key, _)) if is_secret_key(key) => format!("{key}=***"),
                _ => parameter.to_owned(),
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&parameters.join("&"));
    }
    redacted
}

/// Whether a URL query parameter's value may be a secret.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "authmechanismproperties"]
        .iter()
        .any(|word| key.contains(word))
}

/// A [`Lease`](crate::Lease) from the row an SQL provider keeps it in (`holder`, `epoch`, `beat`,
/// the numbers as signed 64-bit integers); a negative number is a malformed row.
///
/// ```
/// let lease = evt_core::__private::util::lease_row(Some("a/1/ff".into()), 2, 5).unwrap();
/// assert_eq!((lease.epoch, lease.beat), (2, 5));
/// assert!(evt_core::__private::util::lease_row(None, -1, 0).is_err());
/// ```
pub fn lease_row(holder: Option<String>, epoch: i64, beat: i64) -> Result<crate::Lease, String> {
    let number = |value: i64, what: &str| {
        u64::try_from(value).map_err(|_| format!("the lease's `{what}` is negative: {value}"))
    };
    Ok(crate::Lease::new(
        holder,
        number(epoch, "epoch")?,
        number(beat, "beat")?,
    ))
}

/// The `type` of a stored event document (`""` when it has none), read without decoding the rest:
/// what a provider puts in [`StoredEvent::event_type`](crate::StoredEvent::event_type).
pub fn event_type(json: &serde_json::value::RawValue) -> String {
    // Documents evt writes (and most evtstore writes) start with their type: read it without
    // parsing the rest, where it holds no escape.
    if let Some(rest) = json.get().strip_prefix(r#"{"type":""#)
        && let Some(end) = rest.find(['"', '\\'])
        && rest.as_bytes()[end] == b'"'
    {
        return rest[..end].to_owned();
    }
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
    fn event_types_are_read_with_or_without_the_short_way() {
        let raw = |text: &str| serde_json::value::RawValue::from_string(text.to_owned()).unwrap();
        for (text, expected) in [
            (r#"{"type":"noted","n":1}"#, "noted"),
            (r#"{"type":"no\"ted","n":1}"#, "no\"ted"),
            (r#"{ "type" : "spaced" }"#, "spaced"),
            (r#"{"n":1,"type":"last"}"#, "last"),
            (r#"{"type":"caf\u00e9"}"#, "café"),
            (r#"{"type":""}"#, ""),
            (r#"{"type":7}"#, ""),
            (r#"{"n":1}"#, ""),
        ] {
            assert_eq!(event_type(&raw(text)), expected, "{text}");
        }
    }

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
        // Every form the drivers accept.
        for (url, redacted) in [
            (
                "postgres://u@h/db?password=WrongSecret_99",
                "postgres://u@h/db?password=***",
            ),
            (
                "postgres://h/db?user=u&PASSWORD=s&sslmode=disable",
                "postgres://h/db?user=u&PASSWORD=***&sslmode=disable",
            ),
            (
                "postgres://u:p@ss@h/db?sslpassword=k",
                "postgres://u:***@h/db?sslpassword=***",
            ),
            (
                "mongodb://u:s@h1,h2/db?tlsCertificateKeyFilePassword=k&authMechanismProperties=AWS_SESSION_TOKEN:t",
                "mongodb://u:***@h1,h2/db?tlsCertificateKeyFilePassword=***&authMechanismProperties=***",
            ),
            (
                "postgres://u@h/db?application_name=a@b",
                "postgres://u@h/db?application_name=a@b",
            ),
        ] {
            assert_eq!(redact_url(url), redacted, "{url}");
            assert!(!redact_url(url).contains("Secret"));
        }
    }

    #[test]
    fn now_has_milliseconds() {
        assert_eq!(now().timestamp_subsec_nanos() % 1_000_000, 0);
    }
}
