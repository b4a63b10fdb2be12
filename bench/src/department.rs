//! The benchmark's department, as every peer implements it; and the same with snapshots on.

use evt::{Aggregate, Domain, Versioned, aggregate, commands, event};

#[event]
#[derive(Debug, Clone)]
pub enum DepartmentEvent {
    DepartmentCreated { tenant_id: String, name: String },
    DepartmentManagerAdded { user_phone: String },
}

#[derive(Debug, Clone, Default)]
pub struct Department {
    pub name: String,
    pub managers: Vec<String>,
}

#[aggregate(stream = "departments", events = DepartmentEvent)]
impl Department {
    fn created(&mut self, event: DepartmentCreated) {
        self.name = event.name;
    }

    fn manager_added(&mut self, event: DepartmentManagerAdded) {
        self.managers.push(event.user_phone);
    }
}

/// Payloads are `Clone`, so that with the cache on a command decides on the cached aggregate
/// without reading first.
#[derive(Clone)]
pub struct Create {
    pub tenant_id: String,
    pub name: String,
}

#[derive(Clone)]
pub struct AddManager {
    pub user_phone: String,
}

#[commands(client = pub DepartmentCommands)]
impl Department {
    fn create(
        department: &Versioned<Self>,
        cmd: Create,
    ) -> Result<DepartmentCreated, &'static str> {
        if department.exists() {
            return Err("department already exists");
        }
        Ok(DepartmentCreated {
            tenant_id: cmd.tenant_id,
            name: cmd.name,
        })
    }

    fn add_manager(
        department: &Versioned<Self>,
        cmd: AddManager,
    ) -> Result<DepartmentManagerAdded, &'static str> {
        if !department.exists() {
            return Err("department not found");
        }
        if department.managers.contains(&cmd.user_phone) {
            return Err("already a manager");
        }
        Ok(DepartmentManagerAdded {
            user_phone: cmd.user_phone,
        })
    }
}

/// The same department with snapshots (`snapshot = "1"`), on its own stream.
pub mod snapshot {
    use evt::{aggregate, event};
    use serde::{Deserialize, Serialize};

    #[event]
    #[derive(Debug, Clone)]
    pub enum SnapshotDepartmentEvent {
        DepartmentCreated { tenant_id: String, name: String },
        DepartmentManagerAdded { user_phone: String },
    }

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct SnapshotDepartment {
        pub name: String,
        pub managers: Vec<String>,
    }

    #[aggregate(stream = "snapshot-departments", events = SnapshotDepartmentEvent, snapshot = "1")]
    impl SnapshotDepartment {
        fn created(&mut self, event: DepartmentCreated) {
            self.name = event.name;
        }

        fn manager_added(&mut self, event: DepartmentManagerAdded) {
            self.managers.push(event.user_phone);
        }
    }
}

pub use snapshot::SnapshotDepartment;

/// Events of either department type, for [`fill`].
pub trait Filled: Aggregate {
    fn created(id: &str) -> Self::Event;
    fn manager_added(phone: String) -> Self::Event;
}

impl Filled for Department {
    fn created(id: &str) -> DepartmentEvent {
        DepartmentCreated {
            tenant_id: "tenant-1".into(),
            name: id.into(),
        }
        .into()
    }
    fn manager_added(user_phone: String) -> DepartmentEvent {
        DepartmentManagerAdded { user_phone }.into()
    }
}

impl Filled for SnapshotDepartment {
    fn created(id: &str) -> snapshot::SnapshotDepartmentEvent {
        snapshot::DepartmentCreated {
            tenant_id: "tenant-1".into(),
            name: id.into(),
        }
        .into()
    }
    fn manager_added(user_phone: String) -> snapshot::SnapshotDepartmentEvent {
        snapshot::DepartmentManagerAdded { user_phone }.into()
    }
}

/// Appends a creation and one `departmentManagerAdded` per phone, in batches of 1,000 (so a
/// snapshot aggregate stores its state with the last batch); returns the version reached.
pub async fn fill<A: Filled>(
    domain: &Domain,
    id: &str,
    managers: impl Iterator<Item = String>,
) -> Result<u64, evt::Error> {
    let mut aggregate = domain
        .append(Versioned::<A>::new(id), vec![A::created(id)])
        .await?;
    let managers: Vec<_> = managers.map(A::manager_added).collect();
    for batch in managers.chunks(1000) {
        aggregate = domain.append(aggregate, batch.to_vec()).await?;
    }
    Ok(aggregate.version)
}
