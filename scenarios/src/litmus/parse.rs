//! The parser of herdtools7's x86 litmus format (herd7's `X86` architecture, Intel syntax, as
//! in herdtools7 `lib/X86Parser.mly` and `catalogue/x86/tests/*.litmus`):
//!
//! ```text
//! X86 SB                               header: architecture X86 and the test's name
//! "PodWR Fre PodWR Fre"                optional quoted description, then `key=value` lines
//! { x=0; 0:EAX=0; }                    initial state (everything else is 0)
//!  P0          | P1          ;         thread columns
//!  MOV [x],$1  | MOV [y],$1  ;
//!  MOV EAX,[y] | MOV EAX,[x] ;
//! exists (0:EAX=0 /\ 1:EAX=0)          `exists`, `~exists` or `forall`; `/\`, `\/`, `~`, ( )
//! ```
//!
//! `(* comments *)` are skipped. Everything the runner cannot do — another architecture,
//! labels and branches, register-indirect addressing, an instruction it does not know — is
//! refused with the line it is on, never skipped.

use iced_x86::Register;

use super::{Condition, Insn, LitmusTest, Op, Operand, Prop, Quantifier, Target, REGISTERS};

/// Bad input: the line (1-based) and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct ParseError {
    /// The line.
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

fn err<T>(line: usize, msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { line, msg: msg.into() })
}

/// Parses a litmus test.
pub fn parse(text: &str) -> Result<LitmusTest, ParseError> {
    let text = strip_comments(text)?;
    let lines: Vec<(usize, &str)> =
        text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty()).collect();
    let mut p = Parser { lines, at: 0, locations: Vec::new() };
    let name = p.header()?;
    let init = p.init()?;
    let threads = p.threads()?;
    let cond_line = p.peek().map_or(1, |l| l.0);
    let (shown, condition) = p.condition()?;
    let test = LitmusTest { name, init, threads, condition, shown, locations: p.locations };
    check_threads(&test, cond_line)?;
    Ok(test)
}

/// Every `P:REG` names one of the test's threads.
fn check_threads(test: &LitmusTest, cond_line: usize) -> Result<(), ParseError> {
    let mut named: Vec<Target> = test.init.iter().map(|(t, _)| t.clone()).collect();
    named.extend(test.observed());
    for t in named {
        if let Target::Reg(thread, _) = t {
            if thread >= test.threads.len() {
                return err(
                    cond_line,
                    format!("{t} names thread {thread}; the test has {} threads", test.threads.len()),
                );
            }
        }
    }
    Ok(())
}

/// Replaces `(* ... *)` comments (which may span lines) with spaces, keeping the newlines.
fn strip_comments(text: &str) -> Result<String, ParseError> {
    let mut out = String::with_capacity(text.len());
    let (mut depth, mut line, mut opened) = (0usize, 1usize, 0usize);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '(' && chars.peek() == Some(&'*') {
            chars.next();
            depth += 1;
            opened = line;
            out.push_str("  ");
        } else if depth > 0 && c == '*' && chars.peek() == Some(&')') {
            chars.next();
            depth -= 1;
            out.push_str("  ");
        } else {
            line += usize::from(c == '\n');
            out.push(if depth > 0 && c != '\n' { ' ' } else { c });
        }
    }
    if depth > 0 {
        return err(opened, "comment `(*` is never closed");
    }
    Ok(out)
}

