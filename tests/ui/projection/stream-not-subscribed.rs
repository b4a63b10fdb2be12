#![allow(unused_imports, dead_code)]

use evt::{Meta, Versioned, aggregate, commands, event, projection};

#[event]
#[derive(Debug, Clone)]
pub enum DepartmentEvent {
    DepartmentCreated { name: String },
    DepartmentManagerAdded { user_phone: String },
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

pub struct AddManager {
    pub user_phone: String,
}

#[event]
#[derive(Debug, Clone)]
pub enum UserEvent {
    UserCreated { phone: String },
}

#[derive(Debug, Clone, Default)]
pub struct User;

#[aggregate(stream = "users", events = UserEvent)]
impl User {}

#[derive(Default)]
pub struct Model;

#[projection(bookmark = "model", streams = ["departments"])]
impl Model {
    fn created(&self, _: &str, _: &DepartmentCreated, _: &Meta) {}

    fn user_created(&self, _: &str, _: &UserCreated, _: &Meta) {}
}

fn main() {}
