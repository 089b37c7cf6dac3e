//! The test kit: everything the workspace's tests share, written once. Dev-only (`publish =
//! false`); the crates' `tests/` and the whole-system tests of `e2e/` use it as a
//! dev-dependency.
//!
//! Layout, from the bottom up:
//! - [`wait`]: deadlines and bounded polls instead of sleeps.
//! - [`process`]: the binary locator, child guards (kill by PID), signals, a chunk-server process.
//! - [`ports`], [`files`], [`events`]: free ports and listening checks, test data and file
//!   comparison, log events read back.
//! - [`instance`]: the chunk server's record in the peer folder, a second program refused.
//! - [`servers`]: chunk server, listener and announcer `run` in a thread of the test.
//! - [`client`]: raw and extended clients of a chunk server.
//! - [`announce`]: announcement builders, a UDP peer, a receiver, a flood.
//! - [`fake_holder`]: one fake holder of our protocol with every misbehaviour;
//!   [`fake_catalog`]: a fake chunk server answering catalog requests, honestly or not.
//! - [`legacy`]: a legacy peer (the course's Python implementations, imitated).
//! - [`network`], [`node`], [`loopback`], [`netns`]: the host API of the whole-system tests, a
//!   machine's folder and programs, and its loopback and network-namespace implementations.
//!
//! Every wait here is bounded and every child is killed by its handle: no test can hang, and no
//! test kills anything it did not start.

#![deny(missing_docs)]

pub mod announce;
pub mod client;
pub mod events;
pub mod fake_catalog;
pub mod fake_holder;
pub mod files;
pub mod instance;
pub mod legacy;
pub mod loopback;
pub mod netns;
pub mod network;
pub mod node;
pub mod ports;
pub mod process;
pub mod servers;
pub mod wait;

/// What a whole-system test on loopback peers uses, in one `use testkit::prelude::*`.
pub mod prelude {
    pub use crate::events::{matching, read_events, show_events};
    pub use crate::files::{
        assert_same_file, file_digest, files_under, list_files, random_bytes, tail,
        write_random_file,
    };
    pub use crate::loopback::{Peer, TestNet, ANNOUNCE_INTERVAL_SECS};
    pub use crate::network::{assert_fetched_all, wait_for_served_all, Network};
    pub use crate::node::{
        network_key, Node, RunningDownloader, DOWNLOADER_TIMEOUT, OTHER_PHRASE, TEST_PHRASE,
    };
    pub use crate::ports::{free_tcp_port, free_udp_port, tcp_listening, udp_bound};
    pub use crate::process::{
        all_output, assert_success, describe_output, kill_and_reap, printed_path, signal, Program,
    };
    pub use crate::wait::{wait_until, POLL, WAIT};
}