struct Parser<'a> {
    lines: Vec<(usize, &'a str)>,
    at: usize,
    locations: Vec<String>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<(usize, &'a str)> {
        self.lines.get(self.at).copied()
    }

    fn last_line(&self) -> usize {
        self.lines.last().map_or(1, |l| l.0)
    }

    fn location(&mut self, name: &str, line: usize) -> Result<String, ParseError> {
        let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return err(line, format!("`{name}` is not a location name"));
        }
        if register(name).is_some() || name.eq_ignore_ascii_case("ESP") {
            return err(line, format!("`{name}` is a register, not a memory location"));
        }
        if !self.locations.iter().any(|l| l == name) {
            self.locations.push(name.to_string());
        }
        Ok(name.to_string())
    }

    /// `X86 NAME`, then an optional quoted line and `key=value` lines, up to the `{`.
    fn header(&mut self) -> Result<String, ParseError> {
        let Some((line, first)) = self.peek() else { return err(1, "empty file: expected `X86 NAME`") };
        let mut words = first.split_whitespace();
        let arch = words.next().unwrap_or("");
        if arch != "X86" {
            return err(line, format!("architecture `{arch}`: pokesim litmus runs X86 tests (`X86 NAME`)"));
        }
        let name = words.collect::<Vec<_>>().join(" ");
        if name.is_empty() {
            return err(line, "the header names no test: expected `X86 NAME`");
        }
        self.at += 1;
        while let Some((line, l)) = self.peek() {
            if l.starts_with('{') {
                return Ok(name);
            }
            let quoted = l.starts_with('"') && l.ends_with('"') && l.len() >= 2;
            if !quoted && !l.contains('=') {
                return err(line, format!("expected the initial state `{{ ... }}`, found `{l}`"));
            }
            self.at += 1;
        }
        err(self.last_line(), "no initial state `{ ... }`")
    }

    /// The `{ ... }` block: `loc=v;`, `[loc]=v;`, `P:REG=v;` entries.
    fn init(&mut self) -> Result<Vec<(Target, i64)>, ParseError> {
        let mut out = Vec::new();
        let (start, _) = self.peek().expect("header stopped at `{`");
        let mut closed = false;
        let mut first = true;
        while let Some((line, l)) = self.peek() {
            self.at += 1;
            let mut body = if first { &l[1..] } else { l };
            first = false;
            if let Some(end) = body.find('}') {
                if !body[end + 1..].trim().is_empty() {
                    return err(line, "unexpected text after `}`");
                }
                body = &body[..end];
                closed = true;
            }
            for entry in body.split(';').map(str::trim).filter(|e| !e.is_empty()) {
                out.push(self.init_entry(entry, line)?);
            }
            if closed {
                return Ok(out);
            }
        }
        err(start, "the initial state `{` is never closed")
    }

    fn init_entry(&mut self, entry: &str, line: usize) -> Result<(Target, i64), ParseError> {
        let entry = entry.strip_prefix("int ").unwrap_or(entry).trim();
        let Some((lhs, rhs)) = entry.split_once('=') else {
            return err(line, format!("initial value `{entry}`: expected `NAME=VALUE`"));
        };
        let target = self.target(lhs.trim(), line)?;
        let Some(value) = number(rhs.trim()) else {
            return err(
                line,
                format!(
                    "initial value of {target}: `{}` is not a number (addresses in registers are not supported)",
                    rhs.trim()
                ),
            );
        };
        Ok((target, value))
    }

    /// `P:REG`, `loc` or `[loc]`.
    fn target(&mut self, s: &str, line: usize) -> Result<Target, ParseError> {
        if let Some((t, r)) = s.split_once(':') {
            let Ok(t) = t.trim().parse::<usize>() else {
                return err(line, format!("`{s}`: expected `THREAD:REGISTER`"));
            };
            let Some(reg) = register(r.trim()) else {
                return err(
                    line,
                    format!("`{s}`: `{}` is not a supported register (EAX, EBX, ECX, EDX, ESI, EDI, EBP)", r.trim()),
                );
            };
            return Ok(Target::Reg(t, reg));
        }
        let name = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(s).trim();
        Ok(Target::Loc(self.location(name, line)?))
    }

    /// The `P0 | P1 ;` line and the instruction rows under it.
    fn threads(&mut self) -> Result<Vec<Vec<Insn>>, ParseError> {
        let Some((line, head)) = self.peek() else { return err(self.last_line(), "no thread columns `P0 | P1 ;`") };
        self.at += 1;
        let cells = row(head, line)?;
        for (i, c) in cells.iter().enumerate() {
            if *c != format!("P{i}") {
                return err(line, format!("thread column {i} is `{c}`: expected `P{i}`"));
            }
        }
        let mut threads = vec![Vec::new(); cells.len()];
        while let Some((line, l)) = self.peek() {
            if is_condition_start(l) {
                break;
            }
            self.at += 1;
            let cells = row(l, line)?;
            if cells.len() != threads.len() {
                return err(line, format!("{} columns where the test has {} threads", cells.len(), threads.len()));
            }
            for (t, cell) in cells.iter().enumerate() {
                if !cell.is_empty() {
                    threads[t].push(self.insn(cell, line)?);
                }
            }
        }
        Ok(threads)
    }

    /// One instruction (herd7's X86 syntax: `MOV [x],$1`, `LOCK INC [x]`, ...).
    fn insn(&mut self, text: &str, line: usize) -> Result<Insn, ParseError> {
        let (mnemonic, rest) = split_mnemonic(text);
        let upper = mnemonic.to_ascii_uppercase();
        if upper == "LOCK" {
            let mut inner = self.insn(rest.trim_start_matches(';').trim(), line)?;
            let lockable = matches!(inner.op, Op::Add | Op::Or | Op::Xor | Op::Inc | Op::Dec | Op::Xchg | Op::Cmpxchg);
            if !lockable || !matches!(inner.operands.first(), Some(Operand::Mem(_))) {
                return err(
                    line,
                    format!("`{text}`: LOCK needs ADD, OR, XOR, INC, DEC, XCHG or CMPXCHG with a memory destination"),
                );
            }
            inner.lock = true;
            inner.text = text.to_string();
            return Ok(inner);
        }
        if mnemonic.ends_with(':') || rest.trim_start().starts_with(':') {
            return err(line, format!("`{text}`: labels (and branches) are not supported by pokesim litmus"));
        }
        let Some(op) = op(&upper) else {
            return err(line, format!("instruction `{mnemonic}` is not supported by pokesim litmus (supported: MOV, ADD, OR, XOR, CMP, INC, DEC, XCHG, CMPXCHG, MFENCE, LFENCE, SFENCE, LOCK)"));
        };
        let operands = rest
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(|o| self.operand(o, line))
            .collect::<Result<Vec<_>, _>>()?;
        check_operands(op, &operands).map_err(|m| ParseError { line, msg: format!("`{text}`: {m}") })?;
        Ok(Insn { line, text: text.to_string(), lock: false, op, operands })
    }

    fn operand(&mut self, o: &str, line: usize) -> Result<Operand, ParseError> {
        if let Some(imm) = o.strip_prefix('$') {
            return number(imm).map(Operand::Imm).map_or_else(|| err(line, format!("`{o}` is not an immediate")), Ok);
        }
        if let Some(v) = number(o) {
            return Ok(Operand::Imm(v));
        }
        if let Some(inner) = o.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let inner = inner.trim();
            if register(inner).is_some() || number(inner).is_some() {
                return err(
                    line,
                    format!(
                        "`{o}`: only `[location]` addressing is supported (no register-indirect or numeric addresses)"
                    ),
                );
            }
            return Ok(Operand::Mem(self.location(inner, line)?));
        }
        if o.starts_with('(') {
            return err(line, format!("`{o}`: register-indirect addressing is not supported by pokesim litmus"));
        }
        match register(o) {
            Some(r) => Ok(Operand::Reg(r)),
            None => err(line, format!("operand `{o}`: not a 32-bit register (EAX, EBX, ECX, EDX, ESI, EDI, EBP), `[location]` or `$immediate`")),
        }
    }

    /// Optional `locations [..]` line, then `exists`/`~exists`/`forall` and the proposition.
    fn condition(&mut self) -> Result<(Vec<Target>, Condition), ParseError> {
        let mut shown = Vec::new();
        let Some((line, l)) = self.peek() else {
            return err(self.last_line(), "no final condition (`exists`, `~exists` or `forall`)");
        };
        if let Some(rest) = l.strip_prefix("locations") {
            self.at += 1;
            let inner = rest.trim().strip_prefix('[').and_then(|r| r.strip_suffix(']'));
            let Some(inner) = inner else { return err(line, "expected `locations [x; 0:EAX; ...]`") };
            for t in inner.split(';').map(str::trim).filter(|t| !t.is_empty()) {
                shown.push(self.target(t, line)?);
            }
        }
        let Some((line, _)) = self.peek() else {
            return err(self.last_line(), "no final condition (`exists`, `~exists` or `forall`)");
        };
        let tokens = self.tokens()?;
        let mut c = CondParser { tokens, at: 0, line };
        let condition = c.condition(self)?;
        Ok((shown, condition))
    }

    /// The rest of the file as condition tokens, each with its line.
    fn tokens(&mut self) -> Result<Vec<(usize, Token)>, ParseError> {
        let mut out = Vec::new();
        while let Some((line, l)) = self.peek() {
            self.at += 1;
            tokenize(l, line, &mut out)?;
        }
        Ok(out)
    }
}

