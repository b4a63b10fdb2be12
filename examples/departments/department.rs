//! The department aggregate: its events, its state and fold, its commands (the guide's
//! `types/department.ts`, `aggregates/department.ts` and `command/department.ts`).

use evt::{Upcasters, Versioned, aggregate, commands, event};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Sandbox or production data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DataContext {
    Live,
    #[default]
    Test,
}

/// What happened to a department, stored as `{"type": "departmentCreated", "tenantId": ..}`.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum DepartmentEvent {
    DepartmentCreated {
        tenant_id: String,
        name: String,
        description: Option<String>,
        data_context: DataContext,
        performed_by: Option<String>,
    },
    DepartmentUpdated {
        name: Option<String>,
        description: Option<String>,
        performed_by: Option<String>,
    },
    DepartmentManagerAdded {
        user_phone: String,
        performed_by: Option<String>,
    },
    DepartmentManagerRemoved {
        user_phone: String,
        performed_by: Option<String>,
    },
    DepartmentDeleted {
        deleted_by: Option<String>,
    },
}

/// The department as its events leave it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Department {
    pub tenant_id: String,
    pub name: String,
    pub managers: Vec<String>,
    pub description: String,
    pub data_context: DataContext,
    pub deleted: bool,
    pub deleted_by: Option<String>,
}

#[aggregate(stream = "departments", events = DepartmentEvent, snapshot = "1")]
impl Department {
    // A fold method takes its event by value (to move its fields into the state) or by reference.
    fn created(&mut self, event: DepartmentCreated) {
        *self = Department {
            tenant_id: event.tenant_id,
            name: event.name,
            description: event.description.unwrap_or_default(),
            data_context: event.data_context,
            ..Department::default()
        };
    }

    fn updated(&mut self, event: DepartmentUpdated) {
        if let Some(name) = event.name {
            self.name = name;
        }
        if let Some(description) = event.description {
            self.description = description;
        }
    }

    fn manager_added(&mut self, event: DepartmentManagerAdded) {
        self.managers.push(event.user_phone);
    }

    fn manager_removed(&mut self, event: &DepartmentManagerRemoved) {
        self.managers.retain(|phone| *phone != event.user_phone);
    }

    fn deleted(&mut self, event: DepartmentDeleted) {
        self.deleted = true;
        self.deleted_by = event.deleted_by;
    }
}

/// The command payloads: the method name selects the command, so there is no `type` field.
pub struct Create {
    pub tenant_id: String,
    pub name: String,
    pub description: Option<String>,
    pub data_context: DataContext,
    pub performed_by: Option<String>,
}

pub struct Update {
    pub name: Option<String>,
    pub description: Option<String>,
    pub performed_by: Option<String>,
}

#[derive(Clone)]
pub struct AddManager {
    pub user_phone: String,
    pub performed_by: Option<String>,
}

pub struct RemoveManager {
    pub user_phone: String,
    pub performed_by: Option<String>,
}

pub struct Delete {
    pub deleted_by: Option<String>,
}

/// Why a department command is refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum DepartmentError {
    #[error("department already exists")]
    AlreadyExists,
    #[error("department not found")]
    NotFound,
    #[error("department is deleted")]
    Deleted,
    #[error("user is already a manager")]
    AlreadyManager,
    #[error("user is not a manager")]
    NotManager,
}

/// How stored events of earlier shapes read today: a `departmentCreated` stored before it had a
/// `dataContext` was a live department.
pub fn upcasters() -> Upcasters {
    Upcasters::new().add("departments", "departmentCreated", |mut event: Value| {
        if event.get("dataContext").is_none() {
            event["dataContext"] = Value::from("live");
        }
        Ok(event)
    })
}

fn normalize_phone(input: &str) -> String {
    input.trim().to_owned()
}

/// The department must exist and not be deleted.
fn live(department: &Versioned<Department>) -> Result<(), DepartmentError> {
    match () {
        _ if !department.exists() => Err(DepartmentError::NotFound),
        _ if department.deleted => Err(DepartmentError::Deleted),
        _ => Ok(()),
    }
}

#[commands(client = pub DepartmentCommands)]
impl Department {
    pub fn create(
        department: &Versioned<Self>,
        cmd: Create,
    ) -> Result<DepartmentCreated, DepartmentError> {
        if department.exists() {
            return Err(DepartmentError::AlreadyExists);
        }
        Ok(DepartmentCreated {
            tenant_id: cmd.tenant_id,
            name: cmd.name,
            description: cmd.description,
            data_context: cmd.data_context,
            performed_by: cmd.performed_by,
        })
    }

    /// Emits nothing when neither the name nor the description changes.
    pub fn update(
        department: &Versioned<Self>,
        cmd: Update,
    ) -> Result<Option<DepartmentUpdated>, DepartmentError> {
        live(department)?;
        let name = cmd.name.filter(|name| *name != department.name);
        let description = cmd
            .description
            .filter(|description| *description != department.description);
        if name.is_none() && description.is_none() {
            return Ok(None);
        }
        Ok(Some(DepartmentUpdated {
            name,
            description,
            performed_by: cmd.performed_by,
        }))
    }

    /// Decided again after a version conflict, up to 3 times.
    #[command(retry = 3)]
    pub fn add_manager(
        department: &Versioned<Self>,
        cmd: AddManager,
    ) -> Result<DepartmentManagerAdded, DepartmentError> {
        live(department)?;
        let user_phone = normalize_phone(&cmd.user_phone);
        if department.managers.contains(&user_phone) {
            return Err(DepartmentError::AlreadyManager);
        }
        Ok(DepartmentManagerAdded {
            user_phone,
            performed_by: cmd.performed_by,
        })
    }

    pub fn remove_manager(
        department: &Versioned<Self>,
        cmd: RemoveManager,
    ) -> Result<DepartmentManagerRemoved, DepartmentError> {
        live(department)?;
        let user_phone = normalize_phone(&cmd.user_phone);
        if !department.managers.contains(&user_phone) {
            return Err(DepartmentError::NotManager);
        }
        Ok(DepartmentManagerRemoved {
            user_phone,
            performed_by: cmd.performed_by,
        })
    }

    pub fn delete(
        department: &Versioned<Self>,
        cmd: Delete,
    ) -> Result<DepartmentDeleted, DepartmentError> {
        live(department)?;
        Ok(DepartmentDeleted {
            deleted_by: cmd.deleted_by,
        })
    }
}
