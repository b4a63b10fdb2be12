//! What handlers read: history by position below a cut a safe margin in the past, then a change
//! stream opened now (with reads by position of what committed before it), in commit order;
//! resumed by its token. The crate's docs give the argument.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use evt_core::{Checkpoint, Error, Provider, StoredEvent};
use futures_util::StreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::ResumeToken;
use mongodb::error::ErrorKind;
use mongodb::options::ReadConcern;

use crate::MongoProvider;
use crate::documents::{seconds_before, stored_event, timestamp};

/// How many open change streams a provider keeps for handlers to go on with.
const OPEN_TAILS: usize = 32;

/// How long a change stream's read waits for new events before it says there are none.
const TAIL_WAIT: Duration = Duration::from_millis(1);

/// How long a read waits at most for the change stream to give an event that a read by
/// position already shows.
const STREAM_CATCH_UP: Duration = Duration::from_secs(2);

/// A change stream a handler is reading, kept between its pages.
pub(crate) struct Tail {
    streams: Vec<String>,
    /// The checkpoint of the last event it gave: the next read after it goes on here.
    after: Checkpoint,
    changes: ChangeStream<Document>,
    /// Where it stands: what the checkpoints of its events carry.
    resume: Resume,
    /// While `resume.recent`: the position the reads by position go on after.
    recent_after: u64,
    /// Events those reads gave, which the stream may give again.
    delivered: HashSet<(String, String, u64)>,
}

/// An event's place: stream, aggregate id, version.
fn place(event: &StoredEvent) -> (String, String, u64) {
    let meta = &event.meta;
    (meta.stream.clone(), meta.aggregate_id.clone(), meta.version)
}

/// The resume point of a MongoDB checkpoint, kept as extended JSON
/// `{"token": .., "since": .., "recent": true?}`.
struct Resume {
    /// The change stream's token to go on after.
    token: Bson,
    /// Still reading by position what committed before the stream opened (`token` is then the
    /// stream's first token).
    recent: bool,
    /// No event left to give has a position below `since` minus the commit margin: the highest
    /// position the stream gave (at most its token's time), or the cut when it opened. Where a
    /// handler reads again from when the token is refused.
    since: u64,
    /// While `recent`: every event that committed before the stream opened has a position below
    /// this (the server's clock after it opened, plus a second).
    before: u64,
    /// A random id of the reader that opened the stream, so that two handlers reading the same
    /// streams never go on with each other's stream (their deduplication differs).
    reader: i64,
}

impl Resume {
    fn parse(text: &str, position: u64) -> Result<Resume, String> {
        let bson = token_bson(text)?;
        Ok(match bson {
            Bson::Document(mut document) if document.contains_key("token") => Resume {
                token: document.remove("token").unwrap_or_default(),
                recent: document.get_bool("recent").unwrap_or(false),
                since: crate::documents::read_position(&document, "since").unwrap_or(0),
                before: crate::documents::read_position(&document, "before").unwrap_or(u64::MAX),
                reader: document.get_i64("reader").unwrap_or_default(),
            },
            // A bare token (as a checkpoint may be set by hand): its position is the bound.
            token => Resume {
                token,
                recent: false,
                since: position,
                before: u64::MAX,
                reader: 0,
            },
        })
    }

    fn text(&self) -> String {
        let mut document = doc! {
            "token": self.token.clone(),
            "since": self.since as i64,
            "reader": self.reader,
        };
        if self.recent {
            document.insert("recent", true);
            document.insert("before", self.before.min(i64::MAX as u64) as i64);
        }
        token_text(&Bson::Document(document))
    }
}

/// The change streams handlers are reading, shared by a provider's clones.
#[derive(Default, Clone)]
pub(crate) struct Tails(Arc<Mutex<Vec<Tail>>>);

impl std::fmt::Debug for Tails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tails").finish_non_exhaustive()
    }
}

impl Tails {
    fn take(&self, streams: &[&str], after: &Checkpoint) -> Option<Tail> {
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let found = open
            .iter()
            .position(|tail| tail.after == *after && tail.streams == streams)?;
        Some(open.swap_remove(found))
    }

