//! A small regular-expression matcher with Python `re` syntax, for Ganeti's `reserved_lvs`.
//!
//! Ganeti keeps reserved LV names as regular expressions and tests a volume `vg/lv` with
//! `re.compile("^%s$" % pattern).match(name)` (`utils.FieldSet`). [`Pattern::ganeti_field`]
//! builds exactly that, quirks included: an unparenthesised alternation `a|b` becomes `^a|b$`,
//! so `a` only has to match a prefix.
//!
//! Supported: literals, `.`, classes `[a-z_]`/`[^...]`, `\d \D \w \W \s \S`, escaped
//! metacharacters, `\A \Z`, groups `(...)`/`(?:...)`, `|`, `* + ? {m} {m,} {,n} {m,n}` (and
//! their lazy forms, which match the same set of names), `^ $`. Backreferences, lookarounds,
//! inline flags and `\b` are refused with an error rather than misread. Matching is a Pike VM
//! (linear in the name's length, no backtracking blow-up).

use crate::error::{NodeError, NodeResult};
/// Largest repetition count accepted in `{m,n}`.
const MAX_REPEAT: u32 = 1000;
/// Largest compiled program.
const MAX_PROGRAM: usize = 20_000;

#[derive(Debug, Clone, PartialEq)]
enum ClassItem {
    Range(char, char),
    Digit(bool),
    Word(bool),
    Space(bool),
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    /// `.`: any character but a newline.
    Any,
    Set {
        negated: bool,
        items: Vec<ClassItem>,
    },
}

impl ClassItem {
    fn matches(&self, c: char) -> bool {
        match *self {
            ClassItem::Range(a, b) => a <= c && c <= b,
            ClassItem::Digit(neg) => c.is_numeric() != neg,
            ClassItem::Word(neg) => (c.is_alphanumeric() || c == '_') != neg,
            ClassItem::Space(neg) => c.is_whitespace() != neg,
        }
    }
}

impl Matcher {
    fn matches(&self, c: char) -> bool {
        match self {
            Matcher::Any => c != '\n',
            Matcher::Set { negated, items } => items.iter().any(|i| i.matches(c)) != *negated,
        }
    }

    fn literal(c: char) -> Self {
        Matcher::Set {
            negated: false,
            items: vec![ClassItem::Range(c, c)],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Empty,
    Char(Matcher),
    Start,
    End,
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> NodeError {
        NodeError::bad_request(format!(
            "invalid pattern '{}' at {}: {what}",
            self.src, self.pos
        ))
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn alt(&mut self, depth: usize) -> NodeResult<Node> {
        if depth > 100 {
            return Err(self.err("groups nested too deeply"));
        }
        let mut branches = vec![self.concat(depth)?];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.concat(depth)?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Node::Empty)
        } else {
            Node::Alt(branches)
        })
    }

