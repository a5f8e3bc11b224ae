//! The condition language of interlock and consistency rules.
//!
//! ```text
//! expr    := or
//! or      := and ("||" and)*
//! and     := unary ("&&" unary)*
//! unary   := "!" unary | cmp
//! cmp     := atom (("==" | "!=" | ">=" | ">" | "<=" | "<") atom)?
//! atom    := NUMBER | "true" | "false" | POINT_ID | "(" expr ")"
//!          | "active(" RULE_ID ")" | "bad(" POINT_ID ")"
//! ```
//!
//! Values are typed (`bool` or number) and checked at start-up. Evaluation
//! uses three-valued logic: a point with bad quality is *unknown*, `unknown &&
//! false` is `false`, `unknown || true` is `true`, and a condition that ends
//! up unknown counts as **true** — the alarm side. So `face.working &&
//! !video.present` raises when the video box is silent while the face works
//! (fail safe), and stays quiet when the face is known to be idle.

use std::collections::HashMap;

/// Why a condition does not parse. Columns count from 1, in bytes of the
/// condition as written, so the installer can find the spot.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("the condition is empty")]
    Empty,
    #[error("`{text}` at column {col} is not a number")]
    BadNumber { text: String, col: usize },
    #[error("unexpected `{found}` at column {col}")]
    UnexpectedChar { found: char, col: usize },
    #[error("missing `)` for the `(` at column {col}")]
    Unclosed { col: usize },
    #[error("`{func}(` at column {col} needs a name")]
    NeedsName { func: String, col: usize },
    #[error("missing `)` after `{func}({arg}`")]
    UnclosedCall {
        func: String,
        arg: String,
        col: usize,
    },
    #[error("unexpected {found} at column {col}")]
    UnexpectedToken { found: String, col: usize },
    #[error("the condition ends too early at column {col}")]
    EndsEarly { col: usize },
    #[error("unexpected text at column {col}")]
    Trailing { col: usize },
}

impl ParseError {
    /// Where in the condition the problem is (1-based), if anywhere.
    pub fn column(&self) -> Option<usize> {
        match self {
            ParseError::Empty => None,
            ParseError::BadNumber { col, .. }
            | ParseError::UnexpectedChar { col, .. }
            | ParseError::Unclosed { col }
            | ParseError::NeedsName { col, .. }
            | ParseError::UnclosedCall { col, .. }
            | ParseError::UnexpectedToken { col, .. }
            | ParseError::EndsEarly { col }
            | ParseError::Trailing { col } => Some(*col),
        }
    }
}

/// A type problem in a parsed condition, or a name it reads that does not
/// exist. `check` returns every one of them.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TypeError {
    #[error("no point `{0}` in any device")]
    NoPoint(String),
    #[error("no rule `{0}` for active()")]
    NoRule(String),
    #[error("{what} needs a {want} but got a {got}")]
    Operand {
        what: &'static str,
        want: &'static str,
        got: &'static str,
    },
    #[error("`==`/`!=` compares a {0} with a {1}")]
    Mixed(&'static str, &'static str),
    #[error("the condition is a number; it must be true or false (compare it, e.g. `x >= 1.5`)")]
    NotBool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Bool,
    Num,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Ge,
    Gt,
    Le,
    Lt,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Num(f64),
    Bool(bool),
    Point(String),
    /// True while the named rule has an active (not cleared) alarm.
    Active(String),
    /// True while the point's quality is bad (known, never unknown).
    Bad(String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
}

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

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    len: usize,
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
    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
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
                let e = self.or()?;
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
    let mut p = Parser {
        toks,
        pos: 0,
        len: src.len(),
    };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return Err(ParseError::Trailing { col: p.col() });
    }
    Ok(e)
}

