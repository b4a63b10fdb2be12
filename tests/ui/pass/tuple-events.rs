//! A command may return a tuple of an event and an optional one: `(Opened, Option<Named>)`.

use evt::{Domain, MemoryProvider, Versioned, aggregate, commands, event};

#[event]
#[derive(Debug, Clone)]
pub enum AccountEvent {
    Opened { owner: String },
    Named { name: String },
}

#[derive(Debug, Clone, Default)]
pub struct Account {
    owner: String,
    name: Option<String>,
}

#[aggregate(stream = "accounts", events = AccountEvent)]
impl Account {
    fn opened(&mut self, event: &Opened) {
        self.owner = event.owner.clone();
    }

    fn named(&mut self, event: Named) {
        self.name = Some(event.name);
    }
}

pub struct Open {
    pub owner: String,
    pub name: Option<String>,
}

#[commands(client = pub AccountCommands)]
impl Account {
    fn open(_: &Versioned<Self>, command: Open) -> Result<(Opened, Option<Named>), String> {
        Ok((
            Opened { owner: command.owner },
            command.name.map(|name| Named { name }),
        ))
    }

    fn open_twice(_: &Versioned<Self>, command: Open) -> Result<(Option<Opened>, Named, Opened), String> {
        Ok((
            None,
            Named { name: command.name.unwrap_or_default() },
            Opened { owner: command.owner },
        ))
    }
}

async fn open(domain: &Domain) -> Versioned<Account> {
    AccountCommands::new(domain)
        .open("a-1", Open { owner: "ann".into(), name: None })
        .await
        .unwrap()
}

fn main() {
    let _ = open(&Domain::new(MemoryProvider::new()));
}
