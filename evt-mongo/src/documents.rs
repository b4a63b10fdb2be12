//! Event and bookmark documents as evtstore writes them, read into `evt` types.

use std::sync::Arc;

use evt_core::chrono::{DateTime, Utc};
use evt_core::{Error, Meta, Metadata, StoredEvent};
use mongodb::bson::{self, Bson, Document, Timestamp};

/// A position as evtstore stores it: the server's `Timestamp` of the insert.
pub(crate) fn timestamp(position: u64) -> Timestamp {
    Timestamp {
        time: (position >> 32) as u32,
        increment: position as u32,
    }
}

/// A `Timestamp` as a position: `t << 32 | i`.
pub(crate) fn position(timestamp: Timestamp) -> u64 {
    u64::from(timestamp.time) << 32 | u64::from(timestamp.increment)
}

/// A position `seconds` earlier (at least 0).
pub(crate) fn seconds_before(position: u64, seconds: u64) -> u64 {
    position.saturating_sub(seconds << 32)
}

/// A `position` field: a `Timestamp` (evtstore, and `evt` since 0.2), or a non-negative integer
/// (as `evt` 0.1 wrote them).
pub(crate) fn read_position(document: &Document, key: &str) -> Result<u64, String> {
    match document.get(key) {
        Some(Bson::Timestamp(timestamp)) => Ok(position(*timestamp)),
        _ => integer(document, key)
            .map_err(|_| format!("`{key}` is missing or not a Timestamp or non-negative integer")),
    }
}

/// A non-negative integer field, stored as a 32- or 64-bit integer or an integral double
/// (as a JavaScript client writes numbers).
pub(crate) fn integer(document: &Document, key: &str) -> Result<u64, String> {
    let value = match document.get(key) {
        Some(Bson::Int64(n)) => u64::try_from(*n).ok(),
        Some(Bson::Int32(n)) => u64::try_from(*n).ok(),
        Some(Bson::Double(n)) if n.fract() == 0.0 && *n >= 0.0 => Some(*n as u64),
        _ => None,
    };
    value.ok_or_else(|| format!("`{key}` is missing or not a non-negative integer"))
}

pub(crate) fn chrono_millis(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

/// An event document as a stored event. A document without its place (stream, id, version,
/// position) is an error; an `event` that does not fit is left for the typed decoding to report.
pub(crate) fn stored_event(document: &Document) -> Result<StoredEvent, Error> {
    let place = (|| -> Result<Meta, String> {
        let text = |key: &str| {
            document
                .get_str(key)
                .map(str::to_owned)
                .map_err(|_| format!("`{key}` is missing or not a string"))
        };
        let timestamp = match document.get("timestamp") {
            Some(Bson::DateTime(date)) => chrono_millis(date.timestamp_millis()),
            _ => return Err("`timestamp` is missing or not a date".into()),
        };
        let mut meta = Meta::new(
            text("stream")?,
            text("aggregateId")?,
            integer(document, "version")?,
            read_position(document, "position")?,
            timestamp,
        );
        meta.metadata = match document.get("metadata") {
            None | Some(Bson::Null) => Metadata::none(),
            Some(Bson::Document(metadata)) => Arc::new(
                bson::from_document(metadata.clone())
                    .map_err(|e| format!("malformed `metadata`: {e}"))?,
            ),
            Some(_) => return Err("`metadata` is not a document".into()),
        };
        Ok(meta)
    })();
    let meta = place.map_err(|problem| {
        Error::provider(
            format!(
                "read event document {}",
                document
                    .get("_id")
                    .map_or_else(|| "?".to_owned(), ToString::to_string)
            ),
            format!("malformed event document: {problem}"),
        )
    })?;
    let event = document.get("event").unwrap_or(&Bson::Null);
    let event_type = match event {
        Bson::Document(event) => event.get_str("type").unwrap_or_default().to_owned(),
        _ => String::new(),
    };
    // Straight from BSON to JSON text: the event's values are JSON's (strings, numbers,
    // booleans, null, arrays, documents), which serialize as themselves.
    let data = serde_json::value::to_raw_value(event).map_err(|e| {
        Error::provider(
            format!("read the event at position {}", meta.position),
            e.to_string(),
        )
    })?;
    Ok(StoredEvent::new(meta, event_type, data))
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn reads_numbers_as_javascript_writes_them() {
        let document = doc! {"a": 3_i32, "b": 4_i64, "c": 5.0, "d": 5.5, "e": -1_i32};
        assert_eq!(integer(&document, "a"), Ok(3));
        assert_eq!(integer(&document, "b"), Ok(4));
        assert_eq!(integer(&document, "c"), Ok(5));
        assert!(integer(&document, "d").is_err());
        assert!(integer(&document, "e").is_err());
        assert!(integer(&document, "f").is_err());
    }

    #[test]
    fn positions_are_timestamps() {
        let at = Timestamp {
            time: 1_700_000_000,
            increment: 7,
        };
        assert_eq!(timestamp(position(at)), at);
        assert_eq!(position(at), (1_700_000_000_u64 << 32) | 7);
        assert_eq!(
            read_position(&doc! {"position": at}, "position"),
            Ok(position(at))
        );
        assert_eq!(
            read_position(&doc! {"position": 12_i64}, "position"),
            Ok(12)
        );
        assert_eq!(
            timestamp(seconds_before(position(at), 60)).time,
            1_700_000_000 - 60
        );
    }

    #[test]
    fn events_become_json_text_as_stored() {
        let document = doc! {
            "stream": "s", "aggregateId": "a", "version": 1_i32,
            "position": Timestamp { time: 5, increment: 1 },
            "timestamp": mongodb::bson::DateTime::from_millis(1000),
            "event": {"type": "created", "n": 3_i32, "big": 5_000_000_000_i64, "x": 1.5, "none": null, "list": [1_i32, "b"]},
        };
        let event = stored_event(&document).unwrap();
        assert_eq!(event.event_type, "created");
        assert_eq!(
            event.value(),
            serde_json::json!({"type": "created", "n": 3, "big": 5_000_000_000_i64, "x": 1.5, "none": null, "list": [1, "b"]})
        );
    }
}
