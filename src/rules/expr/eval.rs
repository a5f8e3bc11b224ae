//! Three-valued evaluation: a bad input is unknown, and unknown propagates
//! unless the other side of `&&`/`||` decides the result alone.

use std::collections::HashMap;

use super::{CmpOp, Expr};

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
