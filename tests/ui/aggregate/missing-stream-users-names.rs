// The example in the message uses the aggregate's own name, not the guide's.
use evt::{aggregate, event};

#[event]
#[derive(Debug, Clone)]
pub enum BankAccountEvent {
    AccountOpened { owner: String },
}

#[derive(Debug, Clone, Default)]
pub struct BankAccount {
    owner: String,
}

#[aggregate(events = BankAccountEvent)]
impl BankAccount {
    fn opened(&mut self, event: &AccountOpened) {
        self.owner = event.owner.clone();
    }
}

fn main() {}
