//! Where the departments read model lives: in a MongoDB collection written the guide's way
//! (`replace_one` upsert to create, `$set`, `$addToSet`, `$pull` to change, queries without
//! `_id`), or in a `departments` table of SQLite or PostgreSQL (or memory, for tests), beside the
//! events. The guide's `projection-shared.ts` and the storage half of `queries.ts`.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use evt_mongo::mongodb::Collection;
use evt_mongo::mongodb::bson::{self, doc};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, SqlitePool};

use crate::department::DataContext;

/// One department as queries return it (the guide's `DepartmentProjection`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepartmentView {
    pub department_id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: String,
    pub managers: Vec<String>,
    pub data_context: DataContext,
    pub deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Fields to set on a department; `None` leaves a field as it is.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Changes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
    pub updated_at: String,
}

/// What can go wrong storing or reading the read model.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The read model: in MongoDB, changed with the guide's update operators; elsewhere, a table of
/// department documents changed by reading, changing and writing one document.
pub enum ReadModel {
    Mongo(Collection<DepartmentView>),
    Table(Table),
}

/// Department documents by id.
pub enum Table {
    #[allow(dead_code)] // the tests' store
    Memory(Mutex<BTreeMap<String, DepartmentView>>),
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl ReadModel {
    #[allow(dead_code)] // the tests' store
    pub fn memory() -> Self {
        ReadModel::Table(Table::Memory(Mutex::default()))
    }

    /// The `departments` table in SQLite, created if missing.
    pub async fn sqlite(pool: SqlitePool) -> Result<Self, Error> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS departments (department_id TEXT PRIMARY KEY, \
             tenant_id TEXT NOT NULL, deleted BOOLEAN NOT NULL, view TEXT NOT NULL)",
        )
        .execute(&pool)
        .await?;
        Ok(ReadModel::Table(Table::Sqlite(pool)))
    }

    /// The `departments` table in PostgreSQL, created if missing.
    pub async fn postgres(pool: PgPool) -> Result<Self, Error> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS departments (department_id text PRIMARY KEY, \
             tenant_id text NOT NULL, deleted boolean NOT NULL, view jsonb NOT NULL)",
        )
        .execute(&pool)
        .await?;
        Ok(ReadModel::Table(Table::Postgres(pool)))
    }

    /// Creates or replaces a department (an upsert: handling the event twice changes nothing).
    pub async fn replace(&self, view: DepartmentView) -> Result<(), Error> {
        match self {
            ReadModel::Mongo(collection) => {
                collection
                    .replace_one(doc! {"departmentId": &view.department_id}, &view)
                    .upsert(true)
                    .await?;
                Ok(())
            }
            ReadModel::Table(table) => table.put(&view).await,
        }
    }

    /// `$set` of the given fields.
    pub async fn set(&self, id: &str, changes: Changes) -> Result<(), Error> {
        match self {
            ReadModel::Mongo(collection) => {
                let fields = bson::to_document(&changes)?;
                collection
                    .update_one(doc! {"departmentId": id}, doc! {"$set": fields})
                    .await?;
                Ok(())
            }
            ReadModel::Table(table) => {
                table
                    .change(id, &changes.updated_at, |row| {
                        if let Some(name) = changes.name {
                            row.name = name;
                        }
                        if let Some(description) = changes.description {
                            row.description = description;
                        }
                        if let Some(deleted) = changes.deleted {
                            row.deleted = deleted;
                        }
                        if changes.deleted_by.is_some() {
                            row.deleted_by = changes.deleted_by;
                        }
                    })
                    .await
            }
        }
    }

    /// `$addToSet` of a manager.
    pub async fn add_manager(&self, id: &str, phone: &str, updated_at: &str) -> Result<(), Error> {
        match self {
            ReadModel::Mongo(collection) => {
                collection
                    .update_one(
                        doc! {"departmentId": id},
                        doc! {"$addToSet": {"managers": phone}, "$set": {"updatedAt": updated_at}},
                    )
                    .await?;
                Ok(())
            }
            ReadModel::Table(table) => {
                table
                    .change(id, updated_at, |row| {
                        if !row.managers.iter().any(|manager| manager == phone) {
                            row.managers.push(phone.to_owned());
                        }
                    })
                    .await
            }
        }
    }

    /// `$pull` of a manager.
    pub async fn remove_manager(
        &self,
        id: &str,
        phone: &str,
        updated_at: &str,
    ) -> Result<(), Error> {
        match self {
            ReadModel::Mongo(collection) => {
                collection
                    .update_one(
                        doc! {"departmentId": id},
                        doc! {"$pull": {"managers": phone}, "$set": {"updatedAt": updated_at}},
                    )
                    .await?;
                Ok(())
            }
            ReadModel::Table(table) => {
                table
                    .change(id, updated_at, |row| {
                        row.managers.retain(|manager| manager != phone)
                    })
                    .await
            }
        }
    }

    /// A department by id.
    pub async fn get_by_id(&self, id: &str) -> Result<Option<DepartmentView>, Error> {
        match self {
            ReadModel::Mongo(collection) => Ok(collection
                .find_one(doc! {"departmentId": id})
                .projection(doc! {"_id": 0})
                .await?),
            ReadModel::Table(table) => table.get(id).await,
        }
    }

    /// A tenant's departments, without the deleted ones.
    pub async fn get_by_tenant(&self, tenant_id: &str) -> Result<Vec<DepartmentView>, Error> {
        match self {
            ReadModel::Mongo(collection) => Ok(collection
                .find(doc! {"tenantId": tenant_id, "deleted": {"$ne": true}})
                .projection(doc! {"_id": 0})
                .sort(doc! {"departmentId": 1})
                .await?
                .try_collect()
                .await?),
            ReadModel::Table(table) => table.by_tenant(tenant_id).await,
        }
    }
}

