// `#[command]` outside a `#[commands]` block is one error, at the attribute; `use evt::command`
// resolves.
use evt::command;

pub struct Open;

pub struct Account;

impl Account {
    #[command(retry = 3)]
    pub fn open(_: &Account, _: Open) -> Result<(), String> {
        Ok(())
    }
}

fn main() {
    let _ = Account::open(&Account, Open);
}
