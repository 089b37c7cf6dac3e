//! Log-event lines: `Event::parse`, `Event::parse_log_line` and the downloader's history
//! (`downloader::history::parse` and `render`) on arbitrary `client.log` / `server.log` text.
//!
//! Never panics. Every event that parses prints back to a line that parses to the same event
//! (and a `download` event to the same `DownloadEvent`);
//! and an event built from arbitrary keys and values (the input read as `arbitrary` data)
//! prints to one line, alone and inside a log line, that parses back to it.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use p2p_fuzz::text;
use shared::events::{DownloadEvent, Event};

/// The time stamp and level tag `shared::logging` puts before every message.
const PREFIX: &str = "2026-11-21T18:24:31.573231155Z [INFO] ";

fuzz_target!(|data: &[u8]| {
    let log = text(data);
    for line in log.lines() {
        if let Some(event) = Event::parse(line) {
            assert_round_trip(&event);
        }
        if let Some((time, event)) = Event::parse_log_line(line) {
            assert!(!time.contains(' '));
            assert_round_trip(&event);
            // The typed event the history reads prints back to itself.
            if let Some(download) = DownloadEvent::from_event(&event) {
                let printed = download.to_event().to_string();
                let again = Event::parse(&printed).and_then(|e| DownloadEvent::from_event(&e));
                assert_eq!(again.as_ref(), Some(&download), "{printed:?}");
            }
        }
    }
    let history = downloader::history::parse(&log);
    let _ = downloader::history::render(&history);

    if let Ok(event) = ArbitraryEvent::arbitrary_take_rest(Unstructured::new(data)) {
        let event = event.into_event();
        assert_round_trip(&event);
        // Names and keys are words and values are quoted when they hold a control character:
        // no line break (as `str::lines` and the usual tools see them) reaches the log file.
        let printed = event.to_string();
        assert!(!printed.contains('\r'), "{printed:?}");
    }
});

fn assert_round_trip(event: &Event) {
    let printed = event.to_string();
    assert!(
        !printed.contains('\n'),
        "an event must print on one line: {printed:?}"
    );
    assert_eq!(Event::parse(&printed).as_ref(), Some(event), "{printed:?}");
    let line = format!("{PREFIX}{printed}");
    let (time, parsed) = Event::parse_log_line(&line).expect("a logged event parses");
    assert_eq!(time, PREFIX.split(' ').next().unwrap_or_default());
    assert_eq!(&parsed, event, "{line:?}");
}

/// An event of arbitrary name, keys and values.
#[derive(Debug, Arbitrary)]
struct ArbitraryEvent {
    name: String,
    fields: Vec<(String, String)>,
}

impl ArbitraryEvent {
    /// The event, with the name and keys made into words as the programs write them (non-empty,
    /// no white space, no `=`: the format's only rule for them); values stay as they are.
    fn into_event(self) -> Event {
        let word = |text: &str| {
            let word: String = text
                .chars()
                .filter(|&c| !c.is_whitespace() && c != '=')
                .collect();
            if word.is_empty() {
                "x".to_owned()
            } else {
                word
            }
        };
        let mut event = Event::new(&word(&self.name));
        for (key, value) in &self.fields {
            event = event.with(&word(key), value);
        }
        event
    }
}
