//! Given, when, then: an aggregate's rules and a projection's read model, tested without a
//! store, a domain or a runtime of your own.
//!
//! ```
//! use evt_core::testkit::given;
//! # use evt_core::{Versioned, aggregate, commands, event};
//! # #[event] #[derive(Debug, Clone, PartialEq)]
//! # pub enum AccountEvent { Opened { owner: String }, Deposited { amount: u64 } }
//! # #[derive(Debug, Clone, Default)] pub struct Account { open: bool, balance: u64 }
//! # #[aggregate(stream = "accounts", events = AccountEvent)]
//! # impl Account {
//! #     fn opened(&mut self, _: &Opened) { self.open = true; }
//! #     fn deposited(&mut self, event: &Deposited) { self.balance += event.amount; }
//! # }
//! # pub struct Deposit { pub amount: u64 }
//! # #[derive(Debug, PartialEq)] pub enum AccountError { NotOpen, Zero }
//! # #[commands(client = pub AccountCommands)]
//! # impl Account {
//! #     fn deposit(account: &Versioned<Self>, cmd: Deposit) -> Result<Deposited, AccountError> {
//! #         if !account.open { return Err(AccountError::NotOpen); }
//! #         if cmd.amount == 0 { return Err(AccountError::Zero); }
//! #         Ok(Deposited { amount: cmd.amount })
//! #     }
//! # }
//! given::<Account>([Opened { owner: "ann".into() }.into()])
//!     .when(|account| Account::deposit(account, Deposit { amount: 5 }))
//!     .then([Deposited { amount: 5 }]);
//!
//! given::<Account>([])
//!     .when(|account| Account::deposit(account, Deposit { amount: 5 }))
//!     .then_error(AccountError::NotOpen);
//! ```

use std::fmt::Debug;
use std::future::Future;

use crate::{Aggregate, Domain, Event, MemoryProvider, Projection, Versioned};

/// The aggregate `A` after `events`, its id `"given"` (see [`Given::id`]): the start of a
/// given/when/then test.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    Given {
        id: "given".to_owned(),
        events: events.into_iter().collect(),
    }
}

/// Events that happened to one aggregate, for [`Given::when`] (a command) or
/// [`Given::project`] (a projection).
#[derive(Debug, Clone)]
#[must_use = "a given does nothing until `when` or `project`"]
pub struct Given<A: Aggregate> {
    id: String,
    events: Vec<A::Event>,
}

impl<A: Aggregate> Given<A> {
    /// The aggregate's id (`"given"` unless set), as commands and handlers see it.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The aggregate after the given events, as a command sees it: each event goes through its
    /// stored JSON and back before it is folded, as a load reads it (so serde attributes on
    /// the events act as in production).
    #[track_caller]
    pub fn aggregate(&self) -> Versioned<A> {
        let mut aggregate = Versioned::<A>::new(self.id.clone());
        fold(&mut aggregate, self.events.iter().cloned());
        aggregate
    }

    /// Runs a command handler on the aggregate: `command` calls it, as in
    /// `|account| Account::deposit(account, Deposit { amount: 5 })`.
    #[track_caller]
    pub fn when<T, E>(self, command: impl FnOnce(&Versioned<A>) -> Result<T, E>) -> Then<A, E>
    where
        T: crate::__private::IntoEvents<A::Event>,
    {
        let aggregate = self.aggregate();
        let decision = command(&aggregate).map(crate::__private::IntoEvents::into_events);
        Then {
            aggregate,
            decision,
        }
    }

    /// [`Given::when`] for an `async fn` handler, given the aggregate by value:
    /// `|account| async move { Account::deposit(&account, Deposit { amount: 5 }).await }`.
    #[track_caller]
    pub fn when_async<T, E, F>(self, command: impl FnOnce(Versioned<A>) -> F) -> Then<A, E>
    where
        T: crate::__private::IntoEvents<A::Event>,
        F: Future<Output = Result<T, E>>,
    {
        let aggregate = self.aggregate();
        let decision = block_on(command(aggregate.clone()));
        Then {
            aggregate,
            decision: decision.map(crate::__private::IntoEvents::into_events),
        }
    }