fn is_condition_start(l: &str) -> bool {
    ["exists", "~exists", "forall", "locations", "filter", "~ exists"].iter().any(|k| l.starts_with(k))
}

/// The cells of a `a | b | c ;` row.
fn row(l: &str, line: usize) -> Result<Vec<String>, ParseError> {
    let Some(body) = l.strip_suffix(';') else { return err(line, format!("row `{l}` does not end with `;`")) };
    Ok(body.split('|').map(|c| c.trim().to_string()).collect())
}

fn split_mnemonic(text: &str) -> (&str, &str) {
    match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    }
}

fn op(upper: &str) -> Option<Op> {
    Some(match upper {
        "MOV" => Op::Mov,
        "ADD" => Op::Add,
        "OR" => Op::Or,
        "XOR" => Op::Xor,
        "CMP" => Op::Cmp,
        "INC" => Op::Inc,
        "DEC" => Op::Dec,
        "XCHG" => Op::Xchg,
        "CMPXCHG" => Op::Cmpxchg,
        "MFENCE" => Op::Mfence,
        "LFENCE" => Op::Lfence,
        "SFENCE" => Op::Sfence,
        _ => return None,
    })
}

/// The operand shapes each operation takes.
fn check_operands(op: Op, ops: &[Operand]) -> Result<(), String> {
    use Operand::{Imm, Mem, Reg};
    let ok = matches!(
        (op, ops),
        (Op::Mov | Op::Add | Op::Or | Op::Xor | Op::Cmp, [Reg(_), _])
            | (Op::Mov | Op::Add | Op::Or | Op::Xor | Op::Cmp, [Mem(_), Reg(_) | Imm(_)])
            | (Op::Inc | Op::Dec, [Reg(_) | Mem(_)])
            | (Op::Xchg, [Reg(_), Reg(_) | Mem(_)] | [Mem(_), Reg(_)])
            | (Op::Cmpxchg, [Reg(_) | Mem(_), Reg(_)])
            | (Op::Mfence | Op::Lfence | Op::Sfence, [])
    );
    if !ok {
        return Err(format!("{} operands this instruction does not take", ops.len()));
    }
    for o in ops {
        if let Imm(v) = o {
            if i32::try_from(*v).is_err() && u32::try_from(*v).is_err() {
                return Err(format!("immediate {v} does not fit in 32 bits"));
            }
        }
    }
    Ok(())
}

