//! The YAML rule file, in k8s-mcp-server's security-config shape
//! (`dangerous_commands`, `safe_patterns`, `regex_rules`, each keyed by
//! tool), parsed and compiled once at start-up; and word-wise prefix
//! matching.
//!
//! Patterns are compiled while deserializing, inside the visitor of the
//! scalar that holds them, so that serde_norway attaches that scalar's line
//! to an invalid regex exactly as it does to a syntax error.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use regex::Regex;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::PolicyError;
use super::command::{Invocation, basename};

/// A parsed and compiled rule file.
#[derive(Debug, Clone)]
pub struct RuleFile {
    /// As given to [`RuleFile::parse`]; used in refusal messages.
    pub(crate) path: String,
    pub(crate) tools: BTreeMap<String, ToolRules>,
}

/// One tool's rules from the file.
#[derive(Debug, Clone, Default)]
pub(crate) struct ToolRules {
    pub dangerous: Vec<Prefix>,
    pub safe: Vec<Prefix>,
    pub regex: Vec<RegexRule>,
    /// Which sections the file gave for this tool: a tool's built-in
    /// defaults (see [`RuleFile::with_defaults`]) fill only the others, as
    /// k8s-mcp-server replaces its defaults section by section.
    pub given: [bool; 3],
    /// Where a section came from when not from this file (defaults), for
    /// refusal messages: dangerous_commands, safe_patterns, regex_rules.
    pub source: [Option<String>; 3],
}

/// A command prefix, as words.
#[derive(Debug, Clone)]
pub(crate) struct Prefix {
    pub text: String,
    words: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct RegexRule {
    pub regex: Regex,
    pub description: String,
    pub error_message: String,
}

impl RuleFile {
    /// Parses and compiles rule-file text; `path_for_messages` names it in
    /// errors and refusals. Unknown top-level keys are ignored, as
    /// k8s-mcp-server ignores them; an empty file has no rules.
    ///
    /// # Errors
    /// [`PolicyError::Invalid`], with the line, for YAML syntax errors, a
    /// wrong shape (say, `dangerous_commands` as a list), an empty prefix,
    /// a regex rule without `pattern` or `description`, or a pattern the
    /// `regex` crate rejects (lookaround and backreferences among them).
    pub fn parse(path_for_messages: &str, text: &str) -> Result<RuleFile, PolicyError> {
        let raw: Option<RawFile> =
            serde_norway::from_str(text).map_err(|e| invalid(path_for_messages, &e))?;
        let raw = raw.unwrap_or_default();
        let mut tools: BTreeMap<String, ToolRules> = BTreeMap::new();
        for (tool, list) in raw.dangerous_commands.unwrap_or_default() {
            let t = tools.entry(tool).or_default();
            t.dangerous = list.unwrap_or_default();
            t.given[0] = true;
        }
        for (tool, list) in raw.safe_patterns.unwrap_or_default() {
            let t = tools.entry(tool).or_default();
            t.safe = list.unwrap_or_default();
            t.given[1] = true;
        }
        for (tool, list) in raw.regex_rules.unwrap_or_default() {
            let t = tools.entry(tool).or_default();
            t.given[2] = true;
            t.regex = list
                .unwrap_or_default()
                .into_iter()
                .map(|r| RegexRule {
                    // k8s-mcp-server's default when error_message is absent.
                    error_message: r.error_message.unwrap_or_else(|| {
                        format!(
                            "Command matches restricted pattern: {}",
                            r.pattern.0.as_str()
                        )
                    }),
                    regex: r.pattern.0,
                    description: r.description,
                })
                .collect();
        }
        Ok(RuleFile {
            path: path_for_messages.to_owned(),
            tools,
        })
    }

    /// Reads and parses the file at `path`. Blocking: meant for start-up,
    /// before serving.
    ///
    /// # Errors
    /// [`PolicyError::Read`] if it can't be read, else as [`RuleFile::parse`].
    pub fn load(path: &Path) -> Result<RuleFile, PolicyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: shown.clone(),
            source,
        })?;
        RuleFile::parse(&shown, &text)
    }

    pub(crate) fn tool(&self, tool: &str) -> Option<&ToolRules> {
        self.tools.get(tool)
    }

    /// This file with `defaults` filling, per tool, each section
    /// (dangerous_commands, safe_patterns, regex_rules) the file does not
    /// give for that tool; refusals name where a rule came from.
    pub fn with_defaults(mut self, defaults: &RuleFile) -> RuleFile {
        for (tool, d) in &defaults.tools {
            let t = self.tools.entry(tool.clone()).or_default();
            if !t.given[0] {
                t.dangerous.clone_from(&d.dangerous);
                t.source[0] = Some(defaults.path.clone());
            }
            if !t.given[1] {
                t.safe.clone_from(&d.safe);
                t.source[1] = Some(defaults.path.clone());
            }
            if !t.given[2] {
                t.regex.clone_from(&d.regex);
                t.source[2] = Some(defaults.path.clone());
            }
            t.given = [true; 3];
        }
        self
    }

    /// Where section `i` of `tool`'s rules came from.
    pub(crate) fn source_of<'a>(&'a self, rules: &'a ToolRules, i: usize) -> &'a str {
        rules.source[i].as_deref().unwrap_or(&self.path)
    }
}

