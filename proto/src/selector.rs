//! Label selectors in the Kubernetes style: which collectors a scoped pause or a staged
//! resume applies to, by their labels. Shared by the control plane, which targets with
//! it, and the SDK, which checks the selector a signed resume names against its own
//! labels.
//!
//! # Syntax
//!
//! A selector is one or more requirements separated by `,`; a collector matches when it
//! meets all of them. ASCII whitespace may surround any token.
//!
//! | requirement | matches a collector that |
//! |---|---|
//! | `key=value` or `key==value` | has label `key` with that value |
//! | `key!=value` | does not have label `key` with that value, **including one without `key`** |
//! | `key in (v1,v2)` | has label `key` with one of the values |
//! | `key notin (v1,v2)` | does not have label `key` with any of the values, **including one without `key`** |
//! | `key` | has label `key`, whatever its value |
//! | `!key` | does not have label `key` |
//!
//! The semantics are Kubernetes': `!=` and `notin` also match collectors that lack the
//! label. To target only collectors that have it, add `key`: `region,region!=emea`.
//!
//! Keys follow the rules of collector label keys ([`label_key`]). Values are whatever a
//! collector's label value may be ([`label_value`]: at most 128 bytes, no control
//! characters, possibly empty). A value made only of ASCII letters, digits and `.` `_`
//! `-` `/` `:` `@` `+` may be written bare; any other value, and the empty value, is
//! written in double quotes, with `\"` for a quote and `\\` for a backslash:
//! `site="Room 4, \"B\""`, `team=""`.
//!
//! # Decisions
//!
//! - The empty (or blank) selector is an error, not "every collector": a pause that
//!   reaches the whole fleet must say so by omitting the selector.
//! - Order does not matter and repeats are merged: `b=2,a=1,a=1` equals `a=1,b=2`, which
//!   is its canonical form ([`Selector`]'s `Display`). A value list is a set.
//! - Requirements that no collector can meet together (`a=x,a=y`, `a,!a`,
//!   `a in (x),a notin (x)`) are rejected: a scoped pause that can reach nobody is
//!   always a mistake, and would otherwise look like it succeeded.
//! - Parsing is strict: trailing or doubled commas, empty value lists, unknown
//!   operators, unbalanced parentheses, bad keys and unquoted values with other
//!   characters are errors that give the column of the problem.
//! - Input is bounded: at most [`MAX_SELECTOR_BYTES`] bytes and [`MAX_REQUIREMENTS`]
//!   requirements (counted as written, before repeats are merged). The canonical form
//!   is held to the same byte limit, so that it always parses back: it is never longer
//!   than the input but for the space it writes in `key in (v1,v2)`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::contract::{label_key, label_value};

/// Longest selector accepted, in bytes.
pub const MAX_SELECTOR_BYTES: usize = 4096;
/// Most requirements a selector may hold, counted as written.
pub const MAX_REQUIREMENTS: usize = 64;
/// Most characters of an unknown operator quoted back in an error message.
const MAX_QUOTED_CHARS: usize = 32;
/// A selector that did not parse: where, and what was wrong.
///
/// Displays on one line, e.g. `invalid selector at column 8: expected ')' to close the
/// value list started at column 6`; [`SelectorError::pointer`] adds a caret under the
/// column for a terminal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector at column {column}: {message}")]
pub struct SelectorError {
    offset: usize,
    column: usize,
    message: String,
}

impl SelectorError {
    /// Where the problem is, as a byte offset into the selector (at most its length).
    #[must_use]
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Where the problem is, as a 1-based column counted in characters.
    #[must_use]
    pub fn column(&self) -> usize {
        self.column
    }

    /// What was wrong and what to do, without the position.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Two lines for a terminal: the part of `selector` around the problem (at most 30
    /// characters either side, `...` where cut, whitespace and control characters shown
    /// as spaces) and a caret under the problem's column.
    ///
    /// `selector` should be the string that was parsed; another one gives a meaningless
    /// picture but no panic. Wide characters can shift the caret.
    #[must_use]
    pub fn pointer(&self, selector: &str) -> String {
        crate::pointer(selector, self.column)
    }
}

/// A parsed, valid label selector: at least one requirement, and no contradiction.
///
/// Two selectors are equal when their canonical forms are; `Display` writes the
/// canonical form, which parses back to an equal selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    /// Sorted and without repeats, which makes equality and `Display` canonical.
    requirements: BTreeSet<Requirement>,
}