    fn concat(&mut self, depth: usize) -> NodeResult<Node> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom(depth)?;
            let atom = self.quantifiers(atom)?;
            items.push(atom);
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.pop().unwrap_or(Node::Empty),
            _ => Node::Concat(items),
        })
    }

    /// `{m}`, `{m,}`, `{,n}`, `{m,n}` at the current position (after `{`), or `None` when the
    /// brace is a literal (Python's rule).
    fn braces(&mut self) -> NodeResult<Option<(u32, Option<u32>)>> {
        let start = self.pos;
        let mut text = String::new();
        while let Some(c) = self.next() {
            if c == '}' {
                let parse = |s: &str| -> Result<Option<u32>, ()> {
                    if s.is_empty() {
                        Ok(None)
                    } else if s.chars().all(|c| c.is_ascii_digit()) {
                        s.parse::<u32>().map(Some).map_err(|_| ())
                    } else {
                        Err(())
                    }
                };
                let parsed = match text.split_once(',') {
                    None => parse(&text).map(|m| m.map(|m| (m, Some(m)))),
                    Some((a, b)) => match (parse(a), parse(b)) {
                        (Ok(a), Ok(b)) => Ok(Some((a.unwrap_or(0), b))),
                        _ => Err(()),
                    },
                };
                return match parsed {
                    Ok(Some((min, max))) => {
                        if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT) {
                            return Err(self.err("repetition count too large"));
                        }
                        if max.is_some_and(|m| m < min) {
                            return Err(self.err("min repeat greater than max repeat"));
                        }
                        Ok(Some((min, max)))
                    }
                    _ => {
                        self.pos = start;
                        Ok(None)
                    }
                };
            }
            text.push(c);
        }
        self.pos = start;
        Ok(None)
    }

    fn quantifiers(&mut self, mut atom: Node) -> NodeResult<Node> {
        loop {
            let (min, max) = match self.peek() {
                Some('*') => {
                    self.pos += 1;
                    (0, None)
                }
                Some('+') => {
                    self.pos += 1;
                    (1, None)
                }
                Some('?') => {
                    self.pos += 1;
                    (0, Some(1))
                }
                Some('{') => {
                    self.pos += 1;
                    match self.braces()? {
                        Some(q) => q,
                        None => {
                            self.pos -= 1;
                            return Ok(atom);
                        }
                    }
                }
                _ => return Ok(atom),
            };
            if matches!(atom, Node::Start | Node::End | Node::Repeat { .. }) {
                if let Node::Repeat { .. } = atom {
                    return Err(self.err("multiple repeat"));
                }
                return Err(self.err("nothing to repeat"));
            }
            // A lazy suffix matches the same set of whole names.
            if self.peek() == Some('?') {
                self.pos += 1;
            }
            atom = Node::Repeat {
                node: Box::new(atom),
                min,
                max,
            };
            if matches!(self.peek(), Some('*' | '+' | '?')) {
                return Err(self.err("multiple repeat"));
            }
        }
    }

    fn atom(&mut self, depth: usize) -> NodeResult<Node> {
        let Some(c) = self.next() else {
            return Err(self.err("unexpected end"));
        };
        match c {
            '(' => {
                if self.peek() == Some('?') {
                    self.pos += 1;
                    if self.next() != Some(':') {
                        return Err(self.err("only (?:...) groups are supported"));
                    }
                }
                let inner = self.alt(depth + 1)?;
                if self.next() != Some(')') {
                    return Err(self.err("missing ), unterminated subpattern"));
                }
                // Wrapped so that `(a*)*` is a repeated group, not a double repeat.
                Ok(Node::Concat(vec![inner]))
            }
            '[' => self.class(),
            '.' => Ok(Node::Char(Matcher::Any)),
            '^' => Ok(Node::Start),
            '$' => Ok(Node::End),
            '*' | '+' | '?' => Err(self.err("nothing to repeat")),
            '{' => {
                let save = self.pos;
                if self.braces()?.is_some() {
                    return Err(self.err("nothing to repeat"));
                }
                self.pos = save;
                Ok(Node::Char(Matcher::literal('{')))
            }
            '\\' => self.escape(false).map(|e| match e {
                Escaped::Node(n) => n,
                Escaped::Item(i) => Node::Char(Matcher::Set {
                    negated: false,
                    items: vec![i],
                }),
            }),
            c => Ok(Node::Char(Matcher::literal(c))),
        }
    }

    fn escape(&mut self, in_class: bool) -> NodeResult<Escaped> {
        let Some(c) = self.next() else {
            return Err(self.err("bad escape (end of pattern)"));
        };
        let lit = |c: char| Ok(Escaped::Item(ClassItem::Range(c, c)));
        match c {
            'd' => Ok(Escaped::Item(ClassItem::Digit(false))),
            'D' => Ok(Escaped::Item(ClassItem::Digit(true))),
            'w' => Ok(Escaped::Item(ClassItem::Word(false))),
            'W' => Ok(Escaped::Item(ClassItem::Word(true))),
            's' => Ok(Escaped::Item(ClassItem::Space(false))),
            'S' => Ok(Escaped::Item(ClassItem::Space(true))),
            'n' => lit('\n'),
            't' => lit('\t'),
            'r' => lit('\r'),
            'f' => lit('\u{c}'),
            'v' => lit('\u{b}'),
            'A' if !in_class => Ok(Escaped::Node(Node::Start)),
            'Z' if !in_class => Ok(Escaped::Node(Node::End)),
            c if c.is_ascii_alphanumeric() => Err(self.err(&format!("unsupported escape \\{c}"))),
            c => lit(c),
        }
    }

    fn class(&mut self) -> NodeResult<Node> {
        let negated = if self.peek() == Some('^') {
            self.pos += 1;
            true
        } else {
            false
        };
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let Some(c) = self.next() else {
                return Err(self.err("unterminated character set"));
            };
            if c == ']' && !first {
                break;
            }
            first = false;
            let item = if c == '\\' {
                match self.escape(true)? {
                    Escaped::Item(i) => i,
                    Escaped::Node(_) => return Err(self.err("bad escape in set")),
                }
            } else {
                ClassItem::Range(c, c)
            };
            // A range `a-z` (a `-` before `]` is literal).
            if let ClassItem::Range(lo, _) = item {
                let after = self.chars.get(self.pos + 1);
                if self.peek() == Some('-') && after.is_some() && after != Some(&']') {
                    self.pos += 1;
                    let hi = match self.next() {
                        Some('\\') => match self.escape(true)? {
                            Escaped::Item(ClassItem::Range(h, _)) => h,
                            _ => return Err(self.err("bad character range")),
                        },
                        Some(h) => h,
                        None => return Err(self.err("unterminated character set")),
                    };
                    if hi < lo {
                        return Err(self.err("bad character range"));
                    }
                    items.push(ClassItem::Range(lo, hi));
                    continue;
                }
            }
            items.push(item);
        }
        Ok(Node::Char(Matcher::Set { negated, items }))
    }
}

