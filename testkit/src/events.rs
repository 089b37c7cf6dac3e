//! Reading the programs' logs back: the typed events of `server.log` / `client.log`, as
//! `shared::events` writes them, and picking the ones a test looks for.

use std::fs;
use std::path::Path;

use shared::events::Event;

/// Reads the events of a log file (none if it does not exist yet).
pub fn read_events(path: &Path) -> Vec<Event> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| Event::parse_log_line(line).map(|(_, event)| event))
        .collect()
}

/// The events named `name` whose fields include every `(key, value)` of `fields`.
pub fn matching<'a>(events: &'a [Event], name: &str, fields: &[(&str, &str)]) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.name == name && fields.iter().all(|(k, v)| e.get(k) == Some(*v)))
        .collect()
}

/// The events, one per line, for failure messages.
pub fn show_events(events: &[Event]) -> String {
    events.iter().map(|e| format!("  {e}\n")).collect()
}
