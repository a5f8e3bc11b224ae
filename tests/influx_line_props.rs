//! Property test of the InfluxDB line protocol the sink writes
//! (`sink::influx::line`): every reading, whatever text its ids and values
//! hold, is one line that an independent parser, written here from the
//! line-protocol rules, reads back as the reading.
//!
//! The rules the parser follows (InfluxDB 2.x line protocol):
//! `measurement[,tag=value…] field=value[,field=value…] timestamp`;
//! in the measurement a backslash escapes a comma, a space or a backslash;
//! in tag keys and values also an equals sign; a string field is in double
//! quotes, inside which a backslash escapes `"` and `\`. A backslash before
//! any other character is a literal backslash. A line ends at a line feed.
//!
//! What the sink documents it changes, the expectation changes the same
//! way: control characters in a measurement or tag become U+FFFD (a line
//! feed cannot be escaped there); in a text value a line feed, carriage
//! return, tab or other control character becomes its visible escape (`\n`,
//! `\r`, `\t`, `\x07`), and the text is cut at `TEXT_MAX_CHARS` characters.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use riskgate::model::{BadReason, Quality, Reading, Value};
use riskgate::sink::influx::{TEXT_MAX_CHARS, line};

#[derive(Debug, PartialEq)]
enum Field {
    Float(f64),
    Int(i64),
    Str(String),
}

#[derive(Debug, PartialEq)]
struct Parsed {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, Field)>,
    timestamp: i64,
}

/// Reads up to (not including) the first unescaped character of `stops`;
/// `escapable` are the characters a backslash escapes there.
fn token(chars: &[char], i: &mut usize, stops: &[char], escapable: &[char]) -> String {
    let mut out = String::new();
    while *i < chars.len() {
        let c = chars[*i];
        if c == '\\' && *i + 1 < chars.len() && escapable.contains(&chars[*i + 1]) {
            out.push(chars[*i + 1]);
            *i += 2;
            continue;
        }
        if stops.contains(&c) {
            break;
        }
        out.push(c);
        *i += 1;
    }
    out
}

fn expect(chars: &[char], i: &mut usize, c: char) -> Result<(), String> {
    if chars.get(*i) == Some(&c) {
        *i += 1;
        Ok(())
    } else {
        Err(format!("expected {c:?} at {i}, found {:?}", chars.get(*i)))
    }
}

fn parse(line: &str) -> Result<Parsed, String> {
    if line.contains('\n') {
        return Err("more than one line".into());
    }
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let measurement = token(&chars, &mut i, &[',', ' '], &[',', ' ', '\\']);
    if measurement.is_empty() {
        return Err("no measurement".into());
    }
    let tag_esc = [',', ' ', '=', '\\'];
    let mut tags = Vec::new();
    while chars.get(i) == Some(&',') {
        i += 1;
        let k = token(&chars, &mut i, &['=', ',', ' '], &tag_esc);
        expect(&chars, &mut i, '=')?;
        let v = token(&chars, &mut i, &[',', ' ', '='], &tag_esc);
        if k.is_empty() || v.is_empty() {
            return Err(format!("empty tag key or value at {i}"));
        }
        tags.push((k, v));
    }
    expect(&chars, &mut i, ' ')?;
    let mut fields = Vec::new();
    loop {
        let k = token(&chars, &mut i, &['=', ',', ' '], &tag_esc);
        expect(&chars, &mut i, '=')?;
        let v = if chars.get(i) == Some(&'"') {
            i += 1;
            let s = token(&chars, &mut i, &['"'], &['"', '\\']);
            expect(&chars, &mut i, '"')?;
            Field::Str(s)
        } else {
            let raw = token(&chars, &mut i, &[',', ' '], &[]);
            match raw.strip_suffix('i') {
                Some(n) => Field::Int(n.parse().map_err(|e| format!("{raw}: {e}"))?),
                None => Field::Float(raw.parse().map_err(|e| format!("{raw}: {e}"))?),
            }
        };
        fields.push((k, v));
        if chars.get(i) == Some(&',') {
            i += 1;
        } else {
            break;
        }
    }
    expect(&chars, &mut i, ' ')?;
    let ts: String = chars[i..].iter().collect();
    let timestamp = ts.parse().map_err(|e| format!("timestamp {ts:?}: {e}"))?;
    Ok(Parsed {
        measurement,
        tags,
        fields,
        timestamp,
    })
}

