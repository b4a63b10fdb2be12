//! Event rows into stored events: the columns every read selects, their types checked once per
//! result, and `timestamptz` read without calendar arithmetic.

use evt_core::__private::util;
use evt_core::chrono::{DateTime, Utc};
use evt_core::{Error, Meta, Metadata, StoredEvent};
use serde_json::value::RawValue;
use sqlx::postgres::{PgRow, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::{Column, Decode, Postgres, Row, Type, TypeInfo};

/// The columns of an event row, read the same from every column type evt and evtstore use
/// (`version` `bigint` or `integer`; `event` `text`, `json` or `jsonb`). [`EventRows`] reads them
/// by index: keep the order.
pub(crate) const COLUMNS: &str = "position, stream, aggregate_id, version::bigint AS version, \
                                  timestamp, event::text AS event, metadata";
/// The columns of one aggregate's events: its stream and id are the query's.
pub(crate) const AGGREGATE_COLUMNS: &str =
    "position, version::bigint AS version, timestamp, event::text AS event, metadata";

/// Reads the rows of one query into stored events.
///
/// Every row of a result has the same columns (sqlx gives each row of a prepared query the
/// statement's), so their types are checked on the first row only, and each row is decoded
/// without sqlx's check per value.
pub(crate) struct EventRows<'a> {
    /// The stream and aggregate id, when the query knew them and did not select them
    /// ([`AGGREGATE_COLUMNS`]); otherwise the rows are [`COLUMNS`].
    aggregate: Option<(&'a str, &'a str)>,
    checked: bool,
}

impl<'a> EventRows<'a> {
    pub(crate) fn new(aggregate: Option<(&'a str, &'a str)>) -> Self {
        EventRows {
            aggregate,
            checked: false,
        }
    }

    /// The event of `row`, or an error naming what is malformed in it.
    pub(crate) fn read(&mut self, row: &PgRow) -> Result<StoredEvent, Error> {
        self.try_read(row).map_err(|problem| {
            Error::provider(
                "read an event row",
                format!("malformed event row: {problem}"),
            )
        })
    }

    fn try_read(&mut self, row: &PgRow) -> Result<StoredEvent, String> {
        // `COLUMNS` are `position, stream, aggregate_id`, then the same four as
        // `AGGREGATE_COLUMNS` after `position`: `version, timestamp, event, metadata`.
        let shift = if self.aggregate.is_some() { 0 } else { 2 };
        if !self.checked {
            expect::<i64>(row, 0)?;
            if shift == 2 {
                expect::<String>(row, 1)?;
                expect::<String>(row, 2)?;
            }
            expect::<i64>(row, 1 + shift)?;
            expect::<Timestamp>(row, 2 + shift)?;
            expect::<String>(row, 3 + shift)?;
            expect::<String>(row, 4 + shift)?;
            self.checked = true;
        }
        let error = |e: sqlx::Error| e.to_string();
        let (stream, aggregate_id) = match self.aggregate {
            Some((stream, aggregate_id)) => (stream.to_owned(), aggregate_id.to_owned()),
            None => (
                row.try_get_unchecked(1).map_err(error)?,
                row.try_get_unchecked(2).map_err(error)?,
            ),
        };
        let position = non_negative(row.try_get_unchecked(0).map_err(error)?, "position")?;
        let version = non_negative(row.try_get_unchecked(1 + shift).map_err(error)?, "version")?;
        let Timestamp(timestamp) = row.try_get_unchecked(2 + shift).map_err(error)?;
        let text: String = row.try_get_unchecked(3 + shift).map_err(error)?;
        let data = RawValue::from_string(text).map_err(|e| format!("`event` is not JSON: {e}"))?;
        let metadata: Option<&str> = row.try_get_unchecked(4 + shift).map_err(error)?;
        let mut meta = Meta::new(stream, aggregate_id, version, position, timestamp);
        meta.metadata = Metadata::from_stored(metadata)?;
        Ok(StoredEvent::new(meta, util::event_type(&data), data))
    }
}

/// Column `index` of `row` decodes as a `T`.
fn expect<T: Type<Postgres>>(row: &PgRow, index: usize) -> Result<(), String> {
    let column = row.try_column(index).map_err(|e| e.to_string())?;
    let found = column.type_info();
    if T::compatible(found) {
        Ok(())
    } else {
        Err(format!(
            "column `{}` is `{}`, expected `{}`",
            column.name(),
            found.name(),
            T::type_info().name()
        ))
    }
}

pub(crate) fn non_negative(value: i64, what: &str) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("`{what}` is negative: {value}"))
}

/// A `timestamptz`. In PostgreSQL's binary format (which sqlx's prepared queries receive) it is
/// microseconds since 2000-01-01 UTC: read here with one addition, where sqlx's own decoding adds
/// a `Duration` to a calendar date. A value chrono cannot hold (`infinity`, `-infinity`, years
/// past 262,143) is an error, where sqlx's decoding would panic. The text format goes through
/// sqlx's decoding.
struct Timestamp(DateTime<Utc>);

/// 2000-01-01T00:00:00Z in microseconds since the Unix epoch: PostgreSQL's epoch.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

impl Type<Postgres> for Timestamp {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Timestamp {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        if value.format() == PgValueFormat::Text {
            return <DateTime<Utc> as Decode<'r, Postgres>>::decode(value).map(Timestamp);
        }
        let bytes = value.as_bytes()?;
        let bytes = <[u8; 8]>::try_from(bytes)
            .map_err(|_| format!("a `timestamptz` of {} bytes, expected 8", bytes.len()))?;
        let micros = i64::from_be_bytes(bytes);
        micros
            .checked_add(POSTGRES_EPOCH_MICROS)
            .and_then(DateTime::from_timestamp_micros)
            .map(Timestamp)
            .ok_or_else(|| {
                let what = match micros {
                    i64::MAX => "infinity".to_owned(),
                    i64::MIN => "-infinity".to_owned(),
                    _ => format!("{micros} µs after 2000-01-01"),
                };
                format!("the timestamp {what} is out of range").into()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_epoch_is_2000_01_01() {
        let epoch = DateTime::from_timestamp_micros(POSTGRES_EPOCH_MICROS).unwrap();
        assert_eq!(epoch.to_rfc3339(), "2000-01-01T00:00:00+00:00");
    }
}