/// A supported 32-bit register by name (case-insensitive).
pub fn register(name: &str) -> Option<Register> {
    REGISTERS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, r)| *r)
}

/// A decimal or `0x` hexadecimal integer, possibly negative.
fn number(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let v = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(h) => i64::from_str_radix(h, 16).ok()?,
        None if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) => digits.parse().ok()?,
        None => return None,
    };
    Some(if neg { -v } else { v })
}

/// A token of the final condition.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Word(String),
    Eq,
}

fn tokenize(l: &str, line: usize, out: &mut Vec<(usize, Token)>) -> Result<(), ParseError> {
    let b = l.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        let two = l.get(i..i + 2);
        let tok = match c {
            _ if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => Token::LParen,
            ')' => Token::RParen,
            '~' => Token::Not,
            '=' => Token::Eq,
            '/' if two == Some("/\\") => Token::And,
            '\\' if two == Some("\\/") => Token::Or,
            _ if c.is_ascii_alphanumeric() || "_:[]-$".contains(c) => {
                let start = i;
                while i < b.len() && ((b[i] as char).is_ascii_alphanumeric() || "_:[]-$".contains(b[i] as char)) {
                    i += 1;
                }
                out.push((line, Token::Word(l[start..i].to_string())));
                continue;
            }
            _ => return err(line, format!("unexpected `{c}` in the final condition")),
        };
        i += if matches!(tok, Token::And | Token::Or) { 2 } else { 1 };
        out.push((line, tok));
    }
    Ok(())
}

struct CondParser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    line: usize,
}