impl Table {
    fn rows(
        rows: &Mutex<BTreeMap<String, DepartmentView>>,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, DepartmentView>> {
        rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn get(&self, id: &str) -> Result<Option<DepartmentView>, Error> {
        let json: Option<String> = match self {
            Table::Memory(rows) => return Ok(Self::rows(rows).get(id).cloned()),
            Table::Sqlite(pool) => {
                sqlx::query_scalar("SELECT view FROM departments WHERE department_id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
            }
            Table::Postgres(pool) => {
                sqlx::query_scalar("SELECT view::text FROM departments WHERE department_id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
            }
        };
        Ok(json.map(|json| serde_json::from_str(&json)).transpose()?)
    }

    async fn put(&self, view: &DepartmentView) -> Result<(), Error> {
        let json = serde_json::to_string(view)?;
        let upsert = |cast: &str| {
            format!(
                "INSERT INTO departments (department_id, tenant_id, deleted, view) \
                 VALUES ($1, $2, $3, $4{cast}) ON CONFLICT (department_id) DO UPDATE SET \
                 tenant_id = excluded.tenant_id, deleted = excluded.deleted, view = excluded.view"
            )
        };
        match self {
            Table::Memory(rows) => {
                Self::rows(rows).insert(view.department_id.clone(), view.clone());
            }
            Table::Sqlite(pool) => {
                sqlx::query(&upsert(""))
                    .bind(&view.department_id)
                    .bind(&view.tenant_id)
                    .bind(view.deleted)
                    .bind(json)
                    .execute(pool)
                    .await?;
            }
            Table::Postgres(pool) => {
                sqlx::query(&upsert("::jsonb"))
                    .bind(&view.department_id)
                    .bind(&view.tenant_id)
                    .bind(view.deleted)
                    .bind(json)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Reads a department, changes it, stamps `updated_at` and writes it back; a missing one is
    /// left missing. (One handler instance runs at a time, so nothing changes in between.)
    async fn change(
        &self,
        id: &str,
        updated_at: &str,
        change: impl FnOnce(&mut DepartmentView),
    ) -> Result<(), Error> {
        if let Some(mut row) = self.get(id).await? {
            change(&mut row);
            row.updated_at = updated_at.to_owned();
            self.put(&row).await?;
        }
        Ok(())
    }

    async fn by_tenant(&self, tenant_id: &str) -> Result<Vec<DepartmentView>, Error> {
        let rows: Vec<String> = match self {
            Table::Memory(rows) => {
                return Ok(Self::rows(rows)
                    .values()
                    .filter(|row| row.tenant_id == tenant_id && !row.deleted)
                    .cloned()
                    .collect());
            }
            Table::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT view FROM departments WHERE tenant_id = $1 AND NOT deleted \
                     ORDER BY department_id",
                )
                .bind(tenant_id)
                .fetch_all(pool)
                .await?
            }
            Table::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT view::text FROM departments WHERE tenant_id = $1 AND NOT deleted \
                     ORDER BY department_id",
                )
                .bind(tenant_id)
                .fetch_all(pool)
                .await?
            }
        };
        rows.iter()
            .map(|json| Ok(serde_json::from_str(json)?))
            .collect()
    }
}
