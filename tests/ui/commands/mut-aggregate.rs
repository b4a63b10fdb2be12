use evt::{Versioned, aggregate, commands, event};

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
}

pub struct Create {
    pub name: String,
}

#[commands(client = DepartmentCommands)]
impl Department {
    fn create(_department: &mut Versioned<Self>, cmd: Create) -> Result<DepartmentCreated, String> {
        Ok(DepartmentCreated { name: cmd.name })
    }
}

fn main() {}