    /// Keeps `tail` for the read that goes on from `tail.after`, unless that is a position alone
    /// (which another handler of the same streams may hold too: the next read opens anew).
    fn put(&self, tail: Tail) {
        if tail.after.resume.is_none() {
            return;
        }
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= OPEN_TAILS {
            open.remove(0);
        }
        open.push(tail);
    }
}

/// A resume token as the text kept in a checkpoint (extended JSON).
pub(crate) fn token_text(token: &Bson) -> String {
    token.clone().into_relaxed_extjson().to_string()
}

/// The token back from its text.
pub(crate) fn token_bson(text: &str) -> Result<Bson, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("malformed resume token `{text}`: {e}"))?;
    Bson::try_from(value).map_err(|e| format!("malformed resume token `{text}`: {e}"))
}

/// Whether the server refused the stream for good: its history is gone from the oplog
/// (ChangeStreamHistoryLost, 286), the token is unknown, or malformed; not a lost connection, an
/// election or a shutdown, which the driver labels resumable.
fn refused(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Command(_) => !error.contains_label("ResumableChangeStreamError"),
        ErrorKind::Custom(_) => true,
        _ => false,
    }
}

impl MongoProvider {
    fn pipeline(streams: &[&str]) -> Vec<Document> {
        vec![doc! {"$match": {
            "operationType": "insert",
            "fullDocument.stream": {"$in": streams},
        }}]
    }

    /// A change stream of the inserts into `streams`, from now or after a resume token.
    async fn open_changes(
        &self,
        streams: &[&str],
        resume: Option<&Bson>,
    ) -> Result<ChangeStream<Document>, mongodb::error::Error> {
        let mut watch = self
            .events
            .watch()
            .pipeline(Self::pipeline(streams))
            .max_await_time(TAIL_WAIT);
        if let Some(token) = resume {
            let token = bson::from_bson::<ResumeToken>(token.clone())
                .map_err(mongodb::error::Error::custom)?;
            watch = watch.resume_after(token);
        }
        Ok(watch.await?.with_type::<Document>())
    }

    /// The server's clock, as a position with its seconds.
    async fn server_now(&self) -> Result<u64, mongodb::error::Error> {
        let hello = self.database.run_command(doc! {"hello": 1}).await?;
        let seconds = match hello.get("localTime") {
            Some(Bson::DateTime(now)) => now.timestamp_millis() / 1000,
            _ => {
                return Err(mongodb::error::Error::custom(
                    "the server's `hello` has no `localTime`",
                ));
            }
        };
        Ok((seconds.max(0) as u64) << 32)
    }

