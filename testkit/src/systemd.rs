//! systemd units in tests: reading a directive, and `systemd-analyze verify` in a scratch root.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The values of `key` in `[section]` of a unit file's text, in order, with systemd's rule for
/// list settings applied: an empty assignment (`Key=`) resets what came before. Each value is
/// split on whitespace.
pub fn directive(text: &str, section: &str, key: &str) -> Vec<String> {
    let mut in_section = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name == section;
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if in_section && k.trim() == key {
            if v.trim().is_empty() {
                out.clear();
            }
            out.extend(v.split_whitespace().map(str::to_string));
        }
    }
    out
}

/// The repository's `packaging/` directory.
pub fn packaging_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives in the workspace")
        .join("packaging")
}

/// Runs `systemd-analyze verify` on `units` inside a scratch root made of the host's system
/// units (`/usr/lib/systemd/system`, for the targets the units name), the units under test,
/// and a placeholder executable at every absolute path their `Exec*=` lines start, so that the
/// check is about the units, not about what is installed. Any complaint fails: a non-zero
/// exit, or any output (systemd only warns about unknown keys and bad values).
pub fn verify(units: &[PathBuf]) -> Result<(), String> {
    let root = crate::tmpdir(&format!(
        "units-{}",
        units
            .first()
            .and_then(|u| u.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_dir_all(&root);
    let system = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&system).map_err(|e| e.to_string())?;
    let host = Path::new("/usr/lib/systemd/system");
    for entry in std::fs::read_dir(host).map_err(|e| format!("{}: {e}", host.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            std::fs::copy(entry.path(), system.join(entry.file_name()))
                .map_err(|e| e.to_string())?;
        }
    }
    let mut args = vec![format!("--root={}", root.display()), "verify".into()];
    for unit in units {
        let text = std::fs::read_to_string(unit).map_err(|e| format!("{}: {e}", unit.display()))?;
        for cmd in exec_commands(&text) {
            placeholder(&root.join(cmd.trim_start_matches('/')))?;
        }
        let name = unit.file_name().ok_or("a unit without a file name")?;
        std::fs::copy(unit, system.join(name)).map_err(|e| e.to_string())?;
        args.push(system.join(name).display().to_string());
    }
    let out = Command::new("systemd-analyze")
        .args(&args)
        .output()
        .map_err(|e| format!("systemd-analyze: {e}"))?;
    let _ = std::fs::remove_dir_all(&root);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("systemd-analyze verify ({}): {said}", out.status))
    }
}

/// The absolute program paths the `Exec*=` lines of a unit's text start (prefixes such as
/// `-` or `+` taken off).
fn exec_commands(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Exec"))
        .filter_map(|l| l.split_once('=').map(|(_, v)| v))
        .filter_map(|v| v.split_whitespace().next())
        .map(|w| w.trim_start_matches(['-', '@', '+', '!', ':']).to_string())
        .filter(|w| w.starts_with('/'))
        .collect()
}

fn placeholder(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(path, "#!/bin/sh\n").map_err(|e| e.to_string())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_read_per_section_with_resets() {
        let unit = "[Unit]\nAfter=a.target\n[Service]\n# After=comment\nAfter=x\n\
                    CapabilityBoundingSet=CAP_A CAP_B\nCapabilityBoundingSet=\n\
                    CapabilityBoundingSet=CAP_C\nExecStart=-/usr/bin/x --y\nExecReload=kill\n";
        assert_eq!(directive(unit, "Unit", "After"), ["a.target"]);
        assert_eq!(directive(unit, "Service", "After"), ["x"]);
        assert_eq!(
            directive(unit, "Service", "CapabilityBoundingSet"),
            ["CAP_C"]
        );
        assert!(directive(unit, "Install", "WantedBy").is_empty());
        assert_eq!(exec_commands(unit), ["/usr/bin/x"]);
    }
}
