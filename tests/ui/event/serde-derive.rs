use evt::event;
use serde::{Deserialize, Serialize};

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DepartmentEvent {
    DepartmentCreated { name: String },
}

fn main() {}
