//! Running iproute2: the `ip` command found once, commands run to completion with their stderr
//! in the error, and the run's name prefix. Everything that changes a namespace goes through
//! here, so a failed set-up always says which command failed and why.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The `ip` command: on `PATH`, or in the usual sbin folders (not always on a user's `PATH`).
pub(crate) fn ip_binary() -> Option<&'static Path> {
    static IP: OnceLock<Option<PathBuf>> = OnceLock::new();
    IP.get_or_init(|| crate::process::find_tool("ip"))
        .as_deref()
}

/// Runs a command to completion; its stdout, or an error with its status and stderr.
pub(super) fn run(command: &mut Command) -> Result<String, String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `ip <args>`.
pub(super) fn ip_cmd(args: &[&str]) -> Result<String, String> {
    let ip = ip_binary().ok_or("no `ip` command")?;
    run(Command::new(ip).args(args))
}

/// `ip <args>`, panicking on failure (network set-up: a failure there is a broken test).
pub(super) fn ip_ok(args: &[&str]) -> String {
    ip_cmd(args).unwrap_or_else(|e| panic!("network set-up failed: {e}"))
}

/// Gives interface `iface` of namespace `ns` the address `ip/24`, with its broadcast address.
pub(super) fn add_address(ns: &str, iface: &str, ip: Ipv4Addr) {
    ip_ok(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{ip}/24"),
        "brd",
        "+",
        "dev",
        iface,
    ]);
}

/// `p2p<pid>`: what every name this process makes starts with.
pub(super) fn run_prefix() -> String {
    format!("p2p{}", std::process::id())
}
