//! `evt migrate`: creates or updates the schema.

use crate::connection::Store;
use crate::failure::Failure;

/// Runs the provider's migration and prints each change, or that there was none.
pub async fn run(store: &Store) -> Result<(), Failure> {
    let changes = store
        .migrate()
        .await
        .map_err(|e| Failure::failed("migrate", e))?;
    if changes.is_empty() {
        println!("up to date");
    }
    for change in changes {
        println!("{change}");
    }
    Ok(())
}
