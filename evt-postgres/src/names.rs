//! Table names: checked, quoted, and one lock per table however it is spelled.

use evt_core::Error;

/// A table name as given (`events`, `DeptEvents`, `app.events`), checked and quoted.
///
/// Each part goes into statements as a quoted identifier (`"app"."events"`), as evtstore quotes
/// its names: the name is used exactly as written, case included, and a keyword such as `order`
/// works. A part is 1 to 63 bytes of printable characters without `"`; a name starting with `pg_`
/// and the schemas `pg_catalog`, `pg_toast` and `information_schema` are PostgreSQL's own and
/// refused, so that a name never resolves to a system catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableName {
    /// As given, for messages.
    pub given: String,
    /// Quoted, for statements.
    pub quoted: String,
    /// The last part, unquoted, to name indexes after.
    pub table: String,
    /// The schema part, quoted, if the name has one.
    schema: Option<String>,
}

impl TableName {
    pub fn parse(name: &str) -> Result<TableName, Error> {
        let refuse = |why: &str| {
            Error::provider(
                format!("use `{}` as a table name", name.escape_debug()),
                why.to_owned(),
            )
        };
        let parts: Vec<&str> = name.split('.').collect();
        let (schema, table) = match parts.as_slice() {
            [table] => (None, *table),
            [schema, table] => (Some(*schema), *table),
            _ => return Err(refuse("a table name is `table` or `schema.table`")),
        };
        for part in schema.iter().chain([&table]) {
            if part.is_empty() || part.len() > 63 {
                return Err(refuse(
                    "each part of a table name has 1 to 63 bytes (PostgreSQL's limit)",
                ));
            }
            if part.chars().any(|c| c == '"' || c.is_control()) {
                return Err(refuse("a table name has no `\"` and no control characters"));
            }
            if part.to_ascii_lowercase().starts_with("pg_") {
                return Err(refuse(
                    "names starting with `pg_` are PostgreSQL's own (system catalogs); choose another",
                ));
            }
        }
        if let Some(schema) = schema
            && schema.eq_ignore_ascii_case("information_schema")
        {
            return Err(refuse(
                "`information_schema` is PostgreSQL's own schema; choose another",
            ));
        }
        let quoted = schema
            .iter()
            .chain([&table])
            .map(|part| format!("\"{part}\""))
            .collect::<Vec<_>>()
            .join(".");
        Ok(TableName {
            given: name.to_owned(),
            quoted,
            table: table.to_owned(),
            schema: schema.map(|schema| format!("\"{schema}\"")),
        })
    }

    /// The table beside this one (same schema) that keeps the leases of this bookmarks table:
    /// `<table>_leases`.
    pub fn leases(&self) -> TableName {
        let table = format!("{}_leases", self.table);
        let quoted = match &self.schema {
            Some(schema) => format!("{schema}.\"{table}\""),
            None => format!("\"{table}\""),
        };
        TableName {
            given: format!("{}_leases", self.given),
            quoted,
            table,
            schema: self.schema.clone(),
        }
    }

    /// The quoted name of `object` (a function) in this table's schema, or unqualified (the
    /// first schema of the search path) when the table's name has no schema.
    pub fn sibling(&self, object: &str) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.\"{object}\""),
            None => format!("\"{object}\""),
        }
    }

    /// The quoted name of an index of this table: `"<table>_<suffix>"` (in the table's schema,
    /// where PostgreSQL always puts an index), cut to PostgreSQL's 63 bytes on a character
    /// boundary.
    pub fn index(&self, suffix: &str) -> String {
        let mut name = format!("{}_{suffix}", self.table);
        while name.len() > 63 {
            name.pop();
        }
        format!("\"{name}\"")
    }
}

/// The first key of every advisory lock evt takes: `evt` in ASCII.
pub(crate) const LOCK_CLASS: i32 = 0x0065_7674;

/// The advisory lock of one events table, as SQL over the quoted table name in `$param`: keyed
/// by the table's OID, so that every spelling of one table (`events`, `public.events`, a
/// different case that PostgreSQL folds to the same table) takes the same lock, and a trigger
/// can take it too (`TG_RELID`).
pub(crate) fn lock_sql(param: &str) -> String {
    format!("pg_advisory_xact_lock({LOCK_CLASS}, {param}::text::regclass::oid::int4)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_as_given() {
        let name = TableName::parse("DeptEvents").unwrap();
        assert_eq!(name.quoted, "\"DeptEvents\"");
        assert_eq!(TableName::parse("order").unwrap().quoted, "\"order\"");
        let qualified = TableName::parse("app.events").unwrap();
        assert_eq!(qualified.quoted, "\"app\".\"events\"");
        assert_eq!(
            qualified.index("stream_position"),
            "\"events_stream_position\""
        );
        let long = TableName::parse(&"é".repeat(31)).unwrap();
        assert!(long.index("stream_position").len() <= 65);
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            "",
            "a.b.c",
            ".events",
            "pg_class",
            "PG_stat_activity",
            "pg_catalog.events",
            "information_schema.tables",
            "ev\"ents",
            "ev\"; drop table x; --",
            "line\nbreak",
            &"a".repeat(64),
        ] {
            let error = TableName::parse(bad).expect_err(bad);
            assert!(error.to_string().contains("table name"), "{error}");
        }
    }
}
