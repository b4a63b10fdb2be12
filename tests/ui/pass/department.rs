//! The guide's department feature compiles, with async handlers, multi-event returns and
//! every attribute argument.

use evt::{Domain, MemoryProvider, Meta, Versioned, aggregate, commands, event, projection};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum DepartmentEvent {
    /// Docs stay on the generated struct.
    DepartmentCreated {
        tenant_id: String,
        name: String,
        description: Option<String>,
    },
    DepartmentManagerAdded {
        user_phone: String,
    },
    DepartmentDeleted,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Department {
    name: String,
    managers: Vec<String>,
    deleted: bool,
}

fn new_department() -> Department {
    Department::default()
}

#[aggregate(stream = "departments", events = DepartmentEvent, snapshot = "2", create = new_department)]
impl Department {
    fn created(&mut self, event: &DepartmentCreated) {
        self.name = event.name.clone();
    }

    fn manager_added(&mut self, event: &DepartmentManagerAdded) {
        self.managers.push(event.user_phone.clone());
    }

    fn deleted(&mut self, _: &DepartmentDeleted) {
        self.deleted = true;
    }
}

#[derive(Clone)]
pub struct Create {
    pub tenant_id: String,
    pub name: String,
    pub managers: Vec<String>,
}

#[derive(Clone)]
pub struct Delete;

#[commands(client = pub(crate) DepartmentCommands, retry = 2)]
impl Department {
    /// Creates a department with its first managers.
    async fn create(
        department: &Versioned<Self>,
        cmd: Create,
    ) -> Result<Vec<DepartmentEvent>, std::io::Error> {
        if department.exists() {
            return Err(std::io::Error::other("exists"));
        }
        let mut events = vec![DepartmentCreated {
            tenant_id: cmd.tenant_id,
            name: cmd.name,
            description: None,
        }
        .into()];
        events.extend(
            cmd.managers
                .into_iter()
                .map(|user_phone| DepartmentManagerAdded { user_phone }.into()),
        );
        Ok(events)
    }

    /// A handler that needs only the state may borrow it (`&Versioned<Self>` derefs to it).
    #[command(retry = 0)]
    fn delete(_: &Department, _: Delete) -> Result<(DepartmentDeleted, DepartmentDeleted), String> {
        Ok((DepartmentDeleted, DepartmentDeleted))
    }
}

#[derive(Default)]
pub struct Model;

#[projection(
    bookmark = "departments-model",
    streams = ["departments"],
    tail_stream,
    always_tail_stream = false,
    continue_on_error = true,
    skip_unknown_events
)]
impl Model {
    async fn created(&self, _id: &str, _event: &DepartmentCreated, _meta: &Meta) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn deleted(&self, _id: &str, _event: &DepartmentDeleted, _meta: &Meta) {}
}

const _: () = assert!(<Model as evt::Projection>::OPTIONS.skip_unknown_events);

/// One stream may be given alone, without brackets.
#[derive(Default)]
pub struct OneStream;

#[projection(bookmark = "one-stream", streams = "departments")]
impl OneStream {
    fn created(&self, _id: &str, _event: &DepartmentCreated, _meta: &Meta) {}
}

const _: () = assert!(<OneStream as evt::Projection>::STREAMS.len() == 1);

fn assert_send<T: Send>(_: T) {}

fn main() {
    let domain = Domain::new(MemoryProvider::new());
    let departments = DepartmentCommands::new(&domain);
    assert_send(departments.create(
        "department-1",
        Create { tenant_id: "t".into(), name: "n".into(), managers: vec![] },
    ));
    assert_send(domain.handler(Model).run_once());
}
