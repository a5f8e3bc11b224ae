//! One problem in a config file, and small checks shared by the sections.
//! Checks never stop at the first problem: each one pushes what it found
//! to a [`super::check::Errs`] and carries on, so an installer sees every
//! error at once.

use std::fmt;

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// Field path such as `devices[2].points[0].scale`; empty for the file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A duration that must be greater than zero.
pub fn positive(d: &super::raw::Dur) -> bool {
    !d.0.is_zero()
}
