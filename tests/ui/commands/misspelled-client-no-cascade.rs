// A misspelled `client` is one error, at the typo: the client is still generated under the name
// the misspelled key gave, so its callers compile.
use evt::{Domain, MemoryProvider, Meta, Versioned, aggregate, commands, event, projection};

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

pub struct Open {
    pub owner: String,
}

#[commands(clent = pub AccountCommands)]
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

#[projection(bookmark = "owners", streams = ["accounts"])]
impl Owners {
    fn opened(&self, _: &str, _: &Opened, _: &Meta) {}
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
