//! Where the store is: the connection options and the one place that opens a provider.

use evt_core::__private::util::redact_url;
use evt_core::Provider;
use evt_mongo::MongoProvider;
use evt_postgres::PostgresProvider;
use evt_sqlite::SqliteProvider;

use crate::failure::Failure;

/// The options that name the store, shared by every command.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The store: `postgres://...`, `mongodb://...`, `sqlite:PATH` or a file path. Without it,
    /// `EVT_MONGO_URL`, then `EVT_POSTGRES_URL`, then `EVT_SQLITE_PATH` (the first one set).
    #[arg(long, global = true)]
    url: Option<String>,
    /// The events table (MongoDB: collection); `events` by default.
    #[arg(long, global = true, value_name = "NAME")]
    events_table: Option<String>,
    /// The bookmarks table (MongoDB: collection); `bookmarks` by default.
    #[arg(long, global = true, value_name = "NAME")]
    bookmarks_table: Option<String>,
}

/// An open store.
pub enum Store {
    /// PostgreSQL.
    Postgres(Box<PostgresProvider>),
    /// MongoDB (or a compatible server).
    Mongo(Box<MongoProvider>),
    /// An SQLite file.
    Sqlite(Box<SqliteProvider>),
}

/// Where the URL came from, for messages.
fn chosen(url: Option<&str>) -> Result<(String, &'static str), Failure> {
    if let Some(url) = url {
        return Ok((url.to_owned(), "--url"));
    }
    for name in ["EVT_MONGO_URL", "EVT_POSTGRES_URL", "EVT_SQLITE_PATH"] {
        if let Ok(value) = std::env::var(name)
            && !value.is_empty()
        {
            return Ok((value, name));
        }
    }
    Err(Failure::Refused(
        "no store given: pass --url (postgres://..., mongodb://..., sqlite:PATH or a file path) \
         or set EVT_MONGO_URL, EVT_POSTGRES_URL or EVT_SQLITE_PATH"
            .into(),
    ))
}

impl Target {
    /// Opens the store these options name.
    pub async fn connect(&self) -> Result<Store, Failure> {
        let (url, source) = chosen(self.url.as_deref())?;
        let shown = redact_url(&url);
        let opening =
            |e: evt_core::Error| Failure::failed(format!("open {shown} (from {source})"), e);
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut provider = PostgresProvider::connect(&url).await.map_err(opening)?;
            if let Some(name) = &self.events_table {
                provider = provider.events_table(name).map_err(opening)?;
            }
            if let Some(name) = &self.bookmarks_table {
                provider = provider.bookmarks_table(name).map_err(opening)?;
            }
            Ok(Store::Postgres(Box::new(provider)))
        } else if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") {
            let mut provider = MongoProvider::connect(&url).await.map_err(opening)?;
            if let Some(name) = &self.events_table {
                provider = provider.events_collection(name);
            }
            if let Some(name) = &self.bookmarks_table {
                provider = provider.bookmarks_collection(name);
            }
            Ok(Store::Mongo(Box::new(provider)))
        } else {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"));
            let path = path.unwrap_or(&url);
            if path.contains("://") {
                return Err(Failure::Refused(format!(
                    "`{shown}` (from {source}) is no store this tool knows: use postgres://..., \
                     mongodb://..., sqlite:PATH or a file path"
                )));
            }
            let mut provider = SqliteProvider::open(path).await.map_err(opening)?;
            if let Some(name) = &self.events_table {
                provider = provider.events_table(name).map_err(opening)?;
            }
            if let Some(name) = &self.bookmarks_table {
                provider = provider.bookmarks_table(name).map_err(opening)?;
            }
            Ok(Store::Sqlite(Box::new(provider)))
        }
    }
}

impl Store {
    /// The store as the runtime sees it.
    pub fn provider(&self) -> &dyn Provider {
        match self {
            Store::Postgres(provider) => provider.as_ref(),
            Store::Mongo(provider) => provider.as_ref(),
            Store::Sqlite(provider) => provider.as_ref(),
        }
    }

    /// Creates or updates the schema; says what changed.
    pub async fn migrate(&self) -> Result<Vec<String>, evt_core::Error> {
        match self {
            Store::Postgres(provider) => provider.migrate().await,
            Store::Mongo(provider) => provider.migrate().await,
            Store::Sqlite(provider) => provider.migrate().await,
        }
    }
}
