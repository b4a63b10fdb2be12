//! Event metadata: what a command's caller says about the events it appends.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

/// What the caller of a command says about the events it appends: who asked, on behalf of which
/// request, because of which event, and keys of your own.
///
/// Set once per command through [`crate::Domain::with_metadata`], stored beside each event of
/// the append (not in the event's document, whose shape stays evtstore's) and given to handlers
/// in [`crate::Meta::metadata`]. Events appended without it have none (`is_empty()`), as do
/// events written by evtstore.
///
/// Stored as `{"correlationId": .., "causationId": .., "user": .., "custom": {..}}`, each key
/// only when set: a PostgreSQL or SQLite `metadata` column (`NULL` when empty), a MongoDB
/// `metadata` field (absent when empty).
///
/// ```
/// use evt_core::Metadata;
///
/// let metadata = Metadata::new()
///     .correlation_id("req-7f3a")
///     .user("alice@example.com")
///     .with("tenant", "acme");
/// assert_eq!(metadata.correlation_id.as_deref(), Some("req-7f3a"));
/// assert_eq!(metadata.custom["tenant"], "acme");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Metadata {
    /// The id that ties together everything done for one request or workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of what caused this command: a request, or the event a process manager handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// Who acted: a user id, a service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Keys of your own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, String>,
}

impl Metadata {
    /// No metadata; set what you have with the methods below.
    pub fn new() -> Self {
        Self::default()
    }

    /// This metadata with the correlation id `id`.
    #[must_use]
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// This metadata with the causation id `id`.
    #[must_use]
    pub fn causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// This metadata with the acting user `user`.
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// This metadata with the key of your own `key` set to `value`.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.custom.insert(key.into(), value.into());
        self
    }

    /// Whether nothing is set (such metadata is not stored).
    ///
    /// ```
    /// assert!(evt_core::Metadata::new().is_empty());
    /// assert!(!evt_core::Metadata::new().user("alice").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none()
            && self.causation_id.is_none()
            && self.user.is_none()
            && self.custom.is_empty()
    }

    /// The stored JSON text, or `None` when empty (for providers).
    #[doc(hidden)]
    pub fn to_stored(&self) -> Option<String> {
        (!self.is_empty()).then(|| serde_json::to_string(self).expect("metadata always serializes"))
    }

    /// Reads stored metadata (for providers): `None` (a `NULL`, an absent field) is no metadata.
    #[doc(hidden)]
    pub fn from_stored(json: Option<&str>) -> Result<Arc<Metadata>, String> {
        match json {
            None => Ok(Metadata::none()),
            Some(json) => serde_json::from_str(json)
                .map(Arc::new)
                .map_err(|e| format!("malformed metadata {json}: {e}")),
        }
    }

    /// The shared empty metadata: events without metadata cost no allocation.
    #[doc(hidden)]
    pub fn none() -> Arc<Metadata> {
        static NONE: OnceLock<Arc<Metadata>> = OnceLock::new();
        NONE.get_or_init(Arc::default).clone()
    }
}
