//! The "host" API of the whole-system tests: what a test does with its network of machines,
//! whether they are loopback peers ([`crate::loopback::TestNet`]) or network-namespace hosts
//! ([`crate::netns::Lab`]). Both bound every wait by the test's deadline, and both answer the
//! same questions about their machines ([`Node`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shared::chunk::ChunkSet;
use shared::digest::Digest;
use shared::events::Event;
use shared::tags::TagEntry;

use crate::events::{matching, show_events};
use crate::node::Node;
use crate::wait::{self, WAIT};

/// One test's network of machines, with the deadline its test must finish by.
pub trait Network {
    /// When the test's budget runs out: no wait goes past it.
    fn deadline(&self) -> Instant;

    /// Polls `cond` until it returns `Ok`, for at most `timeout` (and never past the test's
    /// deadline). `Err` carries a description of what was seen instead.
    ///
    /// # Panics
    /// On timeout, with `what` and the last thing `cond` saw (and, when the network is dropped
    /// in the unwinding, every machine's diagnostics).
    fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        cond: impl FnMut() -> Result<T, String>,
    ) -> T {
        wait::wait_until((Instant::now() + timeout).min(self.deadline()), what, cond)
    }

    /// Checks `cond` for `period` (never past the deadline): it must hold all along.
    ///
    /// # Panics
    /// The first time it does not, with `what` and what `cond` saw.
    fn holds_for(&self, period: Duration, what: &str, cond: impl FnMut() -> Result<(), String>) {
        wait::holds_for((Instant::now() + period).min(self.deadline()), what, cond);
    }

    /// Waits until `viewer`'s `tags.txt` lists `user` with all five chunks of `content` at
    /// `holder`'s chunk server, identified by `sha256`, and returns the entry.
    ///
    /// The digest is part of the wait, not only of the check: an entry without it can show up
    /// for a moment while the holder's chunk server is still writing the manifest.
    fn wait_for_entry(
        &self,
        viewer: &Node,
        holder: &Node,
        user: &str,
        content: &str,
        sha256: Digest,
    ) -> TagEntry {
        self.wait_for_entry_at(viewer, holder.chunk_addr(), user, content, sha256)
    }

    /// [`Network::wait_for_entry`] for a holder known only by its address (a fake one).
    fn wait_for_entry_at(
        &self,
        viewer: &Node,
        addr: SocketAddr,
        user: &str,
        content: &str,
        sha256: Digest,
    ) -> TagEntry {
        self.wait_until(
            WAIT,
            &format!(
                "{}/tags.txt lists user {user} at {addr} with chunks 12345 of {content:?} \
                 (sha256 {sha256})",
                viewer.name
            ),
            || {
                let tags = viewer.tags()?;
                tags.entries
                    .iter()
                    .find(|e| {
                        e.user == user
                            && e.addr == addr
                            && e.content == content
                            && e.chunks == ChunkSet::ALL
                            && e.sha256 == Some(sha256)
                    })
                    .cloned()
                    .ok_or_else(|| format!("tags.txt is:\n{tags}"))
            },
        )
    }
}

/// Waits until `holder`'s `server.log` has a `served ... outcome=ok` event for each of the five
/// chunks of `content`, and returns them (the first per chunk).
pub fn wait_for_served_all(net: &impl Network, holder: &Node, content: &str) -> Vec<Event> {
    net.wait_until(
        WAIT,
        &format!(
            "{}/server.log has served chunk={content}_1..5 outcome=ok",
            holder.name
        ),
        || {
            let events = holder.server_events();
            (1..=5)
                .map(|i| {
                    matching(
                        &events,
                        "served",
                        &[("chunk", &format!("{content}_{i}")), ("outcome", "ok")],
                    )
                    .first()
                    .map(|e| (*e).clone())
                    .ok_or_else(|| {
                        format!(
                            "no served chunk={content}_{i}; events:\n{}",
                            show_events(&events)
                        )
                    })
                })
                .collect()
        },
    )
}

/// Asserts that `client`'s `client.log` has a `fetched ... outcome=ok` event for each of the
/// five chunks of `content` and a `download ... outcome=ok` event; returns the fetched events
/// that succeeded, by chunk, and the download event.
pub fn assert_fetched_all(client: &Node, content: &str) -> (Vec<Event>, Event) {
    let events = client.client_events();
    let fetched = (1..=5)
        .map(|i| {
            matching(
                &events,
                "fetched",
                &[
                    ("content", content),
                    ("chunk", &i.to_string()),
                    ("outcome", "ok"),
                ],
            )
            .first()
            .map(|e| (*e).clone())
            .unwrap_or_else(|| {
                panic!(
                    "{}/client.log: no `fetched content={content} chunk={i} outcome=ok`; \
                     events:\n{}",
                    client.name,
                    show_events(&events)
                )
            })
        })
        .collect();
    let download = matching(
        &events,
        "download",
        &[("content", content), ("outcome", "ok")],
    )
    .last()
    .map(|e| (*e).clone())
    .unwrap_or_else(|| {
        panic!(
            "{}/client.log: no `download content={content} outcome=ok`; events:\n{}",
            client.name,
            show_events(&events)
        )
    });
    (fetched, download)
}
