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
}
