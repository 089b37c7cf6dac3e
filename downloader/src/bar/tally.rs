//! The tally of one download's [`Progress`] events: bytes here, resumed and moved, who is
//! sending, and who failed and why; the numbers the bar, the plain lines, the final line and the
//! failure summary share (`bar`). Pure: no terminal here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::download::{Progress, Transfer};

/// One holder's failure to deliver one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    /// `user@address`.
    pub(super) holder: String,
    /// Why, in one line.
    pub(super) reason: String,
}

/// What the events of one download add up to.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Size of the file, when announced.
    pub(super) total: Option<u64>,
    /// Bytes of each chunk kept or received, by index.
    pub(super) done: BTreeMap<u8, u64>,
    /// Bytes that were here before this run: chunks kept, and the start of part files continued,
    /// by index.
    pub(super) resumed: BTreeMap<u8, u64>,
    /// The transfers in flight, as last reported.
    pub(super) flights: Vec<Transfer>,
    /// Failed attempts, by chunk index, one per holder (the latest reason).
    pub(super) failures: BTreeMap<u8, Vec<Failure>>,
    /// Holders that could not be used at all, with why.
    pub(super) unusable: BTreeMap<String, String>,
    /// Chunks no holder could deliver, as named in the events.
    pub(super) unavailable: Vec<(u8, String)>,
}

impl Tally {
    /// Takes in one event.
    pub(super) fn add(&mut self, progress: &Progress) {
        match progress {
            Progress::Started { .. } => {}
            Progress::ChunkKept { index, bytes } => {
                self.done.insert(*index, *bytes);
                self.resumed.insert(*index, *bytes);
            }
            Progress::Transfers(flights) => {
                for t in flights {
                    if t.resumed > 0 {
                        let seen = self.resumed.entry(t.index).or_default();
                        *seen = (*seen).max(t.resumed);
                    }
                }
                self.flights.clone_from(flights);
            }
            Progress::ChunkDone {
                index,
                bytes,
                resumed,
                ..
            } => {
                self.done.insert(*index, *bytes);
                if *resumed > 0 {
                    self.resumed.insert(*index, *resumed);
                }
                self.flights.retain(|t| t.index != *index);
            }
            Progress::AttemptFailed {
                index,
                holder,
                reason,
            } => {
                let list = self.failures.entry(*index).or_default();
                list.retain(|f| f.holder != *holder);
                list.push(Failure {
                    holder: holder.clone(),
                    reason: reason.clone(),
                });
            }
            Progress::HolderFailed { holder, reason } => {
                self.unusable.insert(holder.clone(), reason.clone());
            }
            Progress::ChunkUnavailable { chunk } => {
                if !self.unavailable.iter().any(|(i, _)| *i == chunk.index()) {
                    self.unavailable.push((chunk.index(), chunk.to_string()));
                }
            }
        }
    }

    /// Bytes of the file here now: chunks done, and the furthest copy of each chunk in flight.
    pub(super) fn here(&self) -> u64 {
        let mut furthest: BTreeMap<u8, u64> = BTreeMap::new();
        for t in self
            .flights
            .iter()
            .filter(|t| !self.done.contains_key(&t.index))
        {
            let f = furthest.entry(t.index).or_default();
            *f = (*f).max(t.bytes);
        }
        self.done.values().sum::<u64>() + furthest.values().sum::<u64>()
    }

    /// Bytes that were here before this run.
    pub(super) fn resumed(&self) -> u64 {
        self.resumed.values().sum()
    }

    /// Bytes moved by this run.
    pub(super) fn moved(&self) -> u64 {
        self.here().saturating_sub(self.resumed())
    }

    /// How many holders are sending right now.
    pub(super) fn sending(&self) -> usize {
        let holders: BTreeSet<&str> = (self.flights.iter())
            .filter(|t| t.bytes > t.resumed)
            .map(|t| t.holder.as_str())
            .collect();
        holders.len()
    }
}

/// Bytes per second, from `bytes` in `elapsed`.
pub(super) fn rate(bytes: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs < 0.05 {
        return 0;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // display only
    let rate = (bytes as f64 / secs) as u64;
    rate
}

/// `3s`, `2m05s`, `1h02m`.
pub(super) fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(index: u8, holder: &str, resumed: u64, bytes: u64) -> Transfer {
        Transfer {
            index,
            holder: holder.into(),
            resumed,
            bytes,
        }
    }

    #[test]
    fn the_tally_counts_resumed_bytes_apart_from_those_moved() {
        let mut tally = Tally::default();
        tally.add(&Progress::ChunkKept {
            index: 1,
            bytes: 100,
        });
        tally.add(&Progress::Transfers(vec![
            transfer(2, "a@x", 40, 60),
            transfer(3, "b@y", 0, 10),
            // An endgame copy of chunk 3, behind the first: the furthest counts.
            transfer(3, "a@x", 0, 5),
            transfer(4, "c@z", 0, 0),
        ]));
        assert_eq!(tally.here(), 170);
        assert_eq!(tally.resumed(), 140);
        assert_eq!(tally.moved(), 30);
        assert_eq!(tally.sending(), 2, "c has sent nothing yet");
        tally.add(&Progress::ChunkDone {
            index: 2,
            holder: "a@x".into(),
            bytes: 100,
            resumed: 40,
            millis: 5,
            verified: true,
        });
        assert_eq!(tally.here(), 100 + 100 + 10);
        assert_eq!(tally.sending(), 2, "b, and a's endgame copy of chunk 3");
    }

    #[test]
    fn one_failure_per_holder_and_chunk() {
        let mut tally = Tally::default();
        for reason in ["refused", "refused again"] {
            tally.add(&Progress::AttemptFailed {
                index: 2,
                holder: "a@x".into(),
                reason: reason.into(),
            });
        }
        assert_eq!(tally.failures[&2].len(), 1);
        assert_eq!(tally.failures[&2][0].reason, "refused again");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(125), "2m05s");
        assert_eq!(duration(3720), "1h02m");
        assert_eq!(rate(0, Duration::from_millis(1)), 0);
        assert_eq!(rate(1000, Duration::from_secs(2)), 500);
    }
}
