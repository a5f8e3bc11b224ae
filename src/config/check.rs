//! The list every config check writes its problems to, so that all of them
//! are reported at once, each with its field path. The file name is filled
//! in by `load()`.

use super::error::ConfigError;

#[derive(Default)]
pub struct Errs(pub Vec<ConfigError>);

impl Errs {
    pub fn push(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.0.push(ConfigError {
            file: String::new(),
            path: path.into(),
            message: msg.into(),
        });
    }

    /// How many problems so far: a check compares it before and after to
    /// know whether its part was clean.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A level of the contract: 1 (red) to 4 (blue).
pub fn check_level(level: u8, path: String, e: &mut Errs) {
    if !(1..=4).contains(&level) {
        e.push(
            path,
            format!("{level} is not a level; levels are 1 (red) to 4 (blue)"),
        );
    }
}
