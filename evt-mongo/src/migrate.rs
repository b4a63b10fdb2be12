//! The indexes evtstore's `migrate` creates, made only where no index with the same keys exists.

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

use evt_core::Error;

/// The indexes, by evtstore's names: `(collection is events, name, keys)`; all unique.
fn indexes() -> [(bool, &'static str, Document); 3] {
    [
        (false, "bookmark-index", doc! {"bookmark": 1}),
        (
            true,
            "stream-position-index",
            doc! {"stream": 1, "position": 1},
        ),
        (
            true,
            "stream-id-version-index",
            doc! {"stream": 1, "aggregateId": 1, "version": 1},
        ),
    ]
}

/// Creates the missing indexes and says which it created.
pub(crate) async fn migrate(
    events: &Collection<Document>,
    bookmarks: &Collection<Document>,
) -> Result<Vec<String>, Error> {
    let mut changes = Vec::new();
    for (on_events, name, keys) in indexes() {
        let collection = if on_events { events } else { bookmarks };
        let failed =
            |operation: String| move |e: mongodb::error::Error| Error::provider(operation, e);
        // An index with the same keys under another name (evt 0.1's `bookmark_1`, an
        // operator's) is as good: creating ours beside it would fail (IndexOptionsConflict).
        let existing: Vec<IndexModel> = match collection.list_indexes().await {
            Ok(cursor) => cursor.try_collect().await.map_err(failed(format!(
                "list the indexes of `{}`",
                collection.name()
            )))?,
            // A collection that does not exist yet has none.
            Err(error) if is_namespace_not_found(&error) => Vec::new(),
            Err(error) => {
                return Err(failed(format!(
                    "list the indexes of `{}`",
                    collection.name()
                ))(error));
            }
        };
        if let Some(model) = existing.iter().find(|model| model.keys == keys) {
            let unique = model
                .options
                .as_ref()
                .and_then(|options| options.unique)
                .unwrap_or(false);
            if !unique {
                return Err(Error::provider(
                    format!("check the index {keys} on `{}`", collection.name()),
                    "it exists but is not unique; drop it, and `migrate` makes a unique one",
                ));
            }
            continue;
        }
        let model = IndexModel::builder()
            .keys(keys.clone())
            .options(
                IndexOptions::builder()
                    .name(name.to_owned())
                    .unique(true)
                    .build(),
            )
            .build();
        collection
            .create_index(model)
            .await
            .map_err(failed(format!(
                "create the index `{name}` {keys} on `{}`",
                collection.name()
            )))?;
        changes.push(format!(
            "created the unique index `{name}` {keys} on `{}`",
            collection.name()
        ));
    }
    Ok(changes)
}

fn is_namespace_not_found(error: &mongodb::error::Error) -> bool {
    const NAMESPACE_NOT_FOUND: i32 = 26;
    matches!(error.kind.as_ref(), mongodb::error::ErrorKind::Command(command) if command.code == NAMESPACE_NOT_FOUND)
}
