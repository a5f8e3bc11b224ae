//! The small path syntax that maps a field of an MQTT JSON payload to a
//! point: `cameras[3].online`, `data.ch4`, `[0].value`.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A parsed path; it keeps the text it was written as, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

/// Why a path does not parse; the message names the column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonPathError {
    #[error("the path is empty")]
    Empty,
    #[error("`[` at column {0} is not closed")]
    Unclosed(usize),
    #[error("`{index}` at column {column} is not an array index")]
    NotAnIndex { index: String, column: usize },
    #[error("the path ends with `.`")]
    TrailingDot,
    #[error("empty field name at column {0}")]
    EmptyField(usize),
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonPath {
    pub fn parse(s: &str) -> Result<JsonPath, JsonPathError> {
        let mut steps = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        if s.is_empty() {
            return Err(JsonPathError::Empty);
        }
        while i < b.len() {
            match b[i] {
                b'[' => {
                    let end = s[i..].find(']').ok_or(JsonPathError::Unclosed(i + 1))? + i;
                    let idx: usize =
                        s[i + 1..end]
                            .trim()
                            .parse()
                            .map_err(|_| JsonPathError::NotAnIndex {
                                index: s[i + 1..end].to_string(),
                                column: i + 2,
                            })?;
                    steps.push(Step::Index(idx));
                    i = end + 1;
                    if i < b.len() && b[i] == b'.' {
                        i += 1;
                        if i == b.len() {
                            return Err(JsonPathError::TrailingDot);
                        }
                    }
                }
                b'.' => return Err(JsonPathError::EmptyField(i + 1)),
                _ => {
                    let end = s[i..].find(['.', '[']).map(|k| k + i).unwrap_or(b.len());
                    steps.push(Step::Key(s[i..end].to_string()));
                    i = end;
                    if i < b.len() && b[i] == b'.' {
                        i += 1;
                        if i == b.len() {
                            return Err(JsonPathError::TrailingDot);
                        }
                    }
                }
            }
        }
        Ok(JsonPath {
            text: s.to_string(),
            steps,
        })
    }

    pub fn get<'a>(&self, v: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        let mut cur = v;
        for s in &self.steps {
            cur = match s {
                Step::Key(k) => cur.get(k.as_str())?,
                Step::Index(i) => cur.get(*i)?,
            };
        }
        Some(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let v = json!({"cameras":[{"online":true},{"online":false,"x":{"y":[1,2,3]}}],"ch4":0.42});
        assert_eq!(
            JsonPath::parse("cameras[1].online").unwrap().get(&v),
            Some(&json!(false))
        );
        assert_eq!(
            JsonPath::parse("cameras[1].x.y[2]").unwrap().get(&v),
            Some(&json!(3))
        );
        assert_eq!(JsonPath::parse("ch4").unwrap().get(&v), Some(&json!(0.42)));
        assert_eq!(JsonPath::parse("cameras[5].online").unwrap().get(&v), None);
        assert_eq!(
            JsonPath::parse("[0]").unwrap().get(&json!([7])),
            Some(&json!(7))
        );
    }

    #[test]
    fn bad_paths() {
        assert!(JsonPath::parse("a[").is_err());
        assert!(JsonPath::parse("a[x]").is_err());
        assert!(JsonPath::parse("a..b").is_err());
        assert!(JsonPath::parse("a.").is_err());
        assert!(JsonPath::parse("").is_err());
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;
        use serde_json::{Map, Value as J};

        /// Any JSON document, nested a few levels.
        fn doc() -> impl Strategy<Value = J> {
            let leaf = prop_oneof![
                Just(J::Null),
                any::<bool>().prop_map(J::Bool),
                any::<i64>().prop_map(J::from),
                any::<f64>().prop_map(J::from),
                ".{0,12}".prop_map(J::String),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(J::Array),
                    prop::collection::btree_map(".{0,8}", inner, 0..6)
                        .prop_map(|m| J::Object(m.into_iter().collect::<Map<_, _>>())),
                ]
            })
        }

        /// Text that looks like a path often and like anything else too.
        fn path_text() -> impl Strategy<Value = String> {
            prop_oneof![
                ".{0,40}",
                "[a-z0-9.\\[\\] _-]{0,30}",
                prop::collection::vec(
                    prop_oneof![
                        Just("[".to_string()),
                        Just("]".to_string()),
                        Just(".".to_string()),
                        "[0-9]{1,25}",
                        "[a-zé气 ]{1,4}",
                    ],
                    0..12
                )
                .prop_map(|v| v.concat()),
            ]
        }

        #[derive(Clone, Debug)]
        enum Gen {
            Key(String),
            Index(usize),
        }

        /// A path as a user writes it: keys (any text without `.` and
        /// `[`, not empty) and indexes.
        fn steps() -> impl Strategy<Value = Vec<Gen>> {
            prop::collection::vec(
                prop_oneof![
                    "[^.\\[]{1,10}".prop_map(Gen::Key),
                    (0usize..5).prop_map(Gen::Index),
                ],
                1..6,
            )
        }

        fn render(steps: &[Gen]) -> String {
            let mut s = String::new();
            for (i, st) in steps.iter().enumerate() {
                match st {
                    Gen::Key(k) => {
                        if i > 0 {
                            s.push('.');
                        }
                        s.push_str(k);
                    }
                    Gen::Index(n) => s.push_str(&format!("[{n}]")),
                }
            }
            s
        }

        /// A document with `leaf` at `steps`, among other content.
        fn place(steps: &[Gen], leaf: J, filler: &[J]) -> J {
            let mut cur = leaf;
            for (depth, st) in steps.iter().enumerate().rev() {
                let other = |j: usize| filler[(depth + j) % filler.len()].clone();
                cur = match st {
                    Gen::Key(k) => {
                        let mut m = Map::new();
                        m.insert(format!("{k}_"), other(0));
                        m.insert("x".into(), other(1));
                        // Inserted last: it wins if `k` is one of the above.
                        m.insert(k.clone(), cur);
                        J::Object(m)
                    }
                    Gen::Index(n) => {
                        let mut a: Vec<J> = (0..=*n + 1).map(other).collect();
                        a[*n] = cur;
                        J::Array(a)
                    }
                };
            }
            cur
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Any text parses or is refused, and a parsed path looks up
            /// any document, without a panic.
            #[test]
            fn any_path_on_any_document_never_panics(text in path_text(), d in doc()) {
                if let Ok(p) = JsonPath::parse(&text) {
                    prop_assert_eq!(p.to_string(), text);
                    let _ = p.get(&d);
                }
            }

            /// A value placed at a path is what the path finds.
            #[test]
            fn finds_what_was_placed(
                steps in steps(),
                leaf in doc(),
                filler in prop::collection::vec(doc(), 1..4),
            ) {
                let text = render(&steps);
                let p = JsonPath::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
                let d = place(&steps, leaf.clone(), &filler);
                prop_assert_eq!(p.get(&d), Some(&leaf), "{}", text);
            }
        }
    }
}