impl CondParser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|t| &t.1)
    }

    fn line(&self) -> usize {
        self.tokens.get(self.at).or(self.tokens.last()).map_or(self.line, |t| t.0)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).map(|t| t.1.clone());
        self.at += 1;
        t
    }

    fn condition(&mut self, p: &mut Parser<'_>) -> Result<Condition, ParseError> {
        let line = self.line();
        let quantifier = match self.next() {
            Some(Token::Not) if self.peek() == Some(&Token::Word("exists".into())) => {
                self.at += 1;
                Quantifier::NotExists
            }
            Some(Token::Word(w)) if w == "exists" => Quantifier::Exists,
            Some(Token::Word(w)) if w == "forall" => Quantifier::Forall,
            Some(Token::Word(w)) if w == "filter" => return err(line, "`filter` is not supported by pokesim litmus"),
            _ => return err(line, "expected the final condition: `exists`, `~exists` or `forall`"),
        };
        let prop = self.or(p)?;
        if self.at < self.tokens.len() {
            return err(self.line(), "unexpected text after the final condition");
        }
        Ok(Condition { quantifier, prop })
    }

    fn or(&mut self, p: &mut Parser<'_>) -> Result<Prop, ParseError> {
        let left = self.and(p)?;
        if self.peek() == Some(&Token::Or) {
            self.at += 1;
            return Ok(Prop::Or(Box::new(left), Box::new(self.or(p)?)));
        }
        Ok(left)
    }

    fn and(&mut self, p: &mut Parser<'_>) -> Result<Prop, ParseError> {
        let left = self.unary(p)?;
        if self.peek() == Some(&Token::And) {
            self.at += 1;
            return Ok(Prop::And(Box::new(left), Box::new(self.and(p)?)));
        }
        Ok(left)
    }

    fn unary(&mut self, p: &mut Parser<'_>) -> Result<Prop, ParseError> {
        let line = self.line();
        match self.next() {
            Some(Token::Not) => Ok(Prop::Not(Box::new(self.unary(p)?))),
            Some(Token::LParen) => {
                let inner = self.or(p)?;
                match self.next() {
                    Some(Token::RParen) => Ok(inner),
                    _ => err(line, "`(` without its `)` in the final condition"),
                }
            }
            Some(Token::Word(w)) if w == "true" => Ok(Prop::True),
            Some(Token::Word(w)) if w == "false" => Ok(Prop::False),
            Some(Token::Word(w)) => {
                if self.next() != Some(Token::Eq) {
                    return err(line, format!("`{w}`: expected `{w}=VALUE` in the final condition"));
                }
                let target = p.target(&w, line)?;
                match self.next() {
                    Some(Token::Word(v)) => match number(&v) {
                        Some(v) => Ok(Prop::Atom(target, v)),
                        None => {
                            err(line, format!("{target}={v}: comparing with `{v}` (not a number) is not supported"))
                        }
                    },
                    _ => err(line, format!("{target}=: the value is missing")),
                }
            }
            _ => err(line, "expected a proposition (`0:EAX=1`, `x=1`, `~`, `(`) in the final condition"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SB: &str = "X86 SB\n\"PodWR Fre PodWR Fre\"\nCom=Fr Fr\n{\n}\n P0          | P1          ;\n MOV [x],$1  | MOV [y],$1  ;\n MOV EAX,[y] | MOV EAX,[x] ;\nexists\n(0:EAX=0 /\\ 1:EAX=0)\n";

    #[test]
    fn parses_sb() {
        let t = parse(SB).unwrap();
        assert_eq!(t.name, "SB");
        assert_eq!(t.threads.len(), 2);
        assert_eq!(t.threads[0][0].operands, vec![Operand::Mem("x".into()), Operand::Imm(1)]);
        assert_eq!(t.locations, vec!["x".to_string(), "y".to_string()]);
        assert_eq!(t.condition.to_string(), "exists (0:EAX=0 /\\ 1:EAX=0)");
    }

    #[test]
    fn refuses_with_the_line() {
        let bad = SB.replace("MOV EAX,[y] |", "MOVB EAX,[y] |");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.line, 8);
        assert!(e.msg.contains("`MOVB` is not supported"), "{e}");
        let e = parse(&SB.replace("X86 SB", "AArch64 SB")).unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse(&SB.replace("(0:EAX=0", "(0:EAX=0 /\\")).unwrap_err();
        assert_eq!(e.line, 10, "{e}");
        let e = parse(&SB.replace("1:EAX=0)", "2:EAX=0)")).unwrap_err();
        assert!(e.msg.contains("names thread 2; the test has 2 threads"), "{e}");
    }

    #[test]
    fn conditions_with_locations_negation_and_or() {
        let t = parse(&SB.replace("(0:EAX=0 /\\ 1:EAX=0)", "~(x=1 \\/ [y]=2) /\\ 0:EAX=0")).unwrap();
        assert_eq!(t.condition.to_string(), "exists (~([x]=1 \\/ [y]=2) /\\ 0:EAX=0)");
        let t = parse(&SB.replace("(0:EAX=0 /\\ 1:EAX=0)", "(0:EAX=1 /\\ x=1 \\/ 0:EAX=2)")).unwrap();
        assert_eq!(t.condition.to_string(), "exists (0:EAX=1 /\\ [x]=1 \\/ 0:EAX=2)");
        let t = parse(&SB.replace("exists", "~exists")).unwrap();
        assert_eq!(t.condition.quantifier, Quantifier::NotExists);
    }
}
