#![allow(unused_imports, dead_code)]

use evt::{Meta, Versioned, aggregate, commands, event, projection};

#[event]
#[derive(Debug, Clone)]
pub enum DepartmentEvent {
    DepartmentCreated { name: String },
    DepartmentManagerAdded { user_phone: String },
}

#[derive(Debug, Clone, Default)]
pub struct Department {
    name: String,
}

#[aggregate(stream = "departments", events = DepartmentEvent)]
impl Department {
    fn created(&mut self, event: &DepartmentCreated) {
        self.name = event.name.clone();
    }
}

pub struct Create {
    pub name: String,
}

pub struct AddManager {
    pub user_phone: String,
}

#[commands(client = DepartmentCommands)]
impl Department {
    fn new(_: &Versioned<Self>, cmd: Create) -> Result<DepartmentCreated, String> {
        Ok(DepartmentCreated { name: cmd.name })
    }
}

fn main() {}