impl Selector {
    /// Parses a selector (see the [module documentation](self) for the syntax).
    ///
    /// # Errors
    ///
    /// The first problem found, with its position: an empty selector, more than
    /// [`MAX_SELECTOR_BYTES`] bytes or [`MAX_REQUIREMENTS`] requirements, a syntax error,
    /// a key or value that a collector label could not have, or requirements that
    /// contradict each other.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut parser = Parser {
            input,
            pos: 0,
            bare_end: None,
        };
        if input.len() > MAX_SELECTOR_BYTES {
            let mut end = MAX_SELECTOR_BYTES;
            while !input.is_char_boundary(end) {
                end -= 1;
            }
            return Err(parser.error(
                end,
                format!(
                    "the selector is {} bytes long; at most {MAX_SELECTOR_BYTES} are allowed: \
                     select on fewer or broader labels",
                    input.len()
                ),
            ));
        }
        let written = parser.requirements()?;
        check_satisfiable(&parser, &written)?;
        let selector = Self {
            requirements: written.into_iter().map(|(_, r)| r).collect(),
        };
        // The canonical form is never longer than the input, except for the space it
        // writes after `in` or `notin`: checked so that it always parses back.
        let canonical = selector.to_string().len();
        if canonical > MAX_SELECTOR_BYTES {
            return Err(parser.error(
                input.len(),
                format!(
                    "the selector is {canonical} bytes long in canonical form (with a space \
                     after each 'in' and 'notin'); at most {MAX_SELECTOR_BYTES} are allowed: \
                     select on fewer or broader labels"
                ),
            ));
        }
        Ok(selector)
    }

    /// Whether a collector with these labels meets every requirement.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl fmt::Display for Selector {
    /// The canonical form: requirements sorted by key, joined by `,` without spaces;
    /// a one-value list written with `=` or `!=`; values bare where the syntax allows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// What a requirement asks of one label. The order of the variants is the canonical
/// order of requirements on the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Op {
    Exists,
    NotExists,
    In,
    NotIn,
}

/// One requirement. `values` is empty for `Exists` and `NotExists`, and not empty for
/// `In` and `NotIn`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Requirement {
    key: String,
    op: Op,
    values: BTreeSet<String>,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let listed = || value.is_some_and(|v| self.values.contains(v));
        match self.op {
            Op::Exists => value.is_some(),
            Op::NotExists => value.is_none(),
            Op::In => listed(),
            Op::NotIn => !listed(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let (single, word) = match self.op {
            Op::Exists => return f.write_str(key),
            Op::NotExists => return write!(f, "!{key}"),
            Op::In => ("=", "in"),
            Op::NotIn => ("!=", "notin"),
        };
        if let (1, Some(value)) = (self.values.len(), self.values.first()) {
            return write!(f, "{key}{single}{}", Value(value));
        }
        write!(f, "{key} {word} (")?;
        for (i, value) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", Value(value))?;
        }
        f.write_str(")")
    }
}

/// A value as the canonical form writes it: bare when it can be, else quoted.
struct Value<'a>(&'a str);

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.is_empty() && self.0.chars().all(is_bare) {
            return f.write_str(self.0);
        }
        f.write_str("\"")?;
        for c in self.0.chars() {
            if matches!(c, '"' | '\\') {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}

/// A character an unquoted value may hold.
fn is_bare(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@' | '+')
}

/// A character that ends a token: whitespace or punctuation of the syntax.
fn is_delimiter(c: char) -> bool {
    c.is_ascii_whitespace() || matches!(c, ',' | '(' | ')' | '=' | '!' | '"')
}

/// A character of a key or an operator word. Broader than a key may hold, so that
/// `Region` or `zoné` is reported as a bad key rather than as stray characters.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':')
}

/// The start of `s`, at most [`MAX_QUOTED_CHARS`] characters, quoted for a message.
fn quoted(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{:?}...", s.get(..end).unwrap_or_default()),
        None => format!("{s:?}"),
    }
}

/// A recursive-descent parser over the selector; `pos` is a byte offset that is always
/// at a character boundary.
struct Parser<'a> {
    input: &'a str,
    pos: usize,
    /// Where the last unquoted value ended, to suggest quotes when a word follows it.
    bare_end: Option<usize>,
}

impl<'a> Parser<'a> {
    fn error(&self, offset: usize, message: String) -> SelectorError {
        let column = self.input.get(..offset).map_or(0, |s| s.chars().count()) + 1;
        SelectorError {
            offset,
            column,
            message,
        }
    }

    fn error_here(&self, message: String) -> SelectorError {
        self.error(self.pos, message)
    }

