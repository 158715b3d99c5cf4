//! The command policy: decides, before a command reaches a sandbox, whether
//! the mode (strict or permissive), the read-only flag, the built-in rules
//! and the YAML rule file allow it.
//!
//! # Layout
//! - `lexer`: shell text -> simple commands (quotes, operators,
//!   substitutions, groups, here-documents); total and bounded.
//! - `command`: simple commands -> normalized invocations (assignments and
//!   wrappers stripped, `sh -c`/`eval` payloads followed).
//! - `builtin`: per-tool built-in rules (`shell`).
//! - `k8s`: kubectl/helm/istioctl/argocd, on with the k8s profile
//!   ([`Policy::with_k8s_defaults`]): credential and cluster flags, mass
//!   deletion, the verbs read-only mode refuses, k8s-mcp-server's default
//!   rules.
//! - `pipeline`: strict mode's shape of a CLI tool's command line (the
//!   tool, then only filters after pipes).
//! - `rules`: the YAML rule file and word-wise prefix matching.
//!
//! # What is matched against what
//! Built-ins and prefix rules see each normalized invocation. Regex rules
//! are tried against each invocation's words re-joined by single spaces
//! (program as basename, wrappers stripped) and against the raw text of
//! the command line and of each `sh -c`/`eval` payload; either match
//! refuses. Safe patterns excuse dangerous prefixes only, never a regex
//! rule or a built-in (as in k8s-mcp-server, where they override only
//! `dangerous_commands`).

mod builtin;
mod command;
mod k8s;
mod lexer;
pub mod pipeline;
mod rules;

use std::fmt;
use std::str::FromStr;

pub use rules::RuleFile;

use command::Invocation;

/// How much the policy enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Built-in rules plus the rule file's (the default).
    #[default]
    Strict,
    /// Everything is allowed, unless the server is read-only.
    Permissive,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Strict => "strict",
            Mode::Permissive => "permissive",
        })
    }
}

/// An unrecognized security mode name.
#[derive(Debug, thiserror::Error)]
#[error("unknown security mode {0:?}: expected \"strict\" or \"permissive\"")]
pub struct ParseModeError(String);

impl FromStr for Mode {
    type Err = ParseModeError;
    fn from_str(s: &str) -> Result<Mode, ParseModeError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "strict" => Ok(Mode::Strict),
            "permissive" => Ok(Mode::Permissive),
            _ => Err(ParseModeError(s.to_owned())),
        }
    }
}

