use evt::event;

#[event]
#[derive(Debug)]
pub enum DepartmentEvent {
    DepartmentCreated { name: String },
}

fn main() {}
