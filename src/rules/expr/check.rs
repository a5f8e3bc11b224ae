//! The start-up check of a parsed condition: every name it reads exists,
//! every operand has the type its operator needs, and the whole is a bool.

use super::{CmpOp, Expr, Ty, TypeError};

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
