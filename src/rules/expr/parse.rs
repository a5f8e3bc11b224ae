//! Text to `Expr`: a lexer and a recursive-descent parser for the grammar
//! in the module doc. Errors carry the column where the text went wrong.

use super::{CmpOp, Expr, ParseError};

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    LParen,
    RParen,
    Not,
    And,
    Or,
    Op(CmpOp),
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i] as char;
        let start = i;
        let two = if i + 1 < b.len() { &s[i..i + 2] } else { "" };
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                i += 1;
                continue;
            }
            '(' => {
                out.push((start, Tok::LParen));
                i += 1;
            }
            ')' => {
                out.push((start, Tok::RParen));
                i += 1;
            }
            _ if two == "&&" => {
                out.push((start, Tok::And));
                i += 2;
            }
            _ if two == "||" => {
                out.push((start, Tok::Or));
                i += 2;
            }
            _ if two == "==" => {
                out.push((start, Tok::Op(CmpOp::Eq)));
                i += 2;
            }
            _ if two == "!=" => {
                out.push((start, Tok::Op(CmpOp::Ne)));
                i += 2;
            }
            _ if two == ">=" => {
                out.push((start, Tok::Op(CmpOp::Ge)));
                i += 2;
            }
            _ if two == "<=" => {
                out.push((start, Tok::Op(CmpOp::Le)));
                i += 2;
            }
            '>' => {
                out.push((start, Tok::Op(CmpOp::Gt)));
                i += 1;
            }
            '<' => {
                out.push((start, Tok::Op(CmpOp::Lt)));
                i += 1;
            }
            '!' => {
                out.push((start, Tok::Not));
                i += 1;
            }
            '0'..='9' | '-' => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    i += 1;
                }
                let t = &s[start..i];
                let v: f64 = t.parse().map_err(|_| ParseError::BadNumber {
                    text: t.to_string(),
                    col: start + 1,
                })?;
                out.push((start, Tok::Num(v)));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b"_.-".contains(&b[i])) {
                    i += 1;
                }
                out.push((start, Tok::Ident(s[start..i].to_string())));
            }
            _ => {
                return Err(ParseError::UnexpectedChar {
                    found: s[start..].chars().next().unwrap_or(' '),
                    col: start + 1,
                });
            }
        }
    }
    Ok(out)
}

/// The deepest nesting of parentheses and `!` a condition may have: the
/// parser and the evaluator recurse once per level, and a config must not
/// be able to overflow the stack.
pub const MAX_DEPTH: usize = 32;
/// The most tokens a condition may have.
pub const MAX_TOKENS: usize = 1024;

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    len: usize,
    /// Current nesting of parentheses and `!`.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }
    fn col(&self) -> usize {
        self.toks
            .get(self.pos)
            .map(|t| t.0 + 1)
            .unwrap_or(self.len + 1)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.1.clone());
        self.pos += 1;
        t
    }
    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            l = Expr::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            l = Expr::And(Box::new(l), Box::new(self.unary()?));
        }
        Ok(l)
    }
    fn deeper(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::TooDeep {
                col: self.col(),
                max: MAX_DEPTH,
            });
        }
        Ok(())
    }
    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            self.deeper()?;
            let e = Expr::Not(Box::new(self.unary()?));
            self.depth -= 1;
            return Ok(e);
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Expr, ParseError> {
        let l = self.atom()?;
        if let Some(Tok::Op(op)) = self.peek().cloned() {
            self.pos += 1;
            let r = self.atom()?;
            return Ok(Expr::Cmp(op, Box::new(l), Box::new(r)));
        }
        Ok(l)
    }
    fn atom(&mut self) -> Result<Expr, ParseError> {
        let col = self.col();
        match self.next() {
            Some(Tok::Num(v)) => Ok(Expr::Num(v)),
            Some(Tok::LParen) => {
                self.deeper()?;
                let e = self.or()?;
                self.depth -= 1;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => Err(ParseError::Unclosed { col }),
                }
            }
            Some(Tok::Ident(id)) if id == "true" => Ok(Expr::Bool(true)),
            Some(Tok::Ident(id)) if id == "false" => Ok(Expr::Bool(false)),
            Some(Tok::Ident(id))
                if (id == "active" || id == "bad") && self.peek() == Some(&Tok::LParen) =>
            {
                self.pos += 1;
                let arg = match self.next() {
                    Some(Tok::Ident(a)) => a,
                    _ => return Err(ParseError::NeedsName { func: id, col }),
                };
                if self.next() != Some(Tok::RParen) {
                    return Err(ParseError::UnclosedCall { func: id, arg, col });
                }
                Ok(if id == "active" {
                    Expr::Active(arg)
                } else {
                    Expr::Bad(arg)
                })
            }
            Some(Tok::Ident(id)) => Ok(Expr::Point(id)),
            Some(t) => Err(ParseError::UnexpectedToken {
                found: format!("{t:?}"),
                col,
            }),
            None => Err(ParseError::EndsEarly { col }),
        }
    }
}

pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err(ParseError::Empty);
    }
    // A chain of `&&` is as deep a tree as it is long: bounded too.
    if toks.len() > MAX_TOKENS {
        return Err(ParseError::TooLong { max: MAX_TOKENS });
    }
    let mut p = Parser {
        toks,
        pos: 0,
        len: src.len(),
        depth: 0,
    };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return Err(ParseError::Trailing { col: p.col() });
    }
    Ok(e)
}
