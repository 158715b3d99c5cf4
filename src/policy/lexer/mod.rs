//! Shell lexer: turns a command line into a flat list of simple commands
//! (words with quotes removed, redirections, pipe/background flags and the
//! enclosing function), looking inside `$( )`, backticks, `<( )`, `( )`,
//! `{ }` and unquoted here-documents.
//!
//! It is a guardrail's lexer, not a shell: it never fails, never panics and
//! does work linear in the input per nesting level. Where the input is not
//! valid shell (unterminated quotes, stray `)`), it takes the reading that
//! keeps the most text visible to the rules: a quote runs to the end.

#[cfg(test)]
mod tests;
/// How deep `$( )`, backticks and `sh -c` payloads may nest before the
/// policy stops looking (and, when enforcing, refuses: hiding a command 16
/// levels down is not ordinary work).
mod word;

pub(crate) const MAX_DEPTH: usize = 16;

/// One simple command: what a shell would run as one program.
#[derive(Debug, Default, Clone)]
pub(crate) struct SimpleCommand {
    pub words: Vec<String>,
    pub redirects: Vec<Redirect>,
    /// Part of a pipeline of two or more commands.
    pub piped: bool,
    /// Terminated by `&`.
    pub background: bool,
    /// Name of the innermost function whose body this command is in.
    pub function: Option<String>,
}

/// A redirection with a file target (`2>&1`-style fd duplications are kept
/// out: they name no file).
#[derive(Debug, Clone)]
pub(crate) struct Redirect {
    /// `>`, `>>`, `>|`, `&>`, `<>`: the target is written.
    pub output: bool,
    pub target: String,
}

#[derive(Debug, Default)]
pub(crate) struct Script {
    pub commands: Vec<SimpleCommand>,
    /// Nesting went past [`MAX_DEPTH`]; what lies deeper was not examined.
    pub too_deep: bool,
}

