use evt::{aggregate, event};

#[event]
#[derive(Debug, Clone)]
pub enum DepartmentEvent {
    DepartmentCreated { name: String },
}

#[event]
#[derive(Debug, Clone)]
pub enum UserEvent {
    UserCreated { phone: String },
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

    fn user_created(&mut self, event: &UserCreated) {
        self.name = event.phone.clone();
    }
}

fn main() {}
