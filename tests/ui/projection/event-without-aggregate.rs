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

#[event]
#[derive(Debug, Clone)]
pub enum AuditEvent {
    Audited { by: String },
}

#[derive(Default)]
pub struct Model;

#[projection(bookmark = "model", streams = ["departments"])]
impl Model {
    fn audited(&self, _: &str, _: &Audited, _: &Meta) {}
}

fn main() {}
