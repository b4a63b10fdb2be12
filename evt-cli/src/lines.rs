//! The JSON lines that `evt export` writes and `evt import` reads (and `show --json` and
//! `tail --json` print): one object per line, `kind` saying which.
//!
//! ```text
//! {"kind":"bookmark","bookmark":"departments-list","position":17}
//! {"kind":"event","stream":"departments","aggregateId":"d1","version":1,"position":3,
//!  "timestamp":"2026-11-28T19:00:00.123Z","type":"departmentCreated","event":{..},"metadata":{..}}
//! ```
//!
//! An export writes its bookmark lines first, then the events by position; positions are the
//! source store's, which an import maps to its own.

use std::sync::Arc;

use evt_core::chrono::{DateTime, SecondsFormat, Utc};
use evt_core::{Metadata, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// What a line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// A bookmark and its position.
    Bookmark,
    /// An event, where it sits and its document.
    Event,
}

/// One line. A flat struct (not a tagged enum) so that the event document is read as raw text.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    /// What the line holds.
    pub kind: Kind,
    /// The bookmark's name (bookmark lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bookmark: Option<String>,
    /// The event's stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The event's aggregate id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate_id: Option<String>,
    /// The event's version in its aggregate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The bookmark's position, or the event's, in the source store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// When the event was appended to the source store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The event's type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// The event document, `type` included, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Box<RawValue>>,
    /// The event's metadata, when it has some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// A timestamp as the lines and `show` print it: RFC 3339, milliseconds, `Z`.
pub fn time(timestamp: &DateTime<Utc>) -> String {
    timestamp.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Line {
    /// The line of a bookmark.
    pub fn bookmark(name: &str, position: u64) -> Line {
        Line {
            kind: Kind::Bookmark,
            bookmark: Some(name.to_owned()),
            stream: None,
            aggregate_id: None,
            version: None,
            position: Some(position),
            timestamp: None,
            event_type: None,
            event: None,
            metadata: None,
        }
    }

    /// The line of a stored event.
    pub fn event(event: &StoredEvent) -> Line {
        let meta = &event.meta;
        Line {
            kind: Kind::Event,
            bookmark: None,
            stream: Some(meta.stream.clone()),
            aggregate_id: Some(meta.aggregate_id.clone()),
            version: Some(meta.version),
            position: Some(meta.position),
            timestamp: Some(time(&meta.timestamp)),
            event_type: Some(event.event_type.clone()),
            event: Some(event.data.clone()),
            metadata: (!meta.metadata.is_empty()).then(|| Metadata::clone(&meta.metadata)),
        }
    }

    /// The line as JSON text, without the newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a line always serializes")
    }
}

/// An event read from a line: every field an import needs.
#[derive(Debug)]
pub struct ImportedEvent {
    pub stream: String,
    pub aggregate_id: String,
    pub version: u64,
    pub position: u64,
    pub event_type: String,
    pub event: Box<RawValue>,
    pub metadata: Option<Arc<Metadata>>,
}

/// What a line read for an import holds.
#[derive(Debug)]
pub enum Imported {
    Bookmark(String, u64),
    Event(ImportedEvent),
}

/// Reads line `number` (from 1) of an import; says what is wrong with it.
pub fn parse(number: u64, text: &str) -> Result<Imported, String> {
    let line: Line = serde_json::from_str(text)
        .map_err(|e| format!("line {number}: not an export line: {e}"))?;
    let missing = |field: &str| format!("line {number}: a {:?} line without `{field}`", line.kind);
    match line.kind {
        Kind::Bookmark => Ok(Imported::Bookmark(
            line.bookmark.clone().ok_or_else(|| missing("bookmark"))?,
            line.position.ok_or_else(|| missing("position"))?,
        )),
        Kind::Event => {
            let version = line.version.ok_or_else(|| missing("version"))?;
            if version == 0 {
                return Err(format!("line {number}: version 0 (versions start at 1)"));
            }
            Ok(Imported::Event(ImportedEvent {
                position: line.position.ok_or_else(|| missing("position"))?,
                event_type: match line.event_type.clone() {
                    Some(name) => name,
                    None => document_type(line.event.as_deref()).ok_or_else(|| missing("type"))?,
                },
                metadata: line
                    .metadata
                    .clone()
                    .filter(|m| !m.is_empty())
                    .map(Arc::new),
                stream: line.stream.ok_or_else(|| missing("stream"))?,
                aggregate_id: line.aggregate_id.ok_or_else(|| missing("aggregateId"))?,
                event: line.event.ok_or_else(|| missing("event"))?,
                version,
            }))
        }
    }
}

/// The `type` of an event document, for a line that does not repeat it.
fn document_type(event: Option<&RawValue>) -> Option<String> {
    #[derive(Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        event_type: String,
    }
    let typed: Typed = serde_json::from_str(event?.get()).ok()?;
    Some(typed.event_type)
}
