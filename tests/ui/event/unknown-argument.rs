use evt::event;

#[event(rename_all = "snake_case")]
#[derive(Debug, Clone)]
pub enum DepartmentEvent {
    DepartmentCreated { name: String },
}

fn main() {}
