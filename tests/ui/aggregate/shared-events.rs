// Two aggregates naming the same event enum is one error, at the second `events = ...`, naming
// the first aggregate.
use evt::{aggregate, event};

#[event]
#[derive(Debug, Clone)]
pub enum AccountEvent {
    Opened { owner: String },
}

#[derive(Debug, Clone, Default)]
pub struct Account {
    owner: String,
}

#[aggregate(stream = "accounts", events = AccountEvent)]
impl Account {
    fn opened(&mut self, event: &Opened) {
        self.owner = event.owner.clone();
    }
}

#[derive(Debug, Clone, Default)]
pub struct Ledger {
    owners: Vec<String>,
}

#[aggregate(stream = "ledgers", events = AccountEvent)]
impl Ledger {
    fn opened(&mut self, event: &Opened) {
        self.owners.push(event.owner.clone());
    }
}

fn main() {}
