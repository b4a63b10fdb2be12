//! The departments read model, the projection that keeps it, and its queries (the guide's
//! `projection.ts` and `queries.ts`).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use evt::{Meta, projection};

use crate::department::{
    DataContext, DepartmentCreated, DepartmentDeleted, DepartmentManagerAdded,
    DepartmentManagerRemoved, DepartmentUpdated,
};

/// One department as queries return it.
#[derive(Debug, Clone, PartialEq)]
pub struct DepartmentView {
    pub department_id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: String,
    pub managers: Vec<String>,
    pub data_context: DataContext,
    pub deleted: bool,
    pub deleted_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The read model: departments by id.
#[derive(Default)]
pub struct DepartmentsModel {
    rows: Mutex<BTreeMap<String, DepartmentView>>,
}

impl DepartmentsModel {
    /// Changes one row, if it exists, and stamps `updated_at`.
    fn update(&self, id: &str, meta: &Meta, change: impl FnOnce(&mut DepartmentView)) {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(row) = rows.get_mut(id) {
            change(row);
            row.updated_at = meta.timestamp.to_rfc3339();
        }
    }

    /// A department by id.
    pub fn get_by_id(&self, id: &str) -> Option<DepartmentView> {
        let rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        rows.get(id).cloned()
    }

    /// A tenant's departments, without the deleted ones.
    pub fn get_by_tenant(&self, tenant_id: &str) -> Vec<DepartmentView> {
        let rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        rows.values()
            .filter(|row| row.tenant_id == tenant_id && !row.deleted)
            .cloned()
            .collect()
    }
}

#[projection(bookmark = "departments-model", streams = ["departments"])]
impl DepartmentsModel {
    /// Replaces the row (an upsert), so that handling the event twice changes nothing.
    fn created(&self, id: &str, event: &DepartmentCreated, meta: &Meta) {
        let now = meta.timestamp.to_rfc3339();
        let row = DepartmentView {
            department_id: id.to_owned(),
            tenant_id: event.tenant_id.clone(),
            name: event.name.clone(),
            description: event.description.clone().unwrap_or_default(),
            managers: Vec::new(),
            data_context: event.data_context,
            deleted: false,
            deleted_by: None,
            created_at: now.clone(),
            updated_at: now,
        };
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        rows.insert(id.to_owned(), row);
    }

    fn updated(&self, id: &str, event: &DepartmentUpdated, meta: &Meta) {
        self.update(id, meta, |row| {
            if let Some(name) = &event.name {
                row.name = name.clone();
            }
            if let Some(description) = &event.description {
                row.description = description.clone();
            }
        });
    }

    /// Adds to a set, as `$addToSet` does.
    fn manager_added(&self, id: &str, event: &DepartmentManagerAdded, meta: &Meta) {
        self.update(id, meta, |row| {
            if !row.managers.contains(&event.user_phone) {
                row.managers.push(event.user_phone.clone());
            }
        });
    }

    fn manager_removed(&self, id: &str, event: &DepartmentManagerRemoved, meta: &Meta) {
        self.update(id, meta, |row| {
            row.managers.retain(|phone| *phone != event.user_phone);
        });
    }

    fn deleted(&self, id: &str, event: &DepartmentDeleted, meta: &Meta) {
        self.update(id, meta, |row| {
            row.deleted = true;
            row.deleted_by = event.deleted_by.clone();
        });
    }
}