fn invalid(path: &str, e: &serde_norway::Error) -> PolicyError {
    let mut reason = e.to_string();
    // serde_norway appends " at line L column C"; the line goes up front.
    if let Some(i) = reason.rfind(" at line ") {
        reason.truncate(i);
    }
    PolicyError::Invalid {
        path: path.to_owned(),
        line: e.location().map(|l| l.line()),
        reason: reason.replace('\n', " "),
    }
}

#[derive(Deserialize, Default)]
struct RawFile {
    dangerous_commands: Option<BTreeMap<String, Option<Vec<Prefix>>>>,
    safe_patterns: Option<BTreeMap<String, Option<Vec<Prefix>>>>,
    regex_rules: Option<BTreeMap<String, Option<Vec<RawRegexRule>>>>,
}

#[derive(Deserialize)]
struct RawRegexRule {
    pattern: Pattern,
    description: String,
    error_message: Option<String>,
}

struct Pattern(Regex);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Pattern;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a regular expression string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Pattern, E> {
                // Python's `re.compile(pattern)` with no flags: case-sensitive,
                // unanchored search; `regex` is Unicode-aware like Python 3.
                Regex::new(s)
                    .map(Pattern)
                    .map_err(|e| E::custom(format!("invalid regex {s:?}: {}", regex_reason(&e))))
            }
        }
        d.deserialize_str(V)
    }
}

/// `regex` errors draw a caret diagram over several lines; keep the reason.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or_else(|| text.lines().last().unwrap_or(""))
        .to_owned()
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Prefix;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command prefix string such as \"kubectl delete\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Prefix, E> {
                let words: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
                if words.is_empty() {
                    // startswith("") would match every command.
                    return Err(E::custom("empty command prefix"));
                }
                Ok(Prefix {
                    text: s.trim().to_owned(),
                    words,
                })
            }
        }
        d.deserialize_str(V)
    }
}

fn is_option(w: &str) -> bool {
    w.len() > 1 && w.starts_with('-')
}

impl Prefix {
    /// A prefix from its text (`"kubectl rollout restart"`); `None` when
    /// it has no words.
    pub fn new(text: &str) -> Option<Prefix> {
        let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        (!words.is_empty()).then(|| Prefix {
            text: text.trim().to_owned(),
            words,
        })
    }

    /// Whether `inv` begins with these words, in order, where what is
    /// skipped between them is options (`-x`, `--long`, `--k=v`) or the
    /// word right after an option (its possible value).
    ///
    /// `strict` decides the ambiguous word after a value-less option that
    /// equals the next prefix word: as a dangerous prefix (`strict` false)
    /// either reading may match; as a safe pattern (`strict` true) it is
    /// the option's value, so `kubectl delete -l pod pods` is not excused
    /// by `kubectl delete pod`.
    pub fn matches(&self, inv: &Invocation, strict: bool) -> bool {
        let Some((first, rest)) = self.words.split_first() else {
            return false;
        };
        if basename(first) != inv.program {
            return false;
        }
        if strict {
            walk_value_first(rest, &inv.args)
        } else {
            walk_any(rest, &inv.args)
        }
    }
}

fn walk_value_first(pat: &[String], args: &[String]) -> bool {
    let mut j = 0;
    let mut after_option = false;
    for a in args {
        if j == pat.len() {
            return true;
        }
        if is_option(a) {
            if *a == pat[j] {
                j += 1;
                after_option = false;
            } else {
                after_option = !a.contains('=');
            }
        } else if after_option {
            after_option = false;
        } else if *a == pat[j] {
            j += 1;
        } else {
            return false;
        }
    }
    j == pat.len()
}

/// The same walk over every reading at once: states are (words matched,
/// previous word was a value-less option). O(args × prefix words).
fn walk_any(pat: &[String], args: &[String]) -> bool {
    let n = pat.len();
    // states[j][k]: j prefix words matched, k = previous was an option.
    let mut states = vec![[false; 2]; n + 1];
    states[0][0] = true;
    for a in args {
        if states[n].iter().any(|&s| s) {
            return true;
        }
        let mut next = vec![[false; 2]; n + 1];
        for (j, word) in pat.iter().enumerate() {
            let [plain, after_option] = states[j];
            if !(plain || after_option) {
                continue;
            }
            if a == word {
                next[j + 1][0] = true;
            }
            if is_option(a) {
                next[j][usize::from(!a.contains('='))] = true;
            } else if after_option {
                next[j][0] = true;
            }
        }
        states = next;
    }
    states[n].iter().any(|&s| s)
}
