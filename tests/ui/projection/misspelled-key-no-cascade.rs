// A misspelled key before `streams` is one error, at the typo: the keys after it are still read,
// so the projection is generated with its streams and its handler's users compile.
use evt::{Domain, Meta, MemoryProvider, aggregate, event, projection};

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

#[derive(Default)]
pub struct Owners;

#[projection(bokmark = "owners", streams = ["accounts"])]
impl Owners {
    fn opened(&self, _: &str, _: &Opened, _: &Meta) {}
}

async fn run(domain: &Domain) -> usize {
    domain.handler(Owners).run_once().await.unwrap()
}

fn main() {
    let _ = run(&Domain::new(MemoryProvider::new()));
}
