//! The user's profiles file (POD_EXEC_PROFILES_FILE):
//!
//! ```yaml
//! profiles:
//!   vcs:
//!     tools:
//!       git:
//!         description: "Git version control"
//!         image: "the default session image"   # who provides it
//!         help_flag: "--help"                  # optional
//!         mutating: ["push", "commit"]         # refused when read-only
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{CliTool, ProfileError, valid_name};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    profiles: BTreeMap<String, RawProfile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    #[serde(default)]
    #[allow(dead_code)] // documentation for the file's reader
    description: Option<String>,
    tools: BTreeMap<String, RawTool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTool {
    description: Option<String>,
    image: Option<String>,
    help_flag: Option<String>,
    #[serde(default)]
    mutating: Vec<String>,
}

/// Reads the file: each profile's name and tools.
pub(super) fn load(path: &Path) -> Result<Vec<(String, Vec<CliTool>)>, ProfileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&shown, &text)
}

pub(super) fn parse(shown: &str, text: &str) -> Result<Vec<(String, Vec<CliTool>)>, ProfileError> {
    let invalid = |line: Option<usize>, reason: String| ProfileError::Invalid {
        path: shown.to_owned(),
        line: line.map_or_else(|| "?".to_owned(), |l| l.to_string()),
        reason,
    };
    let raw: RawFile = serde_norway::from_str(text).map_err(|e| {
        let mut reason = e.to_string();
        if let Some(i) = reason.rfind(" at line ") {
            reason.truncate(i);
        }
        invalid(e.location().map(|l| l.line()), reason.replace('\n', " "))
    })?;
    let mut out = Vec::new();
    for (name, p) in raw.profiles {
        if !valid_name(&name) {
            return Err(invalid(
                None,
                format!("profile name {name:?}: use lowercase letters, digits, - and _"),
            ));
        }
        let mut tools = Vec::new();
        for (tool, t) in p.tools {
            if !valid_name(&tool) {
                return Err(invalid(
                    None,
                    format!(
                        "tool name {tool:?} in profile {name:?}: use lowercase letters, digits, - and _ (it names execute_{tool})"
                    ),
                ));
            }
            let help_flag = t.help_flag.unwrap_or_else(|| "--help".into());
            if help_flag.split_whitespace().count() != 1 || !help_flag.starts_with('-') {
                return Err(invalid(
                    None,
                    format!("help_flag {help_flag:?} of {tool:?}: one option word such as --help"),
                ));
            }
            tools.push(CliTool {
                description: t
                    .description
                    .unwrap_or_else(|| format!("the {tool} command-line tool")),
                image: t
                    .image
                    .unwrap_or_else(|| "an image that installs it (set POD_EXEC_IMAGE)".into()),
                help_flag,
                kube_defaults: false,
                mutating: t
                    .mutating
                    .into_iter()
                    .map(|m| {
                        // "push" and "git push" both mean `git push`.
                        if m.split_whitespace().next() == Some(tool.as_str()) {
                            m
                        } else {
                            format!("{tool} {m}")
                        }
                    })
                    .collect(),
                name: tool,
            });
        }
        out.push((name, tools));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_profile_with_defaults() {
        let p = parse(
            "f",
            "profiles:\n  vcs:\n    tools:\n      git: {}\n      jq:\n        help_flag: -h\n",
        )
        .unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "vcs");
        assert_eq!(p[0].1[0].name, "git");
        assert_eq!(p[0].1[0].help_flag, "--help");
        assert_eq!(p[0].1[1].help_flag, "-h");
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = parse("f.yaml", "profiles:\n  vcs:\n    tool: {}\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.yaml:3:"), "{e}");
        let e = parse(
            "f.yaml",
            "profiles:\n  vcs:\n    tools:\n      'Bad Name': {}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("Bad Name"), "{e}");
    }
}
