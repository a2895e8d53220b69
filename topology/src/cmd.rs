//! Running the system tools (`ip`, `nft`, `sysctl`, `ethtool`) with every failure reported
//! clearly: what was being done, the command line, its exit status and its error output.
//!
//! Arguments are passed as a vector, never through a shell, so a lab name or a user's command
//! cannot be interpreted as shell syntax.

use std::process::{Command, Output};

/// Why a lab could not be built, inspected or used.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command ran and failed.
    #[error("{what}: `{cmd}` failed ({status}): {stderr}")]
    Command {
        /// What was being done (e.g. "building lab esprit: veth gwA/wan0 — gwB/wan0").
        what: String,
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: String,
        /// Its error output, trimmed.
        stderr: String,
    },
    /// A command could not be started (tool missing?).
    #[error("{what}: cannot run `{cmd}`: {err}{MISSING_TOOL}")]
    Spawn {
        /// What was being done.
        what: String,
        /// The command line.
        cmd: String,
        /// Cause.
        err: std::io::Error,
    },
    /// A tool's output could not be understood.
    #[error("{what}: unexpected output of `{cmd}`: {detail}")]
    Parse {
        /// What was being done.
        what: String,
        /// The command line.
        cmd: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The lab specification is unusable.
    #[error("invalid lab specification: {0}")]
    Spec(String),
    /// A node is not part of the lab (or the lab is not up).
    #[error("lab {lab}: node {node} does not exist (namespace {ns}); is the lab up{hint}?")]
    NoNode {
        /// Lab name.
        lab: String,
        /// Node name.
        node: String,
        /// Its namespace.
        ns: String,
        /// Extra hint (e.g. ", with --nat").
        hint: String,
    },
    /// Not root.
    #[error("the lab needs root (network namespaces, veth, nftables)")]
    NotRoot,
}

/// What to do about a missing tool.
const MISSING_TOOL: &str = " (the lab needs the Debian packages iproute2, procps, nftables, \
                            iputils-ping and ethtool: ci/install-deps.sh installs them)";

/// Renders a command line for messages.
pub(crate) fn render(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains([' ', '{', '}', ';', '"', '\'']) {
                format!("'{a}'")
            } else {
                (*a).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `args[0]` with the other arguments, waits, and fails unless it exits with 0.
pub(crate) fn run(what: &str, args: &[&str]) -> Result<Output, LabError> {
    let out = output(what, args)?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        // `ip netns exec` reports a missing tool itself.
        if stderr.contains("exec of") && stderr.contains("No such file or directory") {
            stderr.push_str(MISSING_TOOL);
        }
        return Err(LabError::Command {
            what: what.into(),
            cmd: render(args),
            status: out.status.to_string(),
            stderr,
        });
    }
    Ok(out)
}

/// Runs a command and returns its output whatever its exit status.
pub(crate) fn output(what: &str, args: &[&str]) -> Result<Output, LabError> {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|err| LabError::Spawn {
            what: what.into(),
            cmd: render(args),
            err,
        })
}

/// Runs a command that prints JSON (`ip -j …`) and parses it.
pub(crate) fn run_json(what: &str, args: &[&str]) -> Result<serde_json::Value, LabError> {
    let out = run(what, args)?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_str(&text).map_err(|e| LabError::Parse {
        what: what.into(),
        cmd: render(args),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_rendered_readably() {
        assert_eq!(
            render(&["nft", "add", "chain", "ip", "t", "{ type nat ; }"]),
            "nft add chain ip t '{ type nat ; }'"
        );
    }

    #[test]
    fn failures_name_the_command_and_its_stderr() {
        let e = run("testing", &["sh", "-c", "echo oops >&2; exit 3"]).unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with("testing: `sh -c"), "{m}");
        assert!(m.contains("oops") && m.contains('3'), "{m}");
        let e = run("testing", &["/nonexistent/tool"]).unwrap_err();
        assert!(e.to_string().contains("iproute2"), "{e}");
        let e = run(
            "testing",
            &[
                "sh",
                "-c",
                "echo 'exec of \"nft\" failed: No such file or directory' >&2; false",
            ],
        )
        .unwrap_err();
        assert!(e.to_string().contains("nftables"), "{e}");
    }
}
