//! One module per command.

pub mod bookmark;
pub mod export;
pub mod import;
pub mod migrate;
pub mod show;
pub mod status;
pub mod tail;

/// Stream names given as `a,b` or as several values.
pub fn stream_list(given: &[String]) -> Vec<String> {
    given
        .iter()
        .flat_map(|names| names.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `n` and the noun, in the plural unless `n` is 1: "1 event", "3 events".
pub fn counted(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}
