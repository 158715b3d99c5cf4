//! Bearer-token authentication for HTTP: which tokens exist, whose each one
//! is, and the constant-time check of a request's `Authorization` header.
//!
//! Only SHA-256 digests of the tokens are kept after start-up. A presented
//! token is hashed once and compared with every configured digest in
//! constant time (no early exit, and equal lengths, so neither the position
//! of a mismatch, nor the token's length, nor which identity matched leaks
//! through timing).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;

/// Shortest token accepted: a guessable token is no authentication.
pub const MIN_TOKEN_LEN: usize = 16;

/// The identity a single token (POD_EXEC_AUTH_TOKEN, --auth-token-file)
/// gives its caller.
pub const SINGLE_TOKEN_IDENTITY: &str = "token";
/// The identity of every caller when authentication is off.
pub const LOCAL_IDENTITY: &str = "local";

/// Who sent a request: a token's name, or [`LOCAL_IDENTITY`]. Put into the
/// request's extensions by the HTTP layer; tools read it for logs, the
/// audit log and (later) scoping sandboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Arc<str>);

impl Caller {
    /// The caller when authentication is off (or over stdio).
    pub fn local() -> Self {
        Caller(Arc::from(LOCAL_IDENTITY))
    }

    /// The identity's name.
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// Why the token configuration cannot be used. Messages never contain a
/// token.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file's content is malformed.
    #[error("{}:{line}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 for the file as a whole).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A token from the environment or flag is unusable.
    #[error("POD_EXEC_AUTH_TOKEN: {0}")]
    Env(String),
    /// More than one source of tokens.
    #[error(
        "choose one of POD_EXEC_AUTH_TOKEN, --auth-token-file and --auth-tokens-file; \
         several are set"
    )]
    Ambiguous,
}

/// The configured tokens; none means authentication is off.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<[(Caller, [u8; 32])]>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("identities", &self.tokens.len())
            .finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Checks one token's shape; the reason never quotes the token.
