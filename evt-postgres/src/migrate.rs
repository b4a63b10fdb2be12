//! `migrate`: create or complete the tables, without ever blocking or deadlocking live appends.

use evt_core::Error;
use sqlx::{PgConnection, Row};

use crate::PostgresProvider;
use crate::append::classify;
use crate::names::LOCK_CLASS;

/// The channel of the notification every insert into an events table sends at commit (its
/// payload: the table's OID), which wakes started handlers in every process.
pub(crate) const APPENDED_CHANNEL: &str = "evt_appended";

/// The advisory lock that serialises `migrate` calls (several instances starting at once). It
/// is not the events table's lock: an append holds its table's `ROW EXCLUSIVE` lock while it
/// waits for that one, so a `migrate` holding it and then asking for the table (`CREATE INDEX`)
/// would deadlock with appends. No table has OID 0, so this key never clashes with a table's.
const MIGRATE_LOCK: &str = "SELECT pg_advisory_xact_lock($1, 0)";

impl PostgresProvider {
    /// Creates the tables, columns and indexes the provider needs, where missing, and returns
    /// what it changed (empty when the store was up to date). Idempotent: run it on every start.
    ///
    /// It reads the catalog first and runs DDL only for what is missing, so on an up-to-date
    /// store it takes no lock on the tables and runs beside live appends (a rolling restart under
    /// load). Where it must change a live table (a missing column or index), it waits for the
    /// appends in flight and they wait for it; it never deadlocks with them. Concurrent calls
    /// are serialised.
    pub async fn migrate(&self) -> Result<Vec<String>, Error> {
        let (events, bookmarks) = (&self.events, &self.bookmarks);
        let operation = || {
            format!(
                "migrate the tables `{}` and `{}`",
                events.given, bookmarks.given
            )
        };
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(|e| classify(operation(), e))?;
        sqlx::query(MIGRATE_LOCK)
            .bind(LOCK_CLASS)
            .execute(&mut *transaction)
            .await
            .map_err(|e| classify(operation(), e))?;
        let changes = self
            .plan(&mut transaction)
            .await
            .map_err(|e| classify(operation(), e))?;
        for (_, statement) in &changes {
            sqlx::query(statement)
                .execute(&mut *transaction)
                .await
                .map_err(|e| classify(format!("{}: `{statement}`", operation()), e))?;
        }
        transaction
            .commit()
            .await
            .map_err(|e| classify(operation(), e))?;
        let changes: Vec<String> = changes.into_iter().map(|(change, _)| change).collect();
        for change in &changes {
            tracing::info!(change, "migrate");
        }
        Ok(changes)
    }

