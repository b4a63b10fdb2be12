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
    fn created(&mut self, event: &DepartmentCreated) {
        self.name = event.name.clone();
    }

    fn name_length(&self) -> usize {
        self.name.len()
    }
}

fn main() {}