enum Escaped {
    Node(Node),
    Item(ClassItem),
}

#[derive(Debug, Clone, PartialEq)]
enum Inst {
    Char(Matcher),
    Split(usize, usize),
    Jmp(usize),
    Start,
    End,
    Match,
}

fn emit(node: &Node, prog: &mut Vec<Inst>) -> NodeResult<()> {
    if prog.len() > MAX_PROGRAM {
        return Err(NodeError::bad_request("pattern too large".to_string()));
    }
    match node {
        Node::Empty => {}
        Node::Char(m) => prog.push(Inst::Char(m.clone())),
        Node::Start => prog.push(Inst::Start),
        Node::End => prog.push(Inst::End),
        Node::Concat(items) => {
            for n in items {
                emit(n, prog)?;
            }
        }
        Node::Alt(branches) => {
            // split L1, next; L1: b0; jmp end; next: split L2, ... ; last branch
            let mut jumps = Vec::new();
            for (i, b) in branches.iter().enumerate() {
                if i + 1 < branches.len() {
                    let split = prog.len();
                    prog.push(Inst::Split(split + 1, 0));
                    emit(b, prog)?;
                    jumps.push(prog.len());
                    prog.push(Inst::Jmp(0));
                    let next = prog.len();
                    prog[split] = Inst::Split(split + 1, next);
                } else {
                    emit(b, prog)?;
                }
            }
            let end = prog.len();
            for j in jumps {
                prog[j] = Inst::Jmp(end);
            }
        }
        Node::Repeat { node, min, max } => {
            for _ in 0..*min {
                emit(node, prog)?;
            }
            match max {
                None => {
                    // L: split body, out; body; jmp L
                    let split = prog.len();
                    prog.push(Inst::Split(split + 1, 0));
                    emit(node, prog)?;
                    prog.push(Inst::Jmp(split));
                    let out = prog.len();
                    prog[split] = Inst::Split(split + 1, out);
                }
                Some(max) => {
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        splits.push(prog.len());
                        prog.push(Inst::Split(prog.len() + 1, 0));
                        emit(node, prog)?;
                    }
                    let out = prog.len();
                    for s in splits {
                        prog[s] = Inst::Split(s + 1, out);
                    }
                }
            }
        }
    }
    Ok(())
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    source: String,
    prog: Vec<Inst>,
}

impl Pattern {
    /// Compiles `source` as it is.
    pub fn new(source: &str) -> NodeResult<Self> {
        let mut p = Parser {
            chars: source.chars().collect(),
            pos: 0,
            src: source,
        };
        let node = p.alt(0)?;
        if p.pos != p.chars.len() {
            return Err(p.err("unbalanced parenthesis"));
        }
        let mut prog = Vec::new();
        emit(&node, &mut prog)?;
        prog.push(Inst::Match);
        if prog.len() > MAX_PROGRAM {
            return Err(NodeError::bad_request(format!(
                "invalid pattern '{source}': pattern too large"
            )));
        }
        Ok(Pattern {
            source: source.to_string(),
            prog,
        })
    }

    /// Ganeti's field pattern: `^` + `source` + `$`, tested with [`Pattern::matches_at_start`].
    pub fn ganeti_field(source: &str) -> NodeResult<Self> {
        let mut p = Pattern::new(&format!("^{source}$"))?;
        p.source = source.to_string();
        Ok(p)
    }

