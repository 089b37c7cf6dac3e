//! Why a request gets no data, and how that is told: a [`Refusal`] carries the
//! [`Outcome`] logged in the `refused` event and becomes the protocol's error reply; requests
//! that could not even be read map to an outcome here too ([`read_refusal`]).

use std::net::SocketAddr;

use shared::connection::ConnectionError;
use shared::events::{Event, Outcome};
use shared::protocol::{ErrorCode, Response};

/// Longest raw request name copied into a log line.
const MAX_LOGGED_NAME: usize = 256;

/// Why a request gets no data.
#[derive(Debug)]
pub(super) struct Refusal {
    /// The `outcome` of the `refused` event.
    pub(super) outcome: Outcome,
    /// The `reason` of the event, and the message of the error reply.
    pub(super) reason: String,
}

impl Refusal {
    /// A refusal with its outcome and reason.
    pub(super) fn new(outcome: Outcome, reason: impl Into<String>) -> Refusal {
        Refusal {
            outcome,
            reason: reason.into(),
        }
    }

    /// The error reply of our protocol for this refusal.
    pub(super) fn response(&self) -> Response {
        let code = match self.outcome {
            Outcome::BadRequest | Outcome::Malformed | Outcome::TooLarge => ErrorCode::BadRequest,
            Outcome::NotFound => ErrorCode::NotFound,
            Outcome::WrongContent => ErrorCode::WrongContent,
            Outcome::PrivateNetwork => ErrorCode::PrivateNetwork,
            Outcome::NotAllowed => ErrorCode::NotAllowed,
            // `busy`, `error`, and the words of the downloader's side, which no refusal uses.
            _ => ErrorCode::Internal,
        };
        Response::Error {
            code,
            message: self.reason.clone(),
        }
    }
}

/// The outcome and reason of a request that could not be read.
pub(super) fn read_refusal(err: &ConnectionError) -> (Outcome, String) {
    match err {
        ConnectionError::Empty => (Outcome::Empty, err.to_string()),
        ConnectionError::Timeout(waited) => (
            Outcome::Timeout,
            format!("no complete request {waited:.1?} after the connection was accepted"),
        ),
        ConnectionError::Malformed(_) => (Outcome::Malformed, err.to_string()),
        ConnectionError::TooLarge(_) => (Outcome::TooLarge, err.to_string()),
        ConnectionError::Truncated => (Outcome::Malformed, err.to_string()),
        ConnectionError::Io(e) | ConnectionError::Sink(e) => {
            (Outcome::Error, format!("cannot read the request: {e}"))
        }
    }
}

/// A raw request name, shortened for a log line.
pub(super) fn loggable(raw: &str) -> String {
    if raw.len() <= MAX_LOGGED_NAME {
        return raw.to_owned();
    }
    let mut end = MAX_LOGGED_NAME;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &raw[..end])
}

/// Logs one `refused` event.
pub(crate) fn log_refused(peer: SocketAddr, outcome: Outcome, chunk: Option<&str>, reason: &str) {
    let mut event = Event::new("refused")
        .with("peer", peer)
        .with("outcome", outcome);
    if let Some(chunk) = chunk {
        event = event.with("chunk", loggable(chunk));
    }
    log::info!("{}", event.with("reason", reason));
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::protocol::DecodeError;
    use std::io;
    use std::time::Duration;

    #[test]
    fn read_errors_map_to_the_documented_outcomes() {
        let cases = [
            (ConnectionError::Empty, "empty"),
            (ConnectionError::Timeout(Duration::from_secs(5)), "timeout"),
            (
                ConnectionError::Malformed(DecodeError::Malformed("x".into())),
                "malformed",
            ),
            (ConnectionError::TooLarge(4096), "too_large"),
            (ConnectionError::Truncated, "malformed"),
            (
                ConnectionError::Io(io::Error::from(io::ErrorKind::ConnectionReset)),
                "error",
            ),
        ];
        for (err, expected) in cases {
            let (outcome, reason) = read_refusal(&err);
            assert_eq!(outcome.as_str(), expected, "{err:?}");
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn refusals_map_to_protocol_error_codes() {
        let code = |outcome| match Refusal::new(outcome, "r").response() {
            Response::Error { code, .. } => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(Outcome::BadRequest), ErrorCode::BadRequest);
        assert_eq!(code(Outcome::NotFound), ErrorCode::NotFound);
        assert_eq!(code(Outcome::WrongContent), ErrorCode::WrongContent);
        assert_eq!(code(Outcome::Error), ErrorCode::Internal);
        assert_eq!(code(Outcome::PrivateNetwork), ErrorCode::PrivateNetwork);
        assert_eq!(code(Outcome::NotAllowed), ErrorCode::NotAllowed);
    }

    #[test]
    fn long_names_are_shortened_on_a_char_boundary() {
        assert_eq!(loggable("a_1"), "a_1");
        let long = "é".repeat(300);
        let short = loggable(&long);
        assert!(short.len() <= MAX_LOGGED_NAME + "…".len());
        assert!(short.ends_with('…'));
    }
}