/// Lexes `src`, whose text sits `depth` levels of nesting down.
pub(crate) fn parse(src: &str, depth: usize) -> Script {
    let mut out = Script::default();
    let mut p = Parser {
        s: src.as_bytes(),
        pos: 0,
        depth,
    };
    p.list(&mut out, false);
    out
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

struct Word {
    text: String,
    quoted: bool,
}

#[derive(PartialEq, Clone, Copy)]
enum Sep {
    Plain,
    Pipe,
    Background,
}

struct Heredoc {
    delim: Vec<u8>,
    strip_tabs: bool,
    expand: bool,
}

/// Per-list state: a `$( )` gets its own.
#[derive(Default)]
struct List {
    cur: SimpleCommand,
    /// Open `(` / `{` groups, innermost last; `Some(name)` for a function body.
    groups: Vec<(u8, Option<String>)>,
    /// Set by `name()` until the function's body opens.
    pending_fn: Option<String>,
    pipe_in: bool,
    heredocs: Vec<Heredoc>,
}

fn is_meta(c: u8) -> bool {
    matches!(
        c,
        b' ' | b'\t' | b'\r' | b'\n' | b';' | b'&' | b'|' | b'(' | b')' | b'<' | b'>'
    )
}

/// Words that open or continue compound commands: skipped at command
/// position so that `if rm -rf /; then` sees `rm` as the program.
const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!",
];

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn peek_at(&self, off: usize) -> Option<u8> {
        self.s.get(self.pos + off).copied()
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Commands until the end, or (inside `$(`/`<(`) until the `)` that
    /// closes it, which is consumed.
    fn list(&mut self, out: &mut Script, in_subst: bool) {
        let mut st = List::default();
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\\' if self.peek_at(1) == Some(b'\n') => self.pos += 2,
                b'#' => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.pos += 1;
                    }
                }
                b'\n' => {
                    self.pos += 1;
                    finish(&mut st, out, Sep::Plain);
                    self.heredoc_bodies(&mut st, out);
                }
                b';' => {
                    self.pos += 1;
                    // `;;`, `;&`, `;;&` end case arms.
                    while matches!(self.peek(), Some(b';' | b'&')) {
                        self.pos += 1;
                    }
                    finish(&mut st, out, Sep::Plain);
                }
                b'&' => match self.peek_at(1) {
                    Some(b'&') => {
                        self.pos += 2;
                        finish(&mut st, out, Sep::Plain);
                    }
                    Some(b'>') => self.redirect(&mut st, out),
                    _ => {
                        self.pos += 1;
                        finish(&mut st, out, Sep::Background);
                    }
                },
                b'|' => {
                    let sep = if self.peek_at(1) == Some(b'|') {
                        Sep::Plain
                    } else {
                        Sep::Pipe
                    };
                    self.pos += if matches!(self.peek_at(1), Some(b'|' | b'&')) {
                        2
                    } else {
                        1
                    };
                    finish(&mut st, out, sep);
                }
                b'(' => {
                    self.pos += 1;
                    if st.cur.words.len() == 1 && st.cur.redirects.is_empty() && self.empty_parens()
                    {
                        // `name ()`: a function definition header.
                        st.pending_fn = st.cur.words.pop();
                    } else {
                        finish(&mut st, out, Sep::Plain);
                        st.groups.push((b'(', st.pending_fn.take()));
                    }
                }
                b')' => {
                    self.pos += 1;
                    finish(&mut st, out, Sep::Plain);
                    if let Some(i) = st.groups.iter().rposition(|g| g.0 == b'(') {
                        st.groups.truncate(i);
                    } else if in_subst {
                        return;
                    }
                }
                b'<' | b'>' => self.redirect(&mut st, out),
                _ => {
                    let w = self.word(out);
                    self.command_word(&mut st, out, w);
                }
            }
        }
        finish(&mut st, out, Sep::Plain);
    }

    /// After `(`: is the next non-blank a `)`? If so, consume through it.
    fn empty_parens(&mut self) -> bool {
        let save = self.pos;
        self.skip_blanks();
        if self.peek() == Some(b')') {
            self.pos += 1;
            true
        } else {
            self.pos = save;
            false
        }
    }

    fn command_word(&mut self, st: &mut List, out: &mut Script, w: Word) {
        // `2>file`: the digits name a file descriptor, not an argument.
        if !w.quoted
            && !w.text.is_empty()
            && w.text.bytes().all(|b| b.is_ascii_digit())
            && matches!(self.peek(), Some(b'<' | b'>'))
        {
            return;
        }
        let at_start = st.cur.words.is_empty() && !w.quoted;
        match w.text.as_str() {
            "{" if at_start => {
                finish(st, out, Sep::Plain);
                st.groups.push((b'{', st.pending_fn.take()));
            }
            "}" if at_start && st.groups.iter().any(|g| g.0 == b'{') => {
                if let Some(i) = st.groups.iter().rposition(|g| g.0 == b'{') {
                    st.groups.truncate(i);
                }
            }
            "function" if at_start => {
                self.skip_blanks();
                if self.peek().is_some_and(|c| !is_meta(c)) {
                    let name = self.word(out);
                    self.skip_blanks();
                    if self.peek() == Some(b'(') {
                        self.pos += 1;
                        self.empty_parens();
                    }
                    st.pending_fn = Some(name.text);
                }
            }
            k if at_start && KEYWORDS.contains(&k) => {}
            _ => {
                st.pending_fn = None;
                st.cur.words.push(w.text);
            }
        }
    }
    /// At `<`, `>` or `&>`: one redirection (or a `<( )` / `>( )`).
    fn redirect(&mut self, st: &mut List, out: &mut Script) {
        let mut output = false;
        let mut dup = false;
        match self.peek() {
            Some(b'&') => {
                self.pos += 2; // `&>`
                if self.peek() == Some(b'>') {
                    self.pos += 1;
                }
                output = true;
            }
            Some(b'>') => {
                self.pos += 1;
                output = true;
                match self.peek() {
                    Some(b'>' | b'|') => self.pos += 1,
                    Some(b'&') => {
                        self.pos += 1;
                        dup = true;
                    }
                    Some(b'(') => {
                        self.pos += 1;
                        self.subst(out);
                        return;
                    }
                    _ => {}
                }
            }
            _ => {
                self.pos += 1; // `<`
                match self.peek() {
                    Some(b'<') if self.peek_at(1) == Some(b'<') => self.pos += 2,
                    Some(b'<') => {
                        self.pos += 1;
                        let strip_tabs = self.peek() == Some(b'-');
                        if strip_tabs {
                            self.pos += 1;
                        }
                        self.skip_blanks();
                        if self.peek().is_some_and(|c| !is_meta(c)) {
                            let w = self.word(out);
                            st.heredocs.push(Heredoc {
                                delim: w.text.into_bytes(),
                                strip_tabs,
                                expand: !w.quoted,
                            });
                        }
                        return;
                    }
                    Some(b'>') => {
                        self.pos += 1;
                        output = true;
                    }
                    Some(b'&') => {
                        self.pos += 1;
                        dup = true;
                    }
                    Some(b'(') => {
                        self.pos += 1;
                        self.subst(out);
                        return;
                    }
                    _ => {}
                }
            }
        }
        self.skip_blanks();
        if self.peek().is_none_or(is_meta) {
            return;
        }
        let target = self.word(out).text;
        if dup && (target == "-" || target.bytes().all(|b| b.is_ascii_digit())) {
            return;
        }
        st.cur.redirects.push(Redirect { output, target });
    }

    /// After a newline: skip the bodies of the here-documents opened on
    /// the line, lexing expanding ones like `"…"` for substitutions.
    fn heredoc_bodies(&mut self, st: &mut List, out: &mut Script) {
        for h in std::mem::take(&mut st.heredocs) {
            let body_start = self.pos;
            let mut body_end = self.s.len();
            while self.pos < self.s.len() {
                let line_start = self.pos;
                let line_end = self.s[self.pos..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(self.s.len(), |i| self.pos + i);
                self.pos = (line_end + 1).min(self.s.len());
                let mut line = &self.s[line_start..line_end];
                if h.strip_tabs {
                    while let [b'\t', rest @ ..] = line {
                        line = rest;
                    }
                }
                if line == h.delim.as_slice() {
                    body_end = line_start;
                    break;
                }
            }
            if h.expand {
                let mut sub = Parser {
                    s: &self.s[body_start..body_end],
                    pos: 0,
                    depth: self.depth,
                };
                sub.dquote(&mut Vec::new(), out, false);
            }
        }
    }
}

fn finish(st: &mut List, out: &mut Script, sep: Sep) {
    let mut cmd = std::mem::take(&mut st.cur);
    if cmd.words.is_empty() && cmd.redirects.is_empty() {
        st.pipe_in &= sep == Sep::Pipe;
        return;
    }
    cmd.piped = st.pipe_in || sep == Sep::Pipe;
    cmd.background = sep == Sep::Background;
    cmd.function = st.groups.iter().rev().find_map(|g| g.1.clone());
    out.commands.push(cmd);
    st.pipe_in = sep == Sep::Pipe;
}
