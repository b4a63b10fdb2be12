// A misspelled `stream` is one error, at the typo: the aggregate is still generated (with the
// misspelled key's value), so its commands and their callers compile.
use evt::{Domain, MemoryProvider, Versioned, aggregate, commands, event};

#[event]
#[derive(Debug, Clone)]
pub enum AccountEvent {
    Opened { owner: String },
}

#[derive(Debug, Clone, Default)]
pub struct Account {
    owner: String,
}

#[aggregate(strem = "accounts", events = AccountEvent)]
impl Account {
    fn opened(&mut self, event: &Opened) {
        self.owner = event.owner.clone();
    }
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

async fn open(domain: &Domain) -> Versioned<Account> {
    AccountCommands::new(domain)
        .open("a-1", Open { owner: "ann".into() })
        .await
        .unwrap()
}

fn main() {
    let _ = open(&Domain::new(MemoryProvider::new()));
}