    pub(crate) async fn read_feed(
        &self,
        streams: &[&str],
        from: &Checkpoint,
        limit: usize,
    ) -> Result<Vec<(Arc<StoredEvent>, Checkpoint)>, Error> {
        let operation = || format!("read events of {streams:?} after {from:?}");
        let mut out = Vec::new();
        let mut checkpoint = from.clone();
        let mut tail = self.tails.take(streams, from);
        if tail.is_none()
            && let Some(resume) = &from.resume
        {
            let resume = Resume::parse(resume, from.position);
            let since = resume.as_ref().map_or(0, |resume| resume.since);
            let opened = match resume {
                Ok(resume) => self
                    .open_changes(streams, Some(&resume.token))
                    .await
                    .map(|changes| (changes, resume)),
                Err(problem) => Err(mongodb::error::Error::custom(problem)),
            };
            match opened {
                Ok((changes, resume)) => {
                    tail = Some(Tail {
                        streams: streams.iter().map(|s| (*s).to_owned()).collect(),
                        after: from.clone(),
                        changes,
                        resume,
                        recent_after: from.position,
                        delivered: HashSet::new(),
                    });
                }
                // The server refuses the token: its history is gone from the oplog, or the
                // token is not one it knows (another server, a restored backup).
                Err(error) if refused(&error) => {
                    let margin = self.commit_margin.as_secs();
                    tracing::warn!(
                        %error,
                        position = from.position,
                        since,
                        margin_seconds = margin,
                        "the change stream cannot resume (its history is gone from the oplog); \
                         reading again from {margin} s before the last position it gave: events \
                         of that window are handled again"
                    );
                    checkpoint = Checkpoint::at(seconds_before(since, margin));
                }
                Err(error) => return Err(Error::transient(operation(), error)),
            }
        }
        let mut tail = match tail {
            Some(tail) => tail,
            None => {
                let mut recent_after = checkpoint.position;
                // 1. History by position, below a cut far enough in the past that every event
                //    below it has committed. A checkpoint there needs no resume point.
                let now = self
                    .server_now()
                    .await
                    .map_err(|e| Error::transient(operation(), e))?;
                let cut = seconds_before(now, self.commit_margin.as_secs());
                if checkpoint.position < cut {
                    let history = self
                        .find_events(
                            operation,
                            doc! {
                                "stream": {"$in": streams},
                                "position": {"$gt": timestamp(checkpoint.position), "$lt": timestamp(cut)},
                            },
                            doc! {"position": 1},
                            limit,
                            Some(ReadConcern::majority()),
                        )
                        .await?;
                    for event in history {
                        checkpoint = Checkpoint::at(event.meta.position);
                        out.push((event, checkpoint.clone()));
                    }
                    if out.len() == limit {
                        return Ok(out);
                    }
                    recent_after = recent_after.max(cut.saturating_sub(1));
                }
                // 2. A change stream opened now: whatever commits from here on comes through
                //    it. What committed before is visible to reads by position made after it
                //    opened ("recent" reads); an event both read and streamed is handled once.
                let changes = self
                    .open_changes(streams, None)
                    .await
                    .map_err(|e| Error::transient(operation(), e))?;
                let token = changes.resume_token().ok_or_else(|| {
                    Error::provider(operation(), "the new change stream has no resume token")
                })?;
                let token = bson::to_bson(&token).map_err(|e| Error::provider(operation(), e))?;
                // Reads by position stop below the stream's opening (a second of slack): what
                // took a later position committed after it and comes through the stream, in
                // commit order.
                let before = self
                    .server_now()
                    .await
                    .map_err(|e| Error::transient(operation(), e))?
                    + (1 << 32);
                Tail {
                    streams: streams.iter().map(|s| (*s).to_owned()).collect(),
                    after: checkpoint.clone(),
                    changes,
                    resume: Resume {
                        token,
                        recent: true,
                        since: cut,
                        before,
                        reader: evt_core::__private::util::append_id(),
                    },
                    recent_after,
                    delivered: HashSet::new(),
                }
            }
        };
        if tail.resume.recent {
            let wanted = limit - out.len();
            let recent = self
                .find_events(
                    operation,
                    doc! {
                        "stream": {"$in": streams},
                        "position": {"$gt": timestamp(tail.recent_after), "$lt": timestamp(tail.resume.before)},
                    },
                    doc! {"position": 1},
                    wanted,
                    Some(ReadConcern::majority()),
                )
                .await?;
            let done = recent.len() < wanted;
            for event in recent {
                tail.recent_after = tail.recent_after.max(event.meta.position);
                tail.delivered.insert(place(&event));
                checkpoint = Checkpoint::resuming(
                    checkpoint.position.max(event.meta.position),
                    tail.resume.text(),
                );
                out.push((event, checkpoint.clone()));
            }
            tail.resume.recent = !done;
        }
        // Until the stream has given what a read by position already shows (a change stream
        // can trail an acknowledged write by a moment), so that a read right after an append
        // finds it; bounded, since a lagging stream only delays.
        let mut catch_up_until = None;
        while !tail.resume.recent && out.len() < limit {
            let change = match tail.changes.next_if_any().await {
                Ok(Some(change)) => change,
                Ok(None) => {
                    let deadline = match catch_up_until {
                        Some(deadline) => deadline,
                        None => {
                            let ahead = self
                                .events
                                .find_one(doc! {
                                    "stream": {"$in": streams},
                                    "position": {"$gt": timestamp(checkpoint.position)},
                                })
                                .projection(doc! {"_id": 1})
                                .await
                                .map_err(|e| Error::transient(operation(), e))?;
                            if ahead.is_none() {
                                break;
                            }
                            *catch_up_until.insert(tokio::time::Instant::now() + STREAM_CATCH_UP)
                        }
                    };
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    continue;
                }
                Err(error) => {
                    // Dropped: the next read opens a new stream from the last checkpoint.
                    if out.is_empty() {
                        return Err(Error::transient(operation(), error));
                    }
                    return Ok(out);
                }
            };
            let (Some(token), Ok(document)) =
                (change.get("_id"), change.get_document("fullDocument"))
            else {
                return Err(Error::provider(
                    operation(),
                    format!("a change event without `_id` or `fullDocument`: {change}"),
                ));
            };
            let event = stored_event(document)?;
            // What the wait was for may be this event: the next empty poll looks again (the
            // wait ran its whole bound after the event came, 2 s more for a handler).
            catch_up_until = None;
            tail.resume.token = token.clone();
            tail.resume.since = tail.resume.since.max(event.meta.position);
            checkpoint = Checkpoint::resuming(
                checkpoint.position.max(event.meta.position),
                tail.resume.text(),
            );
            if !tail.delivered.is_empty() && tail.delivered.remove(&place(&event)) {
                continue;
            }
            out.push((Arc::new(event), checkpoint.clone()));
        }
        tail.after = out.last().map_or(from.clone(), |(_, after)| after.clone());
        self.tails.put(tail);
        Ok(out)
    }

