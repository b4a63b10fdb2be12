//! The projection that keeps the departments read model (the guide's `projection.ts`), and its
//! queries (`queries.ts`).

use evt::{Meta, projection};

use crate::department::{
    DepartmentCreated, DepartmentDeleted, DepartmentManagerAdded, DepartmentManagerRemoved,
    DepartmentUpdated,
};
use crate::read_model::{Changes, DepartmentView, Error, ReadModel};

/// The departments read model and the handlers that keep it.
pub struct DepartmentsModel {
    store: ReadModel,
}

impl DepartmentsModel {
    pub fn new(store: ReadModel) -> Self {
        DepartmentsModel { store }
    }

    /// A department by id.
    pub async fn get_by_id(&self, id: &str) -> Result<Option<DepartmentView>, Error> {
        self.store.get_by_id(id).await
    }

    /// A tenant's departments, without the deleted ones.
    pub async fn get_by_tenant(&self, tenant_id: &str) -> Result<Vec<DepartmentView>, Error> {
        self.store.get_by_tenant(tenant_id).await
    }
}

#[projection(bookmark = "departments-model", streams = ["departments"])]
impl DepartmentsModel {
    async fn created(&self, id: &str, event: &DepartmentCreated, meta: &Meta) -> Result<(), Error> {
        let now = meta.timestamp.to_rfc3339();
        let view = DepartmentView {
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
        self.store.replace(view).await
    }

    async fn updated(&self, id: &str, event: &DepartmentUpdated, meta: &Meta) -> Result<(), Error> {
        let changes = Changes {
            name: event.name.clone(),
            description: event.description.clone(),
            updated_at: meta.timestamp.to_rfc3339(),
            ..Changes::default()
        };
        self.store.set(id, changes).await
    }

    async fn manager_added(
        &self,
        id: &str,
        event: &DepartmentManagerAdded,
        meta: &Meta,
    ) -> Result<(), Error> {
        let now = meta.timestamp.to_rfc3339();
        self.store.add_manager(id, &event.user_phone, &now).await
    }

    async fn manager_removed(
        &self,
        id: &str,
        event: &DepartmentManagerRemoved,
        meta: &Meta,
    ) -> Result<(), Error> {
        let now = meta.timestamp.to_rfc3339();
        self.store.remove_manager(id, &event.user_phone, &now).await
    }

    async fn deleted(&self, id: &str, event: &DepartmentDeleted, meta: &Meta) -> Result<(), Error> {
        let changes = Changes {
            deleted: Some(true),
            deleted_by: event.deleted_by.clone(),
            updated_at: meta.timestamp.to_rfc3339(),
            ..Changes::default()
        };
        self.store.set(id, changes).await
    }
}
