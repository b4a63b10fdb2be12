//! The README's "What the macros accept": a bank account with a multi-event command, a sync
//! projection returning its own error, and a read model read back after a command.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use evt::{CommandError, Domain, MemoryProvider, Meta, Versioned, aggregate, commands, event, projection};

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum AccountEvent {
    Deposited { amount: u64 },
    Withdrawn { amount: u64, to: String },
    FeeCharged { amount: u64 },
}

#[derive(Debug, Clone, Default)]
pub struct Account {
    balance: u64,
}

#[aggregate(stream = "accounts", events = AccountEvent)]
impl Account {
    fn deposited(&mut self, event: Deposited) {
        self.balance += event.amount;
    }

    fn withdrawn(&mut self, event: &Withdrawn) {
        self.balance -= event.amount;
    }

    fn fee_charged(&mut self, event: &FeeCharged) {
        self.balance -= event.amount;
    }
}

#[derive(Debug, Clone)]
pub struct Deposit {
    pub amount: u64,
}

#[derive(Debug, Clone)]
pub struct Transfer {
    pub amount: u64,
    pub to: String,
}

#[derive(Debug, PartialEq)]
pub enum AccountError {
    Insufficient { balance: u64 },
}

impl std::fmt::Display for AccountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountError::Insufficient { balance } => write!(f, "only {balance} on the account"),
        }
    }
}

#[commands(client = pub AccountCommands)]
impl Account {
    fn deposit(_account: &Versioned<Self>, cmd: Deposit) -> Result<Deposited, AccountError> {
        Ok(Deposited { amount: cmd.amount })
    }

    /// Two events in one atomic append: both are stored, or neither.
    fn transfer(account: &Versioned<Self>, cmd: Transfer) -> Result<(Withdrawn, Option<FeeCharged>), AccountError> {
        if account.balance < cmd.amount + 1 {
            return Err(AccountError::Insufficient { balance: account.balance });
        }
        let fee = (cmd.amount > 10).then(|| FeeCharged { amount: 1 });
        Ok((Withdrawn { amount: cmd.amount, to: cmd.to }, fee))
    }
}

/// The projection's own error.
#[derive(Debug)]
pub struct Overdrawn(String);

impl std::fmt::Display for Overdrawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` would go below zero", self.0)
    }
}

impl std::error::Error for Overdrawn {}

#[derive(Default)]
pub struct Balances {
    balances: Mutex<HashMap<String, u64>>,
}

impl Balances {
    pub fn balance(&self, id: &str) -> Option<u64> {
        self.balances.lock().unwrap().get(id).copied()
    }

    fn change(&self, id: &str, change: impl FnOnce(u64) -> Option<u64>) -> Result<(), Overdrawn> {
        let mut balances = self.balances.lock().unwrap();
        let balance = balances.entry(id.to_owned()).or_default();
        *balance = change(*balance).ok_or_else(|| Overdrawn(id.to_owned()))?;
        Ok(())
    }
}

#[projection(bookmark = "balances", streams = ["accounts"])]
impl Balances {
    fn deposited(&self, id: &str, event: &Deposited, _: &Meta) -> Result<(), Overdrawn> {
        self.change(id, |balance| balance.checked_add(event.amount))
    }

    async fn withdrawn(&self, id: &str, event: &Withdrawn, _: &Meta) -> Result<(), Overdrawn> {
        self.change(id, |balance| balance.checked_sub(event.amount))
    }

    fn fee_charged(&self, id: &str, event: &FeeCharged, _: &Meta) {
        let _ = self.change(id, |balance| balance.checked_sub(event.amount));
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let domain = Domain::new(MemoryProvider::new());
        let accounts = AccountCommands::new(&domain);
        let balances = domain.handler(Balances::default()).without_lease();
        balances.start();

        let account = accounts.deposit("acc-1", Deposit { amount: 100 }).await.unwrap();
        assert_eq!(account.balance, 100);
        let account = accounts
            .transfer("acc-1", Transfer { amount: 50, to: "acc-2".into() })
            .await
            .unwrap();
        assert_eq!((account.balance, account.version), (49, 3));
        match accounts.transfer("acc-1", Transfer { amount: 50, to: "acc-2".into() }).await {
            Err(CommandError::Rejected { reason, .. }) => {
                assert_eq!(reason, AccountError::Insufficient { balance: 49 })
            }
            other => panic!("expected a rejection, got {other:?}"),
        }

        balances.wait_until_handled(&account, Duration::from_secs(5)).await.unwrap();
        assert_eq!(balances.projection().balance("acc-1"), Some(49));
        balances.stop().await;
    });
}