    fn rest(&self) -> &'a str {
        self.input.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }

    fn eat(&mut self, expected: char) -> bool {
        let found = self.peek() == Some(expected);
        if found {
            self.bump();
        }
        found
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.bump();
        }
    }

    /// The longest run of characters from here that satisfy `accept`.
    fn take_while(&mut self, accept: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&accept) {
            self.bump();
        }
        self.input.get(start..self.pos).unwrap_or_default()
    }

    /// What is at the current position, for a message.
    fn found(&self) -> String {
        match self.peek() {
            None => "the end of the selector".to_owned(),
            Some(c) => format!("{c:?}"),
        }
    }

    /// The whole selector: requirements in the order written, with their offsets.
    fn requirements(&mut self) -> Result<Vec<(usize, Requirement)>, SelectorError> {
        self.skip_whitespace();
        if self.peek().is_none() {
            return Err(self.error(
                0,
                "empty selector: to target every collector, omit --selector".to_owned(),
            ));
        }
        let mut written = Vec::new();
        loop {
            let start = self.pos;
            if written.len() == MAX_REQUIREMENTS {
                return Err(self.error_here(format!(
                    "more than {MAX_REQUIREMENTS} requirements: select on fewer or broader labels"
                )));
            }
            let requirement = self.requirement()?;
            let after_bare_value = self.bare_end == Some(self.pos);
            written.push((start, requirement));
            self.skip_whitespace();
            let comma = self.pos;
            match self.peek() {
                None => return Ok(written),
                Some(',') => {
                    self.bump();
                    self.skip_whitespace();
                    if self.peek().is_none() {
                        return Err(self.error(
                            comma,
                            "trailing ',': remove it, or add a requirement after it".to_owned(),
                        ));
                    }
                }
                Some(c) => {
                    let hint = if after_bare_value && !is_delimiter(c) {
                        "; to match a value with spaces, put it in double quotes"
                    } else {
                        ""
                    };
                    return Err(self.error_here(format!(
                        "expected ',' or the end of the selector after a requirement, found {}{hint}",
                        self.found()
                    )));
                }
            }
        }
    }

    /// One requirement, from its first character.
    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if self.eat('!') {
            self.skip_whitespace();
            let key = self.key("after '!'")?;
            let after_key = self.pos;
            self.skip_whitespace();
            if self.peek().is_some_and(|c| c != ',') {
                return Err(self.error_here(format!(
                    "'!{key}' selects collectors without label {key:?} and takes no operator or \
                     value: to exclude values, write {key}!=value or {key} notin (v1,v2)"
                )));
            }
            self.pos = after_key;
            return Ok(Requirement {
                key,
                op: Op::NotExists,
                values: BTreeSet::new(),
            });
        }
        let key = self.key("")?;
        self.skip_whitespace();
        let (op, values) = match self.peek() {
            None | Some(',') => (Op::Exists, BTreeSet::new()),
            Some('=') => {
                self.bump();
                let operator = if self.eat('=') { "'=='" } else { "'='" };
                (Op::In, self.single_value(operator)?)
            }
            Some('!') => {
                let bang = self.pos;
                self.bump();
                if !self.eat('=') {
                    return Err(self.error(
                        bang,
                        "unknown operator '!': write key!=value to exclude a value, or !key \
                         to select collectors without the label"
                            .to_owned(),
                    ));
                }
                (Op::NotIn, self.single_value("'!='")?)
            }
            Some(c) if is_word(c) => {
                let start = self.pos;
                let word = self.take_while(is_word);
                let op = match word {
                    "in" => Op::In,
                    "notin" => Op::NotIn,
                    _ => {
                        return Err(self.error(
                            start,
                            format!(
                                "unknown operator {} after key {key:?}: use =, ==, !=, in or notin",
                                quoted(word)
                            ),
                        ));
                    }
                };
                (op, self.value_list(word)?)
            }
            Some('(') => {
                return Err(self.error_here(format!(
                    "expected 'in' or 'notin' before '(': write {key} in (v1,v2)"
                )));
            }
            Some(_) => {
                return Err(self.error_here(format!(
                    "expected an operator (=, ==, !=, in or notin), ',' or the end of the \
                     selector after key {key:?}, found {}",
                    self.found()
                )));
            }
        };
        Ok(Requirement { key, op, values })
    }

    /// A label key; `after` says what came before it, for the message when it is missing.
    fn key(&mut self, after: &str) -> Result<String, SelectorError> {
        let start = self.pos;
        let word = self.take_while(is_word);
        if word.is_empty() {
            let after = if after.is_empty() {
                String::new()
            } else {
                format!(" {after}")
            };
            return Err(self.error_here(format!(
                "expected a label key{after}, found {}: a requirement is key, !key, key=value, \
                 key!=value, key in (v1,v2) or key notin (v1,v2)",
                self.found()
            )));
        }
        label_key(word)
            .map(|()| word.to_owned())
            .map_err(|e| self.error(start, e.to_string()))
    }

    /// The value after `=`, `==` or `!=`, as a one-value set.
    fn single_value(&mut self, operator: &str) -> Result<BTreeSet<String>, SelectorError> {
        self.skip_whitespace();
        let value = self.value(operator, "to match the empty value, write \"\"")?;
        Ok(BTreeSet::from([value]))
    }

    /// `(v1,v2,...)` after `in` or `notin` (`word`).
    fn value_list(&mut self, word: &str) -> Result<BTreeSet<String>, SelectorError> {
        self.skip_whitespace();
        let open = self.pos;
        if !self.eat('(') {
            return Err(self.error_here(format!(
                "expected '(' after '{word}' to start the value list, found {}: write key {word} (v1,v2)",
                self.found()
            )));
        }
        let open_column = self.error(open, String::new()).column;
        self.skip_whitespace();
        if self.peek() == Some(')') {
            return Err(self.error_here(format!(
                "empty value list: give at least one value, e.g. key {word} (v1,v2)"
            )));
        }
        let mut values = BTreeSet::new();
        let mut after = "'('";
        loop {
            self.skip_whitespace();
            let hint = if after == "','" {
                "remove the extra ','"
            } else {
                "to match the empty value, write \"\""
            };
            values.insert(self.value(after, hint)?);
            self.skip_whitespace();
            match self.peek() {
                Some(',') => {
                    self.bump();
                    after = "','";
                }
                Some(')') => {
                    self.bump();
                    return Ok(values);
                }
                None => {
                    return Err(self.error_here(format!(
                        "expected ')' to close the value list started at column {open_column}"
                    )));
                }
                Some(c) => {
                    let hint = if is_delimiter(c) {
                        ""
                    } else {
                        "; to match a value with spaces, put it in double quotes"
                    };
                    return Err(self.error_here(format!(
                        "expected ',' or ')' in the value list started at column {open_column}, \
                         found {}{hint}",
                        self.found()
                    )));
                }
            }
        }
    }

    /// One value, bare or quoted; `after` and `hint` make the message when it is missing.
    fn value(&mut self, after: &str, hint: &str) -> Result<String, SelectorError> {
        let start = self.pos;
        let value = if self.peek() == Some('"') {
            self.quoted_value()?
        } else {
            let bare = self.take_while(|c| !is_delimiter(c));
            if bare.is_empty() {
                return Err(self.error_here(format!(
                    "expected a value after {after}, found {}: {hint}",
                    self.found()
                )));
            }
            if let Some((i, c)) = bare.char_indices().find(|&(_, c)| !is_bare(c)) {
                let message = if c == '\'' {
                    "single quotes are not supported: put the value in double quotes".to_owned()
                } else {
                    format!(
                        "{c:?} cannot appear in a value without quotes: put the value in double \
                         quotes (unquoted values hold only a-z, A-Z, 0-9 and . _ - / : @ +)"
                    )
                };
                return Err(self.error(start + i, message));
            }
            self.bare_end = Some(self.pos);
            bare.to_owned()
        };
        label_value(&value)
            .map(|()| value)
            .map_err(|e| self.error(start, e.to_string()))
    }

    /// A double-quoted value, from its opening quote; `\"` and `\\` are the only escapes.
    fn quoted_value(&mut self) -> Result<String, SelectorError> {
        let open = self.pos;
        self.bump();
        let mut value = String::new();
        loop {
            let escape = self.pos;
            match self.peek() {
                None => {
                    return Err(self.error(
                        open,
                        "unterminated quoted value: close it with '\"'".to_owned(),
                    ));
                }
                Some('"') => {
                    self.bump();
                    return Ok(value);
                }
                Some('\\') => {
                    self.bump();
                    match self.peek() {
                        Some(c @ ('"' | '\\')) => value.push(c),
                        None => {
                            return Err(self.error(
                                open,
                                "unterminated quoted value: close it with '\"'".to_owned(),
                            ));
                        }
                        Some(c) => {
                            return Err(self.error(
                                escape,
                                format!(
                                    "unknown escape '\\{}' in a quoted value: only \\\" and \\\\ \
                                     are allowed",
                                    c.escape_debug()
                                ),
                            ));
                        }
                    }
                    self.bump();
                }
                Some(c) => {
                    value.push(c);
                    self.bump();
                }
            }
        }
    }
}

