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

mod check;
mod eval;
mod parse;
#[cfg(test)]
mod tests;

pub use check::{check, point_refs, rule_refs};
pub use eval::{Env, V, eval};
pub use parse::parse;

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
    #[error("nested deeper than {max} levels at column {col}")]
    TooDeep { col: usize, max: usize },
    #[error("longer than {max} words and signs")]
    TooLong { max: usize },
}

impl ParseError {
    /// Where in the condition the problem is (1-based), if anywhere.
    pub fn column(&self) -> Option<usize> {
        match self {
            ParseError::Empty | ParseError::TooLong { .. } => None,
            ParseError::BadNumber { col, .. }
            | ParseError::UnexpectedChar { col, .. }
            | ParseError::Unclosed { col }
            | ParseError::NeedsName { col, .. }
            | ParseError::UnclosedCall { col, .. }
            | ParseError::UnexpectedToken { col, .. }
            | ParseError::EndsEarly { col }
            | ParseError::Trailing { col }
            | ParseError::TooDeep { col, .. } => Some(*col),
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