    /// What is missing, as (description, statement) pairs.
    async fn plan(
        &self,
        connection: &mut PgConnection,
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        let (events, bookmarks) = (&self.events, &self.bookmarks);
        let mut changes = Vec::new();
        let leases = bookmarks.leases();
        let exists = sqlx::query(
            "SELECT to_regclass($1) IS NOT NULL AS events, to_regclass($2) IS NOT NULL AS bookmarks, \
             to_regclass($3) IS NOT NULL AS leases",
        )
        .bind(&events.quoted)
        .bind(&bookmarks.quoted)
        .bind(&leases.quoted)
        .fetch_one(&mut *connection)
        .await?;
        if exists.try_get::<bool, _>("events")? {
            let columns: Vec<String> = sqlx::query_scalar(
                "SELECT attname::text FROM pg_attribute \
                 WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped",
            )
            .bind(&events.quoted)
            .fetch_all(&mut *connection)
            .await?;
            for (column, definition) in [
                ("snapshot", "json"),
                ("append_id", "bigint"),
                ("metadata", "text"),
            ] {
                if !columns.iter().any(|c| c == column) {
                    changes.push((
                        format!("added the column `{column}` to `{}`", events.given),
                        format!(
                            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {column} {definition}",
                            events.quoted
                        ),
                    ));
                }
            }
            let indexed: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = $1::text::regclass \
                 AND (SELECT array_agg(a.attname::text ORDER BY k.n) \
                      FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) \
                      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) \
                     = ARRAY['stream', 'position'])",
            )
            .bind(&events.quoted)
            .fetch_one(&mut *connection)
            .await?;
            if !indexed {
                changes.push(stream_position_index(self));
            }
            let locked: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_trigger \
                 WHERE tgrelid = $1::text::regclass AND tgname = $2 AND NOT tgisinternal)",
            )
            .bind(&events.quoted)
            .bind(LOCK_TRIGGER)
            .fetch_one(&mut *connection)
            .await?;
            if !locked {
                changes.extend(lock_trigger(self));
            }
        } else {
            changes.push((
                format!("created the table `{}`", events.given),
                format!(
                    "CREATE TABLE {} ( \
                       position bigserial PRIMARY KEY, \
                       stream text NOT NULL, \
                       aggregate_id text NOT NULL, \
                       version integer NOT NULL, \
                       timestamp timestamptz NOT NULL, \
                       event text NOT NULL, \
                       snapshot json, \
                       append_id bigint, \
                       metadata text, \
                       UNIQUE (stream, aggregate_id, version))",
                    events.quoted
                ),
            ));
            changes.push(stream_position_index(self));
            changes.extend(lock_trigger(self));
        }
        if !exists.try_get::<bool, _>("bookmarks")? {
            changes.push((
                format!("created the table `{}`", bookmarks.given),
                format!(
                    "CREATE TABLE {} (bookmark text PRIMARY KEY, position bigint NOT NULL)",
                    bookmarks.quoted
                ),
            ));
        }
        if !exists.try_get::<bool, _>("leases")? {
            changes.push((
                format!(
                    "created the table `{}` (the leases of started handlers)",
                    leases.given
                ),
                format!(
                    "CREATE TABLE {} (bookmark text PRIMARY KEY, holder text, \
                     epoch bigint NOT NULL, beat bigint NOT NULL)",
                    leases.quoted
                ),
            ));
        }
        Ok(changes)
    }
}

/// The trigger that makes every insert into the events table take the table's append lock, so
/// that positions become visible in order whoever writes (evtstore's inserts included).
const LOCK_TRIGGER: &str = "evt_lock";

/// The trigger function (one per schema, shared by its events tables: the lock is keyed by the
/// table's OID) and the statement-level `BEFORE INSERT` trigger. A statement trigger fires
/// before the statement computes its rows, so before it takes positions from the sequence. It
/// also notifies [`APPENDED_CHANNEL`] with the table's OID, which PostgreSQL delivers to every
/// listening session when the insert commits (and never if it rolls back).
fn lock_trigger(provider: &PostgresProvider) -> [(String, String); 2] {
    let events = &provider.events;
    let function = events.sibling("evt_lock_events");
    [
        (
            format!("created the function {function} (the append lock of an events table)"),
            format!(
                "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS \
                 $evt$ BEGIN PERFORM pg_advisory_xact_lock({LOCK_CLASS}, TG_RELID::int4); \
                 PERFORM pg_notify('{APPENDED_CHANNEL}', TG_RELID::text); \
                 RETURN NULL; END $evt$"
            ),
        ),
        (
            format!(
                "added the trigger `{LOCK_TRIGGER}` to `{}`: every insert takes evt's append lock",
                events.given
            ),
            format!(
                "CREATE TRIGGER {LOCK_TRIGGER} BEFORE INSERT ON {} \
                 FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
                events.quoted
            ),
        ),
    ]
}

fn stream_position_index(provider: &PostgresProvider) -> (String, String) {
    let events = &provider.events;
    (
        format!("created the index on `{}` (stream, position)", events.given),
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} (stream, position)",
            events.index("stream_position"),
            events.quoted
        ),
    )
}