    /// Runs `projection` over the given events (stored, in order, in a [`MemoryProvider`], and
    /// handled as a started handler would handle them) and returns it, to read its read model
    /// back. Panics, naming the event, if a handler method fails.
    #[track_caller]
    pub fn project<P: Projection>(self, projection: P) -> P {
        assert!(
            P::STREAMS.contains(&A::STREAM),
            "the projection reads the streams {:?}, not `{}` of the given events",
            P::STREAMS,
            A::STREAM
        );
        let domain = Domain::new(MemoryProvider::new());
        block_on(async {
            if !self.events.is_empty() {
                let aggregate = Versioned::<A>::new(self.id.clone());
                domain
                    .append(aggregate, self.events)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            let handler = domain.handler(projection);
            if let Err(error) = handler.run_once().await {
                panic!("the projection failed: {error}");
            }
            match handler.into_projection() {
                Some(projection) => projection,
                None => unreachable!("the handler was not cloned"),
            }
        })
    }
}

/// A command's outcome in a given/when/then test: check it with [`Then::then`] or
/// [`Then::then_error`].
#[derive(Debug)]
#[must_use = "a when checks nothing until `then` or `then_error`"]
pub struct Then<A: Aggregate, E> {
    aggregate: Versioned<A>,
    decision: Result<Vec<A::Event>, E>,
}

impl<A: Aggregate, E: Debug> Then<A, E>
where
    A::Event: PartialEq,
{
    /// Asserts that the command decided exactly `expected` (in order), and returns the
    /// aggregate with them folded in, for more checks on its state.
    #[track_caller]
    pub fn then<T: Into<A::Event>>(self, expected: impl IntoIterator<Item = T>) -> Versioned<A> {
        let expected: Vec<A::Event> = expected.into_iter().map(Into::into).collect();
        let events = match self.decision {
            Ok(events) => events,
            Err(error) => panic!(
                "expected the events\n{}\nbut the command was rejected: {error:?}",
                list(&expected)
            ),
        };
        if events != expected {
            let at = events
                .iter()
                .zip(&expected)
                .take_while(|(a, b)| a == b)
                .count();
            panic!(
                "the command decided other events (the first difference at event {at}):\n\
                 expected\n{}\ndecided\n{}",
                list(&expected),
                list(&events)
            );
        }
        let mut aggregate = self.aggregate;
        fold(&mut aggregate, events);
        aggregate
    }

    /// Asserts that the command decided no events (it returned `Ok(())`, `Ok(None)`, ...), and
    /// returns the aggregate as it was.
    #[track_caller]
    pub fn then_nothing(self) -> Versioned<A> {
        self.then(std::iter::empty::<A::Event>())
    }

    /// Asserts that the command was rejected with `expected`.
    #[track_caller]
    pub fn then_error(self, expected: E)
    where
        E: PartialEq,
    {
        match self.decision {
            Err(error) if error == expected => {}
            Err(error) => panic!("expected the rejection {expected:?}, got {error:?}"),
            Ok(events) => panic!(
                "expected the rejection {expected:?}, but the command decided\n{}",
                list(&events)
            ),
        }
    }
}

/// Folds `events` into `aggregate` as a load does: through their stored JSON.
#[track_caller]
fn fold<A: Aggregate>(aggregate: &mut Versioned<A>, events: impl IntoIterator<Item = A::Event>) {
    for event in events {
        let event_type = event.event_type();
        let stored = event
            .to_json()
            .and_then(|json| A::Event::from_json(event_type, &json))
            .unwrap_or_else(|e| panic!("event `{event_type}` does not survive being stored: {e}"));
        aggregate.state.fold(stored);
        aggregate.version += 1;
    }
}

/// Events one per line, numbered, pretty-printed.
fn list<E: Event>(events: &[E]) -> String {
    if events.is_empty() {
        return "  (no events)".to_owned();
    }
    let lines: Vec<String> = events
        .iter()
        .enumerate()
        .map(|(n, event)| format!("  {n}: {}", format!("{event:#?}").replace('\n', "\n     ")))
        .collect();
    lines.join("\n")
}

/// Runs `future` to its end on a runtime of its own.
#[track_caller]
fn block_on<F: Future>(future: F) -> F::Output {
    assert!(
        tokio::runtime::Handle::try_current().is_err(),
        "given/when/then runs its own runtime: call it from a plain `#[test]`, not from async code"
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
}

#[cfg(all(test, feature = "macros"))]
mod tests {
    use std::sync::Mutex;

    use super::given;
    use crate::{Meta, Versioned, aggregate, commands, event, projection};

    #[event]
    #[derive(Debug, Clone, PartialEq)]
    pub enum TallyEvent {
        Counted { by: u32 },
    }

    #[derive(Debug, Clone, Default)]
    pub struct Tally {
        total: u32,
    }

    #[aggregate(stream = "tallies", events = TallyEvent)]
    impl Tally {
        fn counted(&mut self, event: &Counted) {
            self.total += event.by;
        }
    }

    #[derive(Debug, PartialEq)]
    pub struct TooMany;

    #[commands(client = pub TallyCommands)]
    impl Tally {
        fn count(tally: &Versioned<Self>, by: u32) -> Result<Option<Counted>, TooMany> {
            match tally.total + by {
                0 => Ok(None),
                1..=10 => Ok(Some(Counted { by })),
                _ => Err(TooMany),
            }
        }

        async fn count_twice(_: &Versioned<Self>, by: u32) -> Result<(Counted, Counted), TooMany> {
            Ok((Counted { by }, Counted { by }))
        }
    }

    #[derive(Default)]
    pub struct Totals {
        seen: Mutex<Vec<(String, u32)>>,
    }

    #[projection(bookmark = "totals", streams = ["tallies"])]
    impl Totals {
        fn counted(&self, id: &str, event: &Counted, _: &Meta) {
            self.seen.lock().unwrap().push((id.to_owned(), event.by));
        }
    }

    #[test]
    fn then_returns_the_folded_aggregate() {
        let tally = given::<Tally>([Counted { by: 2 }.into()])
            .when(|tally| Tally::count(tally, 3))
            .then([Counted { by: 3 }]);
        assert_eq!((tally.version, tally.total), (2, 5));
        given::<Tally>([])
            .when(|tally| Tally::count(tally, 0))
            .then_nothing();
        given::<Tally>([Counted { by: 9 }.into()])
            .when(|tally| Tally::count(tally, 3))
            .then_error(TooMany);
    }

    #[test]
    fn async_handlers_run_too() {
        let tally = given::<Tally>([])
            .when_async(|tally| async move { Tally::count_twice(&tally, 1).await })
            .then([Counted { by: 1 }, Counted { by: 1 }]);
        assert_eq!(tally.total, 2);
    }

    #[test]
    #[should_panic(expected = "the first difference at event 0")]
    fn other_events_fail_with_both_lists() {
        let _ = given::<Tally>([])
            .when(|tally| Tally::count(tally, 3))
            .then([Counted { by: 4 }]);
    }

    #[test]
    #[should_panic(expected = "but the command decided")]
    fn events_instead_of_a_rejection_fail() {
        given::<Tally>([])
            .when(|tally| Tally::count(tally, 3))
            .then_error(TooMany);
    }

    #[test]
    fn a_projection_reads_the_given_events() {
        let totals = given::<Tally>([Counted { by: 1 }.into(), Counted { by: 2 }.into()])
            .id("t-1")
            .project(Totals::default());
        let seen = totals.seen.into_inner().unwrap();
        assert_eq!(seen, [("t-1".to_owned(), 1), ("t-1".to_owned(), 2)]);
    }
}