/// What the requirements on one key allow so far.
#[derive(Default)]
struct KeyConstraint<'a> {
    /// The label must be present (`key`, `=`, `in`).
    present: bool,
    /// The label must be absent (`!key`).
    absent: bool,
    /// The values still allowed (intersection of `=` and `in`), if any such requirement.
    allowed: Option<BTreeSet<&'a str>>,
    /// The values excluded (union of `!=` and `notin`).
    denied: BTreeSet<&'a str>,
}

impl<'a> KeyConstraint<'a> {
    fn add(&mut self, requirement: &'a Requirement) {
        let values = requirement.values.iter().map(String::as_str);
        match requirement.op {
            Op::Exists => self.present = true,
            Op::NotExists => self.absent = true,
            Op::In => {
                self.present = true;
                let listed: BTreeSet<&str> = values.collect();
                self.allowed = Some(match self.allowed.take() {
                    Some(allowed) => allowed.intersection(&listed).copied().collect(),
                    None => listed,
                });
            }
            Op::NotIn => self.denied.extend(values),
        }
    }

    /// Whether some label (or its absence) meets every requirement added. Label values
    /// are unbounded, so only `=`/`in` can run out of values.
    fn satisfiable(&self) -> bool {
        !(self.present && self.absent)
            && self
                .allowed
                .as_ref()
                .is_none_or(|allowed| allowed.iter().any(|v| !self.denied.contains(v)))
    }
}