/// What a measurement or tag holds after the documented replacement.
fn tag_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// What a text field holds after the documented cap and replacements.
fn text_field(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(TEXT_MAX_CHARS) {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// Text a device or a config could hold: the characters line protocol
/// cares about, controls, unicode, and lengths past the cap.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    ",", " ", "=", "\"", "\\", "\n", "\r", "\t", "\u{7}", "\u{85}", "\\n", "é",
                    "气体", "🔥", "a", "Z", "0", "i", "\\\"",
                ])
                .prop_map(String::from),
                ".{1,3}",
            ],
            1..40
        )
        .prop_map(|v| v.concat()),
        1 => "\\PC{1,60}",
        1 => (prop::sample::select(vec!["é", "a\\", "\"", "\n"]), TEXT_MAX_CHARS - 3..TEXT_MAX_CHARS + 40)
            .prop_map(|(s, n)| s.repeat(n)),
    ]
}

fn value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        any::<f64>().prop_map(|v| Some(Value::Num(v))),
        any::<bool>().prop_map(|b| Some(Value::Bool(b))),
        text().prop_map(|t| Some(Value::Text(t))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_reading_is_one_line_that_parses_back(
        measurement in text(),
        site in text(),
        device in text(),
        point in text(),
        value in value(),
        good in any::<bool>(),
        nanos in any::<i64>(),
    ) {
        let quality = if good { Quality::Good } else { Quality::Bad(BadReason::Timeout) };
        let r = Reading {
            point: Arc::from(point.as_str()),
            device: Arc::from(device.as_str()),
            value: value.clone(),
            quality: quality.clone(),
            at: Utc.timestamp_nanos(nanos),
        };
        let l = line(&measurement, &site, &r);
        prop_assert!(!l.contains('\n') && !l.contains('\r'), "{}", l);
        let p = parse(&l).map_err(|e| TestCaseError::fail(format!("{e}: {l}")))?;

        prop_assert_eq!(p.measurement, tag_text(&measurement));
        prop_assert_eq!(
            p.tags,
            vec![
                ("site".to_string(), tag_text(&site)),
                ("device".to_string(), tag_text(&device)),
                ("point".to_string(), tag_text(&point)),
            ]
        );
        let mut fields = Vec::new();
        if good {
            match &value {
                Some(Value::Num(v)) if v.is_finite() => fields.push(("value".to_string(), Field::Float(*v))),
                Some(Value::Bool(b)) => fields.push(("value".to_string(), Field::Float(if *b { 1.0 } else { 0.0 }))),
                Some(Value::Text(t)) => fields.push(("text".to_string(), Field::Str(text_field(t)))),
                _ => {}
            }
        }
        fields.push(("quality".to_string(), Field::Int(i64::from(quality.code()))));
        prop_assert_eq!(p.fields, fields);
        prop_assert_eq!(p.timestamp, nanos);
    }
}

/// The parser itself reads what the rules say (so a green property is not
/// a parser that accepts anything).
#[test]
fn the_test_parser_follows_the_rules() {
    let p = parse(r#"m\,1\ x,t\=k=a\ b\,c\=d\\ text="q\"u\\o\te",n=-2i,v=1.5 42"#).unwrap();
    assert_eq!(p.measurement, "m,1 x");
    assert_eq!(p.tags, vec![("t=k".into(), r"a b,c=d\".into())]);
    assert_eq!(
        p.fields,
        vec![
            ("text".into(), Field::Str(r#"q"u\o\te"#.into())),
            ("n".into(), Field::Int(-2)),
            ("v".into(), Field::Float(1.5)),
        ]
    );
    assert_eq!(p.timestamp, 42);
    assert!(parse("m v=1 1\nm v=2 2").is_err());
    assert!(parse("m,t= v=1 1").is_err());
    assert!(parse("m v=\"open 1").is_err());
}
