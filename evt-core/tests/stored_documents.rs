//! Stored documents that are not events of their stream's enum: loading the aggregate and
//! running a handler both stop at them, with the same words.

use std::sync::{Mutex, PoisonError};

use evt_core::{
    Domain, Error, MemoryProvider, Meta, NewEvent, Versioned, aggregate, event, projection,
};
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
    balance: u64,
}

#[aggregate(stream = "accounts", events = AccountEvent)]
impl Account {
    fn opened(&mut self, event: &Opened) {
        self.owner.clone_from(&event.owner);
    }
    fn deposited(&mut self, event: &Deposited) {
        self.balance += event.amount;
    }
}

/// The ids of opened accounts; it has no method for deposits, a type it passes over.
#[derive(Debug, Default)]
struct Owners {
    opened: Mutex<Vec<String>>,
}

impl Owners {
    fn opened(&self) -> Vec<String> {
        self.opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[projection(bookmark = "owners", streams = ["accounts"])]
impl Owners {
    fn open(&self, id: &str, _: &Opened, _: &Meta) {
        self.opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(id.to_owned());
    }
}

/// Opens account `id`; returns the event's position.
async fn open(domain: &Domain, id: &str) -> u64 {
    let opened = Opened {
        owner: id.to_owned(),
    };
    domain
        .append(Versioned::<Account>::new(id), vec![opened.into()])
        .await
        .unwrap();
    last_position(domain, id).await
}

async fn last_position(domain: &Domain, id: &str) -> u64 {
    let events = domain
        .provider()
        .aggregate_events("accounts", id, 0, u32::MAX as usize)
        .await;
    events.unwrap().last().expect("stored").meta.position
}

/// Stores the document `json` as the next event of account `id`, as a provider that reads the
/// type from the document does (`""` when it has no string `type`); returns its position.
async fn store(domain: &Domain, id: &str, event_type: &'static str, json: &str) -> u64 {
    let version = domain.load::<Account>(id).await.map_or(1, |a| a.version);
    let data = RawValue::from_string(json.to_owned()).unwrap();
    let stored = domain
        .provider()
        .append(
            "accounts",
            id,
            version,
            &[NewEvent::new(event_type, data)],
            None,
        )
        .await
        .unwrap();
    stored[0].meta.position
}

/// What both paths say about the event: the source of the load's and the handler's errors.
fn same_words(load: &Error, handled: &Error) -> String {
    let (Error::Decode { source: a, .. }, Error::Handler { source: b, .. }) = (load, handled)
    else {
        panic!("expected a decode error and a handler error, found `{load}` and `{handled}`");
    };
    assert_eq!(a.to_string(), b.to_string(), "the same words on both paths");
    a.to_string()
}

#[tokio::test]
async fn a_document_without_a_string_type_says_what_it_is() {
    for (json, says) in [
        (
            r#""not JSON: a provider keeps such text as a string""#,
            "the stored document is not an event object (`{\"type\": \"...\", ...}`): it is a string",
        ),
        (
            "[1, 2]",
            "is not an event object (`{\"type\": \"...\", ...}`): it is an array",
        ),
        (r#"{"amount": 5}"#, "the stored event has no `type`"),
        (
            r#"{"type": 5, "amount": 5}"#,
            "the stored event's `type` is not a string: it is a number",
        ),
    ] {
        let domain = Domain::new(MemoryProvider::new());
        let good = open(&domain, "a").await;
        let bad = store(&domain, "a", "", json).await;

        let load = domain.load::<Account>("a").await.unwrap_err();
        let message = load.to_string();
        assert!(
            matches!(load, Error::Decode { version: 2, position, .. } if position == bad),
            "{message}"
        );
        assert!(message.contains("`accounts/a` version 2"), "{message}");

        let handler = domain.handler(Owners::default());
        let handled = handler.run_once().await.unwrap_err();
        let message = handled.to_string();
        assert!(
            matches!(&handled, Error::Handler { version: 2, position, .. } if *position == bad),
            "{message}"
        );
        assert!(
            message.contains(&format!(
                "handler `owners` failed on event at position {bad} (`accounts/a` version 2): "
            )),
            "{message}"
        );
        assert_eq!(
            domain.provider().position("owners").await.unwrap(),
            Some(good),
            "the bookmark stays before it"
        );

        let words = same_words(&load, &handled);
        assert!(words.contains(says), "`{says}` missing from: {words}");
        assert!(!words.contains("unknown"), "{words}");
    }
}

/// Account `a` opened, a deposit (a known type `Owners` has no method for), an event of a type
/// that `AccountEvent` does not know, then account `b` opened; returns the unknown one's position.
async fn history_with_an_unknown_type(domain: &Domain) -> u64 {
    open(domain, "a").await;
    let deposit = Deposited { amount: 5 };
    let a = domain.load::<Account>("a").await.unwrap();
    domain.append(a, vec![deposit.into()]).await.unwrap();
    let unknown = store(domain, "a", "closed", r#"{"type": "closed"}"#).await;
    open(domain, "b").await;
    unknown
}

#[tokio::test]
async fn an_unknown_event_type_stops_a_handler_as_it_stops_a_load() {
    let domain = Domain::new(MemoryProvider::new());
    let unknown = history_with_an_unknown_type(&domain).await;

    let load = domain.load::<Account>("a").await.unwrap_err();
    assert!(
        matches!(load, Error::Decode { version: 3, position, .. } if position == unknown),
        "{load}"
    );

    let handler = domain.handler(Owners::default());
    let handled = handler.run_once().await.unwrap_err();
    let message = handled.to_string();
    assert!(
        matches!(&handled, Error::Handler { version: 3, position, .. } if *position == unknown),
        "{message}"
    );
    assert_eq!(
        message,
        format!(
            "handler `owners` failed on event at position {unknown} (`accounts/a` version 3, \
             type `closed`): unknown event type `closed`, expected one of `opened`, `deposited`"
        )
    );
    assert_eq!(
        same_words(&load, &handled),
        "unknown event type `closed`, expected one of `opened`, `deposited`"
    );
    assert_eq!(
        domain.provider().position("owners").await.unwrap(),
        Some(unknown - 1),
        "the bookmark stays before it, past the deposit it has no method for"
    );
    assert_eq!(handler.projection().opened(), ["a"]);
    assert!(handler.run_once().await.is_err(), "stops at it again");
    assert_eq!(handler.projection().opened(), ["a"], "never passes it");
}

#[tokio::test]
async fn skip_unknown_events_passes_over_them() {
    let domain = Domain::new(MemoryProvider::new());
    let unknown = history_with_an_unknown_type(&domain).await;
    const { assert!(!<Owners as evt_core::Projection>::OPTIONS.skip_unknown_events) };
    let handler = domain.handler(Owners::default()).skip_unknown_events(true);
    assert_eq!(handler.run_once().await.unwrap(), 4, "it counts as handled");
    assert_eq!(handler.projection().opened(), ["a", "b"]);
    assert_eq!(
        domain.provider().position("owners").await.unwrap(),
        Some(unknown + 1)
    );
}

/// `Owners`, skipping unknown event types through the attribute.
#[derive(Debug, Default)]
struct SkippingOwners {
    opened: Mutex<Vec<String>>,
}

#[projection(bookmark = "skipping-owners", streams = ["accounts"], skip_unknown_events)]
impl SkippingOwners {
    fn open(&self, id: &str, _: &Opened, _: &Meta) {
        self.opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(id.to_owned());
    }
}

#[tokio::test]
async fn skip_unknown_events_in_the_attribute() {
    let domain = Domain::new(MemoryProvider::new());
    history_with_an_unknown_type(&domain).await;
    const { assert!(<SkippingOwners as evt_core::Projection>::OPTIONS.skip_unknown_events) };
    let handler = domain.handler(SkippingOwners::default());
    assert_eq!(handler.run_once().await.unwrap(), 4);
    assert_eq!(handler.projection().opened.lock().unwrap().len(), 2);

    let untyped = store(&domain, "b", "", r#"{"amount": 1}"#).await;
    let error = handler.run_once().await.unwrap_err();
    assert!(
        matches!(&error, Error::Handler { position, .. } if *position == untyped),
        "a document without a `type` still stops it: {error}"
    );
    let stopping = domain
        .handler(SkippingOwners::default())
        .memory_bookmark()
        .skip_unknown_events(false);
    let error = stopping.run_once().await.unwrap_err();
    assert!(
        error.to_string().contains("unknown event type `closed`"),
        "{error}"
    );
}