fn check_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "the token is {} characters; use at least {MIN_TOKEN_LEN} random ones \
             (e.g. `openssl rand -hex 32`)",
            token.len()
        ));
    }
    if token
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || !b.is_ascii())
    {
        return Err(
            "the token contains whitespace, control or non-ASCII characters, which an HTTP \
             header cannot carry"
                .into(),
        );
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

impl Authenticator {
    /// No authentication: every request is [`Caller::local`].
    pub fn open() -> Self {
        Authenticator {
            tokens: Arc::from(Vec::new()),
        }
    }

    /// From the configuration: POD_EXEC_AUTH_TOKEN, --auth-token-file or
    /// --auth-tokens-file (at most one of them). Reads the files once, at
    /// start-up.
    ///
    /// # Errors
    /// See [`AuthConfigError`].
    pub fn from_config(c: &Config) -> Result<Self, AuthConfigError> {
        let sources = [
            c.auth_token.is_some(),
            c.auth_token_file.is_some(),
            c.auth_tokens_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err(AuthConfigError::Ambiguous);
        }
        if let Some(t) = &c.auth_token {
            check_token(t.expose().trim()).map_err(AuthConfigError::Env)?;
            return Ok(Self::single(t.expose().trim()));
        }
        if let Some(path) = &c.auth_token_file {
            let text = read(path)?;
            let token = text.trim();
            check_token(token).map_err(|reason| AuthConfigError::Malformed {
                path: path.clone(),
                line: 0,
                reason,
            })?;
            return Ok(Self::single(token));
        }
        if let Some(path) = &c.auth_tokens_file {
            return Self::parse_named(path, &read(path)?);
        }
        Ok(Self::open())
    }

    fn single(token: &str) -> Self {
        Authenticator {
            tokens: Arc::from(vec![(
                Caller(Arc::from(SINGLE_TOKEN_IDENTITY)),
                digest(token.as_bytes()),
            )]),
        }
    }

    /// Parses a tokens file: `NAME:TOKEN` a line, blank lines and `#`
    /// comments ignored; names and tokens unique.
    ///
    /// # Errors
    /// [`AuthConfigError::Malformed`] with the line.
    pub fn parse_named(path: &Path, text: &str) -> Result<Self, AuthConfigError> {
        let bad = |line: usize, reason: String| AuthConfigError::Malformed {
            path: path.to_owned(),
            line,
            reason,
        };
        let mut tokens: Vec<(Caller, [u8; 32])> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, token)) = line.split_once(':') else {
                return Err(bad(
                    i + 1,
                    "expected NAME:TOKEN (a name, a colon, the token)".into(),
                ));
            };
            let (name, token) = (name.trim(), token.trim());
            if !valid_name(name) {
                return Err(bad(
                    i + 1,
                    "a name is 1 to 64 of A-Z a-z 0-9 . _ @ -".into(),
                ));
            }
            check_token(token).map_err(|r| bad(i + 1, r))?;
            let d = digest(token.as_bytes());
            if tokens.iter().any(|(c, _)| c.name() == name) {
                return Err(bad(i + 1, format!("the name {name:?} appears twice")));
            }
            if tokens.iter().any(|(_, t)| *t == d) {
                return Err(bad(
                    i + 1,
                    "this token is already given to another name".into(),
                ));
            }
            tokens.push((Caller(Arc::from(name)), d));
        }
        if tokens.is_empty() {
            return Err(bad(0, "no tokens in the file".into()));
        }
        Ok(Authenticator {
            tokens: Arc::from(tokens),
        })
    }

    /// True when no token is configured.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Number of identities.
    pub fn identities(&self) -> usize {
        self.tokens.len()
    }

    /// The caller an `Authorization` header value authenticates, if any.
    /// With authentication off, every request is [`Caller::local`].
    pub fn check(&self, authorization: Option<&[u8]>) -> Option<Caller> {
        if self.is_open() {
            return Some(Caller::local());
        }
        let token = bearer(authorization?)?;
        let presented = digest(token);
        let mut found: Option<&Caller> = None;
        // Every digest is compared, so the time does not depend on which
        // (if any) identity matches.
        for (caller, d) in self.tokens.iter() {
            if bool::from(presented.ct_eq(d)) {
                found = Some(caller);
            }
        }
        found.cloned()
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 6750).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.first()?.eq(&b' ') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn read(path: &Path) -> Result<String, AuthConfigError> {
    std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    const T1: &str = "0123456789abcdef-one";
    const T2: &str = "0123456789abcdef-two";

    #[test]
    fn single_token_checks_the_bearer_header() {
        let a = Authenticator::single(T1);
        let ok = a.check(Some(format!("Bearer {T1}").as_bytes()));
        assert_eq!(ok.map(|c| c.name().to_owned()).as_deref(), Some("token"));
        assert!(a.check(Some(format!("bearer {T1}").as_bytes())).is_some());
        assert!(a.check(None).is_none());
        assert!(a.check(Some(T1.as_bytes())).is_none(), "no scheme");
        assert!(a.check(Some(format!("Basic {T1}").as_bytes())).is_none());
        assert!(a.check(Some(format!("Bearer {T2}").as_bytes())).is_none());
        assert!(a.check(Some(b"Bearer ")).is_none());
        assert!(a.check(Some(b"Bearer")).is_none());
        assert!(a.check(Some(format!("Bearer {T1}x").as_bytes())).is_none());
        assert!(a.check(Some(b"\xff\xfe")).is_none());
    }

    #[test]
    fn named_tokens_give_their_names() {
        let text = format!("# team tokens\n\nalice: {T1}\nci-bot@x:{T2}\n");
        let a = Authenticator::parse_named(Path::new("t.txt"), &text).unwrap();
        assert_eq!(a.identities(), 2);
        let who = |t: &str| {
            a.check(Some(format!("Bearer {t}").as_bytes()))
                .map(|c| c.name().to_owned())
        };
        assert_eq!(who(T1).as_deref(), Some("alice"));
        assert_eq!(who(T2).as_deref(), Some("ci-bot@x"));
        assert_eq!(who("0123456789abcdef-three"), None);
    }

    #[test]
    fn malformed_files_name_the_line_and_never_the_token() {
        let cases = [
            (format!("alice:{T1}\nbob {T2}\n"), 2, "NAME:TOKEN"),
            (format!("alice:{T1}\nalice:{T2}\n"), 2, "twice"),
            (format!("alice:{T1}\nbob:{T1}\n"), 2, "already"),
            ("alice:short\n".to_owned(), 1, "at least 16"),
            (format!("bad name:{T1}\n"), 1, "a name is"),
            ("# nothing\n".to_owned(), 0, "no tokens"),
        ];
        for (text, line, what) in cases {
            let e = Authenticator::parse_named(Path::new("tokens.txt"), &text)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("tokens.txt:{line}: ")), "{e}");
            assert!(e.contains(what), "{e}");
            assert!(!e.contains(T1) && !e.contains(T2), "{e}");
        }
    }

    #[test]
    fn config_sources() {
        let c = Config::try_parse_from(["x"]).unwrap();
        assert!(Authenticator::from_config(&c).unwrap().is_open());
        let c = Config::try_parse_from(["x", "--auth-token", T1]).unwrap();
        let a = Authenticator::from_config(&c).unwrap();
        assert_eq!(a.identities(), 1);
        assert!(!format!("{c:?}{a:?}").contains(T1), "Debug shows no token");
        let c = Config::try_parse_from(["x", "--auth-token", "short"]).unwrap();
        let e = Authenticator::from_config(&c).unwrap_err().to_string();
        assert!(e.contains("at least") && !e.contains("short"), "{e}");
        let c =
            Config::try_parse_from(["x", "--auth-token", T1, "--auth-token-file", "/f"]).unwrap();
        assert!(matches!(
            Authenticator::from_config(&c),
            Err(AuthConfigError::Ambiguous)
        ));
        let c = Config::try_parse_from(["x", "--auth-token-file", "/nonexistent/t"]).unwrap();
        let e = Authenticator::from_config(&c).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/t"), "{e}");
    }
}