/// Rejects requirements that no collector can meet together, pointing at the first one
/// (in the order written) that makes its key's requirements contradict.
fn check_satisfiable(
    parser: &Parser<'_>,
    written: &[(usize, Requirement)],
) -> Result<(), SelectorError> {
    let mut keys: BTreeMap<&str, KeyConstraint<'_>> = BTreeMap::new();
    for (offset, requirement) in written {
        let constraint = keys.entry(requirement.key.as_str()).or_default();
        constraint.add(requirement);
        if !constraint.satisfiable() {
            return Err(parser.error(
                *offset,
                format!(
                    "this requirement contradicts the earlier ones on label {:?}: no collector \
                     can match the selector; remove or change one of them",
                    requirement.key
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract;

    /// A valid selector parses, displays as `canonical`, and the canonical form parses
    /// back to an equal selector that displays the same (the round trip).
    fn check_valid(input: &str, canonical: &str) {
        let selector = Selector::parse(input)
            .unwrap_or_else(|e| panic!("{input:?} should parse: {e}\n{}", e.pointer(input)));
        assert_eq!(
            selector.to_string(),
            canonical,
            "canonical form of {input:?}"
        );
        let again = Selector::parse(canonical)
            .unwrap_or_else(|e| panic!("canonical {canonical:?} should parse: {e}"));
        assert_eq!(again, selector, "round trip of {input:?}");
        assert_eq!(
            again.to_string(),
            canonical,
            "canonical form is a fixed point"
        );
    }

    /// An invalid selector fails at `column` with a message containing `expected`.
    fn check_invalid(input: &str, column: usize, expected: &str) {
        let error = match Selector::parse(input) {
            Ok(selector) => panic!("{input:?} should not parse, got {selector}"),
            Err(error) => error,
        };
        let message = error.to_string();
        assert!(
            message.contains(expected),
            "{input:?}: {message:?} should contain {expected:?}"
        );
        assert_eq!(error.column(), column, "{input:?}: {message}");
        assert!(
            message.starts_with(&format!("invalid selector at column {column}: ")),
            "{message}"
        );
        assert_eq!(
            input.get(..error.offset()).map(|s| s.chars().count() + 1),
            Some(column),
            "{input:?}: offset {} and column {column} disagree",
            error.offset()
        );
    }

    #[test]
    fn valid_selectors_and_their_canonical_form() {
        let long_key = "k".repeat(contract::MAX_LABEL_KEY_BYTES);
        let long_value = "v".repeat(contract::MAX_LABEL_VALUE_BYTES);
        let table: &[(&str, &str)] = &[
            ("region=emea", "region=emea"),
            ("region==emea", "region=emea"),
            ("  region  ==  emea  ", "region=emea"),
            ("region!=emea", "region!=emea"),
            ("region != emea", "region!=emea"),
            ("region in (emea,apac)", "region in (apac,emea)"),
            ("region in ( emea , apac )", "region in (apac,emea)"),
            ("region in(emea,apac)", "region in (apac,emea)"),
            ("region in (emea)", "region=emea"),
            ("region in (emea,emea)", "region=emea"),
            ("region notin (b,a,b)", "region notin (a,b)"),
            ("region notin (a)", "region!=a"),
            ("gpu", "gpu"),
            ("!gpu", "!gpu"),
            ("! gpu", "!gpu"),
            ("tier=1,region=emea", "region=emea,tier=1"),
            ("a=b,a=b", "a=b"),
            ("a!=b,!a", "!a,a!=b"),
            ("a,a!=b", "a,a!=b"),
            ("a in (x,y),a notin (x)", "a in (x,y),a!=x"),
            ("a=x,a in (x,y)", "a=x,a in (x,y)"),
            ("e notin (f),c!=d,!b,a", "a,!b,c!=d,e!=f"),
            ("\ta\tin\t(x,y)\n", "a in (x,y)"),
            ("app.kubernetes.io/name=web", "app.kubernetes.io/name=web"),
            (
                "version=1.2.3+build,owner=ops@example.com,path=/a/b:c",
                "owner=ops@example.com,path=/a/b:c,version=1.2.3+build",
            ),
            ("camel=Value_1", "camel=Value_1"),
            ("team=\"\"", "team=\"\""),
            ("team in (\"\",a)", "team in (\"\",a)"),
            ("v=\"abc\"", "v=abc"),
            ("name=\"é\"", "name=\"é\""),
            ("site=\"Room 4, (B)\"", "site=\"Room 4, (B)\""),
            (r#"q="say \"hi\" \\o/""#, r#"q="say \"hi\" \\o/""#),
            ("x=\"a=b,c!=d\"", "x=\"a=b,c!=d\""),
            ("in in (in)", "in=in"),
            ("in", "in"),
            ("notin notin (in,notin)", "notin notin (in,notin)"),
            ("7=7", "7=7"),
        ];
        for &(input, canonical) in table {
            check_valid(input, canonical);
        }
        check_valid(
            &format!("{long_key}={long_value}"),
            &format!("{long_key}={long_value}"),
        );
        let many: Vec<String> = (0..MAX_REQUIREMENTS).map(|i| format!("k{i}")).collect();
        let selector = Selector::parse(&many.join(",")).expect("64 requirements");
        assert_eq!(selector.requirements.len(), MAX_REQUIREMENTS);
        assert_eq!("a=b".parse::<Selector>(), Selector::parse("a=b"));
    }

    #[test]
    fn the_canonical_form_ignores_order_and_repeats() {
        let a = Selector::parse("b=2, a in (y,x), !c, a").expect("valid");
        let b = Selector::parse("a,!c,a in (x,y),b==2,a in (x,x,y)").expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "a,a in (x,y),b=2,!c");
    }

    #[test]
    fn invalid_selectors_say_where_and_why() {
        let table: &[(&str, usize, &str)] = &[
            (
                "",
                1,
                "empty selector: to target every collector, omit --selector",
            ),
            ("  \t ", 1, "empty selector"),
            // Commas.
            ("a=b,", 4, "trailing ','"),
            ("a=b , ", 5, "trailing ','"),
            ("a=b,,c", 5, "expected a label key, found ','"),
            (",a", 1, "expected a label key, found ','"),
            // Keys.
            (
                "Region=emea",
                1,
                "invalid label key \"Region\": use 1 to 63 characters",
            ),
            ("a,zoné", 3, "invalid label key \"zoné\""),
            ("a-=b", 1, "invalid label key \"a-\""),
            ("=b", 1, "expected a label key, found '='"),
            ("(a)", 1, "expected a label key, found '('"),
            ("\"a\"=b", 1, "expected a label key, found '\"'"),
            (
                "!",
                2,
                "expected a label key after '!', found the end of the selector",
            ),
            ("!!a", 2, "expected a label key after '!', found '!'"),
            ("a,~b", 3, "expected a label key, found '~'"),
            // Operators.
            ("a>1", 2, "expected an operator (=, ==, !=, in or notin)"),
            ("a =~ b", 4, "'~' cannot appear in a value without quotes"),
            ("a===b", 4, "expected a value after '==', found '='"),
            ("a!b", 2, "unknown operator '!'"),
            ("a IN (b)", 3, "unknown operator \"IN\" after key \"a\""),
            ("region emea", 8, "unknown operator \"emea\""),
            ("a (b)", 3, "expected 'in' or 'notin' before '('"),
            ("a\u{7}", 2, "found '\\u{7}'"),
            (
                "!a=b",
                3,
                "takes no operator or value: to exclude values, write a!=value",
            ),
            ("!a in (b)", 4, "takes no operator or value"),
            // Values.
            (
                "a=",
                3,
                "expected a value after '=', found the end of the selector: to match the empty value, write \"\"",
            ),
            ("a!=,b", 4, "expected a value after '!=', found ','"),
            ("a=!b", 3, "expected a value after '=', found '!'"),
            (
                "a=b c",
                5,
                "found 'c'; to match a value with spaces, put it in double quotes",
            ),
            (
                "a=b)",
                4,
                "expected ',' or the end of the selector after a requirement, found ')'",
            ),
            ("a=é", 3, "'é' cannot appear in a value without quotes"),
            ("a=xé", 4, "'é' cannot appear in a value without quotes"),
            ("a='x'", 3, "single quotes are not supported"),
            (
                "a=b\\c",
                4,
                "'\\\\' cannot appear in a value without quotes",
            ),
            ("a=\"x", 3, "unterminated quoted value"),
            ("a=\"x\\", 3, "unterminated quoted value"),
            ("a=\"\\q\"", 4, "unknown escape '\\q'"),
            (
                "a=\"x\ny\"",
                3,
                "label value must not contain control characters",
            ),
            (
                "a=\"x\"y",
                6,
                "expected ',' or the end of the selector after a requirement, found 'y'",
            ),
            // Value lists.
            (
                "a in (b",
                8,
                "expected ')' to close the value list started at column 6",
            ),
            (
                "a in (b,",
                9,
                "expected a value after ',', found the end of the selector: remove the extra ','",
            ),
            (
                "a in (b,)",
                9,
                "expected a value after ',', found ')': remove the extra ','",
            ),
            ("a in (b,,c)", 9, "expected a value after ','"),
            ("a in (,b)", 7, "expected a value after '(', found ','"),
            ("a in ()", 7, "empty value list"),
            ("a notin ( )", 11, "empty value list"),
            (
                "a in b",
                6,
                "expected '(' after 'in' to start the value list, found 'b'",
            ),
            ("a notin", 8, "expected '(' after 'notin'"),
            (
                "a in (b))",
                9,
                "expected ',' or the end of the selector after a requirement, found ')'",
            ),
            (
                "a in (b c)",
                9,
                "expected ',' or ')' in the value list started at column 6, found 'c'; to match a value with spaces",
            ),
            ("a in ((b))", 7, "expected a value after '(', found '('"),
            ("a in (b=c)", 8, "expected ',' or ')' in the value list"),
            // Contradictions.
            (
                "a=x,a=y",
                5,
                "contradicts the earlier ones on label \"a\": no collector can match",
            ),
            ("a,!a", 3, "contradicts"),
            ("!a,a=x", 4, "contradicts"),
            ("a in (x,y),a notin (y,x)", 12, "contradicts"),
            ("a in (x,y),a!=x,a!=y", 17, "contradicts"),
            ("a in (x,y),b,a in (z)", 14, "contradicts"),
            ("a=x,a!=x", 5, "contradicts"),
            // Columns count characters, not bytes.
            ("é=1", 1, "invalid label key \"é\""),
            ("a=\"é\",b in (c", 14, "started at column 12"),
        ];
        for &(input, column, expected) in table {
            check_invalid(input, column, expected);
        }
    }

    #[test]
    fn bounds() {
        let key = "k".repeat(contract::MAX_LABEL_KEY_BYTES + 1);
        check_invalid(
            &format!("a,{key}"),
            3,
            "label key is 64 bytes long; at most 63",
        );
        let value = "v".repeat(contract::MAX_LABEL_VALUE_BYTES + 1);
        check_invalid(
            &format!("a={value}"),
            3,
            "label value is 129 bytes long; at most 128",
        );
        check_invalid(&format!("a=\"{value}\""), 3, "at most 128");

        let many: Vec<String> = (0..=MAX_REQUIREMENTS).map(|i| format!("k{i}")).collect();
        let input = many.join(", ");
        let column = input.find("k64").map(|i| i + 1);
        check_invalid(&input, column.unwrap_or(0), "more than 64 requirements");

        let long = format!("a in ({})", "v,".repeat(MAX_SELECTOR_BYTES));
        check_invalid(&long, MAX_SELECTOR_BYTES + 1, "at most 4096 are allowed");
        // The limit is in bytes; the column of a cut inside a character is before it.
        let wide = format!("a=\"{}\"", "é".repeat(MAX_SELECTOR_BYTES));
        check_invalid(&wide, 3 + (MAX_SELECTOR_BYTES - 3) / 2 + 1, "bytes long");
    }

    #[test]
    fn the_canonical_form_is_held_to_the_byte_limit() {
        // 64 lists `kNN in(<pad>,b)` of `len` bytes in all; the canonical form adds a
        // space after each `in`.
        let lists = |len: usize| -> String {
            let pad = len - (MAX_REQUIREMENTS * "kNN in(,b)".len() + MAX_REQUIREMENTS - 1);
            let input = (0..MAX_REQUIREMENTS)
                .map(|i| {
                    let width = pad / MAX_REQUIREMENTS + usize::from(i < pad % MAX_REQUIREMENTS);
                    format!("k{i:02} in({},b)", "v".repeat(width))
                })
                .collect::<Vec<_>>()
                .join(",");
            assert_eq!(input.len(), len);
            input
        };
        let fits = Selector::parse(&lists(MAX_SELECTOR_BYTES - MAX_REQUIREMENTS)).expect("fits");
        assert_eq!(fits.to_string().len(), MAX_SELECTOR_BYTES);
        for len in [
            MAX_SELECTOR_BYTES - MAX_REQUIREMENTS + 1,
            MAX_SELECTOR_BYTES,
        ] {
            let canonical = len + MAX_REQUIREMENTS;
            check_invalid(
                &lists(len),
                len + 1,
                &format!("{canonical} bytes long in canonical form"),
            );
        }
    }

    #[test]
    fn messages_stay_short_however_long_the_input() {
        let huge = "A".repeat(MAX_SELECTOR_BYTES);
        let inputs = [
            huge.clone(),
            format!("a {}", "x".repeat(MAX_SELECTOR_BYTES - 2)),
            format!("a={}é", "x".repeat(MAX_SELECTOR_BYTES - 4)),
            format!("{}=a", "é".repeat(MAX_SELECTOR_BYTES / 2 - 1)),
            format!("{huge}{huge}"),
        ];
        for input in &inputs {
            let message = Selector::parse(input).expect_err("invalid").to_string();
            assert!(message.len() < 600, "{} bytes: {message}", message.len());
        }
    }

    #[test]
    fn matching() {
        let labels: BTreeMap<String, String> = [
            ("region", "emea"),
            ("tier", "1"),
            ("site", "Room 4"),
            ("gpu", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let table: &[(&str, bool)] = &[
            ("region=emea", true),
            ("region==emea", true),
            ("region=apac", false),
            ("region!=apac", true),
            ("region!=emea", false),
            ("zone!=x", true),
            ("zone notin (x,y)", true),
            ("zone in (x,y)", false),
            ("zone=x", false),
            ("region in (apac,emea)", true),
            ("region in (apac,amer)", false),
            ("region notin (apac,emea)", false),
            ("region notin (apac,amer)", true),
            ("gpu", true),
            ("!gpu", false),
            ("!zone", true),
            ("zone", false),
            ("gpu=\"\"", true),
            ("gpu!=\"\"", false),
            ("region=\"\"", false),
            ("site=\"Room 4\"", true),
            ("site=Room", false),
            ("region=emea,tier=1", true),
            ("region=emea,tier=2", false),
            ("region,zone", false),
            ("region,!zone,tier in (1,2),site!=x", true),
            ("region=EMEA", false),
        ];
        for &(input, expected) in table {
            let selector = Selector::parse(input).expect("valid");
            assert_eq!(selector.matches(&labels), expected, "{input:?}");
            let canonical = Selector::parse(&selector.to_string()).expect("round trip");
            assert_eq!(canonical.matches(&labels), expected, "canonical {selector}");
        }
        let selector = Selector::parse("!region").expect("valid");
        assert!(selector.matches(&BTreeMap::new()));
        let selector = Selector::parse("region!=emea").expect("valid");
        assert!(
            selector.matches(&BTreeMap::new()),
            "!= matches an absent label"
        );
    }

    #[test]
    fn pointer_puts_a_caret_under_the_column() {
        let input = "region in (emea";
        let error = Selector::parse(input).expect_err("unclosed");
        assert_eq!(
            error.pointer(input),
            "  region in (emea\n                 ^"
        );
        let input = "a=\tb c";
        let error = Selector::parse(input).expect_err("two words");
        assert_eq!(error.pointer(input), "  a= b c\n       ^");
        let input = format!("{}=x{},", "a".repeat(40), ",b".repeat(40));
        let error = Selector::parse(&input).expect_err("trailing comma");
        let pointer = error.pointer(&input);
        let lines: Vec<&str> = pointer.lines().collect();
        assert_eq!(lines.len(), 2, "{pointer}");
        assert!(
            lines[0].starts_with("  ...") && !lines[0].ends_with("..."),
            "{pointer}"
        );
        assert_eq!(
            lines[1].len(),
            2 + 3 + crate::POINTER_CONTEXT + 1,
            "{pointer}"
        );
        // A different string gives no panic.
        assert_eq!(error.pointer("").lines().count(), 2);
    }
}
