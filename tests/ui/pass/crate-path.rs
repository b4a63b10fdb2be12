//! `crate = "..."` points the generated code at a re-export of the runtime.

mod runtime {
    pub use evt::*;
}

use evt::{Meta, Versioned};

#[evt::event(crate = "crate::runtime")]
#[derive(Debug, Clone)]
pub enum DepartmentEvent {
    DepartmentCreated { name: String },
}

#[derive(Debug, Clone, Default)]
pub struct Department;

#[evt::aggregate(crate = "crate::runtime", stream = "departments", events = DepartmentEvent)]
impl Department {
    fn created(&mut self, _: &DepartmentCreated) {}
}

pub struct Create;

#[evt::commands(crate = "crate::runtime", client = DepartmentCommands)]
impl Department {
    fn create(_: &Versioned<Self>, _: Create) -> Result<DepartmentCreated, String> {
        Ok(DepartmentCreated { name: "x".into() })
    }
}

pub struct Model;

#[evt::projection(crate = "crate::runtime", bookmark = "model", streams = ["departments"])]
impl Model {
    fn created(&self, _: &str, _: &DepartmentCreated, _: &Meta) {}
}

fn main() {
    let _ = DepartmentCommands::new;
}