/// Type-checks `e`; returns every problem found. The whole condition must be
/// a bool.
pub fn check(
    e: &Expr,
    point_ty: &dyn Fn(&str) -> Option<Ty>,
    point_known: &dyn Fn(&str) -> bool,
    rule_exists: &dyn Fn(&str) -> bool,
) -> Vec<TypeError> {
    let mut errs = Vec::new();
    fn ty(
        e: &Expr,
        pt: &dyn Fn(&str) -> Option<Ty>,
        known: &dyn Fn(&str) -> bool,
        re: &dyn Fn(&str) -> bool,
        errs: &mut Vec<TypeError>,
    ) -> Option<Ty> {
        let want = |t: Option<Ty>, w: Ty, what: &'static str, errs: &mut Vec<TypeError>| {
            if let Some(t) = t
                && t != w
            {
                errs.push(TypeError::Operand {
                    what,
                    want: name(w),
                    got: name(t),
                });
            }
        };
        match e {
            Expr::Num(_) => Some(Ty::Num),
            Expr::Bool(_) => Some(Ty::Bool),
            Expr::Point(id) => {
                let t = pt(id);
                if t.is_none() && !known(id) {
                    errs.push(TypeError::NoPoint(id.clone()));
                }
                t
            }
            Expr::Bad(id) => {
                if pt(id).is_none() && !known(id) {
                    errs.push(TypeError::NoPoint(id.clone()));
                }
                Some(Ty::Bool)
            }
            Expr::Active(id) => {
                if !re(id) {
                    errs.push(TypeError::NoRule(id.clone()));
                }
                Some(Ty::Bool)
            }
            Expr::Not(x) => {
                let t = ty(x, pt, known, re, errs);
                want(t, Ty::Bool, "`!`", errs);
                Some(Ty::Bool)
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                let op = if matches!(e, Expr::And(..)) {
                    "`&&`"
                } else {
                    "`||`"
                };
                let ta = ty(a, pt, known, re, errs);
                want(ta, Ty::Bool, op, errs);
                let tb = ty(b, pt, known, re, errs);
                want(tb, Ty::Bool, op, errs);
                Some(Ty::Bool)
            }
            Expr::Cmp(op, a, b) => {
                let ta = ty(a, pt, known, re, errs);
                let tb = ty(b, pt, known, re, errs);
                match op {
                    CmpOp::Eq | CmpOp::Ne => {
                        if let (Some(x), Some(y)) = (ta, tb)
                            && x != y
                        {
                            errs.push(TypeError::Mixed(name(x), name(y)));
                        }
                    }
                    _ => {
                        want(ta, Ty::Num, "a comparison", errs);
                        want(tb, Ty::Num, "a comparison", errs);
                    }
                }
                Some(Ty::Bool)
            }
        }
    }
    fn name(t: Ty) -> &'static str {
        match t {
            Ty::Bool => "bool",
            Ty::Num => "number",
        }
    }
    let t = ty(e, point_ty, point_known, rule_exists, &mut errs);
    if t == Some(Ty::Num) {
        errs.push(TypeError::NotBool);
    }
    errs
}

/// Point ids the expression reads.
pub fn point_refs(e: &Expr) -> Vec<String> {
    let mut v = Vec::new();
    walk(e, &mut |x| {
        if let Expr::Point(id) | Expr::Bad(id) = x {
            v.push(id.clone())
        }
    });
    v.sort();
    v.dedup();
    v
}

/// Rule ids the expression reads with `active()`.
pub fn rule_refs(e: &Expr) -> Vec<String> {
    let mut v = Vec::new();
    walk(e, &mut |x| {
        if let Expr::Active(id) = x {
            v.push(id.clone())
        }
    });
    v
}

fn walk(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match e {
        Expr::Not(x) => walk(x, f),
        Expr::And(a, b) | Expr::Or(a, b) | Expr::Cmp(_, a, b) => {
            walk(a, f);
            walk(b, f);
        }
        _ => {}
    }
}

/// A value as the evaluator sees it: `None` is unknown (bad quality).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum V {
    B(Option<bool>),
    N(Option<f64>),
}

/// What the evaluator reads: point values (None = bad quality or no data)
/// and whether a rule's alarm is active.
pub trait Env {
    fn point(&self, id: &str) -> Option<crate::model::Value>;
    fn active(&self, rule_id: &str) -> bool;
}

impl Env for HashMap<String, Option<crate::model::Value>> {
    fn point(&self, id: &str) -> Option<crate::model::Value> {
        self.get(id).cloned().flatten()
    }
    fn active(&self, _: &str) -> bool {
        false
    }
}

/// Evaluates with three-valued logic; `None` means unknown.
pub fn eval(e: &Expr, env: &dyn Env) -> Option<bool> {
    match ev(e, env) {
        V::B(b) => b,
        V::N(_) => None,
    }
}

