//! Where the departments read model lives: in memory, or in a MongoDB collection written the
//! guide's way (`replace_one` upsert to create, `$set`, `$addToSet`, `$pull` to change, queries
//! without `_id`). The guide's `projection-shared.ts` and the storage half of `queries.ts`.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use evt_mongo::mongodb::Collection;
use evt_mongo::mongodb::bson::{self, doc};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

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

pub enum ReadModel {
    Memory(Mutex<BTreeMap<String, DepartmentView>>),
    Mongo(Collection<DepartmentView>),
}

impl ReadModel {
    pub fn memory() -> Self {
        ReadModel::Memory(Mutex::default())
    }

    fn rows(
        rows: &Mutex<BTreeMap<String, DepartmentView>>,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, DepartmentView>> {
        rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates or replaces a department (an upsert: handling the event twice changes nothing).
    pub async fn replace(&self, view: DepartmentView) -> Result<(), Error> {
        match self {
            ReadModel::Memory(rows) => {
                Self::rows(rows).insert(view.department_id.clone(), view);
            }
            ReadModel::Mongo(collection) => {
                collection
                    .replace_one(doc! {"departmentId": &view.department_id}, &view)
                    .upsert(true)
                    .await?;
            }
        }
        Ok(())
    }

    /// `$set` of the given fields.
    pub async fn set(&self, id: &str, changes: Changes) -> Result<(), Error> {
        match self {
            ReadModel::Memory(rows) => {
                if let Some(row) = Self::rows(rows).get_mut(id) {
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
                    row.updated_at = changes.updated_at;
                }
            }
            ReadModel::Mongo(collection) => {
                let fields = bson::to_document(&changes)?;
                collection
                    .update_one(doc! {"departmentId": id}, doc! {"$set": fields})
                    .await?;
            }
        }
        Ok(())
    }

    /// `$addToSet` of a manager.
    pub async fn add_manager(&self, id: &str, phone: &str, updated_at: &str) -> Result<(), Error> {
        match self {
            ReadModel::Memory(rows) => {
                if let Some(row) = Self::rows(rows).get_mut(id) {
                    if !row.managers.iter().any(|manager| manager == phone) {
                        row.managers.push(phone.to_owned());
                    }
                    row.updated_at = updated_at.to_owned();
                }
            }
            ReadModel::Mongo(collection) => {
                collection
                    .update_one(
                        doc! {"departmentId": id},
                        doc! {"$addToSet": {"managers": phone}, "$set": {"updatedAt": updated_at}},
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// `$pull` of a manager.
    pub async fn remove_manager(
        &self,
        id: &str,
        phone: &str,
        updated_at: &str,
    ) -> Result<(), Error> {
        match self {
            ReadModel::Memory(rows) => {
                if let Some(row) = Self::rows(rows).get_mut(id) {
                    row.managers.retain(|manager| manager != phone);
                    row.updated_at = updated_at.to_owned();
                }
            }
            ReadModel::Mongo(collection) => {
                collection
                    .update_one(
                        doc! {"departmentId": id},
                        doc! {"$pull": {"managers": phone}, "$set": {"updatedAt": updated_at}},
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// A department by id.
    pub async fn get_by_id(&self, id: &str) -> Result<Option<DepartmentView>, Error> {
        Ok(match self {
            ReadModel::Memory(rows) => Self::rows(rows).get(id).cloned(),
            ReadModel::Mongo(collection) => {
                collection
                    .find_one(doc! {"departmentId": id})
                    .projection(doc! {"_id": 0})
                    .await?
            }
        })
    }

    /// A tenant's departments, without the deleted ones.
    pub async fn get_by_tenant(&self, tenant_id: &str) -> Result<Vec<DepartmentView>, Error> {
        Ok(match self {
            ReadModel::Memory(rows) => Self::rows(rows)
                .values()
                .filter(|row| row.tenant_id == tenant_id && !row.deleted)
                .cloned()
                .collect(),
            ReadModel::Mongo(collection) => {
                collection
                    .find(doc! {"tenantId": tenant_id, "deleted": {"$ne": true}})
                    .projection(doc! {"_id": 0})
                    .sort(doc! {"departmentId": 1})
                    .await?
                    .try_collect()
                    .await?
            }
        })
    }
}