    /// The pattern as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Python's `re.match`: does a match start at the beginning of `text` (ending anywhere)?
    pub fn matches_at_start(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let n = self.prog.len();
        let mut current: Vec<usize> = Vec::new();
        let mut seen = vec![usize::MAX; n];
        let mut stack = Vec::new();
        self.closure(0, 0, &chars, &mut current, &mut seen, &mut stack);
        for (i, &c) in chars.iter().enumerate() {
            if current.iter().any(|&pc| self.prog[pc] == Inst::Match) {
                return true;
            }
            let mut next = Vec::new();
            for &pc in &current {
                if let Inst::Char(m) = &self.prog[pc] {
                    if m.matches(c) {
                        self.closure(pc + 1, i + 1, &chars, &mut next, &mut seen, &mut stack);
                    }
                }
            }
            if next.is_empty() {
                return false;
            }
            current = next;
        }
        current.iter().any(|&pc| self.prog[pc] == Inst::Match)
    }

    /// Adds `pc` and everything reachable from it without consuming input at `pos`.
    fn closure(
        &self,
        pc: usize,
        pos: usize,
        chars: &[char],
        out: &mut Vec<usize>,
        seen: &mut [usize],
        stack: &mut Vec<usize>,
    ) {
        stack.clear();
        stack.push(pc);
        while let Some(pc) = stack.pop() {
            if pc >= self.prog.len() || seen[pc] == pos {
                continue;
            }
            seen[pc] = pos;
            match &self.prog[pc] {
                Inst::Jmp(t) => stack.push(*t),
                Inst::Split(a, b) => {
                    stack.push(*b);
                    stack.push(*a);
                }
                Inst::Start => {
                    if pos == 0 {
                        stack.push(pc + 1);
                    }
                }
                Inst::End => {
                    let at_end = pos == chars.len()
                        || (pos + 1 == chars.len() && chars.get(pos) == Some(&'\n'));
                    if at_end {
                        stack.push(pc + 1);
                    }
                }
                Inst::Char(_) | Inst::Match => out.push(pc),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(p: &str, name: &str) -> bool {
        Pattern::ganeti_field(p)
            .expect("valid")
            .matches_at_start(name)
    }

    #[test]
    fn ganeti_field_semantics() {
        assert!(field("xenvg/root", "xenvg/root"));
        assert!(!field("xenvg/root", "xenvg/root2"));
        assert!(!field("xenvg/root", "axenvg/root"));
        assert!(field("xenvg/.*", "xenvg/anything"));
        assert!(field("xenvg/swap[0-9]+", "xenvg/swap12"));
        assert!(!field("xenvg/swap[0-9]+", "xenvg/swap"));
        // "." is any character, as in Python
        assert!(field("vg.root", "vg/root"));
        assert!(!field(r"vg\.root", "vg/root"));
        // Ganeti's quirk: ^a|b$ only anchors a at the start
        assert!(field("vg/a|vg/b", "vg/abc"));
        assert!(!field("vg/a|vg/b", "vg/bc"));
        assert!(field("vg/(a|b)", "vg/b"));
        assert!(!field("vg/(a|b)", "vg/bc"));
    }

    #[test]
    fn classes_escapes_and_counts() {
        assert!(field(r"[a-f0-9-]{8}\.disk\d", "abcd-123.disk0"));
        assert!(!field(r"[a-f0-9-]{8}\.disk\d", "abcd-12.disk0"));
        assert!(field(r"[^/]+/keep_\w*", "vg0/keep_me_1"));
        assert!(!field(r"[^/]+/keep_\w*", "vg0/sub/keep_me"));
        assert!(field("a{2,3}", "aaa"));
        assert!(!field("a{2,3}", "aaaa"));
        assert!(field("a{,2}b", "b"));
        assert!(field("x{", "x{"));
        assert!(field("[]a]+", "]a]"));
        assert!(field("[a-]+", "a-a"));
        assert!(field(r"(?:vg)+/lv.*?", "vgvg/lv1"));
        assert!(field(r"\Avg\Z", "vg"));
        assert!(field("", ""));
        assert!(!field("", "x"));
    }

    #[test]
    fn unsupported_or_invalid_patterns_are_errors() {
        for p in [
            "(a", "a)", "[a", "*a", "a**", r"\1", r"(?=a)", r"(?i)a", r"\b", "a{3,2}", "[z-a]",
            "\\", "a{5000}",
        ] {
            assert!(Pattern::new(p).is_err(), "{p} should be refused");
        }
    }

    #[test]
    fn no_blow_up_on_nested_repeats() {
        let p = Pattern::ganeti_field("(a*)*b").expect("valid");
        let text = "a".repeat(5000);
        assert!(!p.matches_at_start(&text));
        let p = Pattern::ganeti_field("(a|aa)*").expect("valid");
        assert!(p.matches_at_start(&"a".repeat(3000)));
    }
}