fn ev(e: &Expr, env: &dyn Env) -> V {
    match e {
        Expr::Num(v) => V::N(Some(*v)),
        Expr::Bool(b) => V::B(Some(*b)),
        Expr::Point(id) => match env.point(id) {
            None => V::N(None),
            Some(crate::model::Value::Bool(b)) => V::B(Some(b)),
            Some(crate::model::Value::Num(n)) => V::N(Some(n)),
            Some(crate::model::Value::Text(_)) => V::N(None),
        },
        Expr::Bad(id) => V::B(Some(env.point(id).is_none())),
        Expr::Active(id) => V::B(Some(env.active(id))),
        Expr::Not(x) => V::B(bool_of(ev(x, env)).map(|b| !b)),
        Expr::And(a, b) => {
            let (x, y) = (bool_of(ev(a, env)), bool_of(ev(b, env)));
            V::B(match (x, y) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            })
        }
        Expr::Or(a, b) => {
            let (x, y) = (bool_of(ev(a, env)), bool_of(ev(b, env)));
            V::B(match (x, y) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            })
        }
        Expr::Cmp(op, a, b) => {
            let (x, y) = (ev(a, env), ev(b, env));
            let r = match (x, y) {
                (V::N(Some(x)), V::N(Some(y))) => Some(match op {
                    CmpOp::Eq => x == y,
                    CmpOp::Ne => x != y,
                    CmpOp::Ge => x >= y,
                    CmpOp::Gt => x > y,
                    CmpOp::Le => x <= y,
                    CmpOp::Lt => x < y,
                }),
                (V::B(Some(x)), V::B(Some(y))) => match op {
                    CmpOp::Eq => Some(x == y),
                    CmpOp::Ne => Some(x != y),
                    _ => None,
                },
                (V::B(Some(x)), V::N(Some(y))) | (V::N(Some(y)), V::B(Some(x))) => {
                    let xv = if x { 1.0 } else { 0.0 };
                    match op {
                        CmpOp::Eq => Some(xv == y),
                        CmpOp::Ne => Some(xv != y),
                        _ => None,
                    }
                }
                _ => None,
            };
            V::B(r)
        }
    }
}

fn bool_of(v: V) -> Option<bool> {
    match v {
        V::B(b) => b,
        V::N(Some(n)) => Some(n != 0.0),
        V::N(None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    fn env(pairs: &[(&str, Option<Value>)]) -> HashMap<String, Option<Value>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn parses_precedence() {
        let e = parse("a && !b || c >= 1.5").unwrap();
        assert_eq!(
            e,
            Expr::Or(
                Box::new(Expr::And(
                    Box::new(Expr::Point("a".into())),
                    Box::new(Expr::Not(Box::new(Expr::Point("b".into()))))
                )),
                Box::new(Expr::Cmp(
                    CmpOp::Ge,
                    Box::new(Expr::Point("c".into())),
                    Box::new(Expr::Num(1.5))
                ))
            )
        );
    }

    #[test]
    fn parse_errors_say_where() {
        assert!(
            parse("a && (b")
                .unwrap_err()
                .to_string()
                .contains("missing `)`")
        );
        assert!(
            parse("a &&")
                .unwrap_err()
                .to_string()
                .contains("ends too early")
        );
        assert!(parse("a $ b").unwrap_err().to_string().contains("column 3"));
        assert_eq!(parse("a $ b").unwrap_err().column(), Some(3));
        assert!(parse("").is_err());
    }

    #[test]
    fn unknown_input_is_fail_safe() {
        let e = parse("face.working && !video.present").unwrap();
        let unknown_video = env(&[
            ("face.working", Some(Value::Bool(true))),
            ("video.present", None),
        ]);
        assert_eq!(
            eval(&e, &unknown_video),
            None,
            "unknown, which the engine treats as the alarm side"
        );
        let idle = env(&[
            ("face.working", Some(Value::Bool(false))),
            ("video.present", None),
        ]);
        assert_eq!(eval(&e, &idle), Some(false));
        let ok = env(&[
            ("face.working", Some(Value::Bool(true))),
            ("video.present", Some(Value::Bool(true))),
        ]);
        assert_eq!(eval(&e, &ok), Some(false));
        let bad = env(&[
            ("face.working", Some(Value::Bool(true))),
            ("video.present", Some(Value::Bool(false))),
        ]);
        assert_eq!(eval(&e, &bad), Some(true));
    }

    #[test]
    fn comparisons_and_bad() {
        let e = parse("ch4 >= 1.5 && feed").unwrap();
        let m = env(&[
            ("ch4", Some(Value::Num(1.6))),
            ("feed", Some(Value::Bool(true))),
        ]);
        assert_eq!(eval(&e, &m), Some(true));
        let m = env(&[
            ("ch4", Some(Value::Num(1.2))),
            ("feed", Some(Value::Bool(true))),
        ]);
        assert_eq!(eval(&e, &m), Some(false));
        let b = parse("bad(ch4)").unwrap();
        assert_eq!(eval(&b, &env(&[("ch4", None)])), Some(true));
        assert_eq!(
            eval(&b, &env(&[("ch4", Some(Value::Num(0.1)))])),
            Some(false)
        );
    }

    #[test]
    fn type_check_reports_every_problem() {
        let e = parse("ch4 && !missing || flag > 2").unwrap();
        let ty = |id: &str| match id {
            "ch4" => Some(Ty::Num),
            "flag" => Some(Ty::Bool),
            _ => None,
        };
        let errs: Vec<String> = check(&e, &ty, &|_| false, &|_| false)
            .iter()
            .map(|m| m.to_string())
            .collect();
        assert!(
            errs.iter()
                .any(|m| m.contains("`&&` needs a bool but got a number")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|m| m.contains("no point `missing`")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|m| m.contains("comparison needs a number but got a bool")),
            "{errs:?}"
        );
    }
}