/// A rule file that can't be used. Display is one line, `FILE:LINE: reason`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{path}: cannot read the rule file: {source}")]
    Read {
        /// The file, as given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// YAML syntax, the wrong shape, or an invalid pattern.
    #[error("{path}:{}: {reason}", line.map_or_else(|| "?".to_owned(), |l| l.to_string()))]
    Invalid {
        /// The file, as given.
        path: String,
        /// 1-based line, when the YAML parser knows it.
        line: Option<usize>,
        /// What is wrong, in one line.
        reason: String,
    },
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Short stable id for the audit log: `shell:rm-root`,
    /// `yaml:dangerous_commands:kubectl delete`, `yaml:regex_rules:<description>`.
    pub rule: String,
    /// What the model is told: the rule's reason and how to get past it.
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The command policy. Cheap to clone (compiled regexes share their
/// programs) and `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Policy {
    mode: Mode,
    rules: Option<RuleFile>,
    read_only: bool,
    /// The Kubernetes CLIs' rules are on (the k8s profile).
    k8s: bool,
    /// Mutating verbs of user-declared CLIs, refused in read-only mode.
    mutating: std::collections::BTreeMap<String, Vec<rules::Prefix>>,
}

impl Policy {
    /// A policy from the mode, the rule file (if any) and the read-only flag.
    pub fn new(mode: Mode, rules: Option<RuleFile>, read_only: bool) -> Policy {
        Policy {
            mode,
            rules,
            read_only,
            k8s: false,
            mutating: Default::default(),
        }
    }

    /// Declares `tool`'s mutating verbs (word prefixes such as `"git
    /// push"`), refused in read-only mode like the Kubernetes CLIs'.
    /// Prefixes without words are skipped.
    pub fn with_mutating(mut self, tool: &str, prefixes: &[String]) -> Policy {
        let list: Vec<rules::Prefix> = prefixes
            .iter()
            .filter_map(|p| rules::Prefix::new(p))
            .collect();
        if !list.is_empty() {
            self.mutating.insert(tool.to_owned(), list);
        }
        self
    }

    /// Turns on the Kubernetes CLIs' rules (the k8s profile): built-in
    /// credential/cluster-flag and mass-deletion rules, read-only mode's
    /// mutating verbs, and k8s-mcp-server's default rules for kubectl,
    /// helm, istioctl and argocd under the rule file's (per tool, each
    /// section the file gives replaces the default one, as in
    /// k8s-mcp-server).
    pub fn with_k8s_defaults(mut self) -> Policy {
        self.k8s = true;
        let defaults = k8s::default_rules();
        self.rules = Some(match self.rules.take() {
            Some(file) => file.with_defaults(&defaults),
            None => defaults,
        });
        self
    }

    /// The mode it was built with.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether `command`, sent to `tool` (`shell` for shell_exec), may run.
    ///
    /// Permissive mode allows everything unless the server is read-only;
    /// then, as in strict mode, the built-in rules for `tool` and the rule
    /// file's rules for `tool` apply (all of them are about destructive
    /// commands).
    ///
    /// With the k8s profile on, a shell_exec command (`shell`) is also held
    /// to the Kubernetes CLIs' rules wherever it runs one of them, so
    /// `shell_exec` is no way around `execute_kubectl`'s rules; likewise
    /// for the mutating verbs of user-declared CLIs in read-only mode.
    ///
    /// # Errors
    /// The first rule that refuses, as a [`Refusal`].
    pub fn check(&self, tool: &str, command: &str) -> Result<(), Refusal> {
        if self.mode == Mode::Permissive && !self.read_only {
            return Ok(());
        }
        self.check_tool(tool, command)?;
        if tool == "shell" {
            let k8s_tools = if self.k8s { k8s::TOOLS } else { &[] };
            for t in k8s_tools
                .iter()
                .copied()
                .chain(self.mutating.keys().map(String::as_str))
            {
                self.check_tool(t, command)?;
            }
        }
        Ok(())
    }

    fn check_tool(&self, tool: &str, command: &str) -> Result<(), Refusal> {
        let builtins = match builtin::rules_for(tool) {
            [] if self.k8s => k8s::builtin_rules(tool),
            b => b,
        };
        let file = self
            .rules
            .as_ref()
            .and_then(|r| r.tool(tool).map(|t| (r, t)));
        let mutating: &[rules::Prefix] = match self.mutating.get(tool) {
            Some(list) if self.read_only => list,
            _ if self.read_only && self.k8s => k8s::mutating_verbs(tool),
            _ => &[],
        };
        if builtins.is_empty() && file.is_none() && mutating.is_empty() {
            return Ok(());
        }
        let expanded = command::expand(command);
        if expanded.incomplete {
            return Err(self.refuse(
                "policy:too-deep".into(),
                "the command nests substitutions or `sh -c` payloads too deeply (or too often) to be checked".into(),
            ));
        }
        for inv in &expanded.invocations {
            if let Some(r) = builtins
                .iter()
                .find_map(|r| (r.check)(inv).map(|m| (r.id, m)))
            {
                return Err(self.refuse(r.0.into(), r.1));
            }
            if let Some(verb) = mutating.iter().find(|p| p.matches(inv, false)) {
                return Err(self.refuse(
                    format!("read-only:{}", verb.text),
                    format!(
                        "{:?} changes state outside the sandbox (a cluster, a remote, a service), and the server is read-only",
                        verb.text
                    ),
                ));
            }
        }
        let Some((file, rules)) = file else {
            return Ok(());
        };
        self.check_file(tool, file, rules, &expanded)
    }

    fn check_file(
        &self,
        tool: &str,
        file: &RuleFile,
        rules: &rules::ToolRules,
        ex: &command::Expanded,
    ) -> Result<(), Refusal> {
        let joined: Vec<String> = if rules.regex.is_empty() {
            Vec::new()
        } else {
            ex.invocations.iter().map(Invocation::joined).collect()
        };
        for r in &rules.regex {
            if joined.iter().chain(&ex.texts).any(|t| r.regex.is_match(t)) {
                let id = if r.description.is_empty() {
                    r.regex.as_str()
                } else {
                    &r.description
                };
                return Err(self.refuse(
                    format!("yaml:regex_rules:{id}"),
                    format!(
                        "{} (rule {:?} for {tool} in {})",
                        r.error_message.trim_end_matches('.'),
                        r.description,
                        file.source_of(rules, 2)
                    ),
                ));
            }
        }
        for inv in &ex.invocations {
            let Some(d) = rules.dangerous.iter().find(|p| p.matches(inv, false)) else {
                continue;
            };
            if rules.safe.iter().any(|p| p.matches(inv, true)) {
                continue;
            }
            return Err(self.refuse(
                format!("yaml:dangerous_commands:{}", d.text),
                format!(
                    "{:?} is a dangerous command for {tool} in {} and no safe pattern there covers {:?}; use a more specific form with the resource type and name",
                    d.text,
                    file.source_of(rules, 0),
                    inv.joined()
                ),
            ));
        }
        Ok(())
    }

    fn refuse(&self, rule: String, reason: String) -> Refusal {
        let message = match (self.mode, self.read_only) {
            (Mode::Strict, false) => format!(
                "refused by the command policy (strict mode): {reason}. Set POD_EXEC_SECURITY_MODE=permissive to allow it."
            ),
            (Mode::Strict, true) => format!(
                "refused by the command policy (strict mode, read-only server): {reason}. Allowing it needs both POD_EXEC_SECURITY_MODE=permissive and a server started without read-only."
            ),
            (Mode::Permissive, _) => format!(
                "refused by the command policy (read-only server): {reason}. Destructive commands are refused while the server is read-only, even in permissive mode; restart it without read-only to allow it."
            ),
        };
        Refusal { rule, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_parses_case_insensitively_with_a_clear_error() {
        assert_eq!("STRICT".parse::<Mode>().ok(), Some(Mode::Strict));
        assert_eq!(" Permissive".parse::<Mode>().ok(), Some(Mode::Permissive));
        let e = "lax".parse::<Mode>().err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("unknown security mode \"lax\": expected \"strict\" or \"permissive\"")
        );
    }

    #[test]
    fn policy_is_send_sync_and_clone() {
        fn assert_traits<T: Send + Sync + Clone + fmt::Debug>() {}
        assert_traits::<Policy>();
    }

    #[test]
    fn unknown_tool_without_rules_is_allowed_cheaply() {
        let p = Policy::new(Mode::Strict, None, true);
        assert!(p.check("kubectl", "rm -rf /").is_ok());
        assert!(p.check("shell", "rm -rf /").is_err());
    }
}
