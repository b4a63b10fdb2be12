// A misspelled stream is one error, at the stream name, listing the streams of the events its
// handlers take (not one error per handler).
use evt::{Domain, MemoryProvider, Meta, Versioned, aggregate, commands, event, projection};

#[event]
#[derive(Debug, Clone)]
pub enum AccountEvent {
    Opened { owner: String },
    Closed,
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

    fn closed(&mut self, _: &Closed) {}
}

pub struct Open {
    pub owner: String,
}

#[commands(client = pub AccountCommands)]
impl Account {
    fn open(account: &Versioned<Self>, command: Open) -> Result<Opened, String> {
        if account.exists() {
            return Err("already open".into());
        }
        Ok(Opened { owner: command.owner })
    }
}

#[derive(Default)]
pub struct Owners;

#[projection(bookmark = "owners", streams = ["acounts"])]
impl Owners {
    fn opened(&self, _: &str, _: &Opened, _: &Meta) {}

    fn closed(&self, _: &str, _: &Closed, _: &Meta) {}
}

async fn open(domain: &Domain) -> Versioned<Account> {
    domain.handler(Owners).run_once().await.unwrap();
    AccountCommands::new(domain)
        .open("a-1", Open { owner: "ann".into() })
        .await
        .unwrap()
}

fn main() {
    let _ = open(&Domain::new(MemoryProvider::new()));
}
