//! Generated code still compiles when the caller shadows the prelude and common names.

#![allow(dead_code, non_camel_case_types)]

use evt::{Meta, Versioned, aggregate, commands, event, projection};

type Result = ();
type Option = ();
type Vec = ();
type String = ();
struct Box;
struct Some;
struct None;
struct Ok;
struct Err;
trait Default {}
trait Clone {}
trait From {}
trait Into {}
mod core {}
mod std {}
mod serde {}
mod serde_json {}
mod evt_core {}

#[event]
#[derive(Debug, ::core::clone::Clone)]
pub enum DepartmentEvent {
    DepartmentCreated { name: ::std::string::String, note: ::core::option::Option<u8> },
    DepartmentDeleted,
}

#[derive(Debug, ::core::clone::Clone, ::core::default::Default)]
pub struct Department;

#[aggregate(stream = "departments", events = DepartmentEvent)]
impl Department {
    fn created(&mut self, _: &DepartmentCreated) {}
}

pub struct Create;

#[commands(client = DepartmentCommands)]
impl Department {
    fn create(
        _: &Versioned<Self>,
        _: Create,
    ) -> ::core::result::Result<::core::option::Option<DepartmentDeleted>, ()> {
        ::core::result::Result::Ok(::core::option::Option::None)
    }
}

pub struct Model;

#[projection(bookmark = "model", streams = ["departments"])]
impl Model {
    fn created(&self, _: &str, _: &DepartmentCreated, _: &Meta) {}
}

fn main() {}
