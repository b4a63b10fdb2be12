use evt::event;

#[event]
#[derive(Debug, Clone)]
pub struct DepartmentCreated {
    name: String,
}

fn main() {}