    /// Where a tailing handler starts: a change stream opened now, and the last position read
    /// after it opened (so that an event committing in between comes through the stream and
    /// no read waits for it).
    pub(crate) async fn feed_end(&self, streams: &[&str]) -> Result<Checkpoint, Error> {
        let operation = || format!("open a change stream of {streams:?}");
        let changes = self
            .open_changes(streams, None)
            .await
            .map_err(|e| Error::transient(operation(), e))?;
        let last = self.last_position(streams).await?;
        let Some(token) = changes.resume_token() else {
            return Ok(Checkpoint::at(last));
        };
        let token = bson::to_bson(&token).map_err(|e| Error::provider(operation(), e))?;
        let since = seconds_before(
            self.server_now()
                .await
                .map_err(|e| Error::transient(operation(), e))?,
            self.commit_margin.as_secs(),
        );
        let resume = Resume {
            token,
            recent: false,
            since,
            before: 0,
            reader: evt_core::__private::util::append_id(),
        };
        let checkpoint = Checkpoint::resuming(last, resume.text());
        self.tails.put(Tail {
            streams: streams.iter().map(|s| (*s).to_owned()).collect(),
            after: checkpoint.clone(),
            changes,
            resume,
            recent_after: 0,
            delivered: HashSet::new(),
        });
        Ok(checkpoint)
    }

    /// Starts (once per provider and its clones) a task that follows every insert into the
    /// events collection and says so through `appended`: how handlers in this process learn of
    /// appends from any process within milliseconds.
    pub(crate) fn watch_appends(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let events = self.events.clone();
        let appended = self.appended.clone();
        let watching = self.watching.clone();
        runtime.spawn(async move {
            // Until no handler listens any more; the next `subscribe` starts it again.
            let _running = Running(watching);
            let mut resume: Option<ResumeToken> = None;
            loop {
                let opened = events
                    .watch()
                    .pipeline([
                        doc! {"$match": {"operationType": "insert"}},
                        doc! {"$project": {"_id": 1}},
                    ])
                    .resume_after(resume.clone())
                    .await;
                match opened.map(|changes| changes.with_type::<Document>()) {
                    Ok(mut changes) => loop {
                        tokio::select! {
                            () = appended.closed() => return,
                            change = changes.next() => match change {
                                Some(Ok(_)) => {
                                    appended.send_modify(|count| *count += 1);
                                    resume = changes.resume_token();
                                }
                                Some(Err(error)) => {
                                    tracing::warn!(%error, "the change stream of appends failed; reopening it in 1 s (handlers poll meanwhile)");
                                    if refused(&error) {
                                        resume = None;
                                    }
                                    break;
                                }
                                None => break,
                            },
                        }
                    },
                    Err(error) => {
                        tracing::warn!(%error, "cannot open the change stream of appends; trying again in 1 s (handlers poll meanwhile)");
                        if refused(&error) {
                            resume = None;
                        }
                    }
                }
                tokio::select! {
                    () = appended.closed() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }
}

/// Clears the provider's "watching" flag when the watching task ends.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_text() {
        let token = Bson::Document(doc! {"_data": "8265A1B2C3000000012B0229296E04"});
        assert_eq!(token_bson(&token_text(&token)).unwrap(), token);
        assert!(token_bson("not json").is_err());
    }
}
