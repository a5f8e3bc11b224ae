use std::collections::HashMap;

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
