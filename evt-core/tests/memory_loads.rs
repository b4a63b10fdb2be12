//! Loads from the in-memory provider, which folds the events it keeps decoded per aggregate:
//! from the first event, after a cached version, for two aggregate types of one stream, and
//! stopping at an event that does not decode, as every provider's loads do.

use std::sync::Arc;

use evt_core::{Domain, Error, MemoryProvider, NewEvent, Provider, Versioned, aggregate, event};
use serde_json::value::RawValue;

#[event]
#[derive(Debug, Clone)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
}

#[derive(Debug, Clone, Default)]
struct Account {
    owner: String,
    deposits: Vec<u64>,
}

#[aggregate(stream = "accounts", events = AccountEvent)]
impl Account {
    fn opened(&mut self, event: Opened) {
        self.owner = event.owner;
    }
    fn deposited(&mut self, event: Deposited) {
        self.deposits.push(event.amount);
    }
}

/// Another aggregate of the same stream, with an enum of its own of the same event types.
mod ledger {
    use evt_core::{aggregate, event};

    #[event]
    #[derive(Debug, Clone)]
    pub enum LedgerEvent {
        Opened { owner: String },
        Deposited { amount: u64 },
    }

    #[derive(Debug, Clone, Default)]
    pub struct Ledger {
        pub balance: u64,
    }

    #[aggregate(stream = "accounts", events = LedgerEvent)]
    impl Ledger {
        fn opened(&mut self, _: &Opened) {}
        fn deposited(&mut self, event: &Deposited) {
            self.balance += event.amount;
        }
    }
}

use ledger::Ledger;

/// Deposits `amounts` into account `id` (opening it first if it has no event).
async fn deposit(domain: &Domain, id: &str, amounts: impl IntoIterator<Item = u64>) {
    let account: Versioned<Account> = domain.load(id).await.unwrap();
    let mut events: Vec<AccountEvent> = Vec::new();
    if !account.exists() {
        events.push(Opened { owner: id.into() }.into());
    }
    events.extend(
        amounts
            .into_iter()
            .map(|amount| Deposited { amount }.into()),
    );
    domain.append(account, events).await.unwrap();
}

#[tokio::test]
async fn loads_from_the_first_event_and_after_a_cached_version_agree() {
    let provider: Arc<dyn Provider> = Arc::new(MemoryProvider::new());
    let plain = Domain::from_arc(provider.clone());
    let cached = Domain::from_arc(provider).with_cache(10);

    // Written through the cache: it holds version 11, and nothing was loaded from the store.
    deposit(&cached, "a", 1..=10).await;
    // Behind the cache's back.
    deposit(&plain, "a", 11..=15).await;
    let after_cached: Versioned<Account> = cached.load("a").await.unwrap();
    assert_eq!(after_cached.version, 16);
    assert_eq!(after_cached.deposits, (1..=15).collect::<Vec<_>>());

    // From the first event (every event decoded and kept), then again with more.
    let first: Versioned<Account> = plain.load("a").await.unwrap();
    assert_eq!((first.version, first.owner.as_str()), (16, "a"));
    assert_eq!(first.deposits, (1..=15).collect::<Vec<_>>());
    deposit(&plain, "a", [16, 17]).await;
    let again: Versioned<Account> = plain.load("a").await.unwrap();
    assert_eq!(again.deposits, (1..=17).collect::<Vec<_>>());

    // A cached aggregate behind what was kept catches up from its own version.
    deposit(&plain, "a", [18]).await;
    let caught_up: Versioned<Account> = cached.load("a").await.unwrap();
    assert_eq!(caught_up.version, 19);
    assert_eq!(caught_up.deposits, (1..=18).collect::<Vec<_>>());

    let missing: Versioned<Account> = plain.load("nobody").await.unwrap();
    assert!(!missing.exists());
}

#[tokio::test]
async fn two_aggregate_types_of_one_stream_each_fold_their_own_events() {
    let domain = Domain::new(MemoryProvider::new());
    deposit(&domain, "a", [5, 7]).await;
    let account: Versioned<Account> = domain.load("a").await.unwrap();
    assert_eq!(account.deposits, [5, 7]);
    let ledger: Versioned<Ledger> = domain.load("a").await.unwrap();
    assert_eq!((ledger.version, ledger.balance), (3, 12));
    deposit(&domain, "a", [1, 0]).await;
    let ledger: Versioned<Ledger> = domain.load("a").await.unwrap();
    assert_eq!((ledger.version, ledger.balance), (5, 13));
    let account: Versioned<Account> = domain.load("a").await.unwrap();
    assert_eq!(account.version, 5);
    assert_eq!(account.deposits, [5, 7, 1, 0]);
}

#[tokio::test]
async fn a_load_stops_at_an_event_that_does_not_decode_and_names_it() {
    let domain = Domain::new(MemoryProvider::new());
    deposit(&domain, "a", [1]).await;
    let loaded: Versioned<Account> = domain.load("a").await.unwrap();
    assert_eq!(loaded.deposits, [1], "its events kept decoded");
    let bad = RawValue::from_string(r#"{"amount": "lots"}"#.to_owned()).unwrap();
    let stored = domain
        .provider()
        .append("accounts", "a", 2, &[NewEvent::new("deposited", bad)], None)
        .await
        .unwrap();
    for _ in 0..2 {
        let error = domain.load::<Account>("a").await.unwrap_err();
        assert!(
            matches!(
                &error,
                Error::Decode { stream, aggregate_id, version: 3, position, .. }
                    if stream == "accounts" && aggregate_id == "a" && *position == stored[0].meta.position
            ),
            "{error}"
        );
    }
}
