use evt::{aggregate, event};

#[event]
#[derive(Debug, Clone)]
pub enum DepartmentEvent {
    DepartmentCreated { name: String },
}

#[derive(Debug, Clone, Default)]
pub struct Department {
    name: String,
}

#[aggregate(stream = "departments", events = DepartmentEvent)]
impl Department {
    fn created(&mut self, event: &mut DepartmentCreated) {
        self.name = std::mem::take(&mut event.name);
    }
}

fn main() {}
