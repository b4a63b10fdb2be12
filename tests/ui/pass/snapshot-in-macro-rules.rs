//! `#[aggregate(snapshot = $version)]` written by a `macro_rules!` macro, with the version given
//! as a literal or an expression fragment.

use evt::{aggregate, event};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Debug, Clone)]
pub enum CounterEvent {
    Added { by: u32 },
}

macro_rules! counter {
    ($name:ident, $stream:literal, $version:literal) => {
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct $name {
            total: u32,
        }

        #[aggregate(stream = $stream, events = CounterEvent, snapshot = $version)]
        impl $name {
            fn added(&mut self, event: &Added) {
                self.total += event.by;
            }
        }
    };
}

macro_rules! counter_expr {
    ($name:ident, $version:expr) => {
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct $name {
            total: u32,
        }

        #[aggregate(stream = "other_counters", events = OtherEvent, snapshot = $version)]
        impl $name {
            fn added(&mut self, event: &OtherAdded) {
                self.total += event.by;
            }
        }
    };
}

#[event]
#[derive(Debug, Clone)]
pub enum OtherEvent {
    OtherAdded { by: u32 },
}

counter!(Counter, "counters", "1");
counter_expr!(OtherCounter, "2");

fn main() {
    use evt::Aggregate;
    assert_eq!(Counter::SNAPSHOT, Some("1"));
    assert_eq!(OtherCounter::SNAPSHOT, Some("2"));
}
