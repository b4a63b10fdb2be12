use evt::event;

#[event]
#[derive(Debug, Clone)]
pub enum DepartmentEvent {
    DepartmentCreated { name: String },
    DepartmentRenamed(String),
}

fn main() {}
